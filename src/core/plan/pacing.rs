//! How each workload moves without breaking a PodDisruptionBudget.
//!
//! A rollout restart is paced by the workload's update strategy only, never
//! by PDBs, so it is chosen only where the strategy cannot take more pods
//! down at once than every PDB over the workload allows. Otherwise pods are
//! evicted, never more at once than the tightest PDB allows, each wave after
//! the last one's replacements are Ready.

use super::budgets::Guard;
use super::{MoveKind, Strategy};
use crate::core::budget::{waves, UpdateStrategy};
use crate::core::model::{Owner, OwnerKind, WorkloadInfo};

/// How one workload's pods on the old pool move.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pace {
    pub kind: MoveKind,
    /// Replicas added before the evictions and taken away after (`--surge`).
    pub surge: usize,
    /// Most pods down at once because of this move.
    pub at_once: usize,
    /// Sequential rounds of pod start-up the move takes.
    pub waves: usize,
    /// Why this way, for the plan.
    pub note: Option<String>,
    /// Why the workload has no Ready pod for a while, when it does not.
    pub downtime: Option<String>,
}

/// What the user asked for: `--strategy`, `--surge`, `--allow-downtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Prefs {
    pub strategy: Strategy,
    pub surge: bool,
    pub allow_downtime: bool,
}

/// The outcome for one workload: a pace, or a blocker.
pub(super) enum Decision {
    Move(Pace),
    Blocked(String),
}

/// Decide how a Deployment, StatefulSet or DaemonSet moves `pods` pods,
/// given its update strategy, the PDBs over it and the user's preference
/// (`surge`: `--surge` was given).
pub(super) fn decide(
    owner: &Owner,
    workload: Option<&WorkloadInfo>,
    pods: usize,
    guards: &[Guard],
    prefs: Prefs,
) -> Decision {
    let Prefs { strategy: preference, surge, allow_downtime } = prefs;
    let replicas = workload.map_or(pods as i32, |w| w.replicas);
    let strategy = workload.map_or_else(|| default_strategy(owner.kind), |w| w.strategy);
    let tightest = guards.iter().min_by_key(|g| g.allowance);
    if let Some(g) = tightest.filter(|g| g.allowance == 0) {
        if surge {
            return surge_pace(owner, workload, pods, guards, g);
        }
        return Decision::Blocked(format!(
            "PodDisruptionBudget {} ({}) allows none of the {} pod(s) of {} to be down, so no move (rollout, eviction or drain) can keep it; scale the workload up first (kubectl scale {} -n {} {} --replicas={}), relax the budget (e.g. maxUnavailable: 1), or pass --surge to have the move add the replica and take it away after",
            g.pdb,
            g.spec,
            replicas,
            owner.display(),
            owner.kind.as_str().to_lowercase(),
            owner.namespace,
            owner.name,
            replicas + 1
        ));
    }
    let rollout_down = strategy.max_unavailable(replicas);
    // Why a rollout restart would not move the pods at all.
    let stuck = match (strategy, workload) {
        (UpdateStrategy::OnDelete, _) => Some("updateStrategy OnDelete: a rollout would not replace pods".to_string()),
        (UpdateStrategy::StatefulSetRolling { partition, .. }, _) if partition > 0 => Some(format!(
            "rollingUpdate.partition {partition}: a rollout would not replace ordinals below it (the partition is left as it is)"
        )),
        (_, Some(w)) if w.paused => {
            Some("the Deployment is paused: a rollout would not progress (it stays paused)".to_string())
        }
        _ => None,
    };
    let wants_rollout = preference == Strategy::Rollout || owner.kind == OwnerKind::DaemonSet;
    // With no budget the workload's strategy is its only declared
    // tolerance; this tool still never takes every pod of a workload of two
    // or more down at once unless told so (`--allow-downtime`).
    let keep_one = tightest.is_none() && replicas >= 2 && !allow_downtime;
    // Evictions: never more at once than the tightest budget, nor than the
    // workload's own strategy lets go (at least one, or nothing moves).
    let own_limit = rollout_down.unwrap_or(1).max(1) as usize;
    let own_limit = if keep_one { own_limit.min(replicas as usize - 1) } else { own_limit };
    let at_once = tightest.map_or(own_limit, |g| (g.allowance as usize).min(own_limit));
    let evict_kind = if preference == Strategy::Drain { MoveKind::Drain } else { MoveKind::Evict };
    let evict = |note: Option<String>| {
        Decision::Move(Pace { kind: evict_kind, surge: 0, at_once, waves: waves(pods, at_once), note, downtime: None })
    };
    if let Some(why) = stuck {
        return evict(Some(format!("{why}, so its pods are evicted{}", pacing_note(at_once, tightest))));
    }
    let down = rollout_down.unwrap_or(0);
    if wants_rollout && keep_one && down >= replicas {
        return evict(Some(format!(
            "a rollout ({}) would take all {replicas} pods down at once and no PodDisruptionBudget covers it, so pods are evicted{}, keeping at least one Ready (--allow-downtime rolls it instead)",
            strategy.describe(),
            pacing_note(at_once, tightest)
        )));
    }
    if wants_rollout {
        match tightest {
            Some(g) if down > g.allowance => {
                return evict(Some(format!(
                    "a rollout ({}) could take {down} pod(s) down at once, more than PodDisruptionBudget {} ({}) allows ({}), so pods are evicted{}",
                    strategy.describe(),
                    g.pdb,
                    g.spec,
                    g.allowance,
                    pacing_note(at_once, tightest)
                )));
            }
            _ => {}
        }
        let per_wave = (down + strategy.max_surge(replicas)).max(1) as usize;
        let note = match (tightest, owner.kind == OwnerKind::DaemonSet && preference != Strategy::Rollout) {
            (Some(g), _) => Some(format!(
                "its rollout takes at most {down} pod(s) down at once; PodDisruptionBudget {} allows {}",
                g.pdb, g.allowance
            )),
            (None, true) => {
                Some("DaemonSet pods are rolled: an evicted one comes back on the same node at once".to_string())
            }
            (None, false) => None,
        };
        return Decision::Move(Pace {
            kind: MoveKind::Rollout,
            surge: 0,
            at_once: down.max(0) as usize,
            waves: waves(replicas.max(0) as usize, per_wave),
            note,
            downtime: None,
        });
    }
    let kind = evict_kind;
    let note = tightest
        .map(|g| format!("PodDisruptionBudget {} allows {}{}", g.pdb, g.allowance, pacing_note(at_once, tightest)));
    Decision::Move(Pace { kind, surge: 0, at_once, waves: waves(pods, at_once), note, downtime: None })
}

