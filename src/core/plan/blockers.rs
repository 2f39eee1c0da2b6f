//! What would leave new pods on the old pool or without an address: pins
//! (namespace, template and pod annotations) that name the old pool, and
//! nodes no enabled pool would serve once it is disabled.

use std::collections::BTreeSet;

use super::PlanInput;
use crate::core::findings::name_some;
use crate::core::model::{Owner, Pool, PoolPins};
use crate::core::selector::eval_selector;

/// Namespaces, pods and workload templates pinned to the old pool.
pub(super) fn pin_blockers(input: &PlanInput, from: &Pool) -> Vec<String> {
    let names_old = |pins: &PoolPins| {
        pins.pools.iter().any(|p| p == &from.name || p == &from.cidr.to_string())
            || pins.ip_addrs.iter().any(|a| a.parse::<std::net::IpAddr>().is_ok_and(|ip| from.cidr.contains(&ip)))
    };
    let mut out = Vec::new();
    for ns in input.namespaces.iter().filter(|n| names_old(&n.pins)) {
        out.push(format!(
            "namespace {} pins new pods to {} by annotation; its pods would stay Pending once the pool is disabled. Fix: kubectl annotate namespace {} {}- (or set it to the new pool)",
            ns.name,
            from.name,
            ns.name,
            pin_key(&ns.pins, from)
        ));
    }
    for w in input.workloads.iter().filter(|w| names_old(&w.template_pins)) {
        out.push(format!(
            "{} pins its pods to {} in spec.template.metadata.annotations; remove {} from the template (kubectl edit {} -n {} {})",
            w.owner.display(),
            from.name,
            pin_key(&w.template_pins, from),
            w.owner.kind.as_str().to_lowercase(),
            w.owner.namespace,
            w.owner.name
        ));
    }
    let templated: BTreeSet<&Owner> =
        input.workloads.iter().filter(|w| names_old(&w.template_pins)).map(|w| &w.owner).collect();
    for p in
        input.inventory.pods.iter().filter(|p| p.holds_pool_ip() && names_old(&p.pins) && !templated.contains(&p.owner))
    {
        out.push(format!(
            "pod {} is pinned to {} by its {} annotation; a replacement would get the same pin. Fix its owner ({}) or: kubectl annotate pod -n {} {} {}-",
            p.key(),
            from.name,
            pin_key(&p.pins, from),
            p.owner.display(),
            p.namespace,
            p.name,
            pin_key(&p.pins, from)
        ));
    }
    out
}

/// The annotation that pins to `from`: `ipAddrs`, or the pool list of the
/// old pool's IP family.
fn pin_key(pins: &PoolPins, from: &Pool) -> &'static str {
    if !pins.ip_addrs.is_empty() {
        crate::core::model::ANNOT_IPADDRS
    } else if from.cidr.addr().is_ipv6() {
        crate::core::model::ANNOT_IPV6POOLS
    } else {
        crate::core::model::ANNOT_IPV4POOLS
    }
}

