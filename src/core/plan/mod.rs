//! The migration plan, decided from plain data: is the target pool valid,
//! what blocks the move, and which workloads and pods move how, in order.
//!
//! Nothing here does I/O. `commands::migrate` gathers a snapshot, calls
//! [`make_plan`], shows the result and then executes it; after the old pool
//! is disabled it calls [`plan_moves`] again on a fresh snapshot so pods
//! created in between are moved too.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;

use super::cidr::{block_size_range, is_link_local, overlaps, parse_canonical, size, within};
use super::findings::name_some;
use super::inventory::Inventory;
use super::model::{
    ClusterNetworks, EncapMode, ManagedBy, NamespaceInfo, NodeInfo, Owner, OwnerKind, PodInfo, Pool, PoolPins,
};

/// How pods of controllers that support it are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// `kubectl rollout restart` each Deployment/StatefulSet/DaemonSet; the
    /// workload's own update strategy limits disruption.
    #[default]
    Rollout,
    /// Evict pod by pod through the Eviction API (PodDisruptionBudgets apply).
    Evict,
    /// Node by node: cordon, evict the node's pods, uncordon.
    Drain,
}

/// What to do with pods owned by Jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum JobsPolicy {
    /// Wait for the Job's pods to finish (up to --timeout).
    #[default]
    Wait,
    /// Leave them running on the old pool and report them; the old pool is
    /// then kept (disabled) until they finish.
    Skip,
    /// Evict them; the Job controller starts a replacement (this counts
    /// against the Job's backoffLimit and restarts its work).
    Evict,
}

/// How one workload or pod is moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MoveKind {
    /// Restart through the template annotation and wait for the rollout.
    Rollout,
    /// Evict each pod; its controller re-creates it.
    Evict,
    /// Evict a pod nobody re-creates: it is gone for good (--force).
    EvictForGood,
    /// Cordon the node, evict these pods, uncordon.
    Drain,
    /// Wait for a Job's pods to finish.
    WaitJob,
}

/// One entry of the plan's move list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// `Deployment shop/web`, or `Node kubesim-node-1` for drain steps.
    pub target: String,
    pub kind: MoveKind,
    /// The workload, for owner-based moves (absent for node drains).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Pods (`namespace/name`) on the old pool that this step moves.
    pub pods: Vec<String>,
    /// UIDs of those pods, same order (evictions wait on UIDs).
    #[serde(skip)]
    pub pod_uids: Vec<String>,
    /// Why this strategy, when it is not the obvious one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A pod the plan will not move, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub pod: String,
    pub reason: String,
}

/// A change to an IP pool, in execution order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum PoolStep {
    CreatePool { name: String, cidr: String, via: String },
    UseExistingPool { name: String, cidr: String },
    DisablePool { name: String, via: String },
    Canary { pods: usize },
    MovePods { workloads: usize, pods: usize },
    WaitForTunnelAddresses { pool: String },
    DeletePool { name: String, via: String },
}

/// The new pool as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRequest {
    /// `--to CIDR`: create a pool.
    Cidr(String),
    /// `--to-pool NAME`: use this existing, enabled pool.
    Pool(String),
}

/// Flags that override what is copied from the old pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolOverrides {
    pub name: Option<String>,
    pub block_size: Option<u8>,
    pub ipip_mode: Option<EncapMode>,
    pub vxlan_mode: Option<EncapMode>,
    pub nat_outgoing: Option<bool>,
    pub node_selector: Option<String>,
}

/// A Deployment, StatefulSet or DaemonSet: what the plan needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadInfo {
    pub owner: Owner,
    /// Pool annotations on `spec.template.metadata.annotations`.
    pub template_pins: PoolPins,
    /// `RollingUpdate`, `OnDelete`, `Recreate`.
    pub update_strategy: String,
}

/// A PodDisruptionBudget with the pods it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbInfo {
    pub namespace: String,
    pub name: String,
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub expected_pods: i32,
    /// `namespace/name` of the pods its selector matches.
    pub pods: Vec<String>,
}

