//! Test data for the checks: a small migrated cluster that passes every
//! check (`clean_world`), which each test then breaks in one way.

use ipnet::IpNet;

use super::{run_checks, Check, Expectations, IpamFigures, VerifyInput};
use crate::core::inventory::tests::{block, pod};
use crate::core::inventory::Inventory;
use crate::core::model::*;
use crate::core::state::MigrationState;

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(crate) fn nets() -> ClusterNetworks {
    ClusterNetworks {
        pod_cidrs: vec![SourcedCidr { cidr: net("10.0.0.0/8"), source: "kubeadm-config".into() }],
        service_cidrs: vec![SourcedCidr { cidr: net("10.96.0.0/12"), source: "ServiceCIDR kubernetes".into() }],
        service_ips: vec![],
    }
}

pub(crate) fn node(name: &str, tunnel: &[&str]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        tunnel_ips: tunnel.iter().map(|t| t.parse().unwrap()).collect(),
        ..Default::default()
    }
}

pub(crate) fn handle(id: &str) -> Handle {
    Handle { handle_id: id.into(), deleted: false }
}

/// A pod with its allocation and handle, consistent.
pub(crate) fn pod_alloc(b: &mut Block, handles: &mut Vec<Handle>, ns: &str, name: &str, ip: &str) -> PodInfo {
    let p = pod(ns, name, ip, OwnerKind::Deployment, "web");
    let h = format!("k8s-pod-network.cid-{name}");
    b.allocations.push(Allocation {
        ip: ip.parse().unwrap(),
        handle: Some(h.as_str().into()),
        namespace: Some(ns.into()),
        pod: Some(name.into()),
        node: Some("node-0".into()),
        kind: None,
    });
    handles.push(handle(&h));
    p
}

pub(crate) struct World {
    pub(crate) inv: Inventory,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) namespaces: Vec<NamespaceInfo>,
    pub(crate) templates: Vec<WorkloadTemplate>,
    pub(crate) failures: Vec<SandboxFailure>,
    pub(crate) migration: Option<MigrationState>,
    pub(crate) rules: Vec<crate::core::rules::RuleObject>,
    pub(crate) rules_unreadable: Vec<String>,
    pub(crate) expect: Expectations,
}

impl World {
    /// The checks' input for this world, with `networks`.
    pub(crate) fn input<'a>(&'a self, networks: &'a ClusterNetworks) -> VerifyInput<'a> {
        VerifyInput {
            inv: &self.inv,
            nodes: &self.nodes,
            namespaces: &self.namespaces,
            networks,
            migration: self.migration.as_ref(),
            templates: &self.templates,
            sandbox_failures: &self.failures,
            rules: &self.rules,
            rules_unreadable: &self.rules_unreadable,
            expect: &self.expect,
        }
    }

    pub(crate) fn run(&self) -> (Vec<Check>, IpamFigures) {
        let nets = nets();
        run_checks(&self.input(&nets))
    }
}

pub(crate) fn check<'a>(cs: &'a [Check], code: &str) -> &'a Check {
    cs.iter().find(|c| c.code == code).unwrap_or_else(|| panic!("no check {code}"))
}

/// A migrated, clean cluster: old pool disabled and empty, pods on the new pool.
pub(crate) fn clean_world() -> World {
    let mut old = Pool::new("old", net("192.168.0.0/16"));
    old.disabled = true;
    let new = Pool::new("new", net("10.1.0.0/16"));
    let mut b = block("10.1.0.0/26", "node-0", &[]);
    let mut handles = vec![handle("ipip-tunnel-addr-node-0")];
    b.allocations.push(Allocation {
        ip: "10.1.0.0".parse().unwrap(),
        handle: Some("ipip-tunnel-addr-node-0".into()),
        namespace: None,
        pod: None,
        node: Some("node-0".into()),
        kind: Some("ipipTunnelAddress".into()),
    });
    let pods = vec![
        pod_alloc(&mut b, &mut handles, "shop", "web-1", "10.1.0.1"),
        pod_alloc(&mut b, &mut handles, "shop", "web-2", "10.1.0.2"),
    ];
    let affinities = vec![Affinity {
        name: "node-0-10-1-0-0-26".into(),
        node: "node-0".into(),
        cidr: net("10.1.0.0/26"),
        state: "confirmed".into(),
        deleted: false,
    }];
    let ipam = Ipam { blocks: vec![b], affinities, handles };
    World {
        inv: Inventory::build(vec![new, old], pods, ipam),
        nodes: vec![node("node-0", &["10.1.0.0"])],
        namespaces: vec![NamespaceInfo { name: "shop".into(), ..Default::default() }],
        templates: vec![],
        failures: vec![],
        migration: None,
        rules: vec![],
        rules_unreadable: vec![],
        expect: Expectations { targets: vec!["new".into()], from: Some("old".into()), ..Default::default() },
    }
}