/// Every node must be selected by some enabled pool once the old pool is
/// disabled, or its new pods get no address.
pub(super) fn node_coverage(
    input: &PlanInput,
    from_idx: usize,
    to: &Pool,
    blockers: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let v4 = to.cidr.addr().is_ipv4();
    let mut enabled: Vec<&Pool> = input
        .inventory
        .pools
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            *i != from_idx
                && p.is_active()
                && p.allows_workloads()
                && p.name != to.name
                && p.cidr.addr().is_ipv4() == v4
        })
        .map(|(_, p)| p)
        .collect();
    enabled.push(to);
    let mut uncovered = Vec::new();
    let mut unknown = BTreeSet::new();
    for n in input.nodes {
        let covered = enabled.iter().any(|p| match eval_selector(&p.node_selector, &n.labels) {
            Some(b) => b,
            None => {
                unknown.insert(format!("{} ({:?})", p.name, p.node_selector));
                true
            }
        });
        if !covered {
            uncovered.push(n.name.clone());
        }
    }
    for u in unknown {
        warnings.push(format!("cannot evaluate the nodeSelector of IPPool {u}; assuming it selects every node"));
    }
    if !uncovered.is_empty() {
        blockers.push(format!(
            "no enabled pool would select node(s) {} once {} is disabled (the new pool's nodeSelector is {:?}); their new pods would get no address. Fix --node-selector",
            name_some(&uncovered),
            input.inventory.pools[from_idx].name,
            to.node_selector
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inventory::tests::pod;
    use crate::core::model::{NamespaceInfo, OwnerKind, WorkloadInfo};
    use crate::core::plan::fixtures::*;
    use crate::core::plan::make_plan;

    /// A pool or Installation a GitOps controller syncs blocks unless --force.
    #[test]
    fn gitops_managed_pool_or_installation_blocks_unless_forced() {
        let mut pools = seed_pools();
        pools[0].gitops = Some("Flux (label kustomize.toolkit.fluxcd.io/name=infra)".into());
        let w = world(pools, seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = false;
        let b = make_plan(&i).unwrap().blockers;
        assert!(b.iter().any(|b| b.starts_with("IPPool default-ipv4-ippool is managed by Flux")), "{b:?}");
        let w = world(seed_pools(), vec![]);
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.operator = true;
        i.installation_gitops = Some("Argo CD (field manager argocd-controller)".into());
        let b = make_plan(&i).unwrap().blockers;
        assert!(b.iter().any(|b| b.contains("Installation default is managed by Argo CD")), "{b:?}");
        i.force = true;
        assert!(make_plan(&i).unwrap().blockers.is_empty());
    }

    #[test]
    fn the_fix_hint_names_the_annotation_of_the_old_pools_family() {
        let mut pools = seed_pools();
        pools.push(Pool::new("default-ipv6-ippool", "fd00:10::/64".parse().unwrap()));
        let mut w = world(pools, vec![]);
        w.namespaces = vec![NamespaceInfo {
            name: "legacy".into(),
            labels: Default::default(),
            pins: PoolPins { pools: vec!["default-ipv6-ippool".into()], ..Default::default() },
        }];
        let mut i = input(&w, cidr("fd00:10:1::/112"));
        i.from = "default-ipv6-ippool";
        i.allow_outside_cluster_cidr = true;
        let b = make_plan(&i).unwrap().blockers;
        assert_eq!(b.len(), 1, "{b:#?}");
        assert!(b[0].contains("kubectl annotate namespace legacy cni.projectcalico.org/ipv6pools-"), "{}", b[0]);
    }

    #[test]
    fn pinned_namespace_template_and_pod_are_blockers_with_fixes() {
        let mut pods = seed_pods();
        let mut pinned = pod("legacy", "old-app-1", "192.168.0.9", OwnerKind::Deployment, "old-app");
        pinned.pins.pools = vec!["default-ipv4-ippool".into()];
        pods.push(pinned);
        let mut fixed = pod("shop", "fixed", "192.168.0.10", OwnerKind::ReplicaSet, "fixed-rs");
        fixed.pins.ip_addrs = vec!["192.168.0.10".into()];
        pods.push(fixed);
        let mut w = world(seed_pools(), pods);
        w.namespaces = vec![NamespaceInfo {
            name: "legacy".into(),
            labels: Default::default(),
            pins: PoolPins { pools: vec!["default-ipv4-ippool".into()], ..Default::default() },
        }];
        w.workloads = vec![WorkloadInfo {
            template_pins: PoolPins { pools: vec!["192.168.0.0/16".into()], ..Default::default() },
            ..WorkloadInfo::deployment("legacy", "old-app", 1)
        }];
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let b = make_plan(&i).unwrap().blockers;
        assert_eq!(b.len(), 3, "{b:#?}");
        assert!(b[0].contains("kubectl annotate namespace legacy cni.projectcalico.org/ipv4pools-"), "{}", b[0]);
        assert!(b[1].contains("Deployment legacy/old-app pins its pods"), "{}", b[1]);
        assert!(b[2].contains("pod shop/fixed") && b[2].contains("cni.projectcalico.org/ipAddrs"), "{}", b[2]);
    }

    #[test]
    fn node_coverage_blocks_when_no_pool_selects_a_node() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        i.overrides.node_selector = Some("zone == 'a'".into());
        let b = make_plan(&i).unwrap().blockers;
        assert!(
            b[0].contains("no enabled pool would select node(s) kubesim-node-0, kubesim-node-1, kubesim-node-2"),
            "{b:?}"
        );
        i.overrides.node_selector = Some("kubernetes.io/os == 'linux'".into());
        assert!(make_plan(&i).unwrap().blockers.is_empty());
        i.overrides.node_selector = Some("zone in {'a'}".into());
        let plan = make_plan(&i).unwrap();
        assert!(plan.blockers.is_empty());
        assert!(plan.warnings.iter().any(|w| w.contains("cannot evaluate the nodeSelector")), "{:?}", plan.warnings);
    }
}
