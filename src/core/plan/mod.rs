//! The migration plan, decided from plain data: is the target pool valid,
//! what blocks the move, and which workloads and pods move how, in order.
//!
//! Nothing here does I/O. `commands::migrate` gathers a snapshot, calls
//! [`make_plan`], shows the result and then executes it; after the old pool
//! is disabled it calls [`plan_moves`] again on a fresh snapshot so pods
//! created in between are moved too.
//!
//! This module holds the plan's types and [`make_plan`]; `target` validates
//! the target pool and `moves` decides what moves how.

use std::collections::BTreeSet;

use serde::Serialize;

use super::cidr::within;
use super::gitops::gitops_blocker;
use super::inventory::Inventory;
use super::model::{ClusterNetworks, CniPools, EncapMode, NamespaceInfo, NodeInfo, Owner, PdbInfo, Pool, WorkloadInfo};

mod blockers;
mod budgets;
mod canary;
mod collisions;
pub mod connectivity;
mod estimate;
mod moves;
mod new_pool;
mod pacing;
mod pairs;
mod repace;
mod target;

use blockers::{node_coverage, pin_blockers};
pub use budgets::Guard;
pub use canary::canary_nodes;
pub use estimate::Estimate;
pub use moves::plan_moves;
pub use pairs::{pair_as_recorded, pair_by_family, PoolPair};
pub use repace::repace;
use target::{check_capacity, check_target_against_cluster, resolve_target};

/// How pods of controllers that support it are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
    /// Most pods down at once because of this move (evictions go in waves of this size).
    pub at_once: usize,
    /// Replicas added before the evictions and taken away after (`--surge`).
    #[serde(skip_serializing_if = "is_zero")]
    pub surge: usize,
    /// Sequential rounds of pod start-up the move takes.
    pub waves: usize,
    /// Moves in one lane run one after another (a PodDisruptionBudget over
    /// several workloads is one budget); lanes run side by side.
    pub lane: String,
    /// The PodDisruptionBudgets over these pods, checked again before each wave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
    /// Extra pods a rollout starts beyond the replica count (its maxSurge).
    #[serde(skip_serializing_if = "is_zero")]
    pub rollout_surge: usize,
    /// The workload is expected to have no Ready pod for a while.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime: Option<Downtime>,
}

/// Why a move leaves its workload with no Ready pod, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Downtime {
    pub why: String,
    /// Median seconds from creation to Ready of the workload's pods: about
    /// how long nothing serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_seconds: Option<f64>,
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
    CreatePool {
        name: String,
        cidr: String,
        via: String,
    },
    UseExistingPool {
        name: String,
        cidr: String,
    },
    DisablePool {
        name: String,
        via: String,
    },
    /// `nodes`: where the canary may run (nodes the old pool serves and the new pool selects).
    /// `paths`: what the canary checks, by name; `image`: the image it runs.
    Canary {
        pods: usize,
        nodes: Vec<String>,
        image: String,
        paths: Vec<String>,
    },
    MovePods {
        workloads: usize,
        pods: usize,
    },
    WaitForTunnelAddresses {
        pool: String,
    },
    DeletePool {
        name: String,
        via: String,
    },
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

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub from: &'a str,
    pub to: TargetRequest,
    /// The other IP family's old pool and target, migrated in the same run.
    pub also: Vec<(String, TargetRequest)>,
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
    /// The canary's image.
    pub canary_image: &'a str,
    /// Lanes moved at once (`--max-parallel`); None: every lane.
    pub parallel: Option<usize>,
    /// Most pods down at once across the cluster (`--max-unavailable`).
    pub max_unavailable: crate::core::budget::IntOrPercent,
    /// Scale up a workload whose budget allows nothing, for its move (`--surge`).
    pub surge: bool,
    /// Workloads of two or more replicas without a PodDisruptionBudget may
    /// have every pod down at once (`--allow-downtime`).
    pub allow_downtime: bool,
    /// CIDRs of IPReservations: the part inside the target is not usable.
    pub reservations: &'a [ipnet::IpNet],
    /// The GitOps controller syncing Installation `default` (operator installs).
    pub installation_gitops: Option<String>,
}