/// `--surge` for a workload whose budget allows none of its pods to go:
/// the fewest replicas that make every budget over it allow one, added
/// before its pods are evicted one at a time and taken away after.
fn surge_pace(owner: &Owner, workload: Option<&WorkloadInfo>, pods: usize, guards: &[Guard], zero: &Guard) -> Decision {
    let Some(w) = workload.filter(|_| owner.kind != OwnerKind::DaemonSet) else {
        return Decision::Blocked(format!(
            "PodDisruptionBudget {} ({}) allows none of the pods of {} to be down, and --surge cannot add replicas to it; relax the budget",
            zero.pdb,
            zero.spec,
            owner.display()
        ));
    };
    // A StatefulSet's added ordinal is a new member with its own volume:
    // a quorum system would see a member join and leave, and its claim stays.
    if owner.kind == OwnerKind::StatefulSet {
        return Decision::Blocked(format!(
            "PodDisruptionBudget {} ({}) allows none of the pods of {} to be down, and --surge does not scale StatefulSets (an added ordinal joins and leaves the set, and its PersistentVolumeClaim stays); scale it yourself where that is safe, or relax the budget",
            zero.pdb,
            zero.spec,
            owner.display()
        ));
    }
    if let Some(why) = &w.autoscalers_unread {
        return Decision::Blocked(format!(
            "--surge cannot tell whether a HorizontalPodAutoscaler owns the replica count of {}: listing horizontalpodautoscalers.autoscaling failed ({why}); grant list on them, or relax PodDisruptionBudget {} ({})",
            owner.display(),
            zero.pdb,
            zero.spec
        ));
    }
    if let Some(hpa) = &w.autoscaler {
        return Decision::Blocked(format!(
            "--surge would fight HorizontalPodAutoscaler {}/{hpa}, which owns the replica count of {}: raise its minReplicas by one for the move, or relax PodDisruptionBudget {} ({})",
            owner.namespace,
            owner.display(),
            zero.pdb,
            zero.spec
        ));
    }
    let limit = (w.replicas.max(1) * 2 + 10) as usize;
    let fits = |k: i32| guards.iter().all(|g| g.budget.allowance(g.scale + k, g.matched + k) >= 1);
    let Some(extra) = (1..=limit as i32).find(|k| fits(*k)) else {
        return Decision::Blocked(format!(
            "PodDisruptionBudget {} ({}) allows none of the pods of {} to be down at any size (e.g. maxUnavailable: 0); relax it",
            zero.pdb,
            zero.spec,
            owner.display()
        ));
    };
    Decision::Move(Pace {
        kind: MoveKind::Evict,
        surge: extra as usize,
        at_once: 1,
        waves: pods + 1,
        note: Some(format!(
            "PodDisruptionBudget {} ({}) allows none to go at {} replica(s): --surge adds {extra}, evicts one at a time, then scales back to {}",
            zero.pdb, zero.spec, w.replicas, w.replicas
        )),
        downtime: None,
    })
}

