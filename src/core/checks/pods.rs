//! The pod checks: pods on retired pools or outside every pool, pins to
//! disabled or missing pools, and pods stuck Pending on a sandbox failure.

use std::collections::HashMap;

use super::defs::*;
use super::pools::bad_pins;
use super::{targets_and_from, Check, Expectations, VerifyInput};
use crate::core::findings::{name_some, Severity};
use crate::core::model::{PoolPins, SandboxFailure};

fn in_namespace(expect: &Expectations, ns: &str) -> bool {
    expect.namespace.as_deref().is_none_or(|n| n == ns)
}

pub fn pod_checks(input: &VerifyInput) -> Vec<Check> {
    let inv = input.inv;
    let expect = input.expect;
    let (_, _, from_cidrs) = targets_and_from(input);
    let mut out = Vec::new();

    // Pods on a disabled pool, or in the retired CIDR once its pool is gone;
    // pods in no pool at all.
    let mut retired = Vec::new();
    let mut stray = Vec::new();
    // Every address counts: a dual-stack pod can be fine in one family
    // and on a retired pool in the other.
    for pod in inv.pods.iter().filter(|p| p.holds_pool_ip() && in_namespace(expect, &p.namespace)) {
        let mut on_retired = Vec::new();
        let mut outside = Vec::new();
        for ip in &pod.ips {
            match inv.pool_index.lookup(*ip).map(|&i| &inv.pools[i]) {
                Some(p) if !p.is_active() => on_retired.push(format!("{ip} in disabled IPPool {}", p.name)),
                Some(_) => {}
                None => match from_cidrs.iter().find(|c| c.contains(ip)) {
                    Some(c) => on_retired.push(format!("{ip} in deleted pool {c}")),
                    None => outside.push(ip.to_string()),
                },
            }
        }
        if !on_retired.is_empty() {
            retired.push(format!("Pod {} ({})", pod.key(), on_retired.join(", ")));
        }
        if !outside.is_empty() {
            stray.push(format!("Pod {} ({})", pod.key(), outside.join(", ")));
        }
    }
    out.push(Check::from_objects(
        PODS_ON_RETIRED_POOLS,
        Severity::Fail,
        retired,
        "no running pod holds an address of a disabled or deleted pool",
        |o| format!("{} pod(s) still hold an address of a disabled or deleted pool: {}", o.len(), name_some(o)),
    ));
    out.push(Check::from_objects(
        PODS_OUTSIDE_POOLS,
        Severity::Fail,
        stray,
        "every running pod's address lies in an IP pool",
        |o| format!("{} pod(s) hold an address that is in no IP pool: {}", o.len(), name_some(o)),
    ));

    // Pins to disabled or missing pools, on namespaces, pods and templates.
    let mut pinned = Vec::new();
    let mut reasons = Vec::new();
    let mut note = |object: String, pins: &PoolPins| {
        let bad = bad_pins(pins, inv);
        if !bad.is_empty() {
            reasons.push(format!("{object}: {}", bad.join(", ")));
            pinned.push(object);
        }
    };
    for ns in input.namespaces.iter().filter(|n| !n.pins.is_empty() && in_namespace(expect, &n.name)) {
        note(format!("Namespace {}", ns.name), &ns.pins);
    }
    for t in input.templates.iter().filter(|t| !t.pins.is_empty() && in_namespace(expect, &t.namespace)) {
        note(format!("{} {}/{}", t.kind, t.namespace, t.name), &t.pins);
    }
    for p in inv.pods.iter().filter(|p| !p.pins.is_empty() && !p.is_finished() && in_namespace(expect, &p.namespace)) {
        note(format!("Pod {}", p.key()), &p.pins);
    }
    out.push(Check::from_objects(
        PINNED_TO_RETIRED_POOL,
        Severity::Fail,
        pinned,
        "no namespace, workload template or pod is pinned to a disabled or missing pool",
        |objs| {
            format!(
                "{} object(s) are pinned to a disabled or missing pool; their new pods will not start: {}",
                objs.len(),
                name_some(&reasons)
            )
        },
    ));

    // Pods stuck Pending with a sandbox (CNI/IPAM) failure.
    let failures: HashMap<(&str, &str), &SandboxFailure> =
        input.sandbox_failures.iter().map(|f| ((f.namespace.as_str(), f.pod.as_str()), f)).collect();
    let mut stuck = Vec::new();
    let mut why = Vec::new();
    for p in inv.pods.iter().filter(|p| {
        p.phase == "Pending"
            && p.ips.is_empty()
            && !p.host_network
            && !p.terminating
            && in_namespace(expect, &p.namespace)
    }) {
        if let Some(f) = failures.get(&(p.namespace.as_str(), p.name.as_str())) {
            stuck.push(format!("Pod {}", p.key()));
            why.push(format!("Pod {}: {}", p.key(), f.reason()));
        }
    }
    out.push(Check::from_objects(
        PODS_PENDING_ON_IPAM,
        Severity::Fail,
        stuck,
        "no pod is stuck Pending on a network (sandbox) failure",
        |objs| format!("{} pod(s) stuck Pending (FailedCreatePodSandBox): {}", objs.len(), name_some(&why)),
    ));
    out
}

#[cfg(test)]
mod tests {
    use crate::core::checks::fixtures::*;
    use crate::core::checks::Status;
    use crate::core::inventory::tests::pod;
    use crate::core::inventory::Inventory;
    use crate::core::model::*;

