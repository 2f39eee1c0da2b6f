//! One consistent read of everything the verbs look at, fetched
//! concurrently, each kind LISTed once.

use super::calico::Calico;
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
    pub async fn read(cluster: &Cluster, calico: Calico) -> Result<Snapshot> {
        Snapshot::read_with(cluster, calico, true).await
    }

    /// `handles: false` skips IPAMHandles, which only consistency checks need.
    pub async fn read_with(cluster: &Cluster, calico: Calico, handles: bool) -> Result<Snapshot> {
        let (pools, pods, ipam, nodes, namespaces, networks, migration) = tokio::try_join!(
            calico.list_pools(cluster),
            workloads::list_pods(cluster, None),
            calico.read_ipam_with(cluster, handles),
            workloads::list_nodes(cluster),
            workloads::list_namespaces(cluster),
            async { Ok(networks::discover(cluster).await) },
            record::read_state(cluster),
        )?;
        Ok(Snapshot { calico, inventory: Inventory::build(pools, pods, ipam), nodes, namespaces, networks, migration })
    }
}
