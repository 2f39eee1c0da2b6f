//! The faults suite's shared pieces: the realistic cluster, background
//! `migrate` runs and signals, the phase watch, and the end-state checks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use rand::SeedableRng;
use serde_json::Value;

use crate::common::budget_watch::{BlockingBudgetWatch, Report, REALISTIC_PDBS, REALISTIC_SERVICES};
pub(crate) use crate::common::json;
use crate::common::TestCluster;

pub(crate) const OLD: &str = "default-ipv4-ippool";
pub(crate) const OLD_CIDR: &str = "192.168.0.0/16";
pub(crate) const NEW_CIDR: &str = "10.0.0.0/16";
pub(crate) const NEW_POOL: &str = "10.0.0.0-16";
/// kubesim's `realistic` scenario (every workload behind a Service and a
/// PodDisruptionBudget of a different kind) without `single`, whose budget
/// allows no move at all (migrate refuses it). Readiness takes 2 s per pod.
pub(crate) const REALISTIC: [&str; 6] = ["--scenario", "realistic", "--omit", "single", "--readiness-delay", "2s"];

/// A realistic cluster, with extra kubesim arguments.
pub(crate) fn realistic(extra: &[&str]) -> TestCluster {
    let mut args = REALISTIC.to_vec();
    args.extend_from_slice(extra);
    TestCluster::start(&args)
}

/// Starts a `BudgetWatch` on every namespace of `c`, through `c`'s own
/// kubeconfig (never the fault proxy's: a faulty watch would blind it).
pub(crate) fn budget_watch(c: &TestCluster) -> BlockingBudgetWatch {
    BlockingBudgetWatch::start(c, &[])
}

/// Stops the watch and prints its summary.
pub(crate) fn stop_budget_watch(w: BlockingBudgetWatch, what: &str) -> Report {
    let report = w.stop();
    println!("{what}: {}", report.summary().trim_end());
    report
}

/// Why the watch cannot vouch for the run (it did not evaluate every PDB
/// and Service of the scenario throughout), and what it saw broken: a PDB
/// below its floor, a Service at zero, a lost watch, a skipped evaluation.
pub(crate) fn budget_problems(report: &Report) -> Vec<String> {
    let mut p = report.coverage_problems(REALISTIC_PDBS, REALISTIC_SERVICES);
    if !report.is_clean() {
        p.push(format!("a PodDisruptionBudget or a Service was broken:\n{report}"));
    }
    p
}

