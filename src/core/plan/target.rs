//! The target pool: built from the request, checked against calicoctl's
//! rules for a new pool, against the other pools and the cluster's
//! networks, and for room to hold the pods it receives.

use ipnet::IpNet;

use super::collisions;
use super::new_pool::validate_new_pool;
use super::{Move, PlanInput, TargetRequest};
use crate::core::cidr::{overlaps, parse_canonical, size, within};
use crate::core::model::{ManagedBy, Pool};

/// The operator's `cidrToName`: `10.0.0.0/16` -> `10.0.0.0-16`. For IPv6
/// the `::` of the short form is written out as zero groups first
/// (`fd00:10::/64` -> `fd00.10.0.0-64`): a name with `..` is not a valid
/// Kubernetes object name.
pub fn cidr_to_name(cidr: &IpNet) -> String {
    let mut addr = cidr.addr().to_string();
    if addr.starts_with("::") {
        addr.insert(0, '0');
    }
    if addr.ends_with("::") {
        addr.push('0');
    }
    let addr = addr.replace("::", ":0:").replace(':', ".");
    format!("{addr}-{}", cidr.prefix_len())
}

/// Build the target pool: copied from the old one with overrides
/// (`--to`), or an existing enabled pool (`--to-pool`).
pub(super) fn resolve_target(
    input: &PlanInput,
    from: &Pool,
    warnings: &mut Vec<String>,
) -> Result<(Pool, bool), Vec<String>> {
    let inv = input.inventory;
    match &input.to {
        TargetRequest::Pool(name) => {
            if name == &from.name {
                return Err(vec![format!("--to-pool {name} is the pool being migrated from; pick a different pool")]);
            }
            let Some(idx) = inv.pool_named(name) else {
                return Err(vec![format!(
                    "--to-pool {name}: no such IPPool; create it first or pass --to CIDR to have it created"
                )]);
            };
            let to = inv.pools[idx].clone();
            let mut reasons = Vec::new();
            if !to.is_active() {
                reasons.push(format!("--to-pool {name} is disabled or being deleted; enable it first (calicoctl patch ippool {name} -p '{{\"spec\":{{\"disabled\":false}}}}')"));
            }
            if to.cidr.addr().is_ipv4() != from.cidr.addr().is_ipv4() {
                reasons.push(format!(
                    "--to-pool {name} ({}) is not the same IP family as {} ({})",
                    to.cidr, from.name, from.cidr
                ));
            }
            if !to.allows_workloads() {
                reasons
                    .push(format!("--to-pool {name} does not allow Workload use (allowedUses {:?})", to.allowed_uses));
            }
            if !reasons.is_empty() {
                return Err(reasons);
            }
            warnings.extend(differences(from, &to));
            Ok((to, false))
        }
        TargetRequest::Cidr(text) => {
            let cidr = parse_canonical(text).map_err(|e| vec![format!("--to {e}")])?;
            let o = &input.overrides;
            let name = o.name.clone().unwrap_or_else(|| cidr_to_name(&cidr));
            let mut to = from.clone();
            to.name = name.clone();
            to.cidr = cidr;
            to.disabled = false;
            to.terminating = false;
            to.managed_by = if input.operator { ManagedBy::Operator } else { ManagedBy::Manifest };
            if let Some(bs) = o.block_size {
                to.block_size = bs;
            }
            if let Some(m) = o.ipip_mode {
                to.ipip_mode = m;
            }
            if let Some(m) = o.vxlan_mode {
                to.vxlan_mode = m;
            }
            if let Some(n) = o.nat_outgoing {
                to.nat_outgoing = n;
            }
            if let Some(s) = &o.node_selector {
                to.node_selector = s.clone();
            }
            let mut reasons = validate_new_pool(&to, from);
            // A pool of that name with exactly this CIDR was created by an
            // earlier, interrupted run (or by hand): use it.
            if let Some(idx) = inv.pool_named(&name) {
                let existing = &inv.pools[idx];
                if name == from.name {
                    reasons.push(format!("the new pool's name {name} is the old pool's name; pass --name"));
                } else if existing.cidr != cidr {
                    reasons.push(format!(
                        "an IPPool named {name} already exists with CIDR {}; pass --name to choose another name",
                        existing.cidr
                    ));
                } else if reasons.is_empty() {
                    if !existing.is_active() {
                        return Err(vec![format!(
                            "IPPool {name} ({cidr}) already exists but is disabled; enable it or delete it first"
                        )]);
                    }
                    warnings.push(format!("IPPool {name} ({cidr}) already exists; it is used as the target"));
                    warnings.extend(differences(from, existing));
                    return Ok((existing.clone(), false));
                }
            }
            if !reasons.is_empty() {
                return Err(reasons);
            }
            warnings.extend(differences(from, &to));
            Ok((to, true))
        }
    }
}