impl PdbInfo {
    /// Every expected pod is healthy and still no disruption is allowed
    /// (e.g. maxUnavailable: 0): an eviction can never succeed.
    pub fn never_allows_disruption(&self) -> bool {
        self.disruptions_allowed == 0 && self.expected_pods > 0 && self.current_healthy >= self.expected_pods
    }
}

/// The CNI config's `ipv4_pools`/`ipv6_pools`, and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct CniPools {
    pub source: String,
    pub pools: Vec<String>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub from: &'a str,
    pub to: TargetRequest,
    pub overrides: PoolOverrides,
    pub strategy: Strategy,
    pub jobs: JobsPolicy,
    pub force: bool,
    pub allow_outside_cluster_cidr: bool,
    /// Pools are changed through the operator's Installation.
    pub operator: bool,
    pub inventory: &'a Inventory,
    pub nodes: &'a [NodeInfo],
    pub namespaces: &'a [NamespaceInfo],
    pub networks: &'a ClusterNetworks,
    pub workloads: &'a [WorkloadInfo],
    pub pdbs: &'a [PdbInfo],
    pub cni_pools: Option<CniPools>,
    /// Only pods matching `-n`/`-l` are considered (None = all).
    pub pod_filter: Option<&'a BTreeSet<String>>,
    pub canary_per_node: bool,
}

/// The plan `--dry-run` prints and `migrate` executes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub from: Pool,
    pub to: Pool,
    /// The target pool does not exist yet.
    pub create_target: bool,
    /// Pools are changed through Installation `default`.
    pub via_operator: bool,
    pub steps: Vec<PoolStep>,
    pub moves: Vec<Move>,
    pub skipped: Vec<Skipped>,
    /// Things to fix before anything can change.
    pub blockers: Vec<String>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn pod_count(&self) -> usize {
        self.moves.iter().map(|m| m.pods.len()).sum()
    }
}

/// The operator's `cidrToName`: `10.0.0.0/16` -> `10.0.0.0-16`.
pub fn cidr_to_name(cidr: &IpNet) -> String {
    cidr.to_string().replace('/', "-").replace(':', ".")
}

/// Validate the target and build the plan. `Err` lists every reason the
/// target is refused (each one says what to do); blockers of the move
/// itself are returned inside the plan, so `--dry-run` can show them.
pub fn make_plan(input: &PlanInput) -> Result<Plan, Vec<String>> {
    let inv = input.inventory;
    let from_idx = inv.pool_named(input.from).ok_or_else(|| {
        let known: Vec<&str> = inv.pools.iter().map(|p| p.name.as_str()).collect();
        vec![format!("IPPool {:?} not found; pools: {}", input.from, known.join(", "))]
    })?;
    let from = inv.pools[from_idx].clone();
    let mut warnings = Vec::new();
    let (to, create_target) = resolve_target(input, &from, &mut warnings)?;

    let mut refusals = Vec::new();
    check_target_against_cluster(input, &from, &to, create_target, &mut refusals);
    let (moves, skipped, mut blockers) = plan_moves(input, from_idx);
    check_capacity(input, &to, &moves, &mut refusals);
    if !refusals.is_empty() {
        return Err(refusals);
    }

    blockers.extend(pin_blockers(input, &from));
    if let Some(cni) = &input.cni_pools {
        if cni.pools.iter().any(|p| p == &from.name || p == &from.cidr.to_string()) {
            blockers.push(format!(
                "the CNI config in {} sets ipv4_pools/ipv6_pools to {:?}, which names the old pool: once it is disabled every new pod would fail. Edit it to name {} (and roll calico-node), then re-run",
                cni.source, cni.pools, to.name
            ));
        }
    }
    node_coverage(input, from_idx, &to, &mut blockers, &mut warnings);
    if within(&to.cidr, &from.cidr) && to.cidr != from.cidr {
        warnings.push(format!(
            "the new pool {} lies inside {} ({}): pods already in {} stay, and its blocks are kept when {} is deleted",
            to.cidr, from.name, from.cidr, to.cidr, from.name
        ));
    }
    if from.ipip_mode.enabled() != to.ipip_mode.enabled() || from.vxlan_mode.enabled() != to.vxlan_mode.enabled() {
        warnings.push(format!(
            "encapsulation changes from {} to {}: nodes' tunnel devices and addresses change with it",
            from.encap_label(),
            to.encap_label()
        ));
    }

    let via = if input.operator { "Installation default (operator)" } else { "Calico API" }.to_string();
    let mut steps = Vec::new();
    if create_target {
        steps.push(PoolStep::CreatePool { name: to.name.clone(), cidr: to.cidr.to_string(), via: via.clone() });
    } else {
        steps.push(PoolStep::UseExistingPool { name: to.name.clone(), cidr: to.cidr.to_string() });
    }
    steps.push(PoolStep::DisablePool { name: from.name.clone(), via: via.clone() });
    let canaries =
        if input.canary_per_node { input.nodes.iter().filter(|n| !n.unschedulable).count().max(1) } else { 1 };
    steps.push(PoolStep::Canary { pods: canaries });
    steps.push(PoolStep::MovePods { workloads: moves.len(), pods: moves.iter().map(|m| m.pods.len()).sum() });
    steps.push(PoolStep::WaitForTunnelAddresses { pool: from.name.clone() });
    steps.push(PoolStep::DeletePool { name: from.name.clone(), via });

    Ok(Plan { via_operator: input.operator, from, to, create_target, steps, moves, skipped, blockers, warnings })
}

