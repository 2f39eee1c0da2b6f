//! Disruption arithmetic, done the way the Kubernetes controllers do it:
//! how many pods a rollout restart may take down at once (the workload's
//! own update strategy), and how many a PodDisruptionBudget lets go (its
//! `desiredHealthy`, as the disruption controller computes it).
//!
//! A rollout restart is limited by the workload's strategy only; PDBs are
//! consulted by the Eviction API alone (kubernetes/kubernetes#89820). So the
//! planner restarts a workload only when its strategy cannot take more pods
//! down than every PDB over it allows, and evicts pod by pod otherwise.

use serde::Serialize;

/// An `intstr.IntOrString` as the API spells it: `3` or `"25%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(i32),
    Percent(i32),
}

impl IntOrPercent {
    /// `"25%"` or `"3"`; None for anything else (the API server validated it).
    pub fn parse_str(s: &str) -> Option<IntOrPercent> {
        match s.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().map(IntOrPercent::Percent),
            None => s.trim().parse().ok().map(IntOrPercent::Int),
        }
    }

    /// `intstr.GetScaledValueFromIntOrPercent`: a percent of `total`,
    /// rounded up or down as each controller chooses.
    pub fn scaled(self, total: i32, round_up: bool) -> i32 {
        match self {
            IntOrPercent::Int(i) => i,
            IntOrPercent::Percent(p) => {
                let product = i64::from(p) * i64::from(total.max(0));
                let v = if round_up { (product + 99) / 100 } else { product / 100 };
                v as i32
            }
        }
    }
}

impl std::fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrPercent::Int(i) => write!(f, "{i}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// How the workload's controller replaces pods after `rollout restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum UpdateStrategy {
    /// Deployment `RollingUpdate` (defaults 25% / 25%).
    DeploymentRolling { max_surge: IntOrPercent, max_unavailable: IntOrPercent },
    /// Deployment `Recreate`: every pod goes down before new ones start.
    Recreate,
    /// StatefulSet `RollingUpdate`: `maxUnavailable` (default 1, honoured
    /// only where the MaxUnavailableStatefulSet gate is on) and `partition`
    /// (ordinals below it are never updated).
    StatefulSetRolling { max_unavailable: Option<IntOrPercent>, partition: i32 },
    /// DaemonSet `RollingUpdate` (default maxUnavailable 1, maxSurge 0).
    DaemonSetRolling { max_unavailable: IntOrPercent, max_surge: IntOrPercent },
    /// `OnDelete`: a restart replaces nothing.
    OnDelete,
}

impl UpdateStrategy {
    pub const DEPLOYMENT_DEFAULT: UpdateStrategy = UpdateStrategy::DeploymentRolling {
        max_surge: IntOrPercent::Percent(25),
        max_unavailable: IntOrPercent::Percent(25),
    };

    /// The most pods (out of `replicas`) a rollout restart can have
    /// unavailable at once; None where a restart replaces nothing.
    pub fn max_unavailable(self, replicas: i32) -> Option<i32> {
        let replicas = replicas.max(0);
        let n = match self {
            UpdateStrategy::DeploymentRolling { max_surge, max_unavailable } => {
                // deploymentutil.ResolveFenceposts: surge rounds up,
                // unavailable rounds down, and both zero means one.
                let surge = max_surge.scaled(replicas, true);
                let unavailable = max_unavailable.scaled(replicas, false);
                if surge == 0 && unavailable == 0 {
                    1
                } else {
                    unavailable
                }
            }
            UpdateStrategy::Recreate => replicas,
            // The StatefulSet controller rounds down and never goes below 1.
            // With the gate off it takes 1; the larger value is assumed, to be safe.
            UpdateStrategy::StatefulSetRolling { max_unavailable, .. } => {
                max_unavailable.map_or(1, |m| m.scaled(replicas, false)).max(1)
            }
            // The DaemonSet controller rounds both up; both zero means one.
            UpdateStrategy::DaemonSetRolling { max_unavailable, max_surge } => {
                let unavailable = max_unavailable.scaled(replicas, true);
                if unavailable == 0 && max_surge.scaled(replicas, true) == 0 {
                    1
                } else {
                    unavailable
                }
            }
            UpdateStrategy::OnDelete => return None,
        };
        Some(n.min(replicas))
    }

