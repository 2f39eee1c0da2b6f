//! The inventory: pools x pods x IPAM blocks joined into one model that
//! answers "which pod holds which IP in which pool", grouped by pool, node,
//! namespace and owner.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use super::cidr::PrefixIndex;
use super::model::{Block, Ipam, Owner, PodInfo, Pool};
use super::name::Names;

/// Usage figures of one pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    /// Running pods with an IP in this pool.
    pub pods: usize,
    /// IPAM blocks carved from this pool.
    pub blocks: usize,
    /// Allocated addresses in those blocks (pods, tunnels, leaks).
    pub allocated: u64,
    /// Allocations that are node tunnel addresses.
    pub tunnel_allocations: u64,
    /// Nodes that hold an affine block of this pool.
    pub nodes_with_blocks: BTreeSet<String>,
}

/// Per-node block usage, for `status --nodes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBlocks {
    pub blocks: usize,
    pub allocated: u64,
    pub capacity: u64,
    pub pods: usize,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub pools: Vec<Pool>,
    pub usage: Vec<PoolUsage>,
    pub pods: Vec<PodInfo>,
    /// For each pod (same index as `pods`) the pools holding one of its
    /// addresses, in the order of its addresses (a dual-stack pod has two).
    pub pod_pools: Vec<Box<[usize]>>,
    /// For each block (same index as `ipam.blocks`) its pool, if any.
    pub block_pool: Vec<Option<usize>>,
    pub ipam: Ipam,
    pub pool_index: PrefixIndex<usize>,
}

impl Inventory {
    pub fn build(pools: Vec<Pool>, pods: Vec<PodInfo>, mut ipam: Ipam) -> Inventory {
        share_names(&pods, &mut ipam);
        let pool_index = PrefixIndex::new(pools.iter().enumerate().map(|(i, p)| (p.cidr, i)));
        let mut usage = vec![PoolUsage::default(); pools.len()];

        let pod_pools: Vec<Box<[usize]>> = pods
            .iter()
            .map(|pod| {
                if !pod.holds_pool_ip() {
                    return Box::default();
                }
                let mut idx: Vec<usize> = Vec::new();
                for i in pod.ips.iter().filter_map(|ip| pool_index.lookup(*ip).copied()) {
                    if !idx.contains(&i) {
                        idx.push(i);
                        usage[i].pods += 1;
                    }
                }
                idx.into_boxed_slice()
            })
            .collect();

        let block_pool: Vec<Option<usize>> = ipam
            .blocks
            .iter()
            .map(|b| {
                let idx = pool_index.lookup(b.cidr.network()).copied();
                if let Some(i) = idx {
                    let u = &mut usage[i];
                    u.blocks += 1;
                    u.allocated += b.allocations.len() as u64;
                    u.tunnel_allocations += b.allocations.iter().filter(|a| a.is_tunnel()).count() as u64;
                    if let Some(n) = &b.affinity_node {
                        u.nodes_with_blocks.insert(n.clone());
                    }
                }
                idx
            })
            .collect();

        Inventory { pools, usage, pods, pod_pools, block_pool, ipam, pool_index }
    }

