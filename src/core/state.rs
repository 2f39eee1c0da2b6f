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
    /// Canary pods pinned to the target pool got its addresses and reached
    /// pods of the old pool (and were reached) while the old pool was still
    /// enabled. Older versions ran the canary after SourceDisabled: a record
    /// of theirs at SourceDisabled never ran it, so a resume at
    /// SourceDisabled runs it (again) before pods move.
    CanaryPassed,
    /// The old pool no longer hands out addresses.
    SourceDisabled,
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

    /// Whether a run resumed at this phase runs the canary: before it has
    /// passed, and at SourceDisabled, which a record of an older version
    /// (canary after the disable) reaches without a canary.
    pub fn canary_due(self) -> bool {
        self < Phase::CanaryPassed || self == Phase::SourceDisabled
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
    /// Entries `--update-rules` added to rules and sets (`--rollback` removes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_changes: Vec<super::rules::RuleChange>,
    /// The other IP family's pair, when both were migrated in one run
    /// (absent in records of one-family runs and of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<PairRecord>,
}

/// One more (old pool, new pool) pair of a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRecord {
    pub from_pool: String,
    pub from_cidr: String,
    pub to_pool: String,
    pub to_cidr: String,
    pub created_target: bool,
    #[serde(default)]
    pub original_from_pool: serde_json::Value,
}

impl MigrationState {
    /// The old pools, `a and b` when both families were migrated.
    pub fn old_pools(&self) -> String {
        self.pairs().iter().map(|p| p.from_pool.as_str()).collect::<Vec<_>>().join(" and ")
    }

    /// The new pools, `a and b` when both families were migrated.
    pub fn new_pools(&self) -> String {
        self.pairs().iter().map(|p| p.to_pool.as_str()).collect::<Vec<_>>().join(" and ")
    }

    /// The command that resumes this migration, naming every pair: `--to
    /// CIDR` when the run created each new pool, else `--to-pool NAME`
    /// (kubectl-ippool takes one form or the other, not both).
    pub fn resume_command(&self) -> String {
        let pairs = self.pairs();
        let by_cidr = pairs.iter().all(|p| p.created_target);
        let mut cmd = String::from("kubectl ippool migrate");
        for p in &pairs {
            if by_cidr {
                cmd.push_str(&format!(" --from {} --to {}", p.from_pool, p.to_cidr));
            } else {
                cmd.push_str(&format!(" --from {} --to-pool {}", p.from_pool, p.to_pool));
            }
        }
        cmd
    }

    /// Every pair: (from_pool, from_cidr, to_pool, to_cidr, created_target, original_from_pool).
    pub fn pairs(&self) -> Vec<PairRecord> {
        std::iter::once(PairRecord {
            from_pool: self.from_pool.clone(),
            from_cidr: self.from_cidr.clone(),
            to_pool: self.to_pool.clone(),
            to_cidr: self.to_cidr.clone(),
            created_target: self.created_target,
            original_from_pool: self.original_from_pool.clone(),
        })
        .chain(self.also.iter().cloned())
        .collect()
    }
}

/// Whether two records are of the same migration (the same start).
fn same_migration(a: &MigrationState, b: &MigrationState) -> bool {
    (&a.started_at, &a.started_by, &a.from_pool, &a.to_pool) == (&b.started_at, &b.started_by, &b.from_pool, &b.to_pool)
}

