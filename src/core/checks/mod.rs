//! The checks of `verify`: plain data in, a list of PASS/WARN/FAIL results
//! out, each naming the objects at fault; a check that has nothing to check
//! against (no target or old pool named, none recorded) says NOT_CHECKED,
//! never PASS.
//!
//! Every check is always present in the result (PASS when clean) so the
//! output has a stable shape for scripts. The IPAM checks classify problems
//! the way `calicoctl ipam check` does, so `IpamFigures::calicoctl_problems`
//! equals calicoctl's "found N problems" on the same cluster.
//!
//! Each check's code, title and category are written once, in [`defs`];
//! `pools`, `pods`, `ipam` and `probe` hold the checks themselves.

#[cfg(test)]
mod fixtures;
mod ipam;
mod pods;
mod pools;
mod probe;
mod rules;

pub use probe::{probe_check, probe_paths_check};

use ipnet::IpNet;
use serde::Serialize;

use super::findings::Severity;
use super::inventory::Inventory;
use super::model::{ClusterNetworks, NamespaceInfo, NodeInfo, SandboxFailure, WorkloadTemplate};
use super::rules::RuleObject;
use super::state::{MigrationState, Phase};

/// Which part of the cluster a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Pools,
    Pods,
    Rules,
    Ipam,
    Probe,
}

/// A check's outcome: a finding's severity, or "not checked" when there was
/// nothing to check against. NOT_CHECKED is neither a pass nor a failure:
/// it counts towards neither, and never changes the result or exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    #[serde(rename = "NOT_CHECKED")]
    NotChecked,
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

impl Status {
    /// The severity this outcome counts as; None for NOT_CHECKED.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Status::NotChecked => None,
            Status::Pass => Some(Severity::Pass),
            Status::Warn => Some(Severity::Warn),
            Status::Fail => Some(Severity::Fail),
        }
    }

    /// The STATUS column: `NOT CHECKED`, `PASS`, `WARN`, `FAIL`.
    pub fn label(self) -> &'static str {
        match self {
            Status::NotChecked => "NOT CHECKED",
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

impl From<Severity> for Status {
    fn from(s: Severity) -> Status {
        match s {
            Severity::Pass => Status::Pass,
            Severity::Warn => Status::Warn,
            Severity::Fail => Status::Fail,
        }
    }
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable identifier for scripts, e.g. `leakedAllocations`.
    pub code: &'static str,
    /// Short human title, shown in the CHECK column.
    pub name: &'static str,
    pub category: Category,
    pub status: Status,
    pub message: String,
    /// Every object at fault (`Pod shop/web-1`, `IPAMBlock 192-168-0-0-26`).
    pub objects: Vec<String>,
}

impl Check {
    fn new(def: CheckDef, status: Severity, message: impl Into<String>, objects: Vec<String>) -> Check {
        Check {
            code: def.code,
            name: def.title,
            category: def.category,
            status: status.into(),
            message: message.into(),
            objects,
        }
    }

    /// NOT_CHECKED: `message` says why there was nothing to check against.
    fn not_checked(def: CheckDef, message: impl Into<String>) -> Check {
        Check { status: Status::NotChecked, ..Check::new(def, Severity::Pass, message, vec![]) }
    }

    /// PASS with `message` and no objects.
    fn pass(def: CheckDef, message: impl Into<String>) -> Check {
        Check::new(def, Severity::Pass, message, vec![])
    }

    /// PASS with `ok` when `objects` is empty, else `bad` with `msg(objects)`.
    fn from_objects(
        def: CheckDef,
        bad: Severity,
        objects: Vec<String>,
        ok: impl Into<String>,
        msg: impl FnOnce(&[String]) -> String,
    ) -> Check {
        if objects.is_empty() {
            Check::pass(def, ok)
        } else {
            let m = msg(&objects);
            Check::new(def, bad, m, objects)
        }
    }
}

/// What never changes about a check: its code, its title and its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckDef {
    /// Stable identifier for scripts (`Check::code`).
    pub code: &'static str,
    /// Short human title (`Check::name`, the CHECK column).
    pub title: &'static str,
    pub category: Category,
}