/// Build the target pool: copied from the old one with overrides
/// (`--to`), or an existing enabled pool (`--to-pool`).
fn resolve_target(input: &PlanInput, from: &Pool, warnings: &mut Vec<String>) -> Result<(Pool, bool), Vec<String>> {
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

/// calicoctl's (and the operator's) rules for a new pool.
fn validate_new_pool(to: &Pool, from: &Pool) -> Vec<String> {
    let mut reasons = Vec::new();
    let v4 = to.cidr.addr().is_ipv4();
    if v4 != from.cidr.addr().is_ipv4() {
        reasons.push(format!(
            "--to {} is {} but IPPool {} ({}) is {}: a migration stays within one IP family",
            to.cidr,
            if v4 { "IPv4" } else { "IPv6" },
            from.name,
            from.cidr,
            if v4 { "IPv6" } else { "IPv4" }
        ));
    }
    let (lo, hi) = block_size_range(v4);
    if to.block_size < lo || to.block_size > hi {
        reasons.push(format!(
            "blockSize {} is out of range: {} pools need {lo}..={hi}",
            to.block_size,
            if v4 { "IPv4" } else { "IPv6" }
        ));
    } else if to.block_size < to.cidr.prefix_len() {
        reasons.push(format!(
            "--to {} is smaller than one block (/{}); use a larger CIDR or a larger --block-size",
            to.cidr, to.block_size
        ));
    }
    if is_link_local(&to.cidr) {
        reasons.push(format!("--to {} overlaps the link-local range, which Calico does not allow", to.cidr));
    }
    if !v4 && to.ipip_mode.enabled() {
        reasons.push(
            "IPv6 pools cannot use IPIP; use --ipip-mode Never (and --vxlan-mode if you need encapsulation)".into(),
        );
    }
    if to.ipip_mode.enabled() && to.vxlan_mode.enabled() {
        reasons.push(format!(
            "IPIP ({}) and VXLAN ({}) cannot both be enabled; set one of --ipip-mode/--vxlan-mode to Never",
            to.ipip_mode.as_str(),
            to.vxlan_mode.as_str()
        ));
    }
    if to.node_selector.trim().is_empty() {
        reasons.push("--node-selector must not be empty (use all())".into());
    } else if !balanced(&to.node_selector) {
        reasons.push(format!(
            "--node-selector {:?} is not a valid Calico selector: unbalanced brackets or quotes",
            to.node_selector
        ));
    }
    if !is_dns_subdomain(&to.name) {
        reasons.push(format!("--name {:?} is not a valid object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", to.name));
    }
    reasons
}

/// Brackets and quotes pair up (outside quotes); anything else is left to Calico.
fn balanced(s: &str) -> bool {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '{' | '[') => stack.push(c),
            (None, ')') if stack.pop() != Some('(') => return false,
            (None, '}') if stack.pop() != Some('{') => return false,
            (None, ']') if stack.pop() != Some('[') => return false,
            _ => {}
        }
    }
    quote.is_none() && stack.is_empty()
}

