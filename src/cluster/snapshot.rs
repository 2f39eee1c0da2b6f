//! One read of everything the verbs look at, fetched concurrently, each
//! kind LISTed once: consistent for `migrate`, from the API server's watch
//! cache for the displays (`status`, `verify`), which also read the traffic
//! rules alongside.

use std::future::Future;

use super::calico::Calico;
use super::listing::Freshness;
use super::rules::{self, RuleObjects};
use super::{networks, record, workloads, Cluster};
use crate::core::inventory::Inventory;
use crate::core::model::{ClusterNetworks, NamespaceInfo, NodeInfo};
use crate::core::state::MigrationState;
use crate::error::Result;

pub struct Snapshot {
    pub calico: Calico,
    pub inventory: Inventory,
    pub nodes: Vec<NodeInfo>,
    pub namespaces: Vec<NamespaceInfo>,
    pub networks: ClusterNetworks,
    pub migration: Option<MigrationState>,
}

impl Snapshot {
    /// One consistent read (what `migrate` plans from).
    pub async fn read(cluster: &Cluster, calico: Calico) -> Result<Snapshot> {
        let (snap, _) = Snapshot::read_after(cluster, async { Ok(calico) }, true, false, Freshness::Consistent).await?;
        Ok(snap)
    }

    /// Find Calico and read the snapshot and the traffic rules together:
    /// pods, nodes and namespaces do not depend on how Calico is served, so
    /// their LISTs run while the detection's requests are made one after
    /// another, and the rules (whose Calico kinds do depend on it) are read
    /// alongside the pools and IPAM once it is known.
    /// `handles: false` skips IPAMHandles, which only consistency checks need.
    pub async fn detect_and_read(
        cluster: &Cluster,
        handles: bool,
        fresh: Freshness,
    ) -> Result<(Snapshot, RuleObjects)> {
        let (snap, rules) = Snapshot::read_after(cluster, Calico::detect(cluster), handles, true, fresh).await?;
        Ok((snap, rules.unwrap_or_default()))
    }

    async fn read_after(
        cluster: &Cluster,
        calico: impl Future<Output = Result<Calico>>,
        handles: bool,
        with_rules: bool,
        fresh: Freshness,
    ) -> Result<(Snapshot, Option<RuleObjects>)> {
        let calico_objects = async {
            let calico = calico.await?;
            let rules = async {
                match with_rules {
                    true => rules::read(cluster, &calico).await.map(Some),
                    false => Ok(None),
                }
            };
            let (pools, ipam, rules) = tokio::try_join!(
                calico.list_pools_from(cluster, fresh),
                calico.read_ipam_with(cluster, handles, fresh),
                rules,
            )?;
            Ok((calico, pools, ipam, rules))
        };
        let ((calico, pools, ipam, rules), pods, nodes, namespaces, networks, migration) = tokio::try_join!(
            calico_objects,
            workloads::list_pods_from(cluster, None, fresh),
            workloads::list_nodes(cluster, fresh),
            workloads::list_namespaces(cluster, fresh),
            async { Ok(networks::discover(cluster).await) },
            record::read_state(cluster),
        )?;
        let inventory = Inventory::build(pools, pods, ipam);
        Ok((Snapshot { calico, inventory, nodes, namespaces, networks, migration }, rules))
    }
}