/// Writes the table below: one `CheckDef` constant per row and, for the
/// tests, `ALL` with every row in table order.
macro_rules! check_defs {
    ($($id:ident: $code:literal, $title:literal, $category:ident;)+) => {
        $(pub const $id: CheckDef = CheckDef { code: $code, title: $title, category: Category::$category };)+

        /// Every check, in table order.
        #[cfg(test)]
        pub const ALL: &[CheckDef] = &[$($id),+];
    };
}

/// Every check `verify` can report. The codes and titles are the stable
/// output (JSON `code`/`name`, the CHECK column); the rows are in the order
/// the checks appear in the output, which `run_checks` plus the probe keep.
pub mod defs {
    use super::{Category, CheckDef};

    check_defs! {
        // constant                 code                        title                               category
        TARGET_POOL:                "targetPool",               "Target pool",                      Pools;
        POOL_OVERLAPS_SERVICE_CIDR: "poolOverlapsServiceCidr",  "Pools vs Service CIDR",            Pools;
        POOLS_OVERLAP:              "poolsOverlap",             "Pool overlap",                     Pools;
        POOL_OUTSIDE_CLUSTER_CIDR:  "poolOutsideClusterCidr",   "Pools vs cluster CIDR",            Pools;
        OLD_POOL_RETIRED:           "oldPoolRetired",           "Old pool retired",                 Pools;
        MIGRATION_COMPLETE:         "migrationComplete",        "Migration record",                 Pools;
        PODS_ON_RETIRED_POOLS:      "podsOnRetiredPools",       "Pods on retired pools",            Pods;
        PODS_OUTSIDE_POOLS:         "podsOutsidePools",         "Pods outside pools",               Pods;
        PINNED_TO_RETIRED_POOL:     "pinnedToRetiredPool",      "Pool pins",                        Pods;
        PODS_PENDING_ON_IPAM:       "podsPendingOnIpam",        "Pods pending on IPAM",             Pods;
        RULES_NAME_RETIRED_CIDR:    "rulesNameRetiredCidr",     "Rules naming retired pools",       Rules;
        LEAKED_ALLOCATIONS:         "leakedAllocations",        "Leaked allocations",               Ipam;
        ALLOCATION_OWNER_MISMATCH:  "allocationOwnerMismatch",  "Allocation owners",                Ipam;
        IPS_OUTSIDE_ACTIVE_POOLS:   "ipsOutsideActivePools",    "In-use IPs outside active pools",  Ipam;
        IPS_WITHOUT_ALLOCATION:     "ipsWithoutAllocation",     "In-use IPs without allocation",    Ipam;
        DUPLICATE_IPS:              "duplicateIps",             "Duplicate IPs",                    Ipam;
        HANDLES_WITHOUT_IPS:        "handlesWithoutIps",        "Orphan handles",                   Ipam;
        MISSING_HANDLES:            "missingHandles",           "Missing handles",                  Ipam;
        AFFINITY_FOR_MISSING_NODE:  "affinityForMissingNode",   "Affinities of missing nodes",      Ipam;
        AFFINITY_FOR_DELETED_POOL:  "affinityForDeletedPool",   "Affinities of deleted pools",      Ipam;
        AFFINITY_PENDING_DELETION:  "affinityPendingDeletion",  "Affinities pending deletion",      Ipam;
        BLOCKS_OUTSIDE_POOLS:       "blocksOutsidePools",       "Blocks outside pools",             Ipam;
        INVALID_BLOCKS:             "invalidBlocks",            "Block structure",                  Ipam;
        PROBE:                      "probe",                    "Probe pod",                        Probe;
        PROBE_PATHS:                "probePaths",               "Probe traffic",                    Probe;
    }
}

