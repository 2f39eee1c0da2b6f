//! How long the moves take: lanes scheduled on `--parallel` slots, in
//! rounds of pod start-up.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Move;

/// How long the moves take, in rounds of pod start-up (a replacement pod
/// scheduled, given an address and Ready).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Rounds on the busiest lane slot: lanes start in plan order as slots
    /// free up, `parallel` at a time, and the moves of a lane run in turn.
    pub rounds: usize,
    pub lanes: usize,
    pub parallel: usize,
    /// Median seconds from creation to Ready of the pods to move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_start_seconds: Option<f64>,
    /// `rounds` x `podStartSeconds`: a lower bound, as budgets allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

pub(super) fn estimate(moves: &[Move], parallel: usize, pod_start_seconds: Option<f64>) -> Estimate {
    let mut order: Vec<&str> = Vec::new();
    let mut rounds_of: BTreeMap<&str, usize> = BTreeMap::new();
    for m in moves {
        if !rounds_of.contains_key(m.lane.as_str()) {
            order.push(&m.lane);
        }
        *rounds_of.entry(&m.lane).or_default() += m.waves;
    }
    let parallel = parallel.max(1);
    let mut slots = vec![0usize; parallel];
    for lane in &order {
        let next = slots.iter_mut().min().expect("at least one slot");
        *next += rounds_of[lane];
    }
    let rounds = slots.into_iter().max().unwrap_or(0);
    Estimate {
        rounds,
        lanes: order.len(),
        parallel,
        pod_start_seconds,
        seconds: pod_start_seconds.map(|s| (s * rounds as f64 * 10.0).round() / 10.0),
    }
}

/// The median of `values`, None when empty.
pub(super) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::MoveKind;

    #[test]
    fn the_estimate_schedules_lanes_on_parallel_slots() {
        let mv = |lane: &str, waves: usize| Move::in_lane(lane, MoveKind::Evict, lane, waves);
        // 4 lanes of 10 rounds on 2 slots: 20 rounds; a shared lane adds up.
        let moves: Vec<_> = ["a", "b", "c", "d"].iter().map(|l| mv(l, 10)).collect();
        let e = estimate(&moves, 2, Some(2.0));
        assert_eq!((e.rounds, e.lanes, e.seconds), (20, 4, Some(40.0)));
        let e = estimate(&[mv("a", 3), mv("a", 3), mv("b", 1)], 4, None);
        assert_eq!((e.rounds, e.lanes, e.seconds), (6, 2, None));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
