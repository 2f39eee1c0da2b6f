//! Carrying out the move list: lanes side by side (every lane, unless
//! `--max-parallel` caps them), the moves of one lane one after another, and
//! every move within its PodDisruptionBudgets: a rollout starts only when
//! each budget over it has room for what the rollout takes down, and
//! evictions go in waves no wider than the budget, each after the last
//! one's replacements are Ready. Across lanes, at most `--max-unavailable`
//! pods are down at once and at most `WRITES_IN_FLIGHT` writes are pending.
//! Waits read the shared watches (`cluster::shared_watch`), not the API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::core::cidr::CidrSet;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use super::checkpoint::stop_if_lease_lost;
use super::Ctx;
use crate::cluster::events::{self, EventTarget};
use crate::cluster::shared_watch::SharedWatch;
use crate::cluster::{budgets, evictions, movers, workloads};
use crate::core::model::{Owner, OwnerKind};
use crate::core::plan::{self, Move, MoveKind};
use crate::error::{Error, Result};

/// A finished move and how it went, as lanes report them.
pub(crate) type Outcome = (Move, Result<()>);

/// Group moves into lanes, keeping the plan's order within each lane.
pub(crate) fn lanes(moves: Vec<Move>) -> Vec<Vec<Move>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_lane: BTreeMap<String, Vec<Move>> = BTreeMap::new();
    for m in moves {
        if !by_lane.contains_key(&m.lane) {
            order.push(m.lane.clone());
        }
        by_lane.entry(m.lane.clone()).or_default().push(m);
    }
    order.into_iter().filter_map(|l| by_lane.remove(&l)).collect()
}

/// Writes (evictions, restarts) pending at once across lanes: enough to keep
/// many lanes busy, few enough that the API server is never flooded.
pub(crate) const WRITES_IN_FLIGHT: usize = 32;

/// What the lanes share: the watches their waits read, and the bounds that
/// hold across lanes.
pub(crate) struct Gates {
    pub(crate) watch: SharedWatch,
    /// One permit per pod that may be down (`--max-unavailable`).
    down: Semaphore,
    width: usize,
    writes: Semaphore,
    moving: AtomicUsize,
    /// Most lanes with pods down at the same time, for the summary.
    pub(crate) max_moving: AtomicUsize,
}

/// A lane with pods down; counted while it lives.
struct Moving<'a>(&'a Gates);

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        self.0.moving.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gates {
    pub(crate) fn new(watch: SharedWatch, max_unavailable: usize) -> Gates {
        let width = max_unavailable.clamp(1, Semaphore::MAX_PERMITS);
        Gates {
            watch,
            down: Semaphore::new(width),
            width,
            writes: Semaphore::new(WRITES_IN_FLIGHT),
            moving: AtomicUsize::new(0),
            max_moving: AtomicUsize::new(0),
        }
    }

    /// Room for `n` more pods down (at most the whole width), held until dropped.
    async fn down(&self, n: usize) -> Result<SemaphorePermit<'_>> {
        let n = n.clamp(1, self.width) as u32;
        self.down.acquire_many(n).await.map_err(|e| Error::Other(format!("pods-down limit: {e}")))
    }

    async fn write(&self) -> Result<SemaphorePermit<'_>> {
        self.writes.acquire().await.map_err(|e| Error::Other(format!("writes limit: {e}")))
    }

    fn moving(&self) -> Moving<'_> {
        let now = self.moving.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_moving.fetch_max(now, Ordering::SeqCst);
        Moving(self)
    }
}

