//! One read of everything the verbs look at, fetched concurrently, each
//! kind LISTed once: consistent for `migrate`, from the API server's watch
//! cache for the displays (`status`, `verify`).

use std::future::Future;

use super::calico::Calico;
use super::listing::Freshness;
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
        Snapshot::read_after(cluster, async { Ok(calico) }, true, Freshness::Consistent).await
    }

    /// Find Calico and read the snapshot together: pods, nodes and
    /// namespaces do not depend on how Calico is served, so their LISTs run
    /// while the detection's requests are made one after another.
    /// `handles: false` skips IPAMHandles, which only consistency checks need.
    pub async fn detect_and_read(cluster: &Cluster, handles: bool, fresh: Freshness) -> Result<Snapshot> {
        Snapshot::read_after(cluster, Calico::detect(cluster), handles, fresh).await
    }

    async fn read_after(
        cluster: &Cluster,
        calico: impl Future<Output = Result<Calico>>,
        handles: bool,
        fresh: Freshness,
    ) -> Result<Snapshot> {
        let calico_objects = async {
            let calico = calico.await?;
            let (pools, ipam) = tokio::try_join!(
                calico.list_pools_from(cluster, fresh),
                calico.read_ipam_with(cluster, handles, fresh)
            )?;
            Ok((calico, pools, ipam))
        };
        let ((calico, pools, ipam), pods, nodes, namespaces, networks, migration) = tokio::try_join!(
            calico_objects,
            workloads::list_pods_from(cluster, None, fresh),
            workloads::list_nodes(cluster, fresh),
            workloads::list_namespaces(cluster, fresh),
            async { Ok(networks::discover(cluster).await) },
            record::read_state(cluster),
        )?;
        Ok(Snapshot { calico, inventory: Inventory::build(pools, pods, ipam), nodes, namespaces, networks, migration })
    }
}