/// Why `pace` leaves `workload` with no Ready pod for a while, if it does:
/// every one of its pods down at once, with no replica added first.
pub(super) fn zero_ready(workload: Option<&WorkloadInfo>, pace: &Pace, allow_downtime: bool) -> Option<String> {
    let w = workload?;
    let replicas = w.replicas;
    if replicas < 1 || pace.surge > 0 || (pace.at_once as i32) < replicas || pace.kind == MoveKind::WaitJob {
        return None;
    }
    let how = match pace.kind {
        MoveKind::Rollout => format!("its rollout ({})", w.strategy.describe()),
        MoveKind::Drain => "its drain".to_string(),
        _ => "its eviction".to_string(),
    };
    Some(if replicas == 1 {
        format!("1 replica: {how} leaves no pod Ready until the new one is; scale it to 2 first if that matters")
    } else {
        let allowed = if allow_downtime { " (--allow-downtime)" } else { "" };
        format!("{how} takes all {replicas} pods down at once{allowed}")
    })
}

fn pacing_note(at_once: usize, tightest: Option<&Guard>) -> String {
    let how = if at_once == 1 { "one at a time".to_string() } else { format!("{at_once} at a time") };
    match tightest {
        Some(_) => format!(", {how}, each wave after the last one's replacements are Ready"),
        None => format!(", {how}, each wave after the last one's replacements are Ready (its own strategy's limit)"),
    }
}