/// A Kubernetes object name (RFC 1123 subdomain), as IPPool names must be.
fn is_dns_subdomain(name: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && ok_end(name.chars().next())
        && ok_end(name.chars().last())
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
fn check_target_against_cluster(
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
    let hit: Vec<String> = input
        .nodes
        .iter()
        .flat_map(|n| {
            n.internal_ips.iter().filter(|ip| to.cidr.contains(*ip)).map(move |ip| format!("{} ({ip})", n.name))
        })
        .collect();
    if !hit.is_empty() {
        refusals.push(format!(
            "{} contains node InternalIPs: {}; pod addresses must not collide with node addresses",
            to.cidr,
            name_some(&hit)
        ));
    }
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
fn check_capacity(input: &PlanInput, to: &Pool, moves: &[Move], refusals: &mut Vec<String>) {
    let pods_now = input.inventory.pool_named(&to.name).map(|i| input.inventory.usage[i].pods).unwrap_or(0);
    let pods = moves.iter().map(|m| m.pods.len()).sum::<usize>() + pods_now;
    let nodes = input.nodes.len().max(1) as u128;
    let host_bits = to.cidr.max_prefix_len().saturating_sub(to.block_size) as u32;
    let block = if host_bits >= 128 { u128::MAX } else { 1u128 << host_bits };
    let needed = (pods as u128).saturating_add(nodes.saturating_mul(block));
    let cap = size(&to.cidr);
    if to.block_size >= to.cidr.prefix_len() && cap < needed {
        refusals.push(format!(
            "{} holds {cap} addresses; {pods} pod(s) on {nodes} node(s) need at least {needed} (the pods plus one /{} block of {block} per node); use a larger CIDR",
            to.cidr, to.block_size
        ));
    }
}

/// Namespaces, pods and workload templates pinned to the old pool.
fn pin_blockers(input: &PlanInput, from: &Pool) -> Vec<String> {
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
            pin_key(&ns.pins)
        ));
    }
    for w in input.workloads.iter().filter(|w| names_old(&w.template_pins)) {
        out.push(format!(
            "{} pins its pods to {} in spec.template.metadata.annotations; remove {} from the template (kubectl edit {} -n {} {})",
            w.owner.display(),
            from.name,
            pin_key(&w.template_pins),
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
            pin_key(&p.pins),
            p.owner.display(),
            p.namespace,
            p.name,
            pin_key(&p.pins)
        ));
    }
    out
}

fn pin_key(pins: &PoolPins) -> &'static str {
    if !pins.ip_addrs.is_empty() {
        super::model::ANNOT_IPADDRS
    } else {
        super::model::ANNOT_IPV4POOLS
    }
}

