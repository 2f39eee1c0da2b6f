//! Findings about pools and pods that `status` shows as warnings and
//! `verify` turns into checks. Each finding names the objects at fault.

use ipnet::IpNet;
use serde::Serialize;

use super::cidr::{overlaps, within};
use super::inventory::Inventory;
use super::model::{ClusterNetworks, NamespaceInfo, PodInfo, Pool};
use super::rules::{self, RuleClass, RuleObject};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable identifier for scripts, e.g. `poolOverlapsServiceCidr`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// The objects at fault, e.g. `IPPool default-ipv4-ippool`, `Pod shop/web-1`.
    pub objects: Vec<String>,
}

impl Finding {
    pub fn new(code: &'static str, severity: Severity, message: impl Into<String>, objects: Vec<String>) -> Finding {
        Finding { code, severity, message: message.into(), objects }
    }
}

/// How many objects to name in a message before saying "and N more".
const NAME_LIMIT: usize = 5;

pub fn name_some(items: &[String]) -> String {
    if items.len() <= NAME_LIMIT {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..NAME_LIMIT].join(", "), items.len() - NAME_LIMIT)
    }
}

/// Pools against the cluster's CIDRs and each other.
pub fn pool_network_findings(pools: &[Pool], nets: &ClusterNetworks) -> Vec<Finding> {
    let mut out = Vec::new();
    let pod_nets = nets.pod_nets();
    let svc_nets = nets.service_nets();
    for p in pools {
        let family_pod_nets: Vec<_> =
            pod_nets.iter().filter(|n| n.addr().is_ipv4() == p.cidr.addr().is_ipv4()).collect();
        if !family_pod_nets.is_empty() && !family_pod_nets.iter().any(|n| within(&p.cidr, n)) {
            out.push(Finding::new(
                "poolOutsideClusterCidr",
                Severity::Warn,
                format!(
                    "IPPool {} ({}) lies outside the cluster pod CIDR {}; pod traffic may be NATed or dropped",
                    p.name,
                    p.cidr,
                    describe_sources(&nets.pod_cidrs)
                ),
                vec![format!("IPPool {}", p.name)],
            ));
        }
        for s in &svc_nets {
            if overlaps(&p.cidr, s) {
                let src =
                    nets.service_cidrs.iter().find(|x| x.cidr == *s).map(|x| x.source.clone()).unwrap_or_default();
                out.push(Finding::new(
                    "poolOverlapsServiceCidr",
                    Severity::Fail,
                    format!("IPPool {} ({}) overlaps the Service CIDR {s} ({src}): pod and Service IPs can collide; migrate the pods to a pool inside the cluster CIDR", p.name, p.cidr),
                    vec![format!("IPPool {}", p.name)],
                ));
            }
        }
    }
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if overlaps(&a.cidr, &b.cidr) {
                out.push(Finding::new(
                    "poolsOverlap",
                    Severity::Fail,
                    format!(
                        "IPPools {} ({}) and {} ({}) overlap: the same address could be handed out twice",
                        a.name, a.cidr, b.name, b.cidr
                    ),
                    vec![format!("IPPool {}", a.name), format!("IPPool {}", b.name)],
                ));
            }
        }
    }
    out
}

/// Pods and namespaces pinned by annotation, and what they pin to.
pub fn pin_findings(inv: &Inventory, namespaces: &[NamespaceInfo]) -> Vec<Finding> {
    let mut out = Vec::new();
    for ns in namespaces.iter().filter(|n| !n.pins.is_empty()) {
        let target = describe_pins(&ns.pins.pools, &ns.pins.ip_addrs);
        out.push(Finding::new(
            "namespacePinned",
            Severity::Warn,
            format!("namespace {} pins its new pods to {target} by annotation", ns.name),
            vec![format!("Namespace {}", ns.name)],
        ));
    }
    let pinned: Vec<String> = inv
        .pods
        .iter()
        .filter(|p| p.holds_pool_ip() && !p.pins.is_empty())
        .map(|p| format!("Pod {}", p.key()))
        .collect();
    if !pinned.is_empty() {
        out.push(Finding::new(
            "podPinned",
            Severity::Warn,
            format!("{} pod(s) are pinned to a pool or address by annotation: {}", pinned.len(), name_some(&pinned)),
            pinned,
        ));
    }
    out
}

/// Kinds of rule objects the user may not read: `rule_findings` could not
/// look at them (code `rulesNotChecked`, the kinds as its objects).
pub fn unreadable_rules_finding(unreadable: &[String]) -> Option<Finding> {
    (!unreadable.is_empty()).then(|| {
        Finding::new(
            "rulesNotChecked",
            Severity::Warn,
            format!(
                "could not check {} for rules naming retiring pools; grant read access to them (deploy/rbac.yaml, ippool-reader)",
                name_some(unreadable)
            ),
            unreadable.to_vec(),
        )
    })
}