/// Run every lane, at most `parallel` at once (None: all), reporting each
/// move's outcome on `done` as it finishes.
pub(crate) async fn run_lanes(
    ctx: &Ctx<'_>,
    gates: &Gates,
    lanes: Vec<Vec<Move>>,
    old: CidrSet,
    target: &str,
    parallel: Option<usize>,
    done: UnboundedSender<Outcome>,
) {
    let parallel = parallel.unwrap_or(lanes.len()).max(1);
    futures::stream::iter(lanes.into_iter().map(|lane| {
        let done = done.clone();
        let old = old.clone();
        async move { run_lane(ctx, gates, lane, &old, target, &done).await }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<()>>()
    .await;
}

async fn run_lane(
    ctx: &Ctx<'_>,
    gates: &Gates,
    lane: Vec<Move>,
    old: &CidrSet,
    target: &str,
    done: &UnboundedSender<Outcome>,
) {
    // The node being drained, and whether this run cordoned it.
    let mut current: Option<String> = None;
    let mut cordoned: Option<String> = None;
    let count = lane.len();
    for (i, m) in lane.iter().enumerate() {
        // Drain steps of one node follow each other: cordon at its first,
        // uncordon after its last.
        let node = (m.kind == MoveKind::Drain).then(|| drain_node(m));
        let r = async {
            // A lease that may have lapsed starts nothing new.
            stop_if_lease_lost(ctx)?;
            if let Some(n) = node.as_ref().filter(|n| current.as_ref() != Some(*n)) {
                current = Some(n.clone());
                if movers::cordon_for_drain(ctx.cluster, n).await? {
                    ctx.printer.note(format!("node/{n} cordoned"));
                    touched(ctx, |t| t.cordoned.push(n.clone()));
                    cordoned = Some(n.clone());
                } else {
                    ctx.printer.note(format!("node/{n} was already cordoned; it stays so"));
                }
            }
            run_move(ctx, gates, m, old, target).await
        }
        .await;
        let next_node = lane.get(i + 1).filter(|n| n.kind == MoveKind::Drain).map(drain_node);
        if current.as_ref().is_some_and(|n| i + 1 == count || next_node.as_ref() != Some(n)) {
            current = None;
            if let Some(n) = cordoned.take() {
                if movers::cordon(ctx.cluster, &n, false).await.is_ok() {
                    touched(ctx, |t| t.cordoned.retain(|c| c != &n));
                    ctx.printer.note(format!("node/{n} uncordoned"));
                }
            }
        }
        let _ = done.send((m.clone(), r));
    }
}

/// Note (or forget) something this run changed, for its exit clean-up.
fn touched(ctx: &Ctx<'_>, f: impl FnOnce(&mut super::Touched)) {
    f(&mut ctx.touched.lock().unwrap_or_else(|e| e.into_inner()));
}

fn drain_node(m: &Move) -> String {
    m.target.strip_prefix("Node ").unwrap_or(&m.target).to_string()
}

/// One entry of the move list.
async fn run_move(ctx: &Ctx<'_>, gates: &Gates, m: &Move, old: &CidrSet, target: &str) -> Result<()> {
    let t = ctx.opts.timeout;
    match m.kind {
        MoveKind::Rollout => {
            let owner = m.owner.as_ref().ok_or_else(|| Error::Other("rollout without an owner".into()))?;
            // Decided again from the workload and budgets as they are now:
            // a rescale since the plan can make the rollout too wide.
            let repaced;
            let m = match workloads::read_workload(ctx.cluster, owner).await? {
                Some(now) => {
                    let guards = budgets::refresh_guards(ctx.cluster, &m.guards).await?;
                    repaced = plan::repace(m, &now, guards, ctx.opts.strategy, ctx.opts.allow_downtime)
                        .map_err(|why| Error::Other(format!("{} when its turn came: {why}", owner.display())))?;
                    if repaced.kind != MoveKind::Rollout {
                        ctx.printer.note(format!(
                            "{}: now {} replica(s); {}",
                            owner.display(),
                            now.replicas,
                            repaced.note.as_deref().unwrap_or("its pods are evicted")
                        ));
                        return evict_paced(ctx, gates, &repaced, pairs(&repaced)).await;
                    }
                    &repaced
                }
                None => m,
            };
            // A rollout already under way (an earlier, interrupted run's, or
            // anyone's) finishes first: a second restart on top of it can take
            // more pods down than either would alone (a Parallel StatefulSet
            // deletes every out-of-date pod it may). It may have moved them all.
            movers::wait_rollout(ctx.cluster, owner, t).await?;
            if movers::owner_pods_in(ctx.cluster, owner, old).await?.is_empty() {
                return Ok(());
            }
            // The plan chose a rollout because its budgets have room for it
            // when healthy; start it only when they have room now.
            if m.at_once > 0 {
                for g in &m.guards {
                    gates.watch.wait_allows(ctx.printer, &g.pdb, m.at_once as i32, t).await?;
                }
            }
            // Its pods down count against --max-unavailable until it is done.
            let room = gates.down(m.at_once).await?;
            let moving = gates.moving();
            {
                let _w = gates.write().await?;
                movers::restart(ctx.cluster, owner, &format!("kubectl-ippool: moved off {old} to {target}")).await?;
            }
            events::record_event(
                ctx.cluster,
                EventTarget {
                    api_version: if owner.kind == OwnerKind::Rollout { "argoproj.io/v1alpha1" } else { "apps/v1" },
                    kind: owner.kind.as_str(),
                    namespace: Some(&owner.namespace),
                    name: &owner.name,
                },
                &format!("kubectl-ippool migrate: restarted to move pods off {old} to IPPool {target}"),
            )
            .await;
            if owner.kind == OwnerKind::Rollout {
                movers::wait_owner_off(ctx.cluster, owner, old, t).await?;
                // Old pods gone is half of it: the move ends when the
                // replacements are Ready, so the next lane does not start
                // while this workload is short.
                if let Some(want) = movers::rollout_replicas(ctx.cluster, owner).await? {
                    movers::wait_ready_pods(ctx.cluster, owner, "", want, t).await?;
                }
                return Ok(());
            }
            movers::wait_rollout(ctx.cluster, owner, t).await?;
            // A rollout can finish with old pods left: evict those, one at a
            // time, within the budgets; the controller replaces them.
            let left: Vec<(String, String)> = movers::owner_pods_in(ctx.cluster, owner, old)
                .await?
                .iter()
                .map(|p| {
                    let key = format!(
                        "{}/{}",
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default()
                    );
                    (key, p.metadata.uid.clone().unwrap_or_default())
                })
                .collect();
            if !left.is_empty() {
                ctx.printer.note(format!(
                    "{}: {} pod(s) still on {old} after the rollout; evicting them",
                    owner.display(),
                    left.len()
                ));
                let leftover = Move { at_once: 1, ..m.clone() };
                drop((room, moving));
                evict_paced(ctx, gates, &leftover, left).await?;
            }
            Ok(())
        }
        MoveKind::Evict if m.surge > 0 => {
            let owner = m.owner.as_ref().ok_or_else(|| Error::Other("surge without an owner".into()))?;
            touched(ctx, |t| t.surged.push(owner.clone()));
            let original = movers::surge(ctx.cluster, owner, m.surge as i32).await?;
            ctx.printer.note(format!(
                "{}: scaled to {} replica(s) for the move (--surge); back to {original} after",
                owner.display(),
                original + m.surge as i32
            ));
            let selector = movers::pod_selector(ctx.cluster, owner).await?;
            movers::wait_ready_pods(ctx.cluster, owner, &selector, original as usize + m.surge, t).await?;
            let moved = evict_paced(ctx, gates, m, pairs(m)).await;
            // Scale back whatever happened; a failure here is left for the
            // next run, which finds the note on the workload.
            movers::unsurge(ctx.cluster, owner).await?;
            touched(ctx, |t| t.surged.retain(|o| o != owner));
            ctx.printer.note(format!("{}: back to {original} replica(s)", owner.display()));
            moved
        }
        MoveKind::Evict | MoveKind::Drain | MoveKind::EvictForGood => evict_paced(ctx, gates, m, pairs(m)).await,
        MoveKind::WaitJob => {
            let owner = m.owner.as_ref().ok_or_else(|| Error::Other("job without an owner".into()))?;
            ctx.printer.note(format!(
                "waiting for {} to finish (up to {})",
                owner.display(),
                humantime::format_duration(t)
            ));
            movers::wait_job(ctx.cluster, owner, old, t).await
        }
    }
}

fn pairs(m: &Move) -> Vec<(String, String)> {
    m.pods.iter().cloned().zip(m.pod_uids.iter().cloned()).collect()
}

/// Evict `pods` in waves of `m.at_once` (cut to `--max-unavailable`):
/// before each wave, wait until every budget over them has room for the
/// whole wave and the cluster-wide limit has room too; after it, wait until
/// the evicted pods are on their way out and the owner has as many Ready
/// pods as before (or, without an owner to count, until they are gone).
/// At the end, every evicted pod is gone. The Eviction API enforces the
/// budgets too; these waits keep it from having to say no.
async fn evict_paced(ctx: &Ctx<'_>, gates: &Gates, m: &Move, pods: Vec<(String, String)>) -> Result<()> {
    let t = ctx.opts.timeout;
    let owner: Option<&Owner> = m.owner.as_ref().filter(|_| m.kind != MoveKind::EvictForGood);
    let mut terminating: Vec<(String, String)> = Vec::new();
    for wave in pods.chunks(m.at_once.clamp(1, gates.width)) {
        // The wave before finished; a lease that may have lapsed starts no other.
        stop_if_lease_lost(ctx)?;
        for g in &m.guards {
            gates.watch.wait_allows(ctx.printer, &g.pdb, wave.len() as i32, t).await?;
        }
        let _down = gates.down(wave.len()).await?;
        // Another lane may have held the room for a while: look again (from memory).
        for g in &m.guards {
            gates.watch.wait_allows(ctx.printer, &g.pdb, wave.len() as i32, t).await?;
        }
        let _moving = gates.moving();
        let before = owner.map_or(0, |o| gates.watch.healthy(o));
        let evictions = wave.iter().map(|(key, uid)| async move {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let _w = gates.write().await?;
            evictions::request_eviction(ctx.cluster, ctx.printer, ns, name, uid, t).await
        });
        let mut evicted = Vec::new();
        for (r, pod) in futures::future::join_all(evictions).await.into_iter().zip(wave) {
            if r? == evictions::Evicted::Terminating {
                evicted.push(pod.clone());
            }
        }
        // An evicted pod stops counting as healthy at once, so the
        // replacements are Ready when the count is back; the evicted pods
        // may still be shutting down meanwhile.
        match owner {
            Some(o) => gates.watch.wait_replaced(Some(o), &evicted, before, t).await?,
            None => gates.watch.wait_gone(&evicted, t).await?,
        }
        terminating.extend(evicted);
    }
    // The move is done when the evicted pods are gone (their addresses released).
    if !terminating.is_empty() {
        gates.watch.wait_gone(&terminating, t).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(target: &str, lane: &str) -> Move {
        Move::in_lane(target, MoveKind::Evict, lane, 1)
    }

    #[test]
    fn lanes_keep_plan_order_and_group_shared_budgets() {
        let l = lanes(vec![mv("a", "x"), mv("b", "y"), mv("c", "x"), mv("d", "drain"), mv("e", "drain")]);
        let names: Vec<Vec<&str>> = l.iter().map(|l| l.iter().map(|m| m.target.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["a", "c"], vec!["b"], vec!["d", "e"]]);
    }
}