    #[test]
    fn pods_on_disabled_or_deleted_pool_and_outside_pools_fail() {
        let mut w = clean_world();
        let mut pods = w.inv.pods.clone();
        pods.push(pod("shop", "db-0", "192.168.1.5", OwnerKind::StatefulSet, "db"));
        pods.push(pod("shop", "stray", "172.16.0.1", OwnerKind::Bare, "stray"));
        w.inv = Inventory::build(w.inv.pools.clone(), pods.clone(), w.inv.ipam.clone());
        let (cs, _) = w.run();
        assert_eq!(
            check(&cs, "podsOnRetiredPools").objects,
            vec!["Pod shop/db-0 (192.168.1.5 in disabled IPPool old)"]
        );
        assert_eq!(check(&cs, "podsOutsidePools").objects, vec!["Pod shop/stray (172.16.0.1)"]);

        // The old pool deleted: its CIDR comes from --from-cidr.
        w.inv = Inventory::build(vec![w.inv.pools[0].clone()], pods, w.inv.ipam.clone());
        w.expect.from_cidr = Some(net("192.168.0.0/16"));
        let (cs, _) = w.run();
        assert_eq!(
            check(&cs, "podsOnRetiredPools").objects,
            vec!["Pod shop/db-0 (192.168.1.5 in deleted pool 192.168.0.0/16)"]
        );
        assert_eq!(check(&cs, "oldPoolRetired").status, Status::Pass);
        // -n elsewhere hides them.
        w.expect.namespace = Some("other".into());
        let (cs, _) = w.run();
        assert_eq!(check(&cs, "podsOnRetiredPools").status, Status::Pass);
    }

    /// A dual-stack pod whose IPv4 address is fine but whose IPv6 address
    /// is on a disabled pool (or in no pool) fails: every address counts.
    #[test]
    fn the_second_address_of_a_dual_stack_pod_is_checked_too() {
        let mut w = clean_world();
        let mut old6 = Pool::new("old6", net("fd00:10::/64"));
        old6.disabled = true;
        let mut pools = w.inv.pools.clone();
        pools.push(old6);
        pools.push(Pool::new("new6", net("fd00:20::/112")));
        let mut pods = w.inv.pods.clone();
        let mut half = pod("shop", "half", "10.1.0.7", OwnerKind::Deployment, "web");
        half.ips.push("fd00:10::7".parse().unwrap());
        let mut stray6 = pod("shop", "stray6", "10.1.0.8", OwnerKind::Deployment, "web");
        stray6.ips.push("fd00:99::8".parse().unwrap());
        let mut fine = pod("shop", "fine", "10.1.0.9", OwnerKind::Deployment, "web");
        fine.ips.push("fd00:20::9".parse().unwrap());
        pods.extend([half, stray6, fine]);
        w.inv = Inventory::build(pools, pods, w.inv.ipam.clone());
        let (cs, _) = w.run();
        assert_eq!(
            check(&cs, "podsOnRetiredPools").objects,
            vec!["Pod shop/half (fd00:10::7 in disabled IPPool old6)"]
        );
        assert_eq!(check(&cs, "podsOutsidePools").objects, vec!["Pod shop/stray6 (fd00:99::8)"]);
    }

    #[test]
    fn pins_to_disabled_or_missing_pools_fail_naming_the_object() {
        let mut w = clean_world();
        w.namespaces.push(NamespaceInfo {
            name: "legacy".into(),
            labels: Default::default(),
            pins: PoolPins { pools: vec!["old".into()], ..Default::default() },
        });
        w.namespaces.push(NamespaceInfo {
            name: "good".into(),
            labels: Default::default(),
            pins: PoolPins { pools: vec!["10.1.0.0/16".into()], ..Default::default() },
        });
        w.templates.push(WorkloadTemplate {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "api".into(),
            pins: PoolPins { pools: vec!["gone".into()], ..Default::default() },
        });
        let mut pinned = pod("shop", "fixed", "10.1.0.9", OwnerKind::Bare, "fixed");
        pinned.pins.ip_addrs = vec!["192.168.0.7".into()];
        let mut pods = w.inv.pods.clone();
        pods.push(pinned);
        w.inv = Inventory::build(w.inv.pools.clone(), pods, w.inv.ipam.clone());
        let (cs, _) = w.run();
        let c = check(&cs, "pinnedToRetiredPool");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.objects, vec!["Namespace legacy", "Deployment shop/api", "Pod shop/fixed"]);
        assert!(c.message.contains("pool old is disabled"), "{}", c.message);
        assert!(c.message.contains("pool gone does not exist"), "{}", c.message);
    }

    #[test]
    fn pending_pods_report_calicos_reason() {
        let mut w = clean_world();
        let mut pods = w.inv.pods.clone();
        pods.push(pod("legacy", "old-app-1", "", OwnerKind::Deployment, "old-app"));
        pods.push(pod("legacy", "old-app-2", "", OwnerKind::Deployment, "old-app"));
        w.inv = Inventory::build(w.inv.pools.clone(), pods, w.inv.ipam.clone());
        w.failures.push(SandboxFailure {
            namespace: "legacy".into(),
            pod: "old-app-1".into(),
            message: "Failed to create pod sandbox: rpc error: plugin type=\"calico\" failed (add): the given pool (192.168.0.0/16) does not exist, or is not enabled".into(),
            count: 3,
        });
        let (cs, _) = w.run();
        let c = check(&cs, "podsPendingOnIpam");
        assert_eq!(c.objects, vec!["Pod legacy/old-app-1"]);
        assert!(
            c.message.contains("the given pool (192.168.0.0/16) does not exist, or is not enabled"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("rpc error"));
    }
}
