//! The planner end to end on the shared fixture cluster.

use super::fixtures::*;
use super::*;
use crate::core::inventory::tests::pod;
use crate::core::model::{OwnerKind, SourcedCidr};

#[test]
fn seed_plan_copies_the_old_pool_and_orders_moves() {
    let w = world(seed_pools(), seed_pods());
    let mut i = input(&w, cidr("10.0.0.0/16"));
    i.force = true;
    let plan = make_plan(&i).unwrap();
    assert_eq!(plan.to.name, "10.0.0.0-16");
    assert_eq!(plan.to.ipip_mode, EncapMode::Always);
    assert!(plan.to.nat_outgoing);
    assert_eq!(plan.to.block_size, 26);
    assert!(plan.create_target);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
    let kinds: Vec<(String, MoveKind)> = plan.moves.iter().map(|m| (m.target.clone(), m.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("Deployment kube-system/coredns".into(), MoveKind::Rollout),
            ("Deployment shop/web".into(), MoveKind::Rollout),
            ("StatefulSet shop/db".into(), MoveKind::Rollout),
            ("DaemonSet shop/agent".into(), MoveKind::Rollout),
            ("Bare shop/debug".into(), MoveKind::EvictForGood),
            ("Job shop/report".into(), MoveKind::WaitJob),
        ]
    );
    assert_eq!(plan.pod_count(), 6, "hostNetwork pod excluded");
    assert!(matches!(plan.steps[0], PoolStep::CreatePool { .. }));
    assert!(matches!(plan.steps.last(), Some(PoolStep::DeletePool { .. })));
    // The canary runs while the old pool still serves, and names its image and paths.
    let PoolStep::Canary { image, paths, .. } = &plan.steps[1] else { panic!("{:?}", plan.steps) };
    assert!(matches!(plan.steps[2], PoolStep::DisablePool { .. }), "{:?}", plan.steps);
    assert_eq!(image, "registry.k8s.io/e2e-test-images/agnhost:2.53");
    assert_eq!(paths.len(), 4);
    assert_eq!(paths[0], "new-pool pod -> old-pool pod on another node (IPv4)");
    assert_eq!(paths[3], "another node (hostNetwork pod) -> new-pool pod (IPv4)");
}

/// The canary's own old-pool server (left by a run killed during the
/// canary) is neither moved nor a bare-pod blocker.
#[test]
fn the_canarys_pods_are_never_moved() {
    let mut pods = seed_pods();
    pods.push(pod("kubectl-ippool-canary-1a2b3", "old-server", "192.168.0.9", OwnerKind::Bare, "old-server"));
    let w = world(seed_pools(), pods);
    let mut i = input(&w, cidr("10.0.0.0/16"));
    i.force = true;
    let plan = make_plan(&i).unwrap();
    assert!(!plan.moves.iter().any(|m| m.target.contains("kubectl-ippool-canary-")), "{:?}", plan.moves);
    assert_eq!(plan.pod_count(), 6);
    let mut control = seed_pods();
    control.push(pod("other", "old-server", "192.168.0.9", OwnerKind::Bare, "old-server"));
    let w = world(seed_pools(), control);
    let mut i = input(&w, cidr("10.0.0.0/16"));
    i.force = true;
    assert_eq!(make_plan(&i).unwrap().pod_count(), 7, "the same pod elsewhere moves");
}

#[test]
fn a_sub_range_of_the_old_pool_is_allowed_and_its_pods_stay() {
    let mut old = Pool::new("default-ipv4-ippool", "100.64.0.0/10".parse().unwrap());
    old.ipip_mode = EncapMode::CrossSubnet;
    let pods = vec![
        pod("shop", "web-1", "100.70.0.1", OwnerKind::Deployment, "web"),
        pod("shop", "web-2", "100.96.0.5", OwnerKind::Deployment, "web"),
    ];
    let mut w = world(vec![old], pods);
    w.nets = ClusterNetworks {
        pod_cidrs: vec![SourcedCidr { cidr: "100.96.0.0/11".parse().unwrap(), source: "kops".into() }],
        service_cidrs: vec![SourcedCidr { cidr: "100.64.0.0/13".parse().unwrap(), source: "kops".into() }],
        service_ips: vec![],
    };
    let plan = make_plan(&input(&w, cidr("100.96.0.0/16"))).unwrap();
    assert_eq!(plan.moves.len(), 1);
    assert_eq!(plan.moves[0].pods, vec!["shop/web-1"]);
    assert!(plan.warnings.iter().any(|w| w.contains("lies inside default-ipv4-ippool")), "{:?}", plan.warnings);
    assert!(refusals(&input(&w, cidr("100.0.0.0/8"))).contains("overlaps IPPool default-ipv4-ippool"));
}

#[test]
fn cni_config_naming_the_old_pool_is_a_blocker() {
    let w = world(seed_pools(), seed_pods());
    let mut i = input(&w, cidr("10.0.0.0/16"));
    i.force = true;
    i.cni_pools = Some(CniPools {
        source: "ConfigMap kube-system/calico-config (cni_network_config)".into(),
        pools: vec!["default-ipv4-ippool".into()],
    });
    let b = make_plan(&i).unwrap().blockers;
    assert!(b[0].contains("calico-config") && b[0].contains("10.0.0.0-16"), "{b:?}");
}

#[test]
fn plan_serialises() {
    let w = world(seed_pools(), seed_pods());
    let mut i = input(&w, cidr("10.0.0.0/16"));
    i.force = true;
    let v = serde_json::to_value(make_plan(&i).unwrap()).unwrap();
    assert_eq!(v["steps"][0]["action"], "createPool");
    assert_eq!(v["moves"][0]["kind"], "rollout");
    assert_eq!(v["to"]["cidr"], "10.0.0.0/16");
}