/// What the API server defaults for a workload we could not read.
fn default_strategy(kind: OwnerKind) -> UpdateStrategy {
    use crate::core::budget::IntOrPercent::Int;
    match kind {
        OwnerKind::StatefulSet => UpdateStrategy::StatefulSetRolling { max_unavailable: None, partition: 0 },
        OwnerKind::DaemonSet => UpdateStrategy::DaemonSetRolling { max_unavailable: Int(1), max_surge: Int(0) },
        _ => UpdateStrategy::DEPLOYMENT_DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::BudgetSpec;
    use crate::core::budget::IntOrPercent::{Int, Percent};

    fn guard(allowance: i32) -> Guard {
        Guard {
            pdb: "shop/web".into(),
            spec: "maxUnavailable 1".into(),
            allowance,
            budget: BudgetSpec { max_unavailable: Some(Int(allowance)), min_available: None },
            scale: 10,
            matched: 10,
        }
    }

    fn prefs(strategy: Strategy, surge: bool) -> Prefs {
        Prefs { strategy, surge, allow_downtime: false }
    }

    fn pace(d: Decision) -> Pace {
        match d {
            Decision::Move(p) => p,
            Decision::Blocked(b) => panic!("blocked: {b}"),
        }
    }

    #[test]
    fn a_rollout_wider_than_the_budget_becomes_paced_evictions() {
        let web = WorkloadInfo::deployment("shop", "web", 10);
        // 25% of 10 = 2 down at once; the PDB allows 1.
        let p = pace(decide(&web.owner, Some(&web), 10, &[guard(1)], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once, p.waves), (MoveKind::Evict, 1, 10));
        assert!(p.note.unwrap().contains("could take 2 pod(s) down at once"));
        // A budget of 2 is enough for the rollout.
        let p = pace(decide(&web.owner, Some(&web), 10, &[guard(2)], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Rollout, 2));
        // No budget: the workload's own strategy is its declared tolerance.
        let p = pace(decide(&web.owner, Some(&web), 10, &[], prefs(Strategy::Rollout, false)));
        assert_eq!(p.kind, MoveKind::Rollout);
        assert_eq!(zero_ready(Some(&web), &p, false), None);
    }

    #[test]
    fn recreate_under_a_budget_is_evicted_and_a_zero_budget_blocks() {
        let mut legacy = WorkloadInfo::deployment("shop", "legacy", 2);
        legacy.strategy = UpdateStrategy::Recreate;
        let p = pace(decide(&legacy.owner, Some(&legacy), 2, &[guard(1)], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Evict, 1));
        let single = WorkloadInfo::deployment("shop", "single", 1);
        let Decision::Blocked(b) = decide(&single.owner, Some(&single), 1, &[guard(0)], prefs(Strategy::Evict, false))
        else {
            panic!("a budget that allows nothing must block");
        };
        assert!(b.contains("allows none of the 1 pod(s)") && b.contains("--replicas=2"), "{b}");
        legacy.replicas = 1;
        let p = pace(decide(&legacy.owner, Some(&legacy), 1, &[], prefs(Strategy::Rollout, false)));
        let why = zero_ready(Some(&legacy), &p, false).expect("a 1-replica Recreate goes to zero");
        assert!(why.starts_with("1 replica: its rollout (Recreate)"), "{why}");
    }

    /// Without a budget, a workload of 2+ replicas never has every pod down
    /// at once unless `--allow-downtime`; 1-replica workloads that cannot
    /// surge are named as going to zero.
    #[test]
    fn no_budget_keeps_one_pod_ready_unless_downtime_is_allowed() {
        let mut legacy = WorkloadInfo::deployment("shop", "legacy", 4);
        legacy.strategy = UpdateStrategy::Recreate;
        for strategy in [Strategy::Rollout, Strategy::Evict, Strategy::Drain] {
            let p = pace(decide(&legacy.owner, Some(&legacy), 4, &[], prefs(strategy, false)));
            assert_ne!(p.kind, MoveKind::Rollout, "{strategy:?}");
            assert_eq!((p.at_once, p.waves), (3, 2), "{strategy:?}: at most 3 of 4 down");
            assert_eq!(zero_ready(Some(&legacy), &p, false), None, "{strategy:?}");
        }
        let allowed = Prefs { strategy: Strategy::Rollout, surge: false, allow_downtime: true };
        let p = pace(decide(&legacy.owner, Some(&legacy), 4, &[], allowed));
        assert_eq!((p.kind, p.at_once), (MoveKind::Rollout, 4));
        let why = zero_ready(Some(&legacy), &p, true).unwrap();
        assert!(why.contains("all 4 pods down at once (--allow-downtime)"), "{why}");
        // maxUnavailable 100% is Recreate by another name.
        let mut wide = WorkloadInfo::deployment("shop", "wide", 2);
        wide.strategy = UpdateStrategy::DeploymentRolling { max_surge: Int(0), max_unavailable: Percent(100) };
        let p = pace(decide(&wide.owner, Some(&wide), 2, &[], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Evict, 1));
        // A 1-replica StatefulSet has no way to keep one: it is named.
        let mut db = WorkloadInfo::deployment("shop", "db", 1);
        db.owner.kind = OwnerKind::StatefulSet;
        db.strategy = UpdateStrategy::StatefulSetRolling { max_unavailable: None, partition: 0 };
        let p = pace(decide(&db.owner, Some(&db), 1, &[], prefs(Strategy::Rollout, false)));
        assert!(zero_ready(Some(&db), &p, false).is_some());
        // A 1-replica Deployment that surges first never goes to zero.
        let single = WorkloadInfo::deployment("shop", "single", 1);
        let p = pace(decide(&single.owner, Some(&single), 1, &[], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Rollout, 0));
        assert_eq!(zero_ready(Some(&single), &p, false), None);
    }

    #[test]
    fn surge_adds_the_fewest_replicas_that_let_one_pod_go() {
        let single = WorkloadInfo::deployment("shop", "single", 1);
        let min1 = Guard {
            pdb: "shop/single".into(),
            spec: "minAvailable 1".into(),
            allowance: 0,
            budget: BudgetSpec { min_available: Some(Int(1)), max_unavailable: None },
            scale: 1,
            matched: 1,
        };
        let p =
            pace(decide(&single.owner, Some(&single), 1, std::slice::from_ref(&min1), prefs(Strategy::Rollout, true)));
        assert_eq!((p.kind, p.surge, p.at_once), (MoveKind::Evict, 1, 1));
        assert!(p.note.unwrap().contains("scales back to 1"));
        // 80% of 2 rounds up to 2: 3 replicas leave ceil(2.4) = 3, 4 leave ceil(3.2) = 4,
        // 5 leave 4: so three more.
        let pct = Guard {
            budget: BudgetSpec { min_available: Some(Percent(80)), max_unavailable: None },
            scale: 2,
            matched: 2,
            ..min1.clone()
        };
        let two = WorkloadInfo::deployment("shop", "single", 2);
        let p = pace(decide(&two.owner, Some(&two), 2, &[pct], prefs(Strategy::Evict, true)));
        assert_eq!(p.surge, 3);
        let mut scaled = single.clone();
        scaled.autoscaler = Some("single".into());
        let Decision::Blocked(b) =
            decide(&scaled.owner, Some(&scaled), 1, std::slice::from_ref(&min1), prefs(Strategy::Rollout, true))
        else {
            panic!("--surge must refuse a workload an HPA scales");
        };
        assert!(b.contains("HorizontalPodAutoscaler shop/single"), "{b}");
        let never = Guard { budget: BudgetSpec { max_unavailable: Some(Int(0)), min_available: None }, ..min1 };
        let Decision::Blocked(b) = decide(&single.owner, Some(&single), 1, &[never], prefs(Strategy::Rollout, true))
        else {
            panic!("maxUnavailable 0 allows nothing at any size");
        };
        assert!(b.contains("at any size"), "{b}");
    }

    /// --surge never scales a StatefulSet, nor anything when autoscalers
    /// could not be listed.
    #[test]
    fn surge_refuses_statefulsets_and_unknown_autoscalers() {
        let min1 = Guard {
            pdb: "shop/db".into(),
            spec: "minAvailable 1".into(),
            allowance: 0,
            budget: BudgetSpec { min_available: Some(Int(1)), max_unavailable: None },
            scale: 1,
            matched: 1,
        };
        let mut db = WorkloadInfo::deployment("shop", "db", 1);
        db.owner.kind = OwnerKind::StatefulSet;
        let Decision::Blocked(b) =
            decide(&db.owner, Some(&db), 1, std::slice::from_ref(&min1), prefs(Strategy::Rollout, true))
        else {
            panic!("--surge must refuse a StatefulSet");
        };
        assert!(b.contains("does not scale StatefulSets"), "{b}");
        let mut web = WorkloadInfo::deployment("shop", "web", 1);
        web.autoscalers_unread = Some("forbidden".into());
        let Decision::Blocked(b) = decide(&web.owner, Some(&web), 1, &[min1], prefs(Strategy::Rollout, true)) else {
            panic!("--surge must refuse when autoscalers are unknown");
        };
        assert!(b.contains("listing horizontalpodautoscalers.autoscaling failed (forbidden)"), "{b}");
    }

    #[test]
    fn stuck_rollouts_evict_and_evictions_respect_the_own_strategy() {
        let mut db = WorkloadInfo::deployment("shop", "db", 3);
        db.owner.kind = OwnerKind::StatefulSet;
        db.strategy = UpdateStrategy::StatefulSetRolling { max_unavailable: None, partition: 2 };
        let p = pace(decide(&db.owner, Some(&db), 3, &[], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Evict, 1));
        assert!(p.note.unwrap().contains("partition 2"));
        let mut paused = WorkloadInfo::deployment("shop", "paused", 4);
        paused.paused = true;
        let p = pace(decide(&paused.owner, Some(&paused), 4, &[], prefs(Strategy::Rollout, false)));
        assert!(p.kind == MoveKind::Evict && p.note.unwrap().contains("paused"));
        // --strategy evict without a budget: at most what a rollout would take down.
        let web = WorkloadInfo::deployment("shop", "web", 10);
        let p = pace(decide(&web.owner, Some(&web), 10, &[], prefs(Strategy::Evict, false)));
        assert_eq!((p.kind, p.at_once, p.waves), (MoveKind::Evict, 2, 5));
        let p = pace(decide(&web.owner, Some(&web), 10, &[guard(3)], prefs(Strategy::Drain, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Drain, 2));
    }

    #[test]
    fn daemonsets_roll_within_their_budget() {
        let mut agent = WorkloadInfo::deployment("shop", "agent", 3);
        agent.owner.kind = OwnerKind::DaemonSet;
        agent.strategy = UpdateStrategy::DaemonSetRolling { max_unavailable: Int(2), max_surge: Int(0) };
        let p = pace(decide(&agent.owner, Some(&agent), 3, &[], prefs(Strategy::Evict, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Rollout, 2));
        let p = pace(decide(&agent.owner, Some(&agent), 3, &[guard(1)], prefs(Strategy::Rollout, false)));
        assert_eq!((p.kind, p.at_once), (MoveKind::Evict, 1));
        let _ = Percent(1);
    }
}
