//! A rollout decided again when its lane starts: the workload may have
//! been scaled since the plan (an HPA, a user), and a rollout as wide as
//! the new size could take more pods down than a budget allows.

use super::pacing::{decide, zero_ready, Decision, Prefs};
use super::{Guard, Move, MoveKind, Strategy};
use crate::core::model::WorkloadInfo;

/// `m` (a planned rollout) for `workload` and `guards` as they are now:
/// the same rollout, evictions paced within the budgets, or why neither is
/// safe. `--surge` is not taken up here: that needs the autoscalers read again.
pub fn repace(
    m: &Move,
    workload: &WorkloadInfo,
    guards: Vec<Guard>,
    strategy: Strategy,
    allow_downtime: bool,
) -> Result<Move, String> {
    let prefs = Prefs { strategy, surge: false, allow_downtime };
    let pace = match decide(&workload.owner, Some(workload), m.pods.len(), &guards, prefs) {
        Decision::Move(p) => p,
        Decision::Blocked(why) => return Err(why),
    };
    let kind = if pace.kind == MoveKind::Drain { MoveKind::Evict } else { pace.kind };
    let rollout_surge = match kind {
        MoveKind::Rollout => workload.strategy.max_surge(workload.replicas).max(0) as usize,
        _ => 0,
    };
    let downtime =
        zero_ready(Some(workload), &pace, allow_downtime).map(|why| super::Downtime { why, gap_seconds: None });
    Ok(Move {
        kind,
        at_once: pace.at_once,
        waves: pace.waves,
        note: pace.note,
        guards,
        rollout_surge,
        downtime,
        ..m.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::{BudgetSpec, IntOrPercent};

    /// Planned at 4 replicas (25%: 1 down, within maxUnavailable 1),
    /// scaled to 12 before its lane (25%: 3 down): evicted one at a time.
    #[test]
    fn a_rescaled_workload_is_evicted_within_its_budget() {
        let guard = |scale: i32| Guard {
            pdb: "shop/web".into(),
            spec: "maxUnavailable 1".into(),
            allowance: 1,
            budget: BudgetSpec { max_unavailable: Some(IntOrPercent::Int(1)), min_available: None },
            scale,
            matched: scale,
        };
        let planned = WorkloadInfo::deployment("shop", "web", 4);
        let m = Move {
            owner: Some(planned.owner.clone()),
            pods: (0..4).map(|i| format!("shop/web-{i}")).collect(),
            guards: vec![guard(4)],
            ..Move::in_lane("Deployment shop/web", MoveKind::Rollout, "l", 4)
        };
        let same = repace(&m, &planned, vec![guard(4)], Strategy::Rollout, false).unwrap();
        assert_eq!((same.kind, same.at_once), (MoveKind::Rollout, 1));
        let scaled = WorkloadInfo { replicas: 12, ..planned.clone() };
        let now = repace(&m, &scaled, vec![guard(12)], Strategy::Rollout, false).unwrap();
        assert_eq!((now.kind, now.at_once, now.waves), (MoveKind::Evict, 1, 4));
        assert!(now.note.unwrap().contains("could take 3 pod(s) down"));
        let zero = Guard { allowance: 0, ..guard(12) };
        assert!(repace(&m, &scaled, vec![zero], Strategy::Rollout, false).is_err());
    }
}
