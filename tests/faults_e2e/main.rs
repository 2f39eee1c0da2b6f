//! Reliability suite: crashes, concurrent edits, control-plane
//! faults and Ctrl-C cleanup, on fresh local kubesim clusters of the
//! `realistic` scenario (without `single`), each watched by a `BudgetWatch`
//! (tests/common/budget_watch/): no PodDisruptionBudget may go below its
//! floor and no Service may lose its last ready endpoint, faults or not.
//!
//! Run: `cargo test --test faults_e2e -- --test-threads=2`
//! (`FAULT_TRIALS=N` crash trials, default and least 10, one per kill point
//! of crash.rs; `FAULT_SEED=S` replays the random ones).
//! Each test counts what it found, prints one machine-greppable line
//! starting with `RELIABILITY` (with the watcher's `pdb_floor_violations=N
//! services_at_zero=N`), and only then asserts, so a failing run still
//! reports its figures; `scripts/faults.sh` sums them.

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pool_specs, TestCluster};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::Value;

mod crash;
mod outcome;
mod support;

use outcome::{assert_no_problems, check_migrated};
use support::*;

/// Priority 2: SIGKILL `migrate` at every phase boundary and inside the
/// delete step (one kill each, deterministic: the run pauses at the point
/// and is killed there), then at seeded random points or delays for
/// FAULT_TRIALS beyond those; resume with the same command each time. The
/// trials chain on one cluster. Every figure is counted and printed, failing
/// trials included, before anything is asserted.
#[test]
fn sigkill_at_every_phase_then_resume() {
    let (seed, mut rng) = seeded_rng();
    let n = crash::trials();
    println!("FAULT_SEED={seed} FAULT_TRIALS={n}");
    let started = Instant::now();
    let c = realistic(&[]);
    let kills = crash::schedule(n, &mut rng);
    let mut done: Vec<crash::Trial> = Vec::new();
    for (k, kill) in kills.iter().enumerate() {
        let t = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crash::trial(&c, k, kill))) {
            Ok(t) => t,
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().or(e.downcast_ref::<&str>().map(|s| s.to_string()));
                crash::Trial {
                    how: String::new(),
                    killed_in: None,
                    resumed: false,
                    outcome: Default::default(),
                    pdb_violations: 0,
                    services_at_zero: 0,
                    problems: vec![format!("panicked: {}", msg.unwrap_or_default())],
                }
            }
        };
        println!(
            "trial {k}: kill {}: {}{}",
            t.how,
            match (&t.killed_in, t.resumed) {
                (Some(p), true) => format!("killed in {p}, resumed OK"),
                (Some(p), false) => format!("killed in {p}, resume FAILED"),
                (None, _) => "no kill".into(),
            },
            if t.problems.is_empty() { String::new() } else { format!("; {} problem(s)", t.problems.len()) }
        );
        let failed = !t.problems.is_empty();
        done.push(t);
        if failed {
            break; // the chain's next link starts from this one's end state
        }
    }
    let mut per_phase: std::collections::BTreeMap<String, usize> = Default::default();
    for (t, kill) in done.iter().zip(&kills) {
        if let (Some(p), crash::Kill::At(point, _)) = (&t.killed_in, kill) {
            *per_phase.entry(format!("{p} ({point})")).or_default() += 1;
        }
    }
    println!("kills per phase (kill point): {per_phase:?}");
    let sum = |f: &dyn Fn(&crash::Trial) -> usize| done.iter().map(f).sum::<usize>();
    let failed: Vec<(usize, &crash::Trial)> = done.iter().enumerate().filter(|(_, t)| !t.problems.is_empty()).collect();
    println!(
        "RELIABILITY test=sigkill_resume seed={seed} trials={} crashes_survived={} finished_before_kill={} failed_trials={} not_run={} faults_injected=0 bad_inputs=0 data_lost={} pods_left_behind={} pdb_floor_violations={} services_at_zero={}",
        done.len(),
        sum(&|t| usize::from(t.killed_in.is_some() && t.resumed)),
        sum(&|t| usize::from(t.killed_in.is_none() && t.problems.is_empty())),
        failed.len(),
        n - done.len(),
        sum(&|t| t.outcome.data_lost()),
        sum(&|t| t.outcome.left_behind()),
        sum(&|t| t.pdb_violations),
        sum(&|t| t.services_at_zero),
    );
    println!("crash trials took {:?}", started.elapsed());
    for (k, t) in &failed {
        eprintln!("trial {k} (seed {seed}, kill {}):\n  {}", t.how, t.problems.join("\n  "));
    }
    assert!(failed.is_empty(), "{} crash trial(s) failed (seed {seed}); see above", failed.len());
    // Every kill point was hit, in the phase it names.
    for (i, (point, phase)) in crash::KILL_POINTS.iter().enumerate() {
        assert_eq!(done[i].killed_in.as_deref(), Some(*phase), "trial {i} at {point}");
    }
}

