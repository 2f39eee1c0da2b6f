//! Addresses the target CIDR must not share: node addresses of any type
//! and family, and IPAM blocks cut to another size.

use super::PlanInput;
use crate::core::cidr::overlaps;
use crate::core::findings::name_some;
use crate::core::model::{ClusterNetworks, NodeInfo, Pool};

/// The Service default/kubernetes' ClusterIP inside the target: the
/// target overlaps the Service range, known or not.
pub(super) fn service_ips(nets: &ClusterNetworks, to: &Pool) -> Option<String> {
    let ip = nets.service_ips.iter().find(|ip| to.cidr.contains(*ip))?;
    let known = nets.service_nets().iter().any(|n| n.contains(ip));
    // A known Service CIDR holding it is refused already, naming its source.
    (!known).then(|| {
        format!(
            "{} contains {ip}, the ClusterIP of Service default/kubernetes, so it overlaps the Service range: pod and Service addresses would collide",
            to.cidr
        )
    })
}

/// A warning for the plan when no source told the Service range.
pub fn unknown_service_range(nets: &ClusterNetworks, targets: &[&Pool]) -> Option<String> {
    if !nets.service_cidrs.is_empty() {
        return None;
    }
    let cidrs: Vec<String> = targets.iter().map(|t| t.cidr.to_string()).collect();
    let evidence = match nets.service_ips.as_slice() {
        [] => String::new(),
        ips => format!(
            " (Service default/kubernetes has ClusterIP {})",
            ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    Some(format!(
        "the cluster's Service CIDR is unknown: no ServiceCIDR object, kubeadm-config or kube-apiserver flag could be read{evidence}; make sure {} does not overlap it (on a managed cluster, the provider's console shows it)",
        cidrs.join(" and ")
    ))
}

/// Nodes with an address (InternalIP, ExternalIP, IPv4 or IPv6) inside the
/// target: a pod given that address would collide with the node.
pub(super) fn node_addresses(nodes: &[NodeInfo], to: &Pool) -> Option<String> {
    let hit: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            n.addresses
                .iter()
                .filter(|a| to.cidr.contains(&a.ip))
                .map(move |a| format!("{} ({} {})", n.name, a.kind, a.ip))
        })
        .collect();
    (!hit.is_empty()).then(|| {
        format!(
            "{} contains node addresses: {}; pod addresses must not collide with node addresses",
            to.cidr,
            name_some(&hit)
        )
    })
}

/// IPAM blocks overlapping the target whose size is not its block size
/// (a nested pool, or a block left from an older pool): Calico would cut
/// new blocks across them and hand out the same address twice.
pub(super) fn foreign_blocks(input: &PlanInput, from: &Pool, to: &Pool) -> Option<String> {
    let inv = input.inventory;
    let hit: Vec<String> = inv
        .ipam
        .blocks
        .iter()
        .zip(&inv.block_pool)
        .filter(|(b, _)| overlaps(&b.cidr, &to.cidr) && b.cidr.prefix_len() != to.block_size)
        .map(|(b, pool)| match pool {
            Some(i) => format!("{} (IPPool {})", b.cidr, inv.pools[*i].name),
            None => format!("{} (no pool)", b.cidr),
        })
        .collect();
    (!hit.is_empty()).then(|| {
        format!(
            "{} contains IPAM blocks of another size than its blockSize {}: {}; overlapping blocks hand out duplicate addresses. Pick a CIDR clear of them, or keep blockSize {} (the old pool {}'s is {})",
            to.cidr,
            to.block_size,
            name_some(&hit),
            from.block_size,
            from.name,
            from.block_size
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::core::inventory::Inventory;
    use crate::core::model::{Block, Ipam, NodeAddress};
    use crate::core::plan::fixtures::*;

    /// Every address type and family counts, not only InternalIP.
    #[test]
    fn every_node_address_type_and_family_is_checked() {
        let mut w = world(seed_pools(), seed_pods());
        w.nets.pod_cidrs.clear();
        w.nodes[1].addresses.push(NodeAddress { kind: "ExternalIP".into(), ip: "203.0.113.7".parse().unwrap() });
        w.nodes[2].addresses.push(NodeAddress { kind: "InternalIP".into(), ip: "fd00:10::7".parse().unwrap() });
        let r = refusals(&input(&w, cidr("203.0.113.0/24")));
        assert!(r.contains("contains node addresses: kubesim-node-1 (ExternalIP 203.0.113.7)"), "{r}");
        let mut pools = seed_pools();
        pools.push(crate::core::model::Pool::new("v6", "fd00:20::/112".parse().unwrap()));
        let w6 = World { inv: Inventory::build(pools, vec![], Ipam::default()), ..w };
        let mut i = input(&w6, cidr("fd00:10::/112"));
        i.from = "v6";
        let r = refusals(&i);
        assert!(r.contains("kubesim-node-2 (InternalIP fd00:10::7)"), "{r}");
    }

    /// With no source for the Service range, the kubernetes Service's
    /// ClusterIP still refuses a target holding it, and the plan warns.
    #[test]
    fn an_unknown_service_range_is_warned_and_its_first_address_refused() {
        let mut w = world(seed_pools(), seed_pods());
        w.nets.service_cidrs.clear();
        let r = refusals(&input(&w, cidr("10.96.0.0/16")));
        assert!(r.contains("contains 10.96.0.1, the ClusterIP of Service default/kubernetes"), "{r}");
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let plan = crate::core::plan::make_plan(&i).unwrap();
        let warned = plan.warnings.iter().find(|w| w.contains("Service CIDR is unknown")).expect("a warning");
        assert!(warned.contains("ClusterIP 10.96.0.1") && warned.contains("10.0.0.0/16"), "{warned}");
        w.nets = networks();
        let plan = crate::core::plan::make_plan(&input(&w, cidr("10.0.0.0/16"))).unwrap();
        assert!(!plan.warnings.iter().any(|w| w.contains("Service CIDR")), "{:?}", plan.warnings);
    }

    /// Blocks of another size inside the target (a nested pool's) are named.
    #[test]
    fn blocks_of_another_size_inside_the_target_are_refused() {
        let block = |c: &str| Block {
            name: c.replace(['.', '/'], "-"),
            cidr: c.parse().unwrap(),
            affinity_node: None,
            affinity: None,
            allocations: vec![],
            deleted: false,
            problems: vec![],
        };
        let ipam = Ipam { blocks: vec![block("192.168.0.0/26"), block("10.0.4.0/28")], ..Ipam::default() };
        let mut w = world(seed_pools(), seed_pods());
        w.inv = Inventory::build(seed_pools(), seed_pods(), ipam);
        let r = refusals(&input(&w, cidr("10.0.0.0/16")));
        assert!(r.contains("IPAM blocks of another size than its blockSize 26: 10.0.4.0/28 (no pool)"), "{r}");
        // Same-size blocks of the old pool inside a sub-range target stay, as before.
        assert!(crate::core::plan::make_plan(&input(&w, cidr("10.1.0.0/16"))).is_ok());
        let mut i = input(&w, cidr("192.168.0.0/17"));
        i.overrides.block_size = Some(24);
        assert!(refusals(&i).contains("192.168.0.0/26 (IPPool default-ipv4-ippool)"));
    }
}