/// Rules and addresses naming the range of a pool being retired (disabled,
/// or the source of an unfinished migration): one warning per class of
/// object, code `rulesNameOldCidr`.
pub fn rule_findings(objects: &[RuleObject], pods: &[PodInfo], retiring: &[&Pool], active: &[IpNet]) -> Vec<Finding> {
    type Found = (Vec<String>, std::collections::BTreeSet<String>);
    let mut by_class: std::collections::BTreeMap<RuleClass, Found> = Default::default();
    for p in retiring {
        let mut hits = rules::uncovered_hits(objects, &p.cidr, active);
        hits.extend(rules::pod_hits(pods, &p.cidr, None));
        for h in hits {
            let e = by_class.entry(h.class).or_default();
            e.0.push(format!("{} {}: {}", h.object, h.field, h.cidr));
            e.1.insert(format!("{} ({})", p.name, p.cidr));
        }
    }
    by_class
        .into_iter()
        .map(|(class, (found, pools))| {
            let what = match class {
                RuleClass::KubernetesPolicy => "NetworkPolicy ipBlock",
                RuleClass::CalicoPolicy => "Calico policy nets/notNets",
                RuleClass::NetworkSet => "NetworkSet nets",
                RuleClass::IpReservation => "IPReservation",
                RuleClass::IpMasqAgent => "ip-masq-agent nonMasqueradeCIDRs",
                RuleClass::KubeProxy => "kube-proxy --cluster-cidr",
                RuleClass::Pod => "pod floatingIPs/ipAddrsNoIpam",
            };
            let advice = match class {
                RuleClass::IpReservation => "a reservation there ends with the pool",
                RuleClass::KubeProxy => "set --cluster-cidr to a range holding the new pool too",
                RuleClass::Pod => "give these pods addresses from the new pool",
                _ => "moved pods will not match them (`kubectl ippool migrate --update-rules` adds the new CIDR beside the old one)",
            };
            Finding::new(
                "rulesNameOldCidr",
                Severity::Warn,
                format!(
                    "{} {what} entr(ies) name the range of retiring IPPool {} and no enabled pool: {}; {advice}",
                    found.len(),
                    pools.into_iter().collect::<Vec<_>>().join(", "),
                    name_some(&found)
                ),
                found,
            )
        })
        .collect()
}

/// `10.0.0.0/8 (ConfigMap kube-system/kubeadm-config (networking.podSubnet), ...)`,
/// one entry per distinct CIDR.
pub fn describe_sources(cidrs: &[super::model::SourcedCidr]) -> String {
    let mut groups: Vec<(ipnet::IpNet, Vec<&str>)> = Vec::new();
    for s in cidrs {
        match groups.iter_mut().find(|(c, _)| *c == s.cidr) {
            Some((_, v)) => v.push(&s.source),
            None => groups.push((s.cidr, vec![&s.source])),
        }
    }
    groups.iter().map(|(c, src)| format!("{c} (from {})", src.join(", "))).collect::<Vec<_>>().join(" and ")
}

fn describe_pins(pools: &[String], addrs: &[String]) -> String {
    let mut parts = Vec::new();
    if !pools.is_empty() {
        parts.push(format!("pool(s) {}", pools.join(", ")));
    }
    if !addrs.is_empty() {
        parts.push(format!("address(es) {}", addrs.join(", ")));
    }
    if parts.is_empty() {
        "an unparsable value".into()
    } else {
        parts.join(" and ")
    }
}

