//! Which PodDisruptionBudgets guard which workloads, and how many pods each
//! lets be down at once. A PDB that covers several workloads is one budget:
//! those workloads share a lane and move one after another.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::PlanInput;
use crate::core::budget::BudgetSpec;
use crate::core::model::{Owner, PdbInfo};

/// A PodDisruptionBudget as it bears on one move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    /// `namespace/name` of the PDB.
    pub pdb: String,
    /// `maxUnavailable 1`, `minAvailable 80%`.
    pub spec: String,
    /// Pods it lets be down at once when all are healthy.
    pub allowance: i32,
    /// What it asks for, the summed scale of its pods' controllers and the
    /// pods it matches: enough to work out how many replicas `--surge` adds.
    #[serde(skip)]
    pub budget: BudgetSpec,
    #[serde(skip)]
    pub scale: i32,
    #[serde(skip)]
    pub matched: i32,
}

/// The budgets of the cluster, indexed by the workloads they cover.
pub(super) struct Budgets {
    by_owner: BTreeMap<Owner, Vec<Guard>>,
    /// Owner -> lane name: owners under a common PDB share a lane.
    lane_of: BTreeMap<Owner, String>,
}

impl Budgets {
    pub(super) fn new(input: &PlanInput) -> Budgets {
        let owner_of: BTreeMap<String, &Owner> = input.inventory.pods.iter().map(|p| (p.key(), &p.owner)).collect();
        let replicas: BTreeMap<&Owner, i32> = input.workloads.iter().map(|w| (&w.owner, w.replicas)).collect();
        let mut by_owner: BTreeMap<Owner, Vec<Guard>> = BTreeMap::new();
        let mut groups: Vec<BTreeSet<Owner>> = Vec::new();
        for pdb in input.pdbs {
            let owners: BTreeSet<Owner> =
                pdb.pods.iter().filter_map(|k| owner_of.get(k)).map(|o| (*o).clone()).collect();
            if owners.is_empty() {
                continue;
            }
            let (allowance, scale) = allowance(pdb, &owners, &replicas, &owner_of);
            let guard = Guard {
                pdb: format!("{}/{}", pdb.namespace, pdb.name),
                spec: pdb.spec.describe(),
                allowance,
                budget: pdb.spec,
                scale,
                matched: pdb.pods.len() as i32,
            };
            for o in &owners {
                by_owner.entry(o.clone()).or_default().push(guard.clone());
            }
            groups.push(owners);
        }
        Budgets { by_owner, lane_of: lanes(groups) }
    }

    pub(super) fn guards(&self, owner: &Owner) -> &[Guard] {
        self.by_owner.get(owner).map_or(&[], Vec::as_slice)
    }

    /// The lane of `owner`: shared with every owner under a common PDB.
    pub(super) fn lane(&self, owner: &Owner) -> String {
        self.lane_of.get(owner).cloned().unwrap_or_else(|| owner.display())
    }
}

/// Pods of `pdb` that may be down at once with all healthy: from its spec
/// (as the disruption controller computes `desiredHealthy`) and, where the
/// controller has already counted, from its status; the smaller wins.
/// Returns it with the summed scale of the pods' controllers.
fn allowance(
    pdb: &PdbInfo,
    owners: &BTreeSet<Owner>,
    replicas: &BTreeMap<&Owner, i32>,
    owner_of: &BTreeMap<String, &Owner>,
) -> (i32, i32) {
    let matched = pdb.pods.len() as i32;
    // Pods whose controller's scale is unknown count one each.
    let unscaled =
        pdb.pods.iter().filter(|k| owner_of.get(*k).is_none_or(|o| !replicas.contains_key(o))).count() as i32;
    let scale: i32 = owners.iter().filter_map(|o| replicas.get(o)).sum::<i32>() + unscaled;
    let from_spec = pdb.spec.allowance(scale, matched);
    let allowance =
        if pdb.expected_pods > 0 { from_spec.min((pdb.expected_pods - pdb.desired_healthy).max(0)) } else { from_spec };
    (allowance, scale)
}

/// Union the owner groups of overlapping PDBs; each union is one lane,
/// named after its first owner.
fn lanes(groups: Vec<BTreeSet<Owner>>) -> BTreeMap<Owner, String> {
    let mut merged: Vec<BTreeSet<Owner>> = Vec::new();
    for g in groups {
        let mut g = g;
        let (overlapping, rest): (Vec<_>, Vec<_>) = merged.into_iter().partition(|m| !m.is_disjoint(&g));
        for m in overlapping {
            g.extend(m);
        }
        merged = rest;
        merged.push(g);
    }
    let mut out = BTreeMap::new();
    for g in merged {
        let name = g.iter().next().map(|o| o.display()).unwrap_or_default();
        for o in g {
            out.insert(o, name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::IntOrPercent::{Int, Percent};
    use crate::core::model::{OwnerKind, WorkloadInfo};

    fn owner(kind: OwnerKind, name: &str) -> Owner {
        Owner { kind, other_kind: None, namespace: "shop".into(), name: name.into() }
    }

    #[test]
    fn one_budget_over_two_workloads_is_one_lane_with_the_shared_allowance() {
        use crate::core::budget::BudgetSpec;
        use crate::core::inventory::tests::pod;
        use crate::core::plan::fixtures::*;
        let mut pods = seed_pods();
        for i in 0..3 {
            pods.push(pod(
                "shop",
                &format!("front-a-{i}"),
                &format!("192.168.1.{i}"),
                OwnerKind::Deployment,
                "front-a",
            ));
            pods.push(pod(
                "shop",
                &format!("front-b-{i}"),
                &format!("192.168.2.{i}"),
                OwnerKind::Deployment,
                "front-b",
            ));
        }
        let mut w = world(seed_pools(), pods);
        w.workloads =
            vec![WorkloadInfo::deployment("shop", "front-a", 3), WorkloadInfo::deployment("shop", "front-b", 3)];
        w.pdbs = vec![PdbInfo {
            namespace: "shop".into(),
            name: "front".into(),
            spec: BudgetSpec { max_unavailable: Some(Int(1)), min_available: None },
            disruptions_allowed: 1,
            current_healthy: 6,
            desired_healthy: 5,
            expected_pods: 6,
            pods: (0..3).flat_map(|i| [format!("shop/front-a-{i}"), format!("shop/front-b-{i}")]).collect(),
        }];
        let i = input(&w, cidr("10.0.0.0/16"));
        let b = Budgets::new(&i);
        let a = owner(OwnerKind::Deployment, "front-a");
        assert_eq!(b.guards(&a)[0].allowance, 1);
        assert_eq!(b.lane(&a), b.lane(&owner(OwnerKind::Deployment, "front-b")));
        assert_ne!(b.lane(&a), b.lane(&owner(OwnerKind::Deployment, "web")));
        // 80% of 6 computed from the spec, even before the controller counted.
        w.pdbs[0].spec = BudgetSpec { min_available: Some(Percent(80)), max_unavailable: None };
        w.pdbs[0].expected_pods = 0;
        let i = input(&w, cidr("10.0.0.0/16"));
        assert_eq!(Budgets::new(&i).guards(&a)[0].allowance, 1, "ceil(4.8) = 5 of 6 must stay");
    }
}