    pub fn pool_named(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// The pool an address belongs to.
    pub fn pool_of(&self, ip: IpAddr) -> Option<&Pool> {
        self.pool_index.lookup(ip).map(|&i| &self.pools[i])
    }

    /// Pods holding an IP of pool `idx` (whatever their other addresses).
    pub fn pods_in_pool(&self, idx: usize) -> impl Iterator<Item = &PodInfo> {
        self.pods.iter().zip(&self.pod_pools).filter(move |(_, p)| p.contains(&idx)).map(|(pod, _)| pod)
    }

    /// Running pods with an address that lies in no pool at all, with that address.
    pub fn pods_without_pool(&self) -> impl Iterator<Item = (&PodInfo, IpAddr)> {
        self.pods
            .iter()
            .filter(|pod| pod.holds_pool_ip())
            .filter_map(|pod| pod.ips.iter().find(|ip| self.pool_index.lookup(**ip).is_none()).map(|ip| (pod, *ip)))
    }

    /// Blocks that lie in no pool (their pool was deleted).
    pub fn orphan_blocks(&self) -> impl Iterator<Item = &Block> {
        self.ipam.blocks.iter().zip(&self.block_pool).filter(|(_, p)| p.is_none()).map(|(b, _)| b)
    }

    /// Pods of pool `idx` grouped by owner, owners sorted.
    pub fn pods_by_owner(&self, idx: usize) -> BTreeMap<Owner, Vec<&PodInfo>> {
        let mut m: BTreeMap<Owner, Vec<&PodInfo>> = BTreeMap::new();
        for pod in self.pods_in_pool(idx) {
            m.entry(pod.owner.clone()).or_default().push(pod);
        }
        m
    }

    /// Pods holding an IP of any of the pools `idxs`, each once, grouped by owner.
    pub fn pods_by_owner_in(&self, idxs: &[usize]) -> BTreeMap<Owner, Vec<&PodInfo>> {
        let mut m: BTreeMap<Owner, Vec<&PodInfo>> = BTreeMap::new();
        for (pod, pools) in self.pods.iter().zip(&self.pod_pools) {
            if pools.iter().any(|i| idxs.contains(i)) {
                m.entry(pod.owner.clone()).or_default().push(pod);
            }
        }
        m
    }

    /// Pod counts of pool `idx` per namespace.
    pub fn pods_by_namespace(&self, idx: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for pod in self.pods_in_pool(idx) {
            *m.entry(pod.namespace.to_string()).or_insert(0) += 1;
        }
        m
    }

    /// Block usage per node, over all pools (or one).
    pub fn blocks_by_node(&self, pool: Option<usize>) -> BTreeMap<String, NodeBlocks> {
        let mut m: BTreeMap<String, NodeBlocks> = BTreeMap::new();
        for (b, p) in self.ipam.blocks.iter().zip(&self.block_pool) {
            if pool.is_some() && *p != pool {
                continue;
            }
            let node = b.affinity_node.clone().unwrap_or_else(|| "<none>".into());
            let e = m.entry(node).or_default();
            e.blocks += 1;
            e.allocated += b.allocations.len() as u64;
            e.capacity += super::cidr::size(&b.cidr).min(u64::MAX as u128) as u64;
        }
        for (pod, p) in self.pods.iter().zip(&self.pod_pools) {
            if p.is_empty() || pool.is_some_and(|i| !p.contains(&i)) {
                continue;
            }
            if let Some(n) = &pod.node {
                m.entry(n.to_string()).or_default().pods += 1;
            }
        }
        m
    }
}

/// Blocks are decoded one at a time, each allocation with its own copy of
/// its namespace and node names: keep one copy of each, the pods' own.
fn share_names(pods: &[PodInfo], ipam: &mut Ipam) {
    let mut names = Names::default();
    for pod in pods {
        names.share(&pod.namespace);
        if let Some(n) = &pod.node {
            names.share(n);
        }
    }
    for a in ipam.blocks.iter_mut().flat_map(|b| b.allocations.iter_mut()) {
        for name in [&mut a.namespace, &mut a.node, &mut a.kind].into_iter().flatten() {
            *name = names.share(name);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::model::*;

    pub fn pod(ns: &str, name: &str, ip: &str, owner: OwnerKind, owner_name: &str) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node: Some("node-0".into()),
            ips: if ip.is_empty() { vec![] } else { vec![ip.parse().unwrap()] },
            phase: if ip.is_empty() { PodPhase::Pending } else { PodPhase::Running },
            host_network: false,
            ready: true,
            terminating: false,
            owner: Owner { kind: owner, other_kind: None, namespace: ns.into(), name: owner_name.into() },
            pins: Default::default(),
            container_id: Some(format!("cid-{name}")),
            ready_after: Some(2.0),
        }
    }

    pub fn block(cidr: &str, node: &str, ips: &[&str]) -> Block {
        Block {
            name: cidr.replace(['.', '/', ':'], "-"),
            cidr: cidr.parse().unwrap(),
            affinity_node: Some(node.into()),
            affinity: Some(format!("host:{node}")),
            allocations: ips
                .iter()
                .map(|ip| Allocation {
                    ip: ip.parse().unwrap(),
                    handle: Some(format!("h-{ip}").into()),
                    namespace: None,
                    pod: None,
                    node: Some(node.into()),
                    kind: None,
                })
                .collect(),
            deleted: false,
            problems: vec![],
        }
    }

    #[test]
    fn joins_pods_and_blocks_to_pools() {
        let pools =
            vec![Pool::new("old", "192.168.0.0/16".parse().unwrap()), Pool::new("new", "10.0.0.0/16".parse().unwrap())];
        let mut host = pod("shop", "hostnet", "127.0.1.1", OwnerKind::Bare, "hostnet");
        host.host_network = true;
        let mut done = pod("shop", "done", "192.168.0.9", OwnerKind::Job, "j");
        done.phase = "Succeeded".into();
        let pods = vec![
            pod("shop", "web-1", "192.168.0.1", OwnerKind::Deployment, "web"),
            pod("shop", "web-2", "10.0.0.1", OwnerKind::Deployment, "web"),
            pod("shop", "db-0", "192.168.0.2", OwnerKind::StatefulSet, "db"),
            pod("shop", "stray", "172.16.0.1", OwnerKind::Bare, "stray"),
            pod("shop", "pending", "", OwnerKind::Deployment, "web"),
            host,
            done,
        ];
        let ipam = Ipam {
            blocks: vec![
                block("192.168.0.0/26", "node-0", &["192.168.0.1", "192.168.0.2"]),
                block("10.0.0.0/26", "node-0", &["10.0.0.1"]),
                block("172.30.0.0/26", "node-1", &[]),
            ],
            ..Default::default()
        };
        let inv = Inventory::build(pools, pods, ipam);
        assert_eq!(inv.usage[0].pods, 2);
        assert_eq!(inv.usage[1].pods, 1);
        assert_eq!(inv.usage[0].allocated, 2);
        assert_eq!(inv.usage[0].blocks, 1);
        assert_eq!(inv.pods_without_pool().map(|(p, _)| p.name.as_str()).collect::<Vec<_>>(), vec!["stray"]);
        assert_eq!(inv.orphan_blocks().count(), 1);
        let owners = inv.pods_by_owner(0);
        assert_eq!(owners.len(), 2);
        assert_eq!(inv.blocks_by_node(None)["node-0"].blocks, 2);
        assert_eq!(inv.pool_of("10.0.5.5".parse().unwrap()).unwrap().name, "new");
    }

    /// The allocations' namespace and node names are the pods' copies.
    #[test]
    fn allocations_share_the_pods_names() {
        let pools = vec![Pool::new("old", "192.168.0.0/16".parse().unwrap())];
        let pods = vec![pod("shop", "web-1", "192.168.0.1", OwnerKind::Deployment, "web")];
        let mut b = block("192.168.0.0/26", "node-0", &["192.168.0.1"]);
        b.allocations[0].namespace = Some("shop".into());
        let inv = Inventory::build(pools, pods, Ipam { blocks: vec![b], ..Default::default() });
        let a = &inv.ipam.blocks[0].allocations[0];
        assert!(a.namespace.as_ref().unwrap().is_same_copy(&inv.pods[0].namespace));
        assert!(a.node.as_ref().unwrap().is_same_copy(inv.pods[0].node.as_ref().unwrap()));
    }

    /// A dual-stack pod, with one address in pool `name` of each family.
    pub fn dual(name: &str, v4: &str, v6: &str) -> PodInfo {
        let mut p = pod("shop", name, v4, OwnerKind::Deployment, "web");
        p.ips.push(v6.parse().unwrap());
        p
    }

    pub fn dual_pools() -> Vec<Pool> {
        vec![
            Pool::new("default-ipv4-ippool", "192.168.0.0/16".parse().unwrap()),
            Pool::new("default-ipv6-ippool", "fd00:10::/64".parse().unwrap()),
        ]
    }

    /// A dual-stack pod counts under both of its pools, and an address in
    /// no pool is found whichever family it is.
    #[test]
    fn a_dual_stack_pod_counts_under_every_pool_holding_one_of_its_addresses() {
        let pods = vec![
            dual("web-1", "192.168.0.1", "fd00:10::1"),
            dual("web-2", "192.168.0.2", "fd00:99::2"),
            pod("shop", "v6-only", "fd00:10::3", OwnerKind::Deployment, "web"),
        ];
        let inv = Inventory::build(dual_pools(), pods, Ipam::default());
        assert_eq!((inv.usage[0].pods, inv.usage[1].pods), (2, 2));
        let in_v6: Vec<&str> = inv.pods_in_pool(1).map(|p| p.name.as_str()).collect();
        assert_eq!(in_v6, ["web-1", "v6-only"]);
        assert_eq!(inv.pods_by_owner(1).values().map(Vec::len).sum::<usize>(), 2);
        let stray: Vec<String> = inv.pods_without_pool().map(|(p, ip)| format!("{} {ip}", p.name)).collect();
        assert_eq!(stray, ["web-2 fd00:99::2"]);
        assert_eq!(inv.blocks_by_node(Some(1))["node-0"].pods, 2);
    }
}