/// Priority 2, concurrency variant (two runs at once is covered by
/// migrate_e2e): another actor keeps annotating both pools during the run;
/// the run must retry its conflicts and finish.
#[test]
fn pool_edited_by_another_actor_during_migration() {
    let c = realistic(&[]);
    let before = workload_counts(&c);
    let budget = budget_watch(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let edits = Arc::new(Mutex::new(0u64));
    let (st, ed, kc, kubectl) = (stop.clone(), edits.clone(), c.kubeconfig.clone(), common::kubesim_bin("kubectl"));
    let editor = std::thread::spawn(move || {
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) {
            i += 1;
            for pool in [OLD, NEW_POOL] {
                let ok = Command::new(&kubectl)
                    .env("KUBECONFIG", &kc)
                    .args([
                        "annotate",
                        "ippools.crd.projectcalico.org",
                        pool,
                        &format!("example.com/edited={i}"),
                        "--overwrite",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    *ed.lock().unwrap() += 1;
                }
            }
        }
    });
    let out = ippool(&c, &migrate_args(OLD, NEW_CIDR)).timeout(Duration::from_secs(240)).output().unwrap();
    stop.store(true, Ordering::Relaxed);
    editor.join().unwrap();
    let edits = *edits.lock().unwrap();
    let o = check_migrated(&c, &before, OLD, OLD_CIDR, NEW_CIDR);
    let report = stop_budget_watch(budget, "concurrent editor");
    println!("concurrent editor: {edits} pool edits during the run");
    println!("RELIABILITY test=concurrent_editor trials=1 crashes_survived=0 faults_injected=0 concurrent_edits={edits} bad_inputs=0 data_lost={} pods_left_behind={} {}", o.data_lost(), o.left_behind(), report.reliability_figures());
    assert!(
        out.status.success(),
        "migrate with a concurrent editor failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(edits >= 3, "the editor barely ran ({edits} edits)");
    assert_no_problems("concurrent editor", &[o.problems(), budget_problems(&report)].concat());
}

/// Priority 3: API errors and dropped connections on writes, then a 5 s
/// API-server outage in the middle of a second migration.
#[test]
fn control_plane_faults_error_rate_and_outage() {
    let c = realistic(&["--fault-proxy"]);
    let faulty = c.dir().join("kubeconfig-faulty");
    assert!(faulty.exists(), "kubesim --fault-proxy wrote no {}", faulty.display());
    let (seed, _) = seeded_rng();
    println!("FAULT_SEED={seed} (fault proxy)");
    let before = workload_counts(&c);
    // Through the normal kubeconfig: only the tool goes through the faulty proxy.
    let budget = budget_watch(&c);

    // (a) 20 % of writes fail with 429/500/503/409, 5 % of writes are dropped.
    write_faults(
        c.dir(),
        serde_json::json!({"errorRate": 0.2, "codes": [429, 500, 503, 409], "dropRate": 0.05, "methods": ["POST", "PUT", "PATCH", "DELETE"], "seed": seed}),
    );
    // At most 3 re-runs: every write that can be repeated safely is repeated
    // within a run, and waits re-establish their watches.
    let runs_a = run_until_done(&c, &faulty, &migrate_args(OLD, NEW_CIDR), 4, |_| {});
    std::fs::remove_file(c.dir().join("faults.json")).unwrap();
    let o_a = check_migrated(&c, &before, OLD, OLD_CIDR, NEW_CIDR);

    // (b) A second migration (10.0.0.0-16 -> 10.1.0.0/16); once it moves
    // pods, the API server is unreachable for 5 s (connections cut too).
    let watch = PhaseWatch::start(&c.kubeconfig);
    let dir = c.dir().to_path_buf();
    let runs_b = run_until_done(&c, &faulty, &migrate_args(NEW_POOL, "10.1.0.0/16"), 4, |child| {
        if std::fs::exists(dir.join("faults.json")).unwrap() {
            return; // the outage happens once, during the first run
        }
        let start = Instant::now();
        while watch.phase() != "MovingPods" {
            assert!(start.elapsed() < Duration::from_secs(120), "never reached MovingPods");
            if Command::new("kill").args(["-0", &child.id().to_string()]).status().is_ok_and(|s| !s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        write_faults(&dir, serde_json::json!({"outageSeconds": 5}));
    });
    watch.finish();
    assert!(dir.join("faults.json").exists(), "the outage was never injected");
    let o_b = check_migrated(&c, &before, NEW_POOL, NEW_CIDR, "10.1.0.0/16");
    let report = stop_budget_watch(budget, "control-plane faults");

    // Counters are flushed every second.
    c.wait_until("fault stats", Duration::from_secs(5), || fault_stats(c.dir())["requests"].as_i64().unwrap_or(0) > 0);
    let stats = fault_stats(c.dir());
    let injected = stats["errors"].as_i64().unwrap_or(0) + stats["drops"].as_i64().unwrap_or(0);
    println!("fault proxy: {stats}; error-rate runs {runs_a}, outage runs {runs_b}");
    let reruns = runs_a - 1 + runs_b - 1;
    println!(
        "RELIABILITY test=control_plane_faults seed={seed} trials=2 crashes_survived=0 faults_injected={injected} reruns={} bad_inputs=0 data_lost={} pods_left_behind={} {}",
        reruns,
        o_a.data_lost() + o_b.data_lost(),
        o_a.left_behind() + o_b.left_behind(),
        report.reliability_figures()
    );
    assert!(injected > 0, "no fault was injected: {stats}");
    // The outage met the run: requests made during it were refused (and
    // the connections open when it began were cut).
    let refused = stats["outageRefused"].as_i64().unwrap_or(0);
    assert!(refused > 0, "no request was refused during the 5 s outage, so it tested nothing: {stats}");
    assert!(reruns <= 3, "{reruns} re-runs were needed in all; at most 3 may be");
    assert_no_problems("control-plane faults", &[o_a.problems(), o_b.problems(), budget_problems(&report)].concat());
}

/// An eviction answered 409 has not happened (the fault proxy answers
/// without forwarding, as a conflict on the PDB's status would): the pod
/// with that UID is still there, so the eviction is made again. Taking the
/// 409 as "the pod is gone" leaves pods on the old pool and the run stalls.
#[test]
fn an_eviction_answered_409_is_made_again_not_assumed_done() {
    let c = TestCluster::start(&["--fault-proxy"]);
    let faulty = c.dir().join("kubeconfig-faulty");
    // The seed pins namespace legacy to the old pool (a refusal this test is not about).
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let before = workload_counts(&c);
    write_faults(
        c.dir(),
        serde_json::json!({"errorRate": 0.5, "codes": [409], "methods": ["POST"], "pathContains": "/eviction", "seed": 7}),
    );
    let mut args = migrate_args(OLD, NEW_CIDR);
    args.extend(["--strategy", "evict"].map(String::from));
    let runs = run_until_done(&c, &faulty, &args, 1, |_| {});
    let o = check_migrated(&c, &before, OLD, OLD_CIDR, NEW_CIDR);
    // Counters are flushed every second.
    c.wait_until("fault stats", Duration::from_secs(5), || fault_stats(c.dir())["requests"].as_i64().unwrap_or(0) > 0);
    let stats = fault_stats(c.dir());
    let injected = stats["byCode"]["409"].as_i64().unwrap_or(0);
    println!(
        "RELIABILITY test=eviction_409 seed=7 trials=1 crashes_survived=0 faults_injected={injected} reruns={} bad_inputs=0 data_lost={} pods_left_behind={}",
        runs - 1,
        o.data_lost(),
        o.left_behind()
    );
    assert_eq!(runs, 1);
    assert!(injected > 0, "no eviction was answered 409: {stats}");
    assert_no_problems("eviction 409", &o.problems());
}

/// Create an IPReservation over `cidr` the moment a migration record
/// appears: after the plan (which refuses a target pool that reservations
/// fill), before the canary asks for an address.
fn reserve_once_started(kubeconfig: &Path, cidr: &str) -> std::thread::JoinHandle<()> {
    let (kc, cidr) = (kubeconfig.to_path_buf(), cidr.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let client = client_for(&kc).await;
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
            let wc = watcher::Config::default().fields("metadata.name=kubectl-ippool-migration");
            let mut stream = watcher(cms, wc).applied_objects().boxed();
            while let Some(ev) = stream.next().await {
                if ev.is_ok_and(|cm| cm.data.is_some_and(|d| d.contains_key("state.json"))) {
                    break;
                }
            }
            let ar = kube::core::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("crd.projectcalico.org", "v1", "IPReservation"),
                "ipreservations",
            );
            let api: Api<kube::api::DynamicObject> = Api::all_with(client, &ar);
            let obj: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "crd.projectcalico.org/v1", "kind": "IPReservation",
                "metadata": {"name": "hold-new-pool"}, "spec": {"reservedCIDRs": [cidr]}
            }))
            .unwrap();
            api.create(&Default::default(), &obj).await.unwrap();
        });
    })
}

