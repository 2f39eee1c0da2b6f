//! The end state of a migration, counted (never asserted here): workloads
//! short of ready pods, pods left outside the new pool, canary or probe
//! leftovers, the old pool or its IPAM objects still there, `calicoctl ipam
//! check` problems, the lease still held. Tests count, print their
//! RELIABILITY line, then assert, so a failing run still reports its figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::TestCluster;
use crate::support::*;

#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Workloads gone or short of ready pods, or the record not Done.
    pub lost: Vec<String>,
    /// Pods outside the new pool, canary/probe leftovers.
    pub behind: Vec<String>,
    /// The old pool, its IPAM objects, IPAM problems, the lease.
    pub other: Vec<String>,
}

impl Outcome {
    pub(crate) fn data_lost(&self) -> usize {
        self.lost.len()
    }

    pub(crate) fn left_behind(&self) -> usize {
        self.behind.len()
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.lost.is_empty() {
            p.push(format!("data lost: {:?}", self.lost));
        }
        if !self.behind.is_empty() {
            p.push(format!("pods left behind: {:?}", self.behind));
        }
        p.extend(self.other.iter().cloned());
        p
    }
}

/// Old-CIDR IPAM blocks and affinities (`kind cidr`).
fn old_ipam(c: &TestCluster, old_cidr: &str) -> Vec<String> {
    let old: ipnet::IpNet = old_cidr.parse().unwrap();
    ["ipamblocks.crd.projectcalico.org", "blockaffinities.crd.projectcalico.org"]
        .iter()
        .flat_map(|kind| {
            json(c, &["get", kind])["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| o["spec"]["cidr"].as_str())
                .filter(|b| b.parse::<ipnet::IpNet>().is_ok_and(|n| old.contains(&n)))
                .map(|b| format!("{kind} {b}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The end state after `migrate` exited 0 (or should have).
pub(crate) fn check_migrated(
    c: &TestCluster,
    workloads_before: &BTreeMap<String, i64>,
    old_pool: &str,
    old_cidr: &str,
    new_cidr: &str,
) -> Outcome {
    let mut o = Outcome::default();
    // Left behind, at the moment the run exited (the caller comes here at once).
    o.behind.extend(pods_outside(c, new_cidr));
    o.behind.extend(leftovers(c));
    let ipam = old_ipam(c, old_cidr);
    if !ipam.is_empty() {
        o.other.push(format!("IPAM objects of {old_cidr} remain after the run: {ipam:?}"));
    }
    // Ready counts: a replacement pod the run waited for is ready, but a
    // Deployment's status can trail its pods by a sync; bounded.
    let start = Instant::now();
    let short = || {
        let ready = ready_counts(c);
        workloads_before
            .iter()
            .filter(|(k, want)| ready.get(*k).is_none_or(|r| r < *want))
            .map(|(k, w)| format!("{k} wants {w}, ready {:?}", ready.get(k)))
            .collect::<Vec<_>>()
    };
    let mut lost = short();
    while !lost.is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(250));
        lost = short();
    }
    o.lost = lost;
    let cm = json(c, &["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration"]);
    let state: Value = serde_json::from_str(cm["data"]["state.json"].as_str().unwrap_or("{}")).unwrap_or_default();
    if state["phase"] != "Done" {
        o.lost.push(format!("record not Done: {state}"));
    }
    let pools = c.kubectl_ok(&["get", "ippools.crd.projectcalico.org", "-o", "name"]);
    if pools.lines().any(|l| l.ends_with(&format!("/{old_pool}"))) {
        o.other.push(format!("pool {old_pool} still exists"));
    }
    let check = c.calicoctl(&["ipam", "check"]);
    let report = text(&check.stdout);
    if !check.status.success() || !report.contains("found 0 problems") {
        o.other.push(format!("calicoctl ipam check:\n{report}\n{}", text(&check.stderr)));
    }
    if let Some(e) = lease_not_released(c) {
        o.other.push(e);
    }
    o
}

/// The lease must be gone: NotFound, not any kubectl failure.
pub(crate) fn lease_not_released(c: &TestCluster) -> Option<String> {
    let out = c.kubectl(&["get", "lease", "-n", "kube-system", "kubectl-ippool"]);
    let err = text(&out.stderr);
    if out.status.success() {
        Some("lease kube-system/kubectl-ippool not released".into())
    } else if !err.contains("(NotFound)") {
        Some(format!("could not tell whether the lease was released: {err}"))
    } else {
        None
    }
}

/// Panics with every problem (after the caller printed its figures).
pub(crate) fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}