/// Pods on the old pool, grouped into moves by owner (or by node for
/// `--strategy drain`). Returns (moves, skipped, blockers).
pub fn plan_moves(input: &PlanInput, from_idx: usize) -> (Vec<Move>, Vec<Skipped>, Vec<String>) {
    let inv = input.inventory;
    // Pods already inside the target CIDR (a sub-range of the old pool) stay.
    let target_cidr: Option<IpNet> = match &input.to {
        TargetRequest::Cidr(c) => parse_canonical(c).ok(),
        TargetRequest::Pool(n) => inv.pool_named(n).map(|i| inv.pools[i].cidr),
    };
    let mut moves = Vec::new();
    let mut skipped = Vec::new();
    let mut blockers = Vec::new();
    let mut bare = Vec::new();
    let strategy_of: BTreeMap<&Owner, &str> =
        input.workloads.iter().map(|w| (&w.owner, w.update_strategy.as_str())).collect();
    // Pods that will be evicted rather than rolled: PDBs matter for those.
    let mut evicted: Vec<&PodInfo> = Vec::new();
    let mut drained: BTreeMap<String, Vec<&PodInfo>> = BTreeMap::new();

    for (owner, pods) in inv.pods_by_owner(from_idx) {
        let pods: Vec<&PodInfo> = pods
            .into_iter()
            .filter(|p| !p.terminating && input.pod_filter.is_none_or(|f| f.contains(&p.key())))
            .filter(|p| target_cidr.is_none_or(|t| !p.ips.iter().any(|ip| t.contains(ip))))
            .collect();
        if pods.is_empty() {
            continue;
        }
        let keys = |ps: &[&PodInfo]| ps.iter().map(|p| p.key()).collect::<Vec<_>>();
        let uids = |ps: &[&PodInfo]| ps.iter().map(|p| p.uid.clone()).collect::<Vec<_>>();
        let mk = |kind, note: Option<String>, ps: &[&PodInfo]| Move {
            target: owner.display(),
            kind,
            owner: Some(owner.clone()),
            pods: keys(ps),
            pod_uids: uids(ps),
            note,
        };
        match owner.kind {
            OwnerKind::Static => {
                for p in &pods {
                    skipped.push(Skipped {
                        pod: p.key(),
                        reason: "static (mirror) pod: it cannot be moved through the API; restart it on its node"
                            .into(),
                    });
                }
            }
            OwnerKind::Job => match input.jobs {
                JobsPolicy::Wait => {
                    moves.push(mk(MoveKind::WaitJob, Some("waits for the Job to finish".into()), &pods))
                }
                JobsPolicy::Skip => {
                    for p in &pods {
                        skipped.push(Skipped {
                            pod: p.key(),
                            reason: format!(
                                "{} left running (--jobs skip); the old pool is kept until it finishes",
                                owner.display()
                            ),
                        });
                    }
                }
                JobsPolicy::Evict => {
                    evicted.extend(pods.iter().copied());
                    moves.push(mk(
                        MoveKind::Evict,
                        Some("--jobs evict: the Job starts a new pod; counts against its backoffLimit".into()),
                        &pods,
                    ));
                }
            },
            OwnerKind::Bare => {
                if input.force {
                    evicted.extend(pods.iter().copied());
                    moves.push(mk(
                        MoveKind::EvictForGood,
                        Some("bare pod: nothing re-creates it, it is gone for good (--force)".into()),
                        &pods,
                    ));
                } else {
                    bare.extend(keys(&pods));
                }
            }
            OwnerKind::Deployment | OwnerKind::StatefulSet | OwnerKind::DaemonSet => {
                let on_delete = strategy_of.get(&owner).is_some_and(|s| *s == "OnDelete");
                let use_rollout = owner.kind == OwnerKind::DaemonSet || input.strategy == Strategy::Rollout;
                if use_rollout && !on_delete {
                    let note = (owner.kind == OwnerKind::DaemonSet && input.strategy != Strategy::Rollout).then(|| {
                        "DaemonSet pods are always rolled (eviction would not move them off the node)".to_string()
                    });
                    moves.push(mk(MoveKind::Rollout, note, &pods));
                } else if input.strategy == Strategy::Drain && owner.kind != OwnerKind::DaemonSet {
                    for p in &pods {
                        drained.entry(p.node.clone().unwrap_or_default()).or_default().push(p);
                    }
                } else {
                    evicted.extend(pods.iter().copied());
                    let note = on_delete.then(|| {
                        "updateStrategy OnDelete: a rollout would not replace pods, so they are evicted".to_string()
                    });
                    moves.push(mk(MoveKind::Evict, note, &pods));
                }
            }
            OwnerKind::ReplicaSet | OwnerKind::Other => {
                if input.strategy == Strategy::Drain {
                    for p in &pods {
                        drained.entry(p.node.clone().unwrap_or_default()).or_default().push(p);
                    }
                } else {
                    evicted.extend(pods.iter().copied());
                    moves.push(mk(
                        MoveKind::Evict,
                        Some(format!("{} has no rollout; its controller re-creates evicted pods", owner.display())),
                        &pods,
                    ));
                }
            }
        }
    }
    for (node, pods) in drained {
        evicted.extend(pods.iter().copied());
        moves.push(Move {
            target: format!("Node {node}"),
            kind: MoveKind::Drain,
            owner: None,
            pods: pods.iter().map(|p| p.key()).collect(),
            pod_uids: pods.iter().map(|p| p.uid.clone()).collect(),
            note: Some("cordon, evict, uncordon".into()),
        });
    }
    if !bare.is_empty() {
        blockers.push(format!(
            "bare pod(s) with no controller: {}; moving them deletes them for good (nothing re-creates them). Re-run with --force to evict them anyway, or delete/recreate them yourself",
            name_some(&bare)
        ));
    }
    let evicted_keys: BTreeSet<String> = evicted.iter().map(|p| p.key()).collect();
    for pdb in input.pdbs.iter().filter(|p| p.never_allows_disruption()) {
        let hit: Vec<String> = pdb.pods.iter().filter(|k| evicted_keys.contains(*k)).cloned().collect();
        if !hit.is_empty() {
            blockers.push(format!(
                "PodDisruptionBudget {}/{} allows no disruption even with all {} pods healthy, so evicting {} can never succeed; relax it (e.g. maxUnavailable: 1) or use --strategy rollout",
                pdb.namespace,
                pdb.name,
                pdb.expected_pods,
                name_some(&hit)
            ));
        }
    }
    // Rollouts first (least disruptive, each guarded by its own strategy),
    // then evictions, drains, and Jobs last: they may take longest.
    moves.sort_by_key(|m| match m.kind {
        MoveKind::Rollout => 0,
        MoveKind::Evict => 1,
        MoveKind::Drain => 2,
        MoveKind::EvictForGood => 3,
        MoveKind::WaitJob => 4,
    });
    (moves, skipped, blockers)
}