/// The plan `--dry-run` prints and `migrate` executes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub from: Pool,
    pub to: Pool,
    /// The target pool does not exist yet.
    pub create_target: bool,
    /// The other IP family's pair, when both are migrated in one run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<PoolPair>,
    /// Pools are changed through Installation `default`.
    pub via_operator: bool,
    pub steps: Vec<PoolStep>,
    pub moves: Vec<Move>,
    pub skipped: Vec<Skipped>,
    /// Things to fix before anything can change.
    pub blockers: Vec<String>,
    pub warnings: Vec<String>,
    /// How long the moves take at best, as the budgets allow.
    pub estimate: Estimate,
}

#[cfg(test)]
impl Move {
    /// A move of no pods in `lane`, for tests: change what the test is about.
    pub fn in_lane(target: &str, kind: MoveKind, lane: &str, waves: usize) -> Move {
        Move {
            target: target.into(),
            kind,
            owner: None,
            pods: vec![],
            pod_uids: vec![],
            note: None,
            at_once: 1,
            surge: 0,
            waves,
            lane: lane.into(),
            guards: vec![],
            rollout_surge: 0,
            downtime: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Move {
    /// `Deployment shop/web`, or `Node n1 (Deployment shop/web)` for a drain step.
    pub fn label(&self) -> String {
        match (&self.kind, &self.owner) {
            (MoveKind::Drain, Some(o)) => format!("{} ({})", self.target, o.display()),
            _ => self.target.clone(),
        }
    }
}

impl Plan {
    pub fn pod_count(&self) -> usize {
        self.moves.iter().map(|m| m.pods.len()).sum()
    }

    /// The moves expected to leave their workload with no Ready pod.
    pub fn downtime(&self) -> impl Iterator<Item = (&Move, &Downtime)> {
        self.moves.iter().filter_map(|m| m.downtime.as_ref().map(|d| (m, d)))
    }

    /// Every (old pool, new pool) pair: the first one, then `also`.
    pub fn pairs(&self) -> Vec<(&Pool, &Pool, bool)> {
        std::iter::once((&self.from, &self.to, self.create_target))
            .chain(self.also.iter().map(|p| (&p.from, &p.to, p.create_target)))
            .collect()
    }

    /// The old pools' CIDRs.
    pub fn old_cidrs(&self) -> Vec<ipnet::IpNet> {
        self.pairs().iter().map(|(f, _, _)| f.cidr).collect()
    }

    /// The new pools' CIDRs.
    pub fn new_cidrs(&self) -> Vec<ipnet::IpNet> {
        self.pairs().iter().map(|(_, t, _)| t.cidr).collect()
    }
}

/// Validate the targets and build the plan. `Err` lists every reason a
/// target is refused (each one says what to do); blockers of the move
/// itself are returned inside the plan, so `--dry-run` can show them.
pub fn make_plan(input: &PlanInput) -> Result<Plan, Vec<String>> {
    let inv = input.inventory;
    let mut warnings = Vec::new();
    let mut refusals = Vec::new();
    // Each pair is checked on its own, as if it were the only one.
    let requests: Vec<PlanInput> = std::iter::once(input.clone())
        .chain(input.also.iter().map(|(f, t)| PlanInput { from: f, to: t.clone(), also: vec![], ..input.clone() }))
        .collect();
    let mut pairs: Vec<(usize, PoolPair)> = Vec::new();
    for pi in &requests {
        let Some(from_idx) = inv.pool_named(pi.from) else {
            let known: Vec<&str> = inv.pools.iter().map(|p| p.name.as_str()).collect();
            refusals.push(format!("IPPool {:?} not found; pools: {}", pi.from, known.join(", ")));
            continue;
        };
        let from = inv.pools[from_idx].clone();
        match resolve_target(pi, &from, &mut warnings) {
            Ok((to, create_target)) => {
                check_target_against_cluster(pi, &from, &to, create_target, &mut refusals);
                pairs.push((from_idx, PoolPair { from, to, create_target }));
            }
            Err(r) => refusals.extend(r),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }

    let from_idxs: Vec<usize> = pairs.iter().map(|(i, _)| *i).collect();
    let (moves, skipped, mut blockers, move_warnings) = plan_moves(input, &from_idxs);
    warnings.extend(move_warnings);
    for (pi, (_, pair)) in requests.iter().zip(&pairs) {
        check_capacity(pi, &pair.to, &moves, &mut refusals);
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }

    let mut canary_nodes_all: Option<Vec<String>> = None;
    for (pi, (from_idx, pair)) in requests.iter().zip(&pairs) {
        let (from, to) = (&pair.from, &pair.to);
        blockers.extend(pin_blockers(pi, from));
        if let Some(manager) = from.gitops.as_deref().filter(|_| !input.force) {
            blockers.push(gitops_blocker(&format!("IPPool {}", from.name), manager));
        }
        if let Some(cni) = &input.cni_pools {
            if cni.pools.iter().any(|p| p == &from.name || p == &from.cidr.to_string()) {
                blockers.push(format!(
                    "the CNI config in {} sets ipv4_pools/ipv6_pools to {:?}, which names the old pool: once it is disabled every new pod would fail. Edit it to name {} (and roll calico-node), then re-run",
                    cni.source, cni.pools, to.name
                ));
            }
        }
        node_coverage(pi, *from_idx, to, &mut blockers, &mut warnings);
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
        // With two families the canary must prove both on the same pod.
        match canary_nodes(input.nodes, from, to) {
            Ok(c) => {
                warnings.extend(c.warning);
                canary_nodes_all = Some(match canary_nodes_all {
                    None => c.nodes,
                    Some(prev) => prev.into_iter().filter(|n| c.nodes.contains(n)).collect(),
                });
            }
            Err(why) => blockers.push(why),
        }
    }
    if let Some(manager) = input.installation_gitops.as_deref().filter(|_| input.operator && !input.force) {
        blockers.push(gitops_blocker("Installation default", manager));
    }
    let targets: Vec<&Pool> = pairs.iter().map(|(_, p)| &p.to).collect();
    warnings.extend(collisions::unknown_service_range(input.networks, &targets));
    let canary = canary_nodes_all.unwrap_or_default();
    if canary.is_empty() && pairs.len() > 1 && !blockers.iter().any(|b| b.contains("canary")) {
        blockers.push(
            "the canary has no node to run on: no schedulable linux node is served by both old pools and selected by both new pools".into(),
        );
    }

    let via = if input.operator { "Installation default (operator)" } else { "Calico API" }.to_string();
    let mut steps = Vec::new();
    for (_, p) in &pairs {
        if p.create_target {
            steps.push(PoolStep::CreatePool { name: p.to.name.clone(), cidr: p.to.cidr.to_string(), via: via.clone() });
        } else {
            steps.push(PoolStep::UseExistingPool { name: p.to.name.clone(), cidr: p.to.cidr.to_string() });
        }
    }
    // The canary runs while the old pool still serves: a failing one leaves
    // the cluster as it was.
    let pods = if input.canary_per_node { canary.len() } else { 1 };
    let families: Vec<bool> = pairs.iter().map(|(_, p)| p.to.cidr.addr().is_ipv6()).collect();
    let paths = connectivity::canary_paths(&families).iter().map(|p| p.name()).collect();
    steps.push(PoolStep::Canary { pods, nodes: canary, image: input.canary_image.to_string(), paths });
    for (_, p) in &pairs {
        steps.push(PoolStep::DisablePool { name: p.from.name.clone(), via: via.clone() });
    }
    steps.push(PoolStep::MovePods { workloads: moves.len(), pods: moves.iter().map(|m| m.pods.len()).sum() });
    for (_, p) in &pairs {
        steps.push(PoolStep::WaitForTunnelAddresses { pool: p.from.name.clone() });
    }
    for (_, p) in &pairs {
        steps.push(PoolStep::DeletePool { name: p.from.name.clone(), via: via.clone() });
    }

    let moving: BTreeSet<&str> = moves.iter().flat_map(|m| m.pods.iter().map(String::as_str)).collect();
    let starts: Vec<f64> = inv
        .pods
        .iter()
        .filter(|p| moving.contains(p.key().as_str()))
        .filter_map(|p| p.ready_after.map(f64::from))
        .collect();
    let width = estimate::max_unavailable(input.max_unavailable, moves.iter().map(|m| m.pods.len()).sum());
    let estimate = estimate::estimate(&moves, input.parallel, width, estimate::fastest(&starts));
    let mut pairs = pairs.into_iter().map(|(_, p)| p);
    let first = pairs.next().expect("at least one pair");
    Ok(Plan {
        via_operator: input.operator,
        from: first.from,
        to: first.to,
        create_target: first.create_target,
        also: pairs.collect(),
        steps,
        moves,
        skipped,
        blockers,
        warnings,
        estimate,
    })
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
