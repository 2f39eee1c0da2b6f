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
    /// Workloads (`Deployment shop/web`) or pods already moved.
    #[serde(default)]
    pub done: Vec<String>,
    /// Objects we could not move, with the reason.
    #[serde(default)]
    pub failed: Vec<String>,
    /// Entries `--update-rules` added to rules and sets (`--rollback` removes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_changes: Vec<super::rules::RuleChange>,
}