/// Priority 4: Ctrl-C during the canary and during `verify --probe` leaves
/// no `kubectl-ippool-*` namespace or pod behind. An IPReservation over the
/// whole new pool, made once the migration has started (a plan refuses a
/// target reservations fill), keeps the canary (and the probe) waiting for
/// an address, so the interrupt lands while they run.
#[test]
fn ctrl_c_during_canary_and_probe_leaves_nothing_behind() {
    let c = realistic(&[]);
    let before = workload_counts(&c);
    let budget = budget_watch(&c);
    let pending_pod_in = |prefix: &str| {
        let pods = c.kubectl_ok(&[
            "get",
            "pods",
            "-A",
            "-o",
            "custom-columns=NS:.metadata.namespace,PHASE:.status.phase",
            "--no-headers",
        ]);
        pods.lines().any(|l| l.starts_with(prefix) && l.contains("Pending"))
    };

    // Canary.
    let args = migrate_args(OLD, NEW_CIDR);
    let reserving = reserve_once_started(&c.kubeconfig, NEW_CIDR);
    let mut child = spawn_migrate(&c.kubeconfig, &args);
    reserving.join().unwrap();
    c.wait_until("the canary pod (kept waiting by the reservation)", Duration::from_secs(90), || {
        pending_pod_in("kubectl-ippool-canary-")
    });
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C during the canary");
    let phase = json(&c, &["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration"])["data"]["state.json"]
        .as_str()
        .map(|s| serde_json::from_str::<Value>(s).unwrap()["phase"].clone());
    assert_eq!(phase, Some(Value::from("TargetReady")), "interrupted before the canary passed");
    let old_enabled = !pool_specs(&c, "crd.projectcalico.org")[OLD]["disabled"].as_bool().unwrap_or(false);
    assert!(old_enabled, "the canary runs before the old pool is disabled");
    c.wait_until("no canary namespace or pod", Duration::from_secs(60), || leftovers(&c).is_empty());
    let after_canary = leftovers(&c).len();

    // verify --probe: with the old pool disabled by hand and the new one
    // reserved, the probe waits too.
    let set_old_disabled = |d: bool| {
        let patch = format!(r#"{{"spec":{{"disabled":{d}}}}}"#);
        c.kubectl_ok(&["patch", "ippools.crd.projectcalico.org", OLD, "--type=merge", "-p", &patch]);
    };
    set_old_disabled(true);
    let mut probe = Command::new(assert_cmd::cargo::cargo_bin("kubectl-ippool"))
        .env("KUBECONFIG", &c.kubeconfig)
        .args(["verify", "--probe", "--probe-timeout", "2m"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.wait_until("the probe pod", Duration::from_secs(60), || pending_pod_in("kubectl-ippool-probe-"));
    signal(&probe, "-INT");
    let status = probe.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(probe.stderr.as_mut().unwrap(), &mut err).ok();
    assert_eq!(status.code(), Some(130), "Ctrl-C during verify --probe:\n{err}");
    c.wait_until("no probe namespace or pod", Duration::from_secs(60), || leftovers(&c).is_empty());
    let after_probe = leftovers(&c).len();

    // Lift the reservation; the same command finishes the migration.
    set_old_disabled(false);
    c.kubectl_ok(&["delete", "ipreservations.crd.projectcalico.org", "hold-new-pool"]);
    let out = ippool(&c, &args).timeout(Duration::from_secs(240)).output().unwrap();
    let o = check_migrated(&c, &before, OLD, OLD_CIDR, NEW_CIDR);
    let report = stop_budget_watch(budget, "Ctrl-C cleanup");
    println!("RELIABILITY test=ctrl_c_cleanup trials=2 crashes_survived=0 interrupts_cleaned=2 faults_injected=0 bad_inputs=0 data_lost={} pods_left_behind={} {}", o.data_lost(), o.left_behind() + after_canary + after_probe, report.reliability_figures());
    assert!(out.status.success(), "resume after Ctrl-C:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_no_problems("Ctrl-C cleanup", &[o.problems(), budget_problems(&report)].concat());
}