/// The record read again once the lease is held, against the one the run
/// planned with (read before its confirmation, without the lease): the
/// fresh record to carry on with, or why the run must stop without
/// writing (another run started, finished or rolled back meanwhile).
pub fn recheck_record(
    planned: Option<&MigrationState>,
    fresh: Option<&MigrationState>,
) -> Result<Option<MigrationState>, String> {
    let unfinished = fresh.filter(|f| !f.phase.is_finished());
    match (planned, fresh) {
        (None, _) => match unfinished {
            None => Ok(None),
            Some(f) => Err(format!(
                "a migration from {} to {} was started by {} ({}) while this run waited to start; it is in phase {}: run `{}` to finish it",
                f.old_pools(),
                f.new_pools(),
                f.started_by,
                f.started_at,
                f.phase.as_str(),
                f.resume_command()
            )),
        },
        (Some(p), Some(f)) if same_migration(p, f) => match unfinished {
            Some(f) => Ok(Some(f.clone())),
            None => Err(format!(
                "another run ended the migration from {} to {} while this one waited (phase {})",
                f.old_pools(),
                f.new_pools(),
                f.phase.as_str()
            )),
        },
        (Some(p), _) => Err(format!(
            "the migration record changed while this run waited: the migration from {} to {} it was to resume is no longer on record",
            p.old_pools(),
            p.new_pools()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canary comes before the old pool's disable; a record written at
    /// SourceDisabled (by an older version, before its canary) still reads
    /// and runs the canary on resume, and the phases after it do not.
    #[test]
    fn canary_before_the_disable_and_older_records_resume() {
        assert!(Phase::TargetReady < Phase::CanaryPassed && Phase::CanaryPassed < Phase::SourceDisabled);
        assert!(Phase::SourceDisabled < Phase::MovingPods);
        let old: Phase = serde_json::from_str("\"SourceDisabled\"").unwrap();
        assert_eq!(old, Phase::SourceDisabled);
        let due: Vec<Phase> = [
            Phase::Started,
            Phase::TargetReady,
            Phase::CanaryPassed,
            Phase::SourceDisabled,
            Phase::MovingPods,
            Phase::Draining,
        ]
        .into_iter()
        .filter(|p| p.canary_due())
        .collect();
        assert_eq!(due, [Phase::Started, Phase::TargetReady, Phase::SourceDisabled]);
    }

    /// A record written by a version without `also` still reads, and a
    /// one-family record is written without it.
    #[test]
    fn records_without_a_second_pair_stay_compatible() {
        let old = r#"{"fromPool":"a","fromCidr":"192.168.0.0/16","toPool":"b","toCidr":"10.0.0.0/16",
            "createdTarget":true,"phase":"MovingPods","startedAt":"t","updatedAt":"t","startedBy":"me",
            "originalFromPool":null,"total":3,"done":[],"failed":[]}"#;
        let r: MigrationState = serde_json::from_str(old).unwrap();
        assert!(r.also.is_empty());
        assert_eq!(r.pairs().len(), 1);
        assert!(!serde_json::to_string(&r).unwrap().contains("also"));
        let mut two = r.clone();
        two.also.push(PairRecord {
            from_pool: "a6".into(),
            from_cidr: "fd00:10::/64".into(),
            to_pool: "b6".into(),
            to_cidr: "fd00:20::/112".into(),
            created_target: true,
            original_from_pool: serde_json::Value::Null,
        });
        let back: MigrationState = serde_json::from_str(&serde_json::to_string(&two).unwrap()).unwrap();
        assert_eq!(back, two);
        assert_eq!(back.pairs()[1].to_pool, "b6");
        assert_eq!((back.old_pools().as_str(), back.new_pools().as_str()), ("a and a6", "b and b6"));
        assert_eq!(
            back.resume_command(),
            "kubectl ippool migrate --from a --to 10.0.0.0/16 --from a6 --to fd00:20::/112"
        );
        two.also[0].created_target = false;
        assert_eq!(two.resume_command(), "kubectl ippool migrate --from a --to-pool b --from a6 --to-pool b6");
        assert_eq!(r.resume_command(), "kubectl ippool migrate --from a --to 10.0.0.0/16");
    }
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
mod follow_tests {
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
            also: vec![],
            rule_changes: vec![],
        }
    }

    fn progress(first: bool, new_failures: &[&str]) -> FollowStep {
        FollowStep::Progress { first, new_failures: new_failures.iter().map(|f| f.to_string()).collect() }
    }

    #[test]
    fn the_record_read_again_under_the_lease_decides() {
        let mine = state("t1", Phase::MovingPods, 1, &[]);
        let other = MigrationState { from_pool: "other".into(), ..state("t2", Phase::Started, 0, &[]) };
        assert_eq!(recheck_record(None, None), Ok(None));
        assert_eq!(recheck_record(None, Some(&state("t0", Phase::Done, 3, &[]))), Ok(None), "a finished record");
        let e = recheck_record(None, Some(&other)).unwrap_err();
        assert!(e.contains("while this run waited") && e.contains("--from other --to 10.0.0.0/16"), "{e}");
        let further = state("t1", Phase::Draining, 3, &[]);
        assert_eq!(
            recheck_record(Some(&mine), Some(&further)),
            Ok(Some(further.clone())),
            "carry on from the fresh one"
        );
        assert!(recheck_record(Some(&mine), Some(&state("t1", Phase::Done, 3, &[]))).unwrap_err().contains("ended"));
        assert!(recheck_record(Some(&mine), Some(&other)).unwrap_err().contains("no longer on record"));
        assert!(recheck_record(Some(&mine), None).is_err());
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