/// What `verify` was asked about, beyond what the cluster says.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Pools (names) new pods should get addresses from (`--to`).
    pub targets: Vec<String>,
    /// The pool being retired (`--from`), which may already be deleted.
    pub from: Option<String>,
    /// Its CIDR, for when the pool is gone (`--from-cidr` or the record).
    pub from_cidr: Option<IpNet>,
    /// Restrict pod-level checks to this namespace (`-n`).
    pub namespace: Option<String>,
}

/// Everything the checks look at.
pub struct VerifyInput<'a> {
    pub inv: &'a Inventory,
    pub nodes: &'a [NodeInfo],
    pub namespaces: &'a [NamespaceInfo],
    pub networks: &'a ClusterNetworks,
    pub migration: Option<&'a MigrationState>,
    pub templates: &'a [WorkloadTemplate],
    pub sandbox_failures: &'a [SandboxFailure],
    /// Policies, network sets and the like that may name CIDRs.
    pub rules: &'a [RuleObject],
    /// Kinds of those the user may not read (`GlobalNetworkPolicy (forbidden)`).
    pub rules_unreadable: &'a [String],
    pub expect: &'a Expectations,
}

/// The IPAM figures, in `calicoctl ipam check`'s classes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamFigures {
    pub blocks: usize,
    /// Allocated addresses over all blocks.
    pub allocations: usize,
    /// Addresses in use by pods (workload endpoints) and node tunnels.
    pub in_use_ips: usize,
    /// Allocated but not in use (calicoctl: "allocated in IPAM but not actually in use").
    pub leaked_ips: usize,
    /// In use, not allocated, outside every active pool.
    pub in_use_not_in_active_pool: usize,
    /// In use, not allocated, inside an active pool.
    pub in_use_without_allocation: usize,
    /// IPAMHandles no allocation refers to.
    pub handles_without_ips: usize,
    /// Handles named by allocations that have no IPAMHandle object (calicoctl lists these but does not count them).
    pub missing_handles: usize,
    /// Addresses claimed by more than one pod or node (calicoctl lists these but does not count them).
    pub multiple_owners: usize,
    /// Blocks with structural problems (calicoctl >= 3.32 counts these).
    pub invalid_blocks: usize,
    /// The number `calicoctl ipam check` (3.31) reports as "found N problems".
    pub calicoctl_problems: usize,
}

/// The pool names the checks treat as targets and as the retired pool:
/// flags first, then an unfinished-or-done (not rolled back) migration record.
/// The target pools, the old pools and the old pools' CIDRs: from the
/// flags, else from the migration record (every IP family it migrated).
/// The pools new pods should get addresses from: named by `--to`, else
/// the migration record's targets (empty when neither says).
pub fn target_pools(input: &VerifyInput) -> Vec<String> {
    targets_and_from(input).0
}

fn targets_and_from(input: &VerifyInput) -> (Vec<String>, Vec<String>, Vec<IpNet>) {
    let record = input.migration.filter(|m| m.phase != Phase::RolledBack);
    let pairs = record.map(|m| m.pairs()).unwrap_or_default();
    let targets = if !input.expect.targets.is_empty() {
        input.expect.targets.clone()
    } else {
        pairs.iter().map(|p| p.to_pool.clone()).collect()
    };
    let froms: Vec<String> = match &input.expect.from {
        Some(f) => vec![f.clone()],
        None => pairs.iter().map(|p| p.from_pool.clone()).collect(),
    };
    let from_cidrs = match input.expect.from_cidr {
        Some(c) => vec![c],
        None => froms
            .iter()
            .filter_map(|from| {
                if let Some(i) = input.inv.pool_named(from) {
                    return Some(input.inv.pools[i].cidr);
                }
                pairs
                    .iter()
                    .find(|p| &p.from_pool == from)
                    .and_then(|p| p.from_cidr.parse::<IpNet>().ok())
                    .map(|n| n.trunc())
            })
            .collect(),
    };
    (targets, froms, from_cidrs)
}

/// Run every check (the probe is added by the caller).
pub fn run_checks(input: &VerifyInput) -> (Vec<Check>, IpamFigures) {
    let mut out = pools::pool_checks(input);
    out.extend(pods::pod_checks(input));
    out.push(rules::rule_check(input));
    let (ipam, figures) = ipam::ipam_checks(input);
    out.extend(ipam);
    (out, figures)
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub warnings: usize,
    pub failed: usize,
    pub not_checked: usize,
}