    /// Pods a restart brings up beyond `replicas` (they need room on nodes).
    pub fn max_surge(self, replicas: i32) -> i32 {
        match self {
            UpdateStrategy::DeploymentRolling { max_surge, .. }
            | UpdateStrategy::DaemonSetRolling { max_surge, .. } => max_surge.scaled(replicas, true),
            _ => 0,
        }
    }

    /// Short form for plans: `RollingUpdate 25%/25%`, `Recreate`, ...
    pub fn describe(self) -> String {
        match self {
            UpdateStrategy::DeploymentRolling { max_surge, max_unavailable }
            | UpdateStrategy::DaemonSetRolling { max_unavailable, max_surge } => {
                format!("RollingUpdate maxSurge {max_surge}, maxUnavailable {max_unavailable}")
            }
            UpdateStrategy::Recreate => "Recreate".into(),
            UpdateStrategy::StatefulSetRolling { max_unavailable, partition } => {
                let mu = max_unavailable.map_or("1".to_string(), |m| m.to_string());
                if partition > 0 {
                    format!("RollingUpdate maxUnavailable {mu}, partition {partition}")
                } else {
                    format!("RollingUpdate maxUnavailable {mu}")
                }
            }
            UpdateStrategy::OnDelete => "OnDelete".into(),
        }
    }
}

/// What a PodDisruptionBudget asks for (`spec`); exactly one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrPercent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

impl BudgetSpec {
    /// The disruption controller's `getExpectedPodCount`: how many pods must
    /// stay healthy. `expected_scale` is the summed `replicas` of the pods'
    /// controllers; `matched_pods` the number of pods the selector matches.
    pub fn desired_healthy(self, expected_scale: i32, matched_pods: i32) -> i32 {
        match (self.max_unavailable, self.min_available) {
            (Some(mu), _) => (expected_scale - mu.scaled(expected_scale, true)).max(0),
            (None, Some(IntOrPercent::Int(n))) => n,
            (None, Some(p @ IntOrPercent::Percent(_))) => p.scaled(expected_scale, true),
            // Neither set is rejected by validation; nothing is required then.
            (None, None) => {
                let _ = matched_pods;
                0
            }
        }
    }

    /// The expected count the controller compares `desiredHealthy` with:
    /// the pods matched for an integer minAvailable, the controllers'
    /// scale otherwise.
    pub fn expected_count(self, expected_scale: i32, matched_pods: i32) -> i32 {
        match (self.max_unavailable, self.min_available) {
            (None, Some(IntOrPercent::Int(_))) => matched_pods,
            _ => expected_scale,
        }
    }

    /// How many of its pods may be down at once when all are healthy.
    pub fn allowance(self, expected_scale: i32, matched_pods: i32) -> i32 {
        (self.expected_count(expected_scale, matched_pods) - self.desired_healthy(expected_scale, matched_pods)).max(0)
    }

    /// `maxUnavailable: 1`, `minAvailable: 80%`.
    pub fn describe(self) -> String {
        match (self.max_unavailable, self.min_available) {
            (Some(mu), _) => format!("maxUnavailable {mu}"),
            (None, Some(ma)) => format!("minAvailable {ma}"),
            (None, None) => "no limit".into(),
        }
    }
}

