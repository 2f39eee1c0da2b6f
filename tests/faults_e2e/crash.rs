//! Crash trials: SIGKILL `migrate` at a named point (the run pauses there
//! through `KUBECTL_IPPOOL_PAUSE_AT`, so the kill lands exactly there) or
//! after a random delay, resume with the same command, and count what the
//! end state shows. Trials chain on one cluster: trial k moves the pool the
//! trial before made to the next CIDR (10.k.0.0/16).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::common::TestCluster;
use crate::outcome::{check_migrated, Outcome};
use crate::support::*;

/// Every point the deterministic walk kills at, once each, with the phase
/// the record must show at the kill: each phase boundary (the record just
/// saved), the middle of the moves (after the first workload), and the two
/// points inside the delete step.
pub(crate) const KILL_POINTS: [(&str, &str); 10] = [
    ("checkpoint:Started", "Started"),
    ("checkpoint:TargetReady", "TargetReady"),
    ("checkpoint:CanaryPassed", "CanaryPassed"),
    ("checkpoint:SourceDisabled", "SourceDisabled"),
    ("checkpoint:MovingPods", "MovingPods"),
    ("checkpoint:MovingPods#2", "MovingPods"),
    ("checkpoint:Draining", "Draining"),
    ("delete:affinities-released", "Draining"),
    ("delete:pool-deleted", "Draining"),
    ("checkpoint:SourceDeleted", "SourceDeleted"),
];

pub(crate) enum Kill {
    At(&'static str, &'static str),
    After(Duration),
}

/// What one trial did and found; every figure is counted before anything is asserted.
pub(crate) struct Trial {
    pub how: String,
    /// The record's phase right after the kill (None: no kill happened).
    pub killed_in: Option<String>,
    pub resumed: bool,
    pub outcome: Outcome,
    pub pdb_violations: usize,
    pub services_at_zero: usize,
    /// Everything wrong with this trial (empty: it passed).
    pub problems: Vec<String>,
}

/// The pool and CIDR of link `k` of the chain (0: the scenario's own pool).
pub(crate) fn chain_pool(k: usize) -> (String, String) {
    if k == 0 {
        (OLD.to_string(), OLD_CIDR.to_string())
    } else {
        (format!("10.{}.0.0-16", k - 1), format!("10.{}.0.0/16", k - 1))
    }
}

fn record_phase(c: &TestCluster) -> String {
    let cm = c.kubectl(&["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&cm.stdout).unwrap_or_default();
    let state: Value = serde_json::from_str(doc["data"]["state.json"].as_str().unwrap_or("{}")).unwrap_or_default();
    state["phase"].as_str().unwrap_or("").to_string()
}

fn pool_exists(c: &TestCluster, name: &str) -> bool {
    c.kubectl(&["get", "ippools.crd.projectcalico.org", name]).status.success()
}

/// Waits for the pause file (or the delay), then SIGKILLs. Returns an error
/// when the run ended on its own first.
fn kill_when_due(child: &mut Child, pause_file: &Path, kill: &Kill) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("the run ended ({status}) before the kill: {}", last_stderr()));
        }
        let due = match kill {
            Kill::At(point, _) => std::fs::read_to_string(pause_file).is_ok_and(|p| p == *point),
            Kill::After(d) => start.elapsed() >= *d,
        };
        if due {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(240) {
            child.kill().unwrap();
            child.wait().unwrap();
            return Err(format!("the run never reached the kill point in 240 s: {}", last_stderr()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One trial on link `k` of the chain.
pub(crate) fn trial(c: &TestCluster, k: usize, kill: &Kill) -> Trial {
    let (from, from_cidr) = chain_pool(k);
    let (_, to_cidr) = chain_pool(k + 1);
    let before = workload_counts(c);
    let args = migrate_args(&from, &to_cidr);
    let budget = budget_watch(c);
    let pause_file = c.dir().join(format!("pause-{k}"));
    let mut env = vec![("KUBECTL_IPPOOL_PAUSE_FILE", pause_file.to_str().unwrap().to_string())];
    let how = match kill {
        Kill::At(point, _) => {
            env.push(("KUBECTL_IPPOOL_PAUSE_AT", point.to_string()));
            format!("at {point}")
        }
        Kill::After(d) => format!("after {d:?}"),
    };
    let mut child = spawn_migrate_env(&c.kubeconfig, &args, &env);
    let mut problems = Vec::new();
    let mut killed_in = None;
    match kill_when_due(&mut child, &pause_file, kill) {
        Ok(()) => {
            let phase = record_phase(c);
            if let Kill::At(point, want) = kill {
                if phase != *want {
                    problems.push(format!("killed at {point}, but the record says {phase:?}, not {want}"));
                }
                // The delete step's two points, seen on the pool itself.
                let exists = pool_exists(c, &from);
                if *point == "delete:affinities-released" && !exists {
                    problems.push(format!("killed before the pool's delete, but {from} is gone"));
                }
                if *point == "delete:pool-deleted" && exists {
                    problems.push(format!("killed after the pool's delete, but {from} still exists"));
                }
            }
            killed_in = Some(if phase.is_empty() { "before the record".to_string() } else { phase });
        }
        Err(e) if matches!(kill, Kill::After(_)) && e.contains("exit status: 0") => {}
        Err(e) => problems.push(e),
    }
    let mut resumed = false;
    if killed_in.is_some() {
        let out = ippool(c, &args).timeout(Duration::from_secs(300)).output().unwrap();
        resumed = out.status.success();
        if !resumed {
            problems.push(format!("the re-run failed:\n{}\n{}", text(&out.stdout), text(&out.stderr)));
        }
    }
    let outcome = check_migrated(c, &before, &from, &from_cidr, &to_cidr);
    problems.extend(outcome.problems());
    let report = budget.stop();
    println!("trial {k}: {}", report.summary().trim_end());
    problems.extend(budget_problems(&report));
    Trial {
        how,
        killed_in,
        resumed,
        outcome,
        pdb_violations: report.violations.len(),
        services_at_zero: report.services_at_zero.len(),
        problems,
    }
}

/// The kills of a run of `n` trials: the deterministic walk, then random
/// ones (a random kill point or a random delay, from the seed).
pub(crate) fn schedule(n: usize, rng: &mut impl Rng) -> Vec<Kill> {
    let mut kills: Vec<Kill> = KILL_POINTS.iter().map(|(p, ph)| Kill::At(p, ph)).collect();
    for _ in KILL_POINTS.len()..n {
        kills.push(if rng.random_bool(0.5) {
            let (p, ph) = KILL_POINTS[rng.random_range(0..KILL_POINTS.len())];
            Kill::At(p, ph)
        } else {
            Kill::After(Duration::from_millis(rng.random_range(200..8000)))
        });
    }
    kills
}

/// FAULT_TRIALS (default: one per kill point); fewer than the walk needs is refused.
pub(crate) fn trials() -> usize {
    let n = match std::env::var("FAULT_TRIALS") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("FAULT_TRIALS={s:?} is not a number")),
        Err(_) => KILL_POINTS.len(),
    };
    assert!(
        n >= KILL_POINTS.len(),
        "FAULT_TRIALS={n}: the crash suite kills once at each of its {} points (every phase boundary and the delete step), so it needs at least {} trials",
        KILL_POINTS.len(),
        KILL_POINTS.len()
    );
    n
}