pub(crate) fn migrate_args(from: &str, to: &str) -> Vec<String> {
    ["migrate", "--from", from, "--to", to, "--force", "--yes", "--jobs", "evict", "--timeout", "3m"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub(crate) fn ippool(c: &TestCluster, args: &[String]) -> assert_cmd::Command {
    c.ippool(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub(crate) fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (Ok(ip), Ok(net)) = (ip.parse::<std::net::IpAddr>(), cidr.parse::<ipnet::IpNet>()) else { return false };
    net.contains(&ip)
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kubectl-ippool <args>` in the background; stderr goes to `<kubeconfig dir>/ippool-<n>.err`
/// (a file, not a pipe nobody reads, which could fill up and block the run).
pub(crate) fn spawn_migrate(kubeconfig: &Path, args: &[String]) -> Child {
    spawn_migrate_env(kubeconfig, args, &[])
}

/// `spawn_migrate` with extra environment variables.
pub(crate) fn spawn_migrate_env(kubeconfig: &Path, args: &[String], env: &[(&str, String)]) -> Child {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = kubeconfig.parent().unwrap().join(format!("ippool-{}.err", N.fetch_add(1, Ordering::Relaxed)));
    let err = std::fs::File::create(&path).unwrap();
    LAST_ERR.with(|l| *l.borrow_mut() = path);
    Command::new(assert_cmd::cargo::cargo_bin("kubectl-ippool"))
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn kubectl-ippool")
}

thread_local! {
    static LAST_ERR: std::cell::RefCell<PathBuf> = std::cell::RefCell::new(PathBuf::new());
}

/// stderr of the last `spawn_migrate` of this thread.
pub(crate) fn last_stderr() -> String {
    LAST_ERR.with(|l| std::fs::read_to_string(&*l.borrow()).unwrap_or_default())
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {}", child.id());
}

/// A kube client; build it inside the runtime that uses it (its worker task lives there).
pub(crate) async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Follows the migration record with a watch and keeps its latest phase.
pub(crate) struct PhaseWatch {
    phase: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PhaseWatch {
    pub(crate) fn start(kubeconfig: &Path) -> PhaseWatch {
        let phase = Arc::new(Mutex::new(String::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, st, kc) = (phase.clone(), seen.clone(), stop.clone(), kubeconfig.to_path_buf());
        let errs = errors.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = client_for(&kc).await;
                let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
                let wc = watcher::Config::default().fields("metadata.name=kubectl-ippool-migration");
                let mut stream = watcher(api, wc).applied_objects().boxed();
                loop {
                    if st.load(Ordering::Relaxed) {
                        return;
                    }
                    match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                        Ok(Some(Ok(cm))) => {
                            let ph = cm
                                .data
                                .as_ref()
                                .and_then(|d| d.get("state.json"))
                                .and_then(|j| serde_json::from_str::<Value>(j).ok())
                                .and_then(|v| v["phase"].as_str().map(str::to_string))
                                .unwrap_or_default();
                            let mut seen = s.lock().unwrap();
                            if seen.last() != Some(&ph) {
                                seen.push(ph.clone());
                            }
                            *p.lock().unwrap() = ph;
                        }
                        Ok(Some(Err(e))) => errs.lock().unwrap().push(e.to_string()),
                        Ok(None) => {
                            errs.lock().unwrap().push("the watch ended".into());
                            return;
                        }
                        Err(_) => {} // no event within 200 ms
                    }
                }
            });
        });
        PhaseWatch { phase, seen, errors, stop, handle: Some(handle) }
    }

    pub(crate) fn phase(&self) -> String {
        self.phase.lock().unwrap().clone()
    }

    /// Stops the watch; the phases it saw, in order. A watch error or a
    /// panic of its thread fails the test: a phase watch that missed events
    /// cannot say where a fault landed.
    pub(crate) fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(panic) = self.handle.take().unwrap().join() {
            std::panic::resume_unwind(panic);
        }
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "the phase watch lost events: {errors:?}");
        self.seen.lock().unwrap().clone()
    }
}

/// Non-hostNetwork, unfinished pods whose address is not yet in `cidr`.
pub(crate) fn pods_outside(c: &TestCluster, cidr: &str) -> Vec<String> {
    let pods = json(c, &["get", "pods", "-A"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["spec"]["hostNetwork"].as_bool() != Some(true)
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .filter(|p| !p["status"]["podIP"].as_str().is_some_and(|ip| in_cidr(ip, cidr)))
        .map(|p| {
            format!(
                "{}/{} {:?}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap(),
                p["status"]["podIP"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Namespaces and pods our canary/probe left (`kubectl-ippool-*`).
pub(crate) fn leftovers(c: &TestCluster) -> Vec<String> {
    let ns = c.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    let cols = "custom-columns=NS:.metadata.namespace,NAME:.metadata.name";
    let pods = c.kubectl_ok(&["get", "pods", "-A", "-o", cols, "--no-headers"]);
    let ours = c.kubectl_ok(&[
        "get",
        "pods",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=kubectl-ippool",
        "-o",
        cols,
        "--no-headers",
    ]);
    ns.lines()
        .filter(|l| l.contains("kubectl-ippool-"))
        .map(str::to_string)
        .chain(
            pods.lines().filter(|l| l.starts_with("kubectl-ippool-")).chain(ours.lines()).map(|l| format!("pod {l}")),
        )
        .collect()
}

/// The workloads and their desired pod counts, to check none was lost.
pub(crate) fn workload_counts(c: &TestCluster) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for kind in ["deployments", "statefulsets"] {
        for o in json(c, &["get", kind, "-A"])["items"].as_array().unwrap() {
            m.insert(
                format!(
                    "{kind}/{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["spec"]["replicas"].as_i64().unwrap_or(1),
            );
        }
    }
    for o in json(c, &["get", "daemonsets", "-A"])["items"].as_array().unwrap() {
        m.insert(
            format!(
                "daemonsets/{}/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            ),
            o["status"]["desiredNumberScheduled"].as_i64().unwrap_or(0),
        );
    }
    m
}

/// Ready counts of the same workloads.
pub(crate) fn ready_counts(c: &TestCluster) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (kind, field) in
        [("deployments", "readyReplicas"), ("statefulsets", "readyReplicas"), ("daemonsets", "numberReady")]
    {
        for o in json(c, &["get", kind, "-A"])["items"].as_array().unwrap() {
            m.insert(
                format!(
                    "{kind}/{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["status"][field].as_i64().unwrap_or(0),
            );
        }
    }
    m
}

pub(crate) fn seeded_rng() -> (u64, rand::rngs::StdRng) {
    let seed = std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000
    });
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

pub(crate) fn write_faults(dir: &Path, v: Value) {
    let tmp = dir.join("faults.json.tmp");
    std::fs::write(&tmp, v.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("faults.json")).unwrap();
}

pub(crate) fn fault_stats(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("faults-stats.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// Run `migrate` through the faulty kubeconfig until it succeeds (at most
/// `max` runs). Every failed run must be an orderly `error:` with exit 2.
pub(crate) fn run_until_done(
    c: &TestCluster,
    faulty: &Path,
    args: &[String],
    max: usize,
    during: impl Fn(&Child),
) -> usize {
    let mut last = String::new();
    for run in 1..=max {
        // The run's own --timeout: a wait that outlives a dropped watch is a bug to
        // see here, not a re-run to absorb.
        let mut a: Vec<String> = args.to_vec();
        a.extend(["--kubeconfig".to_string(), faulty.to_str().unwrap().to_string()]);
        let mut child = spawn_migrate(&c.kubeconfig, &a);
        during(&child);
        let deadline = Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "migrate run {run} hangs under faults");
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = last_stderr();
        if status.success() {
            for l in err.lines().filter(|l| l.contains("remain") || l.contains("already deleted")) {
                println!("run {run} succeeded: {l}");
            }
            return run;
        }
        let last_error = err.lines().rfind(|l| l.starts_with("error:")).unwrap_or("").to_string();
        println!("run {run} failed ({status}): {last_error}");
        for reason in err.lines().skip_while(|l| !l.starts_with("error:")).filter(|l| l.starts_with("  - ")) {
            println!("  {reason}");
        }
        last = err.clone();
        assert_eq!(status.code(), Some(2), "a failed run must exit 2:\n{err}");
        assert!(
            !last_error.is_empty() && !err.contains("panicked at"),
            "a failed run must end with a clear error:\n{err}"
        );
    }
    panic!(
        "migrate did not complete in {max} runs under faults; the last run said:\n{last}\nkubesim log:\n{}",
        c.log_tail()
    );
}
