//! The phase machine: one function per phase, each skipped when the record
//! says it is done and the cluster agrees; `checkpoint` saves progress.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::cluster::shared_watch::SharedWatch;

use ipnet::IpNet;

use super::checkpoint::checkpoint;
use super::{moves, Ctx, Facts, Summary};
use crate::cluster::calico::Kind;
use crate::cluster::canary_paths::FamilyPools;
use crate::cluster::events::{self, EventTarget};
use crate::cluster::pools::PoolWriter;
use crate::cluster::{canary, leaks, movers};
use crate::core::cidr::CidrSet;
use crate::core::plan::{self, connectivity, Plan};
use crate::core::state::{MigrationState, Phase};
use crate::error::{Error, Result};

/// The phases, in order; each one is skipped when the record says it is
/// done and reality agrees.
pub(crate) async fn execute(ctx: &Ctx<'_>, plan: &Plan, mut state: MigrationState, facts: &Facts) -> Result<Summary> {
    let started = Instant::now();
    let p = ctx.printer;
    let writer = ctx.writer;
    if state.phase > Phase::Started {
        p.note(format!(
            "Resuming the migration from {} to {} at phase {}.",
            state.old_pools(),
            state.new_pools(),
            state.phase.as_str()
        ));
    }
    let phase = state.phase;
    checkpoint(ctx, &mut state, phase).await?;
    canary::cleanup_leftovers(ctx.cluster).await;
    movers::uncordon_ours(ctx.cluster).await?;
    movers::unsurge_ours(ctx.cluster).await?;

    // Rules first: once the new pool is enabled, new pods may land in it.
    if ctx.opts.update_rules && state.phase < Phase::SourceDeleted {
        super::rules::update(ctx, plan, &mut state).await?;
    }
    phase_target_ready(ctx, writer, plan, &mut state).await?;
    // The canary runs while the old pool still hands out addresses, so a
    // failing canary leaves the cluster as it was. A record at
    // SourceDisabled may come from an older version that disabled the old
    // pool before its canary: it runs the canary again (see `Phase`).
    if state.phase.canary_due() {
        phase_canary(ctx, plan, facts, &mut state).await?;
    }
    phase_source_disabled(ctx, writer, plan, &mut state).await?;
    let moving_started = Instant::now();
    let (workloads_moved, pods_moved, skipped, max_lanes_moving) = phase_move_pods(ctx, plan, &mut state).await?;
    let moving_seconds = moving_started.elapsed().as_secs_f64();
    let filtered = ctx.cluster.namespace.is_some() || ctx.opts.selector.is_some();
    let mut summary = Summary {
        kind: "IPPoolMigration",
        from: state.old_pools(),
        to: state.new_pools(),
        phase: state.phase,
        workloads_moved,
        pods_moved,
        failed: state.failed.clone(),
        skipped: skipped.clone(),
        old_pool_deleted: false,
        rule_changes: state.rule_changes.iter().map(|c| c.describe()).collect(),
        seconds: 0.0,
        moving_seconds,
        estimate_seconds: plan.estimate.seconds,
        max_lanes_moving,
        api_requests: 0,
        api_writes: 0,
    };
    if filtered || !skipped.is_empty() {
        let why =
            if filtered { "only pods matching -n/-l were moved" } else { "some pods were skipped (listed above)" };
        p.warn(format!(
            "IPPool {} is kept, disabled: {why}. Run again without filters (or once they are gone) to finish.",
            plan.from.name
        ));
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    phase_drain(ctx, plan, &mut state).await?;
    phase_delete_source(ctx, writer, plan, &mut state).await?;
    checkpoint(ctx, &mut state, Phase::Done).await?;
    summary.phase = Phase::Done;
    summary.old_pool_deleted = true;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn pool_event<'a>(name: &'a str, api_version: &'a str) -> EventTarget<'a> {
    EventTarget { api_version, kind: "IPPool", namespace: None, name }
}

async fn phase_target_ready(
    ctx: &Ctx<'_>,
    writer: &PoolWriter<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    for (from, to, _) in plan.pairs() {
        // Re-checked even when recorded: someone may have deleted it since.
        writer.ensure_created(to).await?;
        if state.phase < Phase::TargetReady {
            let event = format!("kubectl-ippool migrate: target pool for moving pods off {}", from.name);
            let note = format!("IPPool {} ({}) ready.", to.name, to.cidr);
            pool_event_and_note(ctx, &to.name, &event, &note).await;
        }
    }
    if state.phase < Phase::TargetReady {
        checkpoint(ctx, state, Phase::TargetReady).await?;
    }
    Ok(())
}

/// Time between the new pool and the old pool's disable, for calico-node
/// (and between the old pool's re-enable and the new pool's disable, in a
/// rollback).
pub(crate) const TUNNEL_ALLOCATOR_SETTLE: Duration = Duration::from_secs(3);

async fn phase_source_disabled(
    ctx: &Ctx<'_>,
    writer: &PoolWriter<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    if state.phase < Phase::SourceDisabled {
        // calico-node's tunnel-address allocator drops a pool change that
        // arrives while it still handles the previous one (the new pool), and
        // looks again only on the next change: its tunnel address would then
        // stay in the disabled pool and the drain would wait for ever.
        tokio::time::sleep(TUNNEL_ALLOCATOR_SETTLE).await;
    }
    for (from, to, _) in plan.pairs() {
        writer.set_disabled(&from.name, true).await?;
        if state.phase < Phase::SourceDisabled {
            let event = format!("kubectl-ippool migrate: disabled; pods move to {}", to.name);
            let note = format!("IPPool {} disabled: new pods get addresses from {}.", from.name, to.name);
            pool_event_and_note(ctx, &from.name, &event, &note).await;
        }
    }
    if state.phase < Phase::SourceDisabled {
        checkpoint(ctx, state, Phase::SourceDisabled).await?;
    }
    Ok(())
}

/// A pool step is done: an Event on the pool, a line for the user.
async fn pool_event_and_note(ctx: &Ctx<'_>, pool: &str, event: &str, note: &str) {
    let av = ctx.calico.resource(Kind::IPPool).api_version;
    events::record_event(ctx.cluster, pool_event(pool, &av), event).await;
    ctx.printer.note(note);
}

async fn phase_canary(ctx: &Ctx<'_>, plan: &Plan, facts: &Facts, state: &mut MigrationState) -> Result<()> {
    let ns = canary::canary_namespace();
    if let Ok(mut g) = ctx.canary_ns.lock() {
        *g = Some(ns.clone());
    }
    // Only where the old pool serves and the new pool selects: elsewhere the
    // canary would prove nothing, or get another pool's address.
    // With two families, nodes all pools agree on.
    let mut nodes: Option<Vec<String>> = None;
    for (from, to, _) in plan.pairs() {
        let c = plan::canary_nodes(&facts.snap.nodes, from, to)
            .map_err(|why| Error::refused("run the canary", vec![why]))?;
        if let Some(w) = c.warning {
            ctx.printer.warn(w);
        }
        nodes = Some(match nodes {
            None => c.nodes,
            Some(prev) => prev.into_iter().filter(|n| c.nodes.contains(n)).collect(),
        });
    }
    let nodes = nodes.unwrap_or_default();
    if nodes.is_empty() {
        return Err(Error::refused(
            "run the canary",
            vec!["no schedulable linux node is served by every old pool and selected by every new pool".into()],
        ));
    }
    let families: Vec<FamilyPools> = plan
        .pairs()
        .iter()
        .map(|(from, to, _)| FamilyPools {
            ipv6: to.cidr.addr().is_ipv6(),
            new_name: Some(to.name.clone()),
            new_cidr: Some(to.cidr),
            old_name: Some(from.name.clone()),
        })
        .collect();
    let old_enabled = state.phase < Phase::SourceDisabled && plan.pairs().iter().all(|(from, _, _)| !from.disabled);
    let timeout = ctx.opts.timeout.min(Duration::from_secs(300));
    let image = &ctx.opts.canary_image;
    let result =
        canary::run(ctx.cluster, &ns, &nodes, ctx.opts.canary_per_node, &families, old_enabled, image, timeout).await;
    let verdict = result.as_ref().ok().map(|got| connectivity::verdict(&got.results));
    // Gone before anything else happens: the old-pool server must not be
    // taken for a pod to move, and a new pool may only be deleted once the
    // canary's addresses are back.
    canary::cleanup_and_wait(ctx.cluster, &ns, timeout).await;
    if let Ok(mut g) = ctx.canary_ns.lock() {
        *g = None;
    }
    let got = result?;
    let shown: Vec<String> = got
        .addresses
        .iter()
        .map(|(n, ips)| format!("{} on {n}", ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" and ")))
        .collect();
    match verdict {
        Some(Err(failed)) => return super::canary_failed::abandon(ctx, plan, state, &failed).await,
        Some(Ok(warnings)) => {
            for w in warnings {
                ctx.printer.warn(w);
            }
        }
        None => {}
    }
    let passed: Vec<String> =
        got.results.iter().filter(|(_, r)| *r == connectivity::PathResult::Passed).map(|(p, _)| p.name()).collect();
    let (new_node, old_node) = &got.nodes;
    if new_node == old_node && old_enabled {
        ctx.printer.warn(format!(
            "only node {new_node} is served by both pools: the canary's old-pool pod ran on the same node, so the paths between nodes were checked within one node"
        ));
    }
    ctx.printer.note(format!("Canary passed: {}.", shown.join(", ")));
    if !passed.is_empty() {
        ctx.printer.note(format!(
            "Canary paths passed (new-pool pod on {new_node}, old-pool pod on {old_node}): {}.",
            passed.join("; ")
        ));
    }
    checkpoint(ctx, state, Phase::CanaryPassed).await
}

/// Move pods, re-scanning after each round: pods created while the old
/// pool was still enabled, or re-created by a controller, are moved too.
async fn phase_move_pods(
    ctx: &Ctx<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<(usize, usize, Vec<String>, usize)> {
    if state.phase >= Phase::Draining {
        return Ok((0, 0, vec![], 0));
    }
    let mut max_moving = 0;
    let args = ctx.opts;
    let mut workloads_moved = 0;
    let mut pods_moved = 0;
    let mut skipped = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let operator = plan.via_operator;
    for round in 0..3 {
        let facts = Facts::read(ctx.cluster, ctx.calico.clone(), args).await?;
        let inv = &facts.snap.inventory;
        let from_idxs: Vec<usize> = plan.pairs().iter().filter_map(|(f, _, _)| inv.pool_named(&f.name)).collect();
        if from_idxs.is_empty() {
            break;
        }
        let input = facts.plan_input(args, operator);
        let (moves, skip, blockers, _) = plan::plan_moves(&input, &from_idxs);
        if !blockers.is_empty() {
            return Err(Error::refused("move the remaining pods", blockers));
        }
        skipped = skip.iter().map(|s| format!("{}: {}", s.pod, s.reason)).collect();
        for s in &skipped {
            ctx.printer.warn(format!("not moved: {s}"));
        }
        if round == 0 {
            state.total = state.pods_moved + moves.iter().map(|m| m.pods.len()).sum::<usize>();
            state.failed.clear();
            checkpoint(ctx, state, Phase::MovingPods).await?;
        }
        if moves.is_empty() {
            break;
        }
        if round > 0 {
            ctx.printer.note(format!(
                "{} more pod(s) appeared on {}; moving them too.",
                moves.iter().map(|m| m.pods.len()).sum::<usize>(),
                plan.pairs().iter().map(|(f, _, _)| f.name.as_str()).collect::<Vec<_>>().join(" and ")
            ));
        }
        let bar_w = ctx.printer.progress(moves.len() as u64, "workloads");
        let bar_p = ctx.printer.progress(moves.iter().map(|m| m.pods.len() as u64).sum(), "pods");
        let target = plan.pairs().iter().map(|(_, t, _)| t.name.as_str()).collect::<Vec<_>>().join(" and ");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // One pod and one PDB watch per namespace, shared by every lane.
        let namespaces: BTreeSet<String> = moves
            .iter()
            .flat_map(|m| m.pods.iter().filter_map(|k| k.split_once('/').map(|(n, _)| n.to_string())))
            .chain(moves.iter().filter_map(|m| m.owner.as_ref().map(|o| o.namespace.to_string())))
            .collect();
        let namespaces: Vec<String> = namespaces.into_iter().collect();
        let watch = SharedWatch::start(ctx.cluster, &namespaces, ctx.opts.timeout).await?;
        let gates = moves::Gates::new(watch, plan.estimate.max_unavailable);
        let mut moves = moves;
        if ctx.opts.split_shared_lanes {
            for m in &mut moves {
                m.lane = m.label();
            }
        }
        let all = moves::run_lanes(
            ctx,
            &gates,
            moves::lanes(moves),
            CidrSet(plan.old_cidrs()),
            &target,
            ctx.opts.max_parallel.map(usize::from),
            tx,
        );
        let mut all = std::pin::pin!(all);
        let mut lanes_done = false;
        let mut stopped: Option<Error> = None;
        loop {
            let (m, r) = tokio::select! {
                Some(outcome) = rx.recv() => outcome,
                () = &mut all, if !lanes_done => {
                    lanes_done = true;
                    continue;
                }
                else => break,
            };
            bar_w.inc(1);
            bar_p.inc(m.pods.len() as u64);
            let label = m.label();
            match r {
                Ok(()) => {
                    workloads_moved += 1;
                    pods_moved += m.pods.len();
                    bar_w.set_message(label.clone());
                    if !state.done.contains(&label) {
                        state.done.push(label.clone());
                        state.pods_moved += m.pods.len();
                    }
                    if !bar_w.is_hidden() {
                        bar_w.println(format!("moved {label} ({} pod(s))", m.pods.len()));
                    } else {
                        ctx.printer.note(format!("moved {label} ({} pod(s))", m.pods.len()));
                    }
                }
                Err(e) => {
                    ctx.printer.warn(format!("could not move {label}: {e}"));
                    failures.push(format!("{label}: {e}"));
                    state.failed.push(format!("{label}: {e}"));
                }
            }
            if let Err(e) = checkpoint(ctx, state, Phase::MovingPods).await {
                // The lease may have lapsed: the waves under way finish, the
                // lanes start nothing new, and the run stops once they are done.
                stopped.get_or_insert(e);
            }
        }
        bar_w.finish_and_clear();
        bar_p.finish_and_clear();
        max_moving = max_moving.max(gates.max_moving.load(std::sync::atomic::Ordering::SeqCst));
        if let Some(e) = stopped {
            return Err(e);
        }
        if !failures.is_empty() {
            return Err(Error::Other(format!(
                "{} workload(s) could not be moved (nothing else was rolled back; the old pool stays disabled):\n  - {}\nFix the cause and run the same command again to continue.",
                failures.len(),
                failures.join("\n  - ")
            )));
        }
    }
    Ok((workloads_moved, pods_moved, skipped, max_moving))
}

/// Wait until nothing (pods, node tunnel addresses) holds an address of
/// the old pool: calico-node moves tunnel addresses by itself once the old
/// pool is disabled and the new one allows Tunnel use.
async fn phase_drain(ctx: &Ctx<'_>, plan: &Plan, state: &mut MigrationState) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    checkpoint(ctx, state, Phase::Draining).await?;
    for (from, to, _) in plan.pairs() {
        ctx.printer.note(format!(
            "Waiting for every address of {} (pods and node tunnel addresses) to be released...",
            from.name
        ));
        super::leaks::drain(ctx, from, to).await?;
    }
    Ok(())
}

async fn phase_delete_source(
    ctx: &Ctx<'_>,
    writer: &PoolWriter<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    for (from, to, _) in plan.pairs() {
        // Never delete a pool that still holds allocations: its addresses would
        // lose their pool (encapsulation, NAT) while something may still use them.
        let left = leaks::scan_pool(ctx.cluster, ctx.calico, &from.cidr, to.cidr).await?.remaining;
        if !left.is_empty() {
            return Err(Error::Other(format!(
                "not deleting {}: it still holds allocations: {}; re-run to continue",
                from.name,
                crate::core::findings::name_some(&left)
            )));
        }
        writer.delete_safely(from, Some(to.cidr)).await?;
        crate::cluster::pause::point("delete:pool-deleted").await;
        let av = ctx.calico.resource(Kind::IPPool).api_version;
        events::record_event(
            ctx.cluster,
            pool_event(&from.name, &av),
            &format!("kubectl-ippool migrate: deleted after every pod moved to {}", to.name),
        )
        .await;
        ctx.printer.note(format!("IPPool {} deleted.", from.name));
    }
    checkpoint(ctx, state, Phase::SourceDeleted).await?;
    let ipam = ctx.calico.read_ipam(ctx.cluster).await?;
    for (from, to, _) in plan.pairs() {
        let old_only = |c: &IpNet| crate::core::cidr::within(c, &from.cidr) && !crate::core::cidr::within(c, &to.cidr);
        let left: Vec<String> = ipam
            .blocks
            .iter()
            .filter(|b| old_only(&b.cidr))
            .map(|b| format!("IPAMBlock {}", b.name))
            .chain(ipam.affinities.iter().filter(|a| old_only(&a.cidr)).map(|a| format!("BlockAffinity {}", a.name)))
            .collect();
        if !left.is_empty() {
            ctx.printer.warn(format!(
                "IPAM objects of {} remain: {}; `kubectl ippool verify` shows them",
                from.cidr,
                crate::core::findings::name_some(&left)
            ));
        }
    }
    Ok(())
}