/// What differs between the old pool and the target, as warnings.
fn differences(from: &Pool, to: &Pool) -> Vec<String> {
    let mut d = Vec::new();
    let mut diff = |field: &str, a: String, b: String| {
        if a != b {
            d.push(format!("the new pool {} differs from {}: {field} {b} (was {a})", to.name, from.name));
        }
    };
    diff("ipipMode", from.ipip_mode.as_str().into(), to.ipip_mode.as_str().into());
    diff("vxlanMode", from.vxlan_mode.as_str().into(), to.vxlan_mode.as_str().into());
    diff("natOutgoing", from.nat_outgoing.to_string(), to.nat_outgoing.to_string());
    diff("blockSize", from.block_size.to_string(), to.block_size.to_string());
    diff("nodeSelector", from.node_selector.clone(), to.node_selector.clone());
    diff(
        "namespaceSelector",
        from.namespace_selector.clone().unwrap_or_default(),
        to.namespace_selector.clone().unwrap_or_default(),
    );
    diff("allowedUses", from.allowed_uses.join(","), to.allowed_uses.join(","));
    diff("disableBGPExport", from.disable_bgp_export.to_string(), to.disable_bgp_export.to_string());
    diff(
        "assignmentMode",
        from.assignment_mode.clone().unwrap_or_else(|| "Automatic".into()),
        to.assignment_mode.clone().unwrap_or_else(|| "Automatic".into()),
    );
    d
}

/// The target against other pools, the Service CIDR, node addresses and
/// the cluster CIDR.
pub(super) fn check_target_against_cluster(
    input: &PlanInput,
    from: &Pool,
    to: &Pool,
    create_target: bool,
    refusals: &mut Vec<String>,
) {
    if to.cidr == from.cidr {
        refusals.push(format!("the target CIDR {} is the CIDR of {} itself; nothing would move", to.cidr, from.name));
        return;
    }
    if create_target {
        for p in &input.inventory.pools {
            // A sub-range of the pool being emptied is allowed (kops moves
            // 100.64.0.0/10 to 100.96.0.0/16): its blocks simply stay.
            if p.name == from.name && within(&to.cidr, &from.cidr) && to.cidr != from.cidr {
                continue;
            }
            if overlaps(&p.cidr, &to.cidr) {
                let state =
                    if p.disabled { " (disabled pools count too: Calico may still hold addresses there)" } else { "" };
                refusals.push(format!(
                    "--to {} overlaps IPPool {} ({}){state}; pick a CIDR that overlaps no pool",
                    to.cidr, p.name, p.cidr
                ));
            }
        }
    }
    for s in &input.networks.service_cidrs {
        if overlaps(&s.cidr, &to.cidr) {
            refusals.push(format!(
                "{} overlaps the Service CIDR {} (from {}): pod and Service addresses would collide",
                to.cidr, s.cidr, s.source
            ));
        }
    }
    refusals.extend(collisions::service_ips(input.networks, to));
    refusals.extend(collisions::node_addresses(input.nodes, to));
    refusals.extend(collisions::foreign_blocks(input, from, to));
    let v4 = to.cidr.addr().is_ipv4();
    let outside: Vec<String> = input
        .networks
        .pod_cidrs
        .iter()
        .filter(|s| s.cidr.addr().is_ipv4() == v4 && !within(&to.cidr, &s.cidr))
        .map(|s| format!("{} in {}", s.cidr, s.source))
        .collect();
    if !outside.is_empty() && !input.allow_outside_cluster_cidr {
        refusals.push(format!(
            "{} lies outside the cluster pod CIDR; pod traffic would be NATed or dropped. Pick a CIDR inside it, or first change it in: {}; or pass --allow-outside-cluster-cidr",
            to.cidr,
            outside.join("; ")
        ));
    }
}

