//! The record of a migration, kept in the cluster so that `status` can show
//! it and a re-run of `migrate` can finish it.

use serde::{Deserialize, Serialize};

/// Steps of a migration, in order. A re-run resumes at the recorded phase;
/// every step is safe to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Plan accepted, nothing written yet besides this record.
    Started,
    /// The target pool exists and is enabled.
    TargetReady,
    /// The old pool no longer hands out addresses.
    SourceDisabled,
    /// A test pod got an address from the target pool.
    CanaryPassed,
    /// Pods are being moved.
    MovingPods,
    /// Every pod moved; waiting for node tunnel addresses and leftovers.
    Draining,
    /// The old pool is deleted.
    SourceDeleted,
    Done,
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Started => "Started",
            Phase::TargetReady => "TargetReady",
            Phase::SourceDisabled => "SourceDisabled",
            Phase::CanaryPassed => "CanaryPassed",
            Phase::MovingPods => "MovingPods",
            Phase::Draining => "Draining",
            Phase::SourceDeleted => "SourceDeleted",
            Phase::Done => "Done",
            Phase::RolledBack => "RolledBack",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Done | Phase::RolledBack)
    }
}

/// Stored as JSON in ConfigMap `kube-system/kubectl-ippool-migration`
/// (key `state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationState {
    pub from_pool: String,
    pub from_cidr: String,
    pub to_pool: String,
    pub to_cidr: String,
    /// Whether we created the target pool (rollback then disables it).
    pub created_target: bool,
    pub phase: Phase,
    pub started_at: String,
    pub updated_at: String,
    /// Who ran it (`user@host`, pid).
    pub started_by: String,
    /// The old pool's object as it was before we touched it.
    pub original_from_pool: serde_json::Value,
    /// Pods to move when the plan was made (and found since).
    pub total: usize,
    /// Of those, pods moved so far.
    #[serde(default)]
    pub pods_moved: usize,
    /// Workloads (`Deployment shop/web`) or pods already moved.
    #[serde(default)]
    pub done: Vec<String>,
    /// Objects we could not move, with the reason.
    #[serde(default)]
    pub failed: Vec<String>,
}

/// What `status --watch` makes of each version of the migration record it
/// is shown: it follows the migration in progress, or waits for the next
/// one to start, and says when it ends.
#[derive(Debug, Default)]
pub struct Follow {
    observed: bool,
    /// Waiting for a new migration: the start time of the finished one on record.
    finished_before: Option<String>,
    following: bool,
    last: Option<(Phase, usize, usize, usize)>,
    failures_shown: usize,
}

#[derive(Debug, PartialEq)]
pub enum FollowStep {
    /// Nothing new to show.
    Nothing,
    /// No migration in progress yet.
    Waiting,
    /// The migration moved on; `first` when this is the first sight of it.
    Progress { first: bool, new_failures: Vec<String> },
    /// It ended (Done or RolledBack).
    Ended { first: bool, new_failures: Vec<String> },
}

impl Follow {
    pub fn observe(&mut self, state: Option<&MigrationState>) -> FollowStep {
        let first_observation = !self.observed;
        self.observed = true;
        let Some(state) = state else {
            return if first_observation { FollowStep::Waiting } else { FollowStep::Nothing };
        };
        if !self.following {
            let old = state.phase.is_finished()
                && (first_observation || self.finished_before.as_deref() == Some(state.started_at.as_str()));
            if old {
                self.finished_before = Some(state.started_at.clone());
                return if first_observation { FollowStep::Waiting } else { FollowStep::Nothing };
            }
        }
        let first = !self.following;
        self.following = true;
        let key = (state.phase, state.pods_moved, state.total, state.failed.len());
        if self.last == Some(key) {
            return FollowStep::Nothing;
        }
        self.last = Some(key);
        let new_failures = state.failed.iter().skip(self.failures_shown).cloned().collect();
        self.failures_shown = state.failed.len();
        if state.phase.is_finished() {
            FollowStep::Ended { first, new_failures }
        } else {
            FollowStep::Progress { first, new_failures }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(started: &str, phase: Phase, done: usize, failed: &[&str]) -> MigrationState {
        MigrationState {
            from_pool: "old".into(),
            from_cidr: "192.168.0.0/16".into(),
            to_pool: "new".into(),
            to_cidr: "10.0.0.0/16".into(),
            created_target: true,
            phase,
            started_at: started.into(),
            updated_at: started.into(),
            started_by: "me".into(),
            original_from_pool: serde_json::Value::Null,
            total: 3,
            pods_moved: done,
            done: (0..done).map(|i| format!("pod {i}")).collect(),
            failed: failed.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn progress(first: bool, new_failures: &[&str]) -> FollowStep {
        FollowStep::Progress { first, new_failures: new_failures.iter().map(|f| f.to_string()).collect() }
    }

    #[test]
    fn follows_a_running_migration_to_its_end() {
        let mut f = Follow::default();
        assert_eq!(f.observe(Some(&state("t1", Phase::MovingPods, 1, &[]))), progress(true, &[]));
        assert_eq!(f.observe(Some(&state("t1", Phase::MovingPods, 1, &[]))), FollowStep::Nothing, "same again");
        assert_eq!(
            f.observe(Some(&state("t1", Phase::MovingPods, 2, &["a: refused"]))),
            progress(false, &["a: refused"])
        );
        assert_eq!(
            f.observe(Some(&state("t1", Phase::Done, 3, &["a: refused"]))),
            FollowStep::Ended { first: false, new_failures: vec![] }
        );
    }

    #[test]
    fn waits_past_a_finished_record_for_the_next_migration() {
        let mut f = Follow::default();
        assert_eq!(f.observe(Some(&state("t0", Phase::Done, 3, &[]))), FollowStep::Waiting);
        assert_eq!(f.observe(Some(&state("t0", Phase::Done, 3, &[]))), FollowStep::Nothing, "the old one again");
        assert_eq!(f.observe(Some(&state("t1", Phase::Started, 0, &[]))), progress(true, &[]));
        let mut g = Follow::default();
        assert_eq!(g.observe(None), FollowStep::Waiting);
        assert_eq!(g.observe(None), FollowStep::Nothing);
        assert_eq!(
            g.observe(Some(&state("t1", Phase::Done, 3, &[]))),
            FollowStep::Ended { first: true, new_failures: vec![] },
            "a whole migration between two events"
        );
    }
}