/// Pods whose IP is in no pool, disabled pools that still hold pods, and
/// blocks left in no pool.
pub fn usage_findings(inv: &Inventory) -> Vec<Finding> {
    let mut out = Vec::new();
    let stray: Vec<String> = inv.pods_without_pool().map(|(p, ip)| format!("Pod {} ({ip})", p.key())).collect();
    if !stray.is_empty() {
        out.push(Finding::new(
            "podOutsidePools",
            Severity::Fail,
            format!("{} pod(s) hold an IP that is in no IP pool: {}", stray.len(), name_some(&stray)),
            stray,
        ));
    }
    for (i, p) in inv.pools.iter().enumerate() {
        if p.disabled && inv.usage[i].pods > 0 {
            out.push(Finding::new(
                "disabledPoolHasPods",
                Severity::Warn,
                format!("IPPool {} is disabled but {} pod(s) still use it; they keep working, but move them before deleting the pool", p.name, inv.usage[i].pods),
                vec![format!("IPPool {}", p.name)],
            ));
        }
    }
    let orphans: Vec<String> = inv.orphan_blocks().map(|b| format!("IPAMBlock {} ({})", b.name, b.cidr)).collect();
    if !orphans.is_empty() {
        out.push(Finding::new(
            "blockOutsidePools",
            Severity::Warn,
            format!(
                "{} IPAM block(s) lie in no IP pool (left from a deleted pool): {}",
                orphans.len(),
                name_some(&orphans)
            ),
            orphans,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::SourcedCidr;

    #[test]
    fn unreadable_rule_kinds_are_a_warning_naming_them() {
        assert_eq!(unreadable_rules_finding(&[]), None);
        let f = unreadable_rules_finding(&["networksets.crd.projectcalico.org (forbidden)".into()]).unwrap();
        assert_eq!((f.code, f.severity), ("rulesNotChecked", Severity::Warn));
        assert_eq!(f.objects, vec!["networksets.crd.projectcalico.org (forbidden)"]);
    }

    fn nets(pod: &str, svc: &str) -> ClusterNetworks {
        ClusterNetworks {
            pod_cidrs: vec![SourcedCidr { cidr: pod.parse().unwrap(), source: "kubeadm-config".into() }],
            service_cidrs: vec![SourcedCidr { cidr: svc.parse().unwrap(), source: "ServiceCIDR kubernetes".into() }],
            service_ips: vec![],
        }
    }

    #[test]
    fn kops_overlap_and_outside_cluster_cidr_are_flagged() {
        let pools = vec![Pool::new("default-ipv4-ippool", "100.64.0.0/10".parse().unwrap())];
        let f = pool_network_findings(&pools, &nets("100.96.0.0/11", "100.64.0.0/13"));
        let codes: Vec<_> = f.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec!["poolOutsideClusterCidr", "poolOverlapsServiceCidr"]);
        assert!(f[1].message.contains("100.64.0.0/13"));
    }

    #[test]
    fn seed_pool_is_outside_cluster_cidr_but_new_pool_is_fine() {
        let pools = vec![
            Pool::new("default-ipv4-ippool", "192.168.0.0/16".parse().unwrap()),
            Pool::new("new", "10.0.0.0/16".parse().unwrap()),
        ];
        let f = pool_network_findings(&pools, &nets("10.0.0.0/8", "10.96.0.0/12"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].objects, vec!["IPPool default-ipv4-ippool"]);
    }

    #[test]
    fn overlapping_pools_flagged_once() {
        let pools =
            vec![Pool::new("a", "10.0.0.0/16".parse().unwrap()), Pool::new("b", "10.0.128.0/17".parse().unwrap())];
        let f = pool_network_findings(&pools, &ClusterNetworks::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, "poolsOverlap");
    }

    #[test]
    fn rules_naming_a_retiring_pool_warn_once_per_class() {
        use serde_json::json;
        let obj = |class, kind: &str, body| RuleObject {
            class,
            target: rules::ObjectRef {
                api_version: "v1".into(),
                kind: kind.into(),
                plural: "x".into(),
                namespace: None,
                name: "a".into(),
            },
            body,
        };
        let objects = vec![
            obj(RuleClass::NetworkSet, "GlobalNetworkSet", json!({"spec": {"nets": ["192.168.0.0/16"]}})),
            obj(RuleClass::NetworkSet, "NetworkSet", json!({"spec": {"nets": ["192.168.1.0/24"]}})),
            // Already reaches the enabled pool: nothing to do.
            obj(RuleClass::NetworkSet, "NetworkSet", json!({"spec": {"nets": ["192.168.2.0/24", "0.0.0.0/0"]}})),
            obj(
                RuleClass::CalicoPolicy,
                "GlobalNetworkPolicy",
                json!({"spec": {"egress": [{"destination": {"notNets": ["192.168.0.0/16"]}}]}}),
            ),
        ];
        let mut old = Pool::new("old", "192.168.0.0/16".parse().unwrap());
        old.disabled = true;
        let active = ["10.0.0.0/16".parse().unwrap()];
        let f = rule_findings(&objects, &[], &[&old], &active);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].code, "rulesNameOldCidr");
        assert!(
            f[0].message.starts_with("1 Calico policy nets/notNets entr(ies) name the range of retiring IPPool old"),
            "{}",
            f[0].message
        );
        assert_eq!(
            f[1].objects,
            vec!["GlobalNetworkSet a spec.nets[0]: 192.168.0.0/16", "NetworkSet a spec.nets[0]: 192.168.1.0/24"]
        );
        assert!(rule_findings(&objects, &[], &[], &active).is_empty(), "nothing is retiring");
    }

    #[test]
    fn long_lists_are_shortened() {
        let items: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        assert_eq!(name_some(&items), "p0, p1, p2, p3, p4 and 3 more");
    }
}
