//! How long the moves take, by the rules the run keeps: lanes side by side
//! (every lane at once unless `--max-parallel` caps them), the moves of a
//! lane in turn, and never more pods down at once across the cluster than
//! `--max-unavailable`.

use serde::Serialize;

use super::Move;
use crate::core::budget::IntOrPercent;

/// How long the moves take, in rounds of pod start-up (a replacement pod
/// scheduled, given an address and Ready).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Rounds the schedule takes: each round, lanes in plan order take their
    /// next wave while the cluster-wide room (`maxUnavailable`) lasts.
    pub rounds: usize,
    pub lanes: usize,
    /// Lanes at once: `--max-parallel` if given, else every lane.
    pub parallel: usize,
    /// Most pods down at once across the cluster (`--max-unavailable`, resolved).
    pub max_unavailable: usize,
    /// Seconds from creation to Ready of the fastest of the pods to move: a
    /// round takes at least that. Not the median: pods created together
    /// (a rollout, a cluster coming up) queue behind each other, and their
    /// median measured that queue, several times what a wave takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_start_seconds: Option<f64>,
    /// `rounds` x `podStartSeconds`: a lower bound, as budgets allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// `--max-unavailable` as a pod count for `pods` pods to move: a percentage
/// rounds down (as a Deployment's maxUnavailable does), but at least one
/// pod may go, or nothing would move.
pub fn max_unavailable(spec: IntOrPercent, pods: usize) -> usize {
    spec.scaled(pods.min(i32::MAX as usize) as i32, false).max(1) as usize
}

/// Schedule the moves' waves: lanes in plan order, at most `parallel` lanes
/// holding a slot (a lane keeps it until its last move is done), and each
/// round at most `width` pods down; a wave wider than `width` is cut to it,
/// as the run does.
pub(super) fn estimate(
    moves: &[Move],
    parallel: Option<usize>,
    width: usize,
    pod_start_seconds: Option<f64>,
) -> Estimate {
    let width = width.max(1);
    // Each lane: its waves' widths, in order.
    let mut order: Vec<&str> = Vec::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for m in moves {
        let i = match order.iter().position(|l| *l == m.lane) {
            Some(i) => i,
            None => {
                order.push(&m.lane);
                waves.push(Vec::new());
                order.len() - 1
            }
        };
        let w = m.at_once.clamp(1, width);
        waves[i].extend(std::iter::repeat_n(w, m.waves));
    }
    let lanes = order.len();
    let parallel = parallel.unwrap_or(lanes).clamp(1, lanes.max(1));
    let mut next = 0;
    let mut active: Vec<std::collections::VecDeque<usize>> = Vec::new();
    let mut rounds = 0;
    loop {
        while active.len() < parallel && next < lanes {
            active.push(waves[next].iter().copied().collect());
            next += 1;
        }
        active.retain(|l| !l.is_empty());
        if active.is_empty() {
            if next >= lanes {
                break;
            }
            continue;
        }
        let mut room = width;
        for lane in &mut active {
            if let Some(&w) = lane.front().filter(|w| **w <= room) {
                room -= w;
                lane.pop_front();
            }
        }
        rounds += 1;
    }
    Estimate {
        rounds,
        lanes,
        parallel,
        max_unavailable: width,
        pod_start_seconds,
        seconds: pod_start_seconds.map(|s| (s * rounds as f64 * 10.0).round() / 10.0),
    }
}

/// The smallest of `values`, None when empty.
pub(super) fn fastest(values: &[f64]) -> Option<f64> {
    values.iter().copied().min_by(f64::total_cmp)
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

    fn mv(lane: &str, waves: usize, at_once: usize) -> Move {
        Move { at_once, ..Move::in_lane(lane, MoveKind::Evict, lane, waves) }
    }

    #[test]
    fn the_estimate_schedules_lanes_on_parallel_slots() {
        // 4 lanes of 10 rounds on 2 slots: 20 rounds; a shared lane adds up.
        let moves: Vec<_> = ["a", "b", "c", "d"].iter().map(|l| mv(l, 10, 1)).collect();
        let e = estimate(&moves, Some(2), 100, Some(2.0));
        assert_eq!((e.rounds, e.lanes, e.parallel, e.seconds), (20, 4, 2, Some(40.0)));
        let e = estimate(&[mv("a", 3, 1), mv("a", 3, 1), mv("b", 1, 1)], Some(4), 100, None);
        assert_eq!((e.rounds, e.lanes, e.parallel, e.seconds), (6, 2, 2, None));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
        assert_eq!((fastest(&[3.0, 1.5, 2.0]), fastest(&[])), (Some(1.5), None));
    }

    /// No cap: lanes under disjoint budgets all move at once, so the
    /// estimate is the longest lane; workloads sharing a budget share a lane.
    #[test]
    fn without_a_cap_every_lane_moves_at_once() {
        let mut moves: Vec<_> = (0..100).map(|i| mv(&format!("l{i}"), 10, 1)).collect();
        let e = estimate(&moves, None, 100, Some(2.0));
        assert_eq!((e.rounds, e.parallel, e.seconds), (10, 100, Some(20.0)));
        moves.push(mv("l0", 10, 1));
        assert_eq!(estimate(&moves, None, 100, None).rounds, 20, "a shared lane adds up");
    }

    /// The cluster-wide bound: 100 lanes of one pod a wave with room for 25
    /// take four times as long; a wave wider than the room is cut to it.
    #[test]
    fn max_unavailable_bounds_the_pods_down_across_lanes() {
        let moves: Vec<_> = (0..100).map(|i| mv(&format!("l{i}"), 10, 1)).collect();
        assert_eq!(estimate(&moves, None, 25, None).rounds, 40);
        let wide = [mv("a", 2, 10)];
        let e = estimate(&wide, None, 4, None);
        assert_eq!((e.rounds, e.max_unavailable), (2, 4));
        assert_eq!(max_unavailable(IntOrPercent::Percent(10), 1000), 100);
        assert_eq!(max_unavailable(IntOrPercent::Percent(10), 5), 1, "at least one pod may go");
        assert_eq!(max_unavailable(IntOrPercent::Int(30), 5), 30);
    }
}
