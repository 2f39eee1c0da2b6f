//! The IPAM checks, in `calicoctl ipam check`'s classes, plus the block
//! affinity and block checks.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::defs::*;
use super::{Check, IpamFigures, VerifyInput};
use crate::core::cidr::PrefixIndex;
use crate::core::findings::{name_some, Severity};
use crate::core::model::PodInfo;

/// Handle Calico reserves for Windows; its addresses are in use by definition.
const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";

fn alloc_label(
    ip: IpAddr,
    handle: Option<&str>,
    ns: Option<&str>,
    pod: Option<&str>,
    node: Option<&str>,
    kind: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if let Some(h) = handle {
        parts.push(format!("handle {h}"));
    }
    if let (Some(ns), Some(p)) = (ns, pod) {
        parts.push(format!("pod {ns}/{p}"));
    }
    if let Some(k) = kind {
        parts.push(k.to_string());
    }
    if let Some(n) = node {
        parts.push(format!("node {n}"));
    }
    format!("IP {ip} ({})", parts.join(", "))
}

/// IPAM consistency, in `calicoctl ipam check`'s classes plus the affinity
/// and block checks kube-controllers' GC cares about. Lookups go through
/// hash maps, so this is linear in pods + allocations + handles.
pub fn ipam_checks(input: &VerifyInput) -> (Vec<Check>, IpamFigures) {
    let inv = input.inv;
    let ipam = &inv.ipam;
    let mut fig = IpamFigures { blocks: ipam.blocks.len(), ..Default::default() };

    // Addresses in use: workload endpoints (scheduled, not host-network,
    // not finished pods) and node tunnel addresses.
    let mut in_use: HashMap<IpAddr, Vec<String>> = HashMap::new();
    for p in &inv.pods {
        if p.host_network || p.node.is_none() || p.is_finished() {
            continue;
        }
        for ip in &p.ips {
            in_use.entry(*ip).or_default().push(format!("Pod {}", p.key()));
        }
    }
    for n in input.nodes {
        for ip in &n.tunnel_ips {
            in_use.entry(*ip).or_default().push(format!("Node {}", n.name));
        }
    }
    fig.in_use_ips = in_use.len();

    // Allocations, by address; handles referenced by allocations.
    let mut allocated: HashMap<IpAddr, Vec<(usize, usize)>> = HashMap::new();
    let mut referenced: HashSet<&str> = HashSet::new();
    for (bi, b) in ipam.blocks.iter().enumerate() {
        for (ai, a) in b.allocations.iter().enumerate() {
            allocated.entry(a.ip).or_default().push((bi, ai));
            if let Some(h) = a.handle.as_deref() {
                if h == WINDOWS_RESERVED_HANDLE {
                    in_use.entry(a.ip).or_default().push("Reserved for Windows".into());
                } else {
                    referenced.insert(h);
                }
            }
            fig.allocations += 1;
        }
    }
    let pods_by_key: HashMap<(&str, &str), &PodInfo> =
        inv.pods.iter().map(|p| ((p.namespace.as_str(), p.name.as_str()), p)).collect();

    // 1. Leaks: allocated, not in use. Also allocations whose pod attribute
    //    names a pod that does not hold the address although someone else
    //    uses it (kube-controllers would GC these; calicoctl does not count them).
    let mut leaked = Vec::new();
    let mut mismatched = Vec::new();
    let mut leaked_ips: Vec<IpAddr> = Vec::new();
    for (ip, slots) in &allocated {
        for &(bi, ai) in slots {
            let a = &ipam.blocks[bi].allocations[ai];
            let label = || {
                alloc_label(
                    *ip,
                    a.handle.as_deref(),
                    a.namespace.as_deref(),
                    a.pod.as_deref(),
                    a.node.as_deref(),
                    a.kind.as_deref(),
                )
            };
            match in_use.get(ip) {
                None => leaked.push((*ip, format!("{} in IPAMBlock {}", label(), ipam.blocks[bi].name))),
                Some(_) => {
                    if let (Some(ns), Some(pod)) = (a.namespace.as_deref(), a.pod.as_deref()) {
                        let holds = pods_by_key.get(&(ns, pod)).is_some_and(|p| p.ips.contains(ip) && !p.is_finished());
                        if !holds {
                            mismatched.push(format!("{} in IPAMBlock {}", label(), ipam.blocks[bi].name));
                        }
                    }
                }
            }
        }
        if !in_use.contains_key(ip) {
            leaked_ips.push(*ip);
        }
    }
    fig.leaked_ips = leaked_ips.len();
    leaked.sort();
    let leaked: Vec<String> = leaked.into_iter().map(|(_, s)| s).collect();
    mismatched.sort();

    // 2. In use without an allocation, split by active pool.
    let active_pools: Vec<IpNet> = inv.pools.iter().filter(|p| !p.disabled).map(|p| p.cidr).collect();
    let active_index = PrefixIndex::new(active_pools.iter().map(|n| (*n, ())));
    let mut outside_active = Vec::new();
    let mut unallocated = Vec::new();
    let mut multi = Vec::new();
    for (ip, owners) in &in_use {
        if owners.len() > 1 {
            multi.push(format!("IP {ip} ({})", owners.join(", ")));
        }
        if allocated.contains_key(ip) {
            continue;
        }
        let who = owners.join(", ");
        if active_index.lookup(*ip).is_some() {
            unallocated.push(format!("{who} ({ip})"));
        } else {
            outside_active.push(format!("{who} ({ip})"));
        }
    }
    outside_active.sort();
    unallocated.sort();
    multi.sort();
    fig.in_use_not_in_active_pool = outside_active.len();
    fig.in_use_without_allocation = unallocated.len();
    fig.multiple_owners = multi.len();

    // 3. Handles no allocation refers to; 4. referenced handles with no object.
    let handle_ids: HashSet<&str> = ipam.handles.iter().map(|h| h.handle_id.as_str()).collect();
    let mut orphan_handles: Vec<String> = ipam
        .handles
        .iter()
        .filter(|h| !referenced.contains(h.handle_id.as_str()))
        .map(|h| format!("IPAMHandle {}", h.handle_id))
        .collect();
    orphan_handles.sort();
    let mut missing_handles: Vec<String> =
        referenced.iter().filter(|h| !handle_ids.contains(*h)).map(|h| format!("IPAMHandle {h}")).collect();
    missing_handles.sort();
    fig.handles_without_ips = orphan_handles.len();
    fig.missing_handles = missing_handles.len();

    // 5. Invalid block structure.
    let invalid: Vec<String> = ipam
        .blocks
        .iter()
        .filter(|b| !b.problems.is_empty())
        .map(|b| format!("IPAMBlock {}: {}", b.name, b.problems.join("; ")))
        .collect();
    fig.invalid_blocks = invalid.len();
    fig.calicoctl_problems =
        fig.leaked_ips + fig.in_use_not_in_active_pool + fig.in_use_without_allocation + fig.handles_without_ips;

    // Affinities: missing node, deleted pool, pending deletion.
    let node_names: HashSet<&str> = input.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut missing_node: BTreeSet<String> = BTreeSet::new();
    for b in &ipam.blocks {
        if let Some(n) = b.affinity_node.as_deref().filter(|n| !node_names.contains(n)) {
            missing_node.insert(format!("IPAMBlock {} (affine to missing Node {n})", b.name));
        }
    }
    let mut for_deleted_pool = Vec::new();
    let mut pending_deletion = Vec::new();
    for a in &ipam.affinities {
        if !a.node.is_empty() && !node_names.contains(a.node.as_str()) {
            missing_node.insert(format!("BlockAffinity {} (missing Node {})", a.name, a.node));
        }
        if inv.pool_index.lookup(a.cidr.network()).is_none() {
            for_deleted_pool.push(format!("BlockAffinity {} ({} on {})", a.name, a.cidr, a.node));
        }
        if a.state == "pendingDeletion" {
            pending_deletion.push(format!("BlockAffinity {} ({} on {})", a.name, a.cidr, a.node));
        }
    }
    let missing_node: Vec<String> = missing_node.into_iter().collect();
    let orphan_blocks: Vec<String> = inv
        .orphan_blocks()
        .map(|b| format!("IPAMBlock {} ({}, {} allocation(s))", b.name, b.cidr, b.allocations.len()))
        .collect();

    let out = vec![
        Check::from_objects(
            LEAKED_ALLOCATIONS,
            Severity::Fail,
            leaked,
            "every allocated address is used by a pod or a node tunnel",
            |o| format!("{} address(es) allocated in IPAM but used by no pod or node: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            ALLOCATION_OWNER_MISMATCH,
            Severity::Warn,
            mismatched,
            "every pod allocation names the pod that uses the address",
            |o| {
                format!(
                    "{} allocation(s) name a pod that does not hold the address (it is used by another): {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            IPS_OUTSIDE_ACTIVE_POOLS,
            Severity::Fail,
            outside_active,
            "every in-use address is allocated or lies in an active pool",
            |o| {
                format!(
                    "{} in-use address(es) have no IPAM allocation and lie in no active pool: {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            IPS_WITHOUT_ALLOCATION,
            Severity::Fail,
            unallocated,
            "every in-use address in an active pool is allocated in IPAM",
            |o| {
                format!(
                    "{} in-use address(es) in an active pool have no IPAM allocation (they can be handed out twice): {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            DUPLICATE_IPS,
            Severity::Fail,
            multi,
            "no address is used by more than one pod or node",
            |o| format!("{} address(es) are used by more than one pod or node: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            HANDLES_WITHOUT_IPS,
            Severity::Fail,
            orphan_handles,
            "every IPAMHandle has allocations",
            |o| format!("{} IPAMHandle(s) have no allocated address: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            MISSING_HANDLES,
            Severity::Warn,
            missing_handles,
            "every handle used by an allocation has an IPAMHandle object",
            |o| format!("{} handle(s) used by allocations have no IPAMHandle object: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            AFFINITY_FOR_MISSING_NODE,
            Severity::Fail,
            missing_node,
            "every block affinity names an existing node",
            |o| {
                format!(
                    "{} block(s)/affinit(ies) are affine to a node that no longer exists: {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            AFFINITY_FOR_DELETED_POOL,
            Severity::Warn,
            for_deleted_pool,
            "every BlockAffinity lies in an IP pool",
            |o| format!("{} BlockAffinit(ies) lie in no IP pool (left from a deleted pool): {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            AFFINITY_PENDING_DELETION,
            Severity::Warn,
            pending_deletion,
            "no BlockAffinity is stuck in pendingDeletion",
            |o| format!("{} BlockAffinit(ies) are in state pendingDeletion: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            BLOCKS_OUTSIDE_POOLS,
            Severity::Warn,
            orphan_blocks,
            "every IPAM block lies in an IP pool",
            |o| format!("{} IPAM block(s) lie in no IP pool (left from a deleted pool): {}", o.len(), name_some(o)),
        ),
        Check::from_objects(INVALID_BLOCKS, Severity::Fail, invalid, "every IPAM block is structurally valid", |o| {
            format!("{} IPAM block(s) are corrupt: {}", o.len(), name_some(o))
        }),
    ];
    (out, fig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::checks::fixtures::*;
    use crate::core::checks::{overall, Status};
    use crate::core::inventory::tests::{block, pod};
    use crate::core::inventory::Inventory;
    use crate::core::model::*;

    #[test]
    fn leaks_unallocated_and_handles_match_calicoctl_classes() {
        let mut w = clean_world();
        let ipam = &mut w.inv.ipam;
        // 1. a leak: an allocation for a pod that is gone.
        ipam.blocks[0].allocations.push(Allocation {
            ip: "10.1.0.7".parse().unwrap(),
            handle: Some("k8s-pod-network.gone".into()),
            namespace: Some("shop".into()),
            pod: Some("gone".into()),
            node: Some("node-0".into()),
            kind: None,
        });
        // 3. an orphan handle; 4. the leak's handle has no object (missing).
        ipam.handles.push(handle("k8s-pod-network.orphan"));
        let mut pods = w.inv.pods.clone();
        // 2a. pod IP in no active pool, no allocation; 2b. in active pool, no allocation.
        pods.push(pod("shop", "outside", "172.16.0.1", OwnerKind::Bare, "outside"));
        pods.push(pod("shop", "unalloc", "10.1.0.40", OwnerKind::Bare, "unalloc"));
        // A duplicate: two pods claim 10.1.0.1.
        pods.push(pod("shop", "twin", "10.1.0.1", OwnerKind::Bare, "twin"));
        w.inv = Inventory::build(w.inv.pools.clone(), pods, w.inv.ipam.clone());
        let (cs, fig) = w.run();
        assert_eq!(
            check(&cs, "leakedAllocations").objects,
            vec!["IP 10.1.0.7 (handle k8s-pod-network.gone, pod shop/gone, node node-0) in IPAMBlock 10-1-0-0-26"]
        );
        assert_eq!(check(&cs, "ipsOutsideActivePools").objects, vec!["Pod shop/outside (172.16.0.1)"]);
        assert_eq!(check(&cs, "ipsWithoutAllocation").objects, vec!["Pod shop/unalloc (10.1.0.40)"]);
        assert_eq!(check(&cs, "handlesWithoutIps").objects, vec!["IPAMHandle k8s-pod-network.orphan"]);
        assert_eq!(check(&cs, "missingHandles").objects, vec!["IPAMHandle k8s-pod-network.gone"]);
        assert_eq!(check(&cs, "duplicateIps").status, Status::Fail);
        assert_eq!(fig.leaked_ips, 1);
        assert_eq!(fig.in_use_not_in_active_pool, 1);
        assert_eq!(fig.in_use_without_allocation, 1);
        assert_eq!(fig.handles_without_ips, 1);
        assert_eq!(fig.missing_handles, 1);
        assert_eq!(fig.calicoctl_problems, 4);
    }

    #[test]
    fn tunnel_allocation_without_node_annotation_is_a_leak() {
        let mut w = clean_world();
        w.nodes[0].tunnel_ips.clear();
        let (cs, fig) = w.run();
        assert_eq!(fig.leaked_ips, 1);
        assert!(check(&cs, "leakedAllocations").objects[0]
            .starts_with("IP 10.1.0.0 (handle ipip-tunnel-addr-node-0, ipipTunnelAddress"));
    }

    #[test]
    fn allocation_naming_another_pod_is_a_mismatch_not_a_calicoctl_leak() {
        let mut w = clean_world();
        w.inv.ipam.blocks[0].allocations[1].pod = Some("someone-else".into());
        let (cs, fig) = w.run();
        assert_eq!(fig.leaked_ips, 0);
        let c = check(&cs, "allocationOwnerMismatch");
        assert_eq!(c.status, Status::Warn);
        assert!(c.objects[0].contains("pod shop/someone-else"));
        assert_eq!(overall(&cs, false), Severity::Warn);
        assert_eq!(overall(&cs, true), Severity::Fail);
    }

    #[test]
    fn affinities_of_missing_nodes_deleted_pools_and_pending_deletion() {
        let mut w = clean_world();
        w.inv.ipam.blocks.push(block("10.1.0.64/26", "node-9", &[]));
        w.inv.ipam.affinities.push(Affinity {
            name: "node-9-10-1-0-64-26".into(),
            node: "node-9".into(),
            cidr: net("10.1.0.64/26"),
            state: "confirmed".into(),
            deleted: false,
        });
        w.inv.ipam.affinities.push(Affinity {
            name: "node-0-172-30-0-0-26".into(),
            node: "node-0".into(),
            cidr: net("172.30.0.0/26"),
            state: "pendingDeletion".into(),
            deleted: false,
        });
        w.inv = Inventory::build(w.inv.pools.clone(), w.inv.pods.clone(), w.inv.ipam.clone());
        let (cs, _) = w.run();
        let c = check(&cs, "affinityForMissingNode");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.objects,
            vec![
                "BlockAffinity node-9-10-1-0-64-26 (missing Node node-9)",
                "IPAMBlock 10-1-0-64-26 (affine to missing Node node-9)"
            ]
        );
        assert_eq!(
            check(&cs, "affinityForDeletedPool").objects,
            vec!["BlockAffinity node-0-172-30-0-0-26 (172.30.0.0/26 on node-0)"]
        );
        assert_eq!(check(&cs, "affinityPendingDeletion").status, Status::Warn);
    }

    #[test]
    fn blocks_outside_pools_and_invalid_blocks() {
        let mut w = clean_world();
        let mut bad = block("172.30.0.0/26", "node-0", &[]);
        bad.problems.push("ordinal 3 is listed twice in unallocated".into());
        w.inv.ipam.blocks.push(bad);
        w.inv = Inventory::build(w.inv.pools.clone(), w.inv.pods.clone(), w.inv.ipam.clone());
        let (cs, fig) = w.run();
        assert_eq!(
            check(&cs, "blocksOutsidePools").objects,
            vec!["IPAMBlock 172-30-0-0-26 (172.30.0.0/26, 0 allocation(s))"]
        );
        assert_eq!(check(&cs, "invalidBlocks").status, Status::Fail);
        assert_eq!(fig.invalid_blocks, 1);
    }
}
