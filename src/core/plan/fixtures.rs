//! A small cluster shared by the planner's tests: one IPv4 pool, a pod
//! of each owner kind, three nodes, kubeadm-style networks.

use super::*;
use crate::core::inventory::tests::pod;
use crate::core::model::{Ipam, NodeAddress, OwnerKind, PodInfo, SourcedCidr};

pub(crate) fn seed_pools() -> Vec<Pool> {
    let mut old = Pool::new("default-ipv4-ippool", "192.168.0.0/16".parse().unwrap());
    old.ipip_mode = EncapMode::Always;
    old.nat_outgoing = true;
    vec![old]
}

pub(crate) fn seed_pods() -> Vec<PodInfo> {
    let mut host = pod("shop", "node-probe", "172.18.0.2", OwnerKind::Bare, "node-probe");
    host.host_network = true;
    vec![
        pod("kube-system", "coredns-1", "192.168.0.2", OwnerKind::Deployment, "coredns"),
        pod("shop", "web-1", "192.168.0.3", OwnerKind::Deployment, "web"),
        pod("shop", "db-0", "192.168.0.4", OwnerKind::StatefulSet, "db"),
        pod("shop", "agent-x", "192.168.0.5", OwnerKind::DaemonSet, "agent"),
        pod("shop", "report-1", "192.168.0.6", OwnerKind::Job, "report"),
        pod("shop", "debug", "192.168.0.7", OwnerKind::Bare, "debug"),
        host,
    ]
}

pub(crate) fn nodes() -> Vec<NodeInfo> {
    (0..3)
        .map(|i| NodeInfo {
            name: format!("kubesim-node-{i}"),
            labels: [("kubernetes.io/os".to_string(), "linux".to_string())].into(),
            addresses: vec![NodeAddress {
                kind: "InternalIP".into(),
                ip: format!("172.18.0.{}", i + 2).parse().unwrap(),
            }],
            ..Default::default()
        })
        .collect()
}

pub(crate) fn networks() -> ClusterNetworks {
    ClusterNetworks {
        pod_cidrs: vec![SourcedCidr {
            cidr: "10.0.0.0/8".parse().unwrap(),
            source: "ConfigMap kube-system/kubeadm-config (networking.podSubnet)".into(),
        }],
        service_cidrs: vec![SourcedCidr {
            cidr: "10.96.0.0/12".parse().unwrap(),
            source: "ServiceCIDR kubernetes".into(),
        }],
        service_ips: vec!["10.96.0.1".parse().unwrap()],
    }
}

pub(crate) struct World {
    pub(crate) inv: Inventory,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) namespaces: Vec<NamespaceInfo>,
    pub(crate) nets: ClusterNetworks,
    pub(crate) workloads: Vec<WorkloadInfo>,
    pub(crate) pdbs: Vec<PdbInfo>,
}

pub(crate) fn world(pools: Vec<Pool>, pods: Vec<PodInfo>) -> World {
    World {
        inv: Inventory::build(pools, pods, Ipam::default()),
        nodes: nodes(),
        namespaces: vec![],
        nets: networks(),
        workloads: vec![],
        pdbs: vec![],
    }
}

pub(crate) fn input<'a>(w: &'a World, to: TargetRequest) -> PlanInput<'a> {
    PlanInput {
        from: "default-ipv4-ippool",
        to,
        also: vec![],
        overrides: PoolOverrides::default(),
        strategy: Strategy::Rollout,
        jobs: JobsPolicy::Wait,
        force: false,
        allow_outside_cluster_cidr: false,
        operator: false,
        inventory: &w.inv,
        nodes: &w.nodes,
        namespaces: &w.namespaces,
        networks: &w.nets,
        workloads: &w.workloads,
        pdbs: &w.pdbs,
        cni_pools: None,
        pod_filter: None,
        canary_per_node: false,
        canary_image: super::connectivity::CANARY_IMAGE,
        parallel: Some(1),
        max_unavailable: crate::core::budget::IntOrPercent::Percent(10),
        surge: false,
        allow_downtime: false,
        reservations: &[],
        installation_gitops: None,
    }
}

pub(crate) fn cidr(s: &str) -> TargetRequest {
    TargetRequest::Cidr(s.into())
}

pub(crate) fn refusals(i: &PlanInput) -> String {
    make_plan(i).expect_err("should be refused").join("\n")
}