/// Every node must be selected by some enabled pool once the old pool is
/// disabled, or its new pods get no address.
fn node_coverage(
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

/// Evaluate the common forms of a Calico selector: `all()`, `!all()`,
/// `has(k)`, `!has(k)`, `k == 'v'`, `k != 'v'`, joined by `&&` or `||`.
/// Anything else (parentheses, `in`, ...) returns None.
pub fn eval_selector(selector: &str, labels: &BTreeMap<String, String>) -> Option<bool> {
    let s = selector.trim();
    if s.is_empty() {
        return Some(true);
    }
    if s.contains('(') && s.replace("all()", "").replace("has(", "").contains('(') {
        return None;
    }
    let mut any = false;
    for alt in s.split("||") {
        let mut all = true;
        for term in alt.split("&&") {
            all &= eval_term(term.trim(), labels)?;
        }
        any |= all;
    }
    Some(any)
}

fn eval_term(t: &str, labels: &BTreeMap<String, String>) -> Option<bool> {
    let unquote = |v: &str| {
        let v = v.trim();
        let q =
            v.len() >= 2 && ((v.starts_with('\'') && v.ends_with('\'')) || (v.starts_with('"') && v.ends_with('"')));
        q.then(|| v[1..v.len() - 1].to_string())
    };
    let key_ok = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if t == "all()" {
        return Some(true);
    }
    if t == "!all()" {
        return Some(false);
    }
    if let Some(k) = t.strip_prefix("!has(").and_then(|r| r.strip_suffix(')')) {
        return key_ok(k.trim()).then(|| !labels.contains_key(k.trim()));
    }
    if let Some(k) = t.strip_prefix("has(").and_then(|r| r.strip_suffix(')')) {
        return key_ok(k.trim()).then(|| labels.contains_key(k.trim()));
    }
    for (op, negate) in [("!=", true), ("==", false)] {
        if let Some((k, v)) = t.split_once(op) {
            let k = k.trim();
            let v = unquote(v)?;
            if !key_ok(k) {
                return None;
            }
            let eq = labels.get(k) == Some(&v);
            return Some(eq != negate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inventory::tests::pod;
    use crate::core::model::{Ipam, SourcedCidr};

    fn seed_pools() -> Vec<Pool> {
        let mut old = Pool::new("default-ipv4-ippool", "192.168.0.0/16".parse().unwrap());
        old.ipip_mode = EncapMode::Always;
        old.nat_outgoing = true;
        vec![old]
    }

    fn seed_pods() -> Vec<PodInfo> {
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

    fn nodes() -> Vec<NodeInfo> {
        (0..3)
            .map(|i| NodeInfo {
                name: format!("kubesim-node-{i}"),
                labels: [("kubernetes.io/os".to_string(), "linux".to_string())].into(),
                internal_ips: vec![format!("172.18.0.{}", i + 2).parse().unwrap()],
                ..Default::default()
            })
            .collect()
    }

    fn networks() -> ClusterNetworks {
        ClusterNetworks {
            pod_cidrs: vec![SourcedCidr {
                cidr: "10.0.0.0/8".parse().unwrap(),
                source: "ConfigMap kube-system/kubeadm-config (networking.podSubnet)".into(),
            }],
            service_cidrs: vec![SourcedCidr {
                cidr: "10.96.0.0/12".parse().unwrap(),
                source: "ServiceCIDR kubernetes".into(),
            }],
        }
    }

    struct World {
        inv: Inventory,
        nodes: Vec<NodeInfo>,
        namespaces: Vec<NamespaceInfo>,
        nets: ClusterNetworks,
        workloads: Vec<WorkloadInfo>,
        pdbs: Vec<PdbInfo>,
    }

    fn world(pools: Vec<Pool>, pods: Vec<PodInfo>) -> World {
        World {
            inv: Inventory::build(pools, pods, Ipam::default()),
            nodes: nodes(),
            namespaces: vec![],
            nets: networks(),
            workloads: vec![],
            pdbs: vec![],
        }
    }

    fn input<'a>(w: &'a World, to: TargetRequest) -> PlanInput<'a> {
        PlanInput {
            from: "default-ipv4-ippool",
            to,
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
        }
    }

    fn cidr(s: &str) -> TargetRequest {
        TargetRequest::Cidr(s.into())
    }

    fn refusals(i: &PlanInput) -> String {
        make_plan(i).expect_err("should be refused").join("\n")
    }

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
    }

    #[test]
    fn bare_pods_need_force() {
        let w = world(seed_pools(), seed_pods());
        let plan = make_plan(&input(&w, cidr("10.0.0.0/16"))).unwrap();
        assert_eq!(plan.blockers.len(), 1);
        assert!(
            plan.blockers[0].contains("shop/debug") && plan.blockers[0].contains("--force"),
            "{}",
            plan.blockers[0]
        );
    }

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
        assert_eq!(cidr_to_name(&"fd00:10::/64".parse().unwrap()), "fd00.10..-64");
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
        };
        let plan = make_plan(&input(&w, cidr("100.96.0.0/16"))).unwrap();
        assert_eq!(plan.moves.len(), 1);
        assert_eq!(plan.moves[0].pods, vec!["shop/web-1"]);
        assert!(plan.warnings.iter().any(|w| w.contains("lies inside default-ipv4-ippool")), "{:?}", plan.warnings);
        assert!(refusals(&input(&w, cidr("100.0.0.0/8"))).contains("overlaps IPPool default-ipv4-ippool"));
    }

    #[test]
    fn refuses_service_cidr_and_node_ips() {
        let w = world(seed_pools(), seed_pods());
        assert!(refusals(&input(&w, cidr("10.96.0.0/16")))
            .contains("overlaps the Service CIDR 10.96.0.0/12 (from ServiceCIDR kubernetes)"));
        let mut w = world(seed_pools(), seed_pods());
        w.nets.pod_cidrs.clear();
        assert!(refusals(&input(&w, cidr("172.18.0.0/16")))
            .contains("contains node InternalIPs: kubesim-node-0 (172.18.0.2)"));
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
            owner: Owner {
                kind: OwnerKind::Deployment,
                other_kind: None,
                namespace: "legacy".into(),
                name: "old-app".into(),
            },
            template_pins: PoolPins { pools: vec!["192.168.0.0/16".into()], ..Default::default() },
            update_strategy: "RollingUpdate".into(),
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
    fn unsatisfiable_pdb_blocks_evictions_only() {
        let mut w = world(seed_pools(), seed_pods());
        w.pdbs = vec![PdbInfo {
            namespace: "shop".into(),
            name: "web".into(),
            disruptions_allowed: 0,
            current_healthy: 1,
            expected_pods: 1,
            pods: vec!["shop/web-1".into()],
        }];
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        assert!(make_plan(&i).unwrap().blockers.is_empty(), "rollouts do not go through PDBs");
        i.strategy = Strategy::Evict;
        let b = make_plan(&i).unwrap().blockers;
        assert!(b[0].contains("PodDisruptionBudget shop/web allows no disruption"), "{b:?}");
        // A PDB that is at zero only because a pod is unhealthy is transient.
        w.pdbs[0].current_healthy = 0;
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        i.strategy = Strategy::Evict;
        assert!(make_plan(&i).unwrap().blockers.is_empty());
    }

    #[test]
    fn strategies_evict_drain_on_delete_and_jobs() {
        let mut w = world(seed_pools(), seed_pods());
        w.workloads = vec![WorkloadInfo {
            owner: Owner {
                kind: OwnerKind::StatefulSet,
                other_kind: None,
                namespace: "shop".into(),
                name: "db".into(),
            },
            template_pins: PoolPins::default(),
            update_strategy: "OnDelete".into(),
        }];
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let plan = make_plan(&i).unwrap();
        let db = plan.moves.iter().find(|m| m.target == "StatefulSet shop/db").unwrap();
        assert_eq!(db.kind, MoveKind::Evict);
        assert!(db.note.as_deref().unwrap().contains("OnDelete"));

        i.strategy = Strategy::Drain;
        i.jobs = JobsPolicy::Skip;
        let plan = make_plan(&i).unwrap();
        let kinds: Vec<(String, MoveKind)> = plan.moves.iter().map(|m| (m.target.clone(), m.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("DaemonSet shop/agent".into(), MoveKind::Rollout),
                ("Node node-0".into(), MoveKind::Drain),
                ("Bare shop/debug".into(), MoveKind::EvictForGood)
            ]
        );
        assert_eq!(plan.moves[1].pods.len(), 3);
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.skipped[0].reason.contains("--jobs skip"));

        i.strategy = Strategy::Evict;
        i.jobs = JobsPolicy::Evict;
        let plan = make_plan(&i).unwrap();
        assert!(plan.moves.iter().filter(|m| m.kind == MoveKind::Evict).count() == 4, "{:?}", plan.moves);
    }

    #[test]
    fn static_pods_are_reported_and_filters_apply() {
        let mut pods = seed_pods();
        pods.push(pod("kube-system", "etcd-node-0", "192.168.0.20", OwnerKind::Static, "etcd-node-0"));
        let w = world(seed_pools(), pods);
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let plan = make_plan(&i).unwrap();
        assert!(plan.skipped.iter().any(|s| s.pod == "kube-system/etcd-node-0" && s.reason.contains("static")));
        let only: BTreeSet<String> = ["shop/web-1".to_string()].into();
        i.pod_filter = Some(&only);
        let plan = make_plan(&i).unwrap();
        assert_eq!(plan.pod_count(), 1);
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

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> =
            [("a".to_string(), "1".to_string()), ("b".to_string(), "x".to_string())].into();
        assert_eq!(eval_selector("all()", &labels), Some(true));
        assert_eq!(eval_selector("!all()", &labels), Some(false));
        assert_eq!(eval_selector("has(a)", &labels), Some(true));
        assert_eq!(eval_selector("!has(a)", &labels), Some(false));
        assert_eq!(eval_selector("a == '1' && b == \"x\"", &labels), Some(true));
        assert_eq!(eval_selector("a == '2' || b != 'y'", &labels), Some(true));
        assert_eq!(eval_selector("a == '2' || has(c)", &labels), Some(false));
        assert_eq!(eval_selector("(a == '1')", &labels), None);
        assert_eq!(eval_selector("a in {'1'}", &labels), None);
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
}