/// `ceil(a / b)` for pod counts (b >= 1).
pub fn waves(pods: usize, at_once: usize) -> usize {
    pods.div_ceil(at_once.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use IntOrPercent::{Int, Percent};

    #[test]
    fn percentages_round_as_the_controllers_do() {
        assert_eq!(Percent(25).scaled(10, false), 2, "2.5 rounds down");
        assert_eq!(Percent(25).scaled(10, true), 3, "2.5 rounds up");
        assert_eq!(Percent(25).scaled(3, false), 0);
        assert_eq!(Percent(80).scaled(6, true), 5, "4.8 rounds up");
        assert_eq!(Int(3).scaled(10, true), 3);
        assert_eq!(IntOrPercent::parse_str("25%"), Some(Percent(25)));
        assert_eq!(IntOrPercent::parse_str("1"), Some(Int(1)));
        assert_eq!(IntOrPercent::parse_str("x"), None);
    }

    #[test]
    fn rollout_unavailability_per_strategy() {
        let d = UpdateStrategy::DEPLOYMENT_DEFAULT;
        assert_eq!(d.max_unavailable(10), Some(2), "25% of 10, rounded down");
        assert_eq!(d.max_unavailable(6), Some(1));
        assert_eq!(d.max_unavailable(3), Some(0), "25% of 3 is 0; maxSurge carries the rollout");
        assert_eq!(d.max_unavailable(1), Some(0), "surge 1, unavailable 0");
        let no_surge = UpdateStrategy::DeploymentRolling { max_surge: Int(0), max_unavailable: Percent(10) };
        assert_eq!(no_surge.max_unavailable(5), Some(1), "0 and 0 resolve to 1 unavailable");
        assert_eq!(UpdateStrategy::Recreate.max_unavailable(2), Some(2));
        let sts = UpdateStrategy::StatefulSetRolling { max_unavailable: None, partition: 0 };
        assert_eq!(sts.max_unavailable(3), Some(1));
        let sts = UpdateStrategy::StatefulSetRolling { max_unavailable: Some(Percent(50)), partition: 0 };
        assert_eq!(sts.max_unavailable(3), Some(1), "1.5 rounds down");
        let ds = UpdateStrategy::DaemonSetRolling { max_unavailable: Int(2), max_surge: Int(0) };
        assert_eq!(ds.max_unavailable(3), Some(2));
        let ds = UpdateStrategy::DaemonSetRolling { max_unavailable: Percent(10), max_surge: Int(0) };
        assert_eq!(ds.max_unavailable(3), Some(1), "0.3 rounds up");
        let ds = UpdateStrategy::DaemonSetRolling { max_unavailable: Int(0), max_surge: Int(1) };
        assert_eq!(ds.max_unavailable(3), Some(0), "surge first: nothing goes down");
        assert_eq!(UpdateStrategy::OnDelete.max_unavailable(3), None);
    }

    #[test]
    fn budgets_as_the_disruption_controller_computes_them() {
        let mu1 = BudgetSpec { max_unavailable: Some(Int(1)), min_available: None };
        assert_eq!(mu1.desired_healthy(10, 10), 9);
        assert_eq!(mu1.allowance(10, 10), 1);
        let ma80 = BudgetSpec { min_available: Some(Percent(80)), max_unavailable: None };
        assert_eq!(ma80.desired_healthy(6, 6), 5, "4.8 rounds up");
        assert_eq!(ma80.allowance(6, 6), 1);
        assert_eq!(ma80.allowance(2, 2), 0, "80% of 2 rounds up to 2");
        let ma1 = BudgetSpec { min_available: Some(Int(1)), max_unavailable: None };
        assert_eq!(ma1.allowance(1, 1), 0);
        assert_eq!(ma1.allowance(2, 2), 1);
        assert_eq!(ma1.expected_count(5, 3), 3, "integer minAvailable counts matched pods");
        let mu25 = BudgetSpec { max_unavailable: Some(Percent(25)), min_available: None };
        assert_eq!(mu25.allowance(10, 10), 3, "maxUnavailable percent rounds up");
        let mu0 = BudgetSpec { max_unavailable: Some(Int(0)), min_available: None };
        assert_eq!(mu0.allowance(3, 3), 0);
        assert_eq!(waves(10, 1), 10);
        assert_eq!(waves(10, 3), 4);
        assert_eq!(waves(0, 0), 0);
    }
}