pub fn summarize(checks: &[Check]) -> Summary {
    let mut s = Summary { total: checks.len(), ..Default::default() };
    for c in checks {
        match c.status {
            Status::NotChecked => s.not_checked += 1,
            Status::Pass => s.passed += 1,
            Status::Warn => s.warnings += 1,
            Status::Fail => s.failed += 1,
        }
    }
    s
}

/// The overall result (NOT_CHECKED counts as nothing); `--strict` counts
/// warnings as failures.
pub fn overall(checks: &[Check], strict: bool) -> Severity {
    let worst = checks.iter().filter_map(|c| c.status.severity()).max().unwrap_or(Severity::Pass);
    if strict && worst == Severity::Warn {
        Severity::Fail
    } else {
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn clean_cluster_passes_everything() {
        let (cs, fig) = clean_world().run();
        let bad: Vec<_> = cs.iter().filter(|c| c.status != Status::Pass).collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(fig.calicoctl_problems, 0);
        assert_eq!(fig.allocations, 3);
        assert_eq!(fig.in_use_ips, 3);
        assert_eq!(overall(&cs, true), Severity::Pass);
    }

    #[test]
    fn not_checked_is_neither_a_pass_nor_a_failure() {
        let mut w = clean_world();
        w.expect = Expectations::default();
        let (cs, _) = w.run();
        for code in ["targetPool", "oldPoolRetired"] {
            let c = check(&cs, code);
            assert_eq!(c.status, Status::NotChecked, "{c:#?}");
            assert!(c.objects.is_empty());
        }
        let s = summarize(&cs);
        assert_eq!((s.not_checked, s.failed, s.warnings), (2, 0, 0));
        assert_eq!(s.passed + s.not_checked, s.total);
        assert_eq!(overall(&cs, true), Severity::Pass);
        let v = serde_json::to_value(check(&cs, "targetPool")).unwrap();
        assert_eq!(v["status"], "NOT_CHECKED");
        assert_eq!(Status::NotChecked.label(), "NOT CHECKED");
        // Only NOT_CHECKED checks: still PASS overall, nothing failed.
        let only = vec![Check::not_checked(defs::TARGET_POOL, "x")];
        assert_eq!(overall(&only, true), Severity::Pass);
    }

    #[test]
    fn every_check_is_always_present_in_a_stable_order() {
        let (cs, _) = clean_world().run();
        let codes: Vec<_> = cs.iter().map(|c| c.code).collect();
        assert_eq!(
            codes,
            vec![
                "targetPool",
                "poolOverlapsServiceCidr",
                "poolsOverlap",
                "poolOutsideClusterCidr",
                "oldPoolRetired",
                "migrationComplete",
                "podsOnRetiredPools",
                "podsOutsidePools",
                "pinnedToRetiredPool",
                "podsPendingOnIpam",
                "rulesNameRetiredCidr",
                "leakedAllocations",
                "allocationOwnerMismatch",
                "ipsOutsideActivePools",
                "ipsWithoutAllocation",
                "duplicateIps",
                "handlesWithoutIps",
                "missingHandles",
                "affinityForMissingNode",
                "affinityForDeletedPool",
                "affinityPendingDeletion",
                "blocksOutsidePools",
                "invalidBlocks",
            ]
        );
    }

    #[test]
    fn the_table_lists_the_checks_in_output_order() {
        let w = clean_world();
        let nets = nets();
        let input = w.input(&nets);
        let (mut cs, _) = run_checks(&input);
        cs.push(probe_check(&input, &[]));
        cs.push(probe_paths_check(&Err("x".into()), &[]));
        let got: Vec<_> = cs.iter().map(|c| (c.code, c.name, c.category)).collect();
        let table: Vec<_> = defs::ALL.iter().map(|d| (d.code, d.title, d.category)).collect();
        assert_eq!(got, table);
    }
}