/// The target must hold the pods plus one block per node.
pub(super) fn check_capacity(input: &PlanInput, to: &Pool, moves: &[Move], refusals: &mut Vec<String>) {
    let pods_now = input.inventory.pool_named(&to.name).map(|i| input.inventory.usage[i].pods).unwrap_or(0);
    let pods = moves.iter().map(|m| m.pods.len()).sum::<usize>() + pods_now;
    let nodes = input.nodes.len().max(1) as u128;
    let host_bits = to.cidr.max_prefix_len().saturating_sub(to.block_size) as u32;
    let block = if host_bits >= 128 { u128::MAX } else { 1u128 << host_bits };
    let needed = (pods as u128).saturating_add(nodes.saturating_mul(block));
    // Reserved addresses are never handed out (clipped to the pool).
    let reserved: u128 = input
        .reservations
        .iter()
        .filter(|r| overlaps(r, &to.cidr))
        .map(|r| if within(r, &to.cidr) { size(r) } else { size(&to.cidr) })
        .fold(0u128, u128::saturating_add);
    let cap = size(&to.cidr).saturating_sub(reserved);
    if to.block_size >= to.cidr.prefix_len() && cap < needed {
        let less = if reserved > 0 {
            format!(" once the {reserved} reserved by IPReservations are left out")
        } else {
            String::new()
        };
        refusals.push(format!(
            "{} holds {cap} addresses{less}; {pods} pod(s) on {nodes} node(s) need at least {needed} (the pods plus one /{} block of {block} per node); use a larger CIDR",
            to.cidr, to.block_size
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::EncapMode;
    use crate::core::plan::fixtures::*;
    use crate::core::plan::{make_plan, PoolOverrides};

    #[test]
    fn names_and_overrides() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.overrides = PoolOverrides {
            name: Some("new-pool".into()),
            block_size: Some(24),
            ipip_mode: Some(EncapMode::Never),
            vxlan_mode: Some(EncapMode::Always),
            nat_outgoing: Some(false),
            node_selector: None,
        };
        let plan = make_plan(&i).unwrap();
        assert_eq!(plan.to.name, "new-pool");
        assert_eq!(plan.to.block_size, 24);
        assert!(plan.warnings.iter().any(|w| w.contains("vxlanMode Always (was Never)")), "{:?}", plan.warnings);
        assert!(plan.warnings.iter().any(|w| w.contains("natOutgoing false (was true)")));
        assert!(plan.warnings.iter().any(|w| w.contains("encapsulation changes")));
        assert_eq!(cidr_to_name(&"fd00:10::/64".parse().unwrap()), "fd00.10.0.0-64");
        assert_eq!(cidr_to_name(&"fd00:10:20::/112".parse().unwrap()), "fd00.10.20.0.0-112");
        assert_eq!(cidr_to_name(&"fd00::1:0/112".parse().unwrap()), "fd00.0.1.0-112");
        assert_eq!(cidr_to_name(&"::/0".parse().unwrap()), "0.0.0-0");
        assert_eq!(cidr_to_name(&"10.0.0.0/16".parse().unwrap()), "10.0.0.0-16");
    }

    #[test]
    fn refuses_bad_and_non_canonical_cidrs() {
        let w = world(seed_pools(), seed_pods());
        assert!(refusals(&input(&w, cidr("banana"))).contains("is not a CIDR"));
        assert!(refusals(&input(&w, cidr("10.0.0.1/16"))).contains("canonical form is 10.0.0.0/16"));
    }

    #[test]
    fn refuses_wrong_family() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("fd00:10::/64"));
        i.overrides.ipip_mode = Some(EncapMode::Never);
        i.overrides.block_size = Some(122);
        assert!(refusals(&i).contains("a migration stays within one IP family"));
    }

    #[test]
    fn refuses_block_size_out_of_range_or_larger_than_cidr() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.overrides.block_size = Some(19);
        assert!(refusals(&i).contains("blockSize 19 is out of range: IPv4 pools need 20..=32"));
        let mut i = input(&w, cidr("10.0.0.0/28"));
        i.overrides.block_size = Some(26);
        assert!(refusals(&i).contains("smaller than one block"));
    }

    #[test]
    fn refuses_overlap_naming_the_pool_disabled_included() {
        let mut pools = seed_pools();
        let mut other = Pool::new("spare", "10.0.128.0/17".parse().unwrap());
        other.disabled = true;
        pools.push(other);
        let w = world(pools, seed_pods());
        let r = refusals(&input(&w, cidr("10.0.0.0/16")));
        assert!(r.contains("overlaps IPPool spare (10.0.128.0/17)") && r.contains("disabled"), "{r}");
    }

    #[test]
    fn refuses_overlap_with_the_old_pool_and_same_pool() {
        let w = world(seed_pools(), seed_pods());
        assert!(refusals(&input(&w, cidr("192.168.0.0/15"))).contains("overlaps IPPool default-ipv4-ippool"));
        assert!(refusals(&input(&w, cidr("192.168.0.0/16"))).contains("is the CIDR of default-ipv4-ippool itself"));
        assert!(refusals(&input(&w, TargetRequest::Pool("default-ipv4-ippool".into())))
            .contains("is the pool being migrated from"));
    }

    #[test]
    fn refuses_service_cidr_and_node_ips() {
        let w = world(seed_pools(), seed_pods());
        assert!(refusals(&input(&w, cidr("10.96.0.0/16")))
            .contains("overlaps the Service CIDR 10.96.0.0/12 (from ServiceCIDR kubernetes)"));
        let mut w = world(seed_pools(), seed_pods());
        w.nets.pod_cidrs.clear();
        assert!(refusals(&input(&w, cidr("172.18.0.0/16")))
            .contains("contains node addresses: kubesim-node-0 (InternalIP 172.18.0.2)"));
    }

    #[test]
    fn refuses_outside_cluster_cidr_naming_where_to_change_it() {
        let w = world(seed_pools(), seed_pods());
        let r = refusals(&input(&w, cidr("172.20.0.0/16")));
        assert!(
            r.contains("outside the cluster pod CIDR")
                && r.contains("10.0.0.0/8 in ConfigMap kube-system/kubeadm-config (networking.podSubnet)")
                && r.contains("--allow-outside-cluster-cidr"),
            "{r}"
        );
        let mut i = input(&w, cidr("172.20.0.0/16"));
        i.allow_outside_cluster_cidr = true;
        i.force = true;
        assert!(make_plan(&i).is_ok());
    }

    #[test]
    fn refuses_too_small_capacity() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/25"));
        i.force = true;
        let r = refusals(&i);
        assert!(r.contains("holds 128 addresses; 6 pod(s) on 3 node(s) need at least 198"), "{r}");
    }

    #[test]
    fn reservations_inside_the_target_count_against_its_capacity() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/24"));
        i.force = true;
        assert!(make_plan(&i).is_ok(), "256 addresses hold 6 pods and 3 blocks of 64");
        let reserved = ["10.0.0.0/26".parse().unwrap(), "192.168.0.0/24".parse().unwrap()];
        i.reservations = &reserved;
        let r = refusals(&i);
        assert!(r.contains("holds 192 addresses once the 64 reserved by IPReservations are left out;"), "{r}");
    }

    #[test]
    fn refuses_unknown_or_disabled_to_pool() {
        let mut pools = seed_pools();
        let mut other = Pool::new("spare", "10.1.0.0/16".parse().unwrap());
        other.disabled = true;
        pools.push(other);
        let w = world(pools, seed_pods());
        assert!(refusals(&input(&w, TargetRequest::Pool("nope".into()))).contains("no such IPPool"));
        assert!(refusals(&input(&w, TargetRequest::Pool("spare".into()))).contains("is disabled"));
    }

    #[test]
    fn existing_pool_is_used_and_differences_warned() {
        let mut pools = seed_pools();
        pools.push(Pool::new("spare", "10.1.0.0/16".parse().unwrap()));
        let w = world(pools, seed_pods());
        let mut i = input(&w, TargetRequest::Pool("spare".into()));
        i.force = true;
        let plan = make_plan(&i).unwrap();
        assert!(!plan.create_target);
        assert!(plan.warnings.iter().any(|w| w.contains("ipipMode Never (was Always)")), "{:?}", plan.warnings);
        // Re-running with --to after the pool was created resumes with it.
        let mut i = input(&w, cidr("10.1.0.0/16"));
        i.overrides.name = Some("spare".into());
        i.force = true;
        let plan = make_plan(&i).unwrap();
        assert!(!plan.create_target);
    }

    #[test]
    fn bad_name_and_unbalanced_selector_are_refused() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.overrides.name = Some("Bad_Name".into());
        let r = make_plan(&i).unwrap_err();
        assert!(r.iter().any(|m| m.contains("is not a valid object name")), "{r:?}");
        i.overrides.name = None;
        i.overrides.node_selector = Some("has((".into());
        let r = make_plan(&i).unwrap_err();
        assert!(r.iter().any(|m| m.contains("not a valid Calico selector")), "{r:?}");
        i.overrides.node_selector = Some("zone in {'a', 'b'} && has(x)".into());
        assert!(make_plan(&i).is_ok());
    }

    #[test]
    fn refuses_ipip_with_vxlan_and_empty_selector() {
        let w = world(seed_pools(), seed_pods());
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.overrides.vxlan_mode = Some(EncapMode::Always);
        assert!(refusals(&i).contains("IPIP (Always) and VXLAN (Always) cannot both be enabled"));
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.overrides.node_selector = Some(" ".into());
        assert!(refusals(&i).contains("--node-selector must not be empty"));
    }
}
