//! Safety of a run against its own record and lease (issue 24): a dry run
//! and an unconfirmed run write nothing in any phase a killed run leaves;
//! a killed dual-stack run resumed with one pair finishes both; the record
//! read again once the lease is taken; lease identities and expiry.
//! One dual-stack `small` cluster (with kubesim's fault proxy) is shared by
//! the tests here, one at a time; each starts by clearing the record and
//! the lease, and none depends on which pools another left.
//! Run: `cargo test --test safety_run_e2e -- --test-threads=1`.

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{json, TestCluster};
use serde_json::{json, Value};

const RECORD: &str = "kubectl-ippool-migration";
const LEASE: &str = "kubectl-ippool";
const IPPOOLS: &str = "ippools.crd.projectcalico.org";

/// The shared cluster, one test at a time (a failed test does not poison it).
fn cluster() -> MutexGuard<'static, TestCluster> {
    static CLUSTER: OnceLock<Mutex<TestCluster>> = OnceLock::new();
    let c = CLUSTER.get_or_init(|| {
        Mutex::new(TestCluster::start(&["--scenario", "small", "--ip-family", "dual", "--fault-proxy"]))
    });
    let guard = c.lock().unwrap_or_else(|e| e.into_inner());
    clear_record_and_lease(&guard);
    guard
}

fn clear_record_and_lease(c: &TestCluster) {
    c.kubectl_ok(&["delete", "configmap", "-n", "kube-system", RECORD, "--ignore-not-found"]);
    c.kubectl_ok(&["delete", "lease", "-n", "kube-system", LEASE, "--ignore-not-found"]);
}

fn apply(c: &TestCluster, file: &str, text: &str) {
    let path = c.dir().join(file);
    std::fs::write(&path, text).unwrap();
    c.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

/// Write `state` as the migration record.
fn write_record(c: &TestCluster, state: &Value) {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RECORD, "namespace": "kube-system"},
        "data": {"state.json": serde_json::to_string_pretty(state).unwrap()}
    });
    apply(c, "record.json", &cm.to_string());
}

fn record(c: &TestCluster) -> Option<Value> {
    let out = c.kubectl(&["get", "configmap", "-n", "kube-system", RECORD, "-o", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn record_state(c: &TestCluster) -> Value {
    let cm = record(c).expect("a migration record");
    serde_json::from_str(cm["data"]["state.json"].as_str().unwrap()).unwrap()
}

fn resource_version(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(|v| v["metadata"]["resourceVersion"].as_str().unwrap().to_string())
}

fn lease(c: &TestCluster) -> Option<Value> {
    let out = c.kubectl(&["get", "lease", "-n", "kube-system", LEASE, "-o", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// A one-pair record in `phase`.
fn one_pair_record(from: &str, from_cidr: &str, to_cidr: &str, phase: &str) -> Value {
    json!({
        "fromPool": from, "fromCidr": from_cidr,
        "toPool": to_cidr.replace(['/', ':'], "-").replace("--", "-"), "toCidr": to_cidr,
        "createdTarget": true, "phase": phase,
        "startedAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
        "startedBy": "killed@elsewhere:1", "originalFromPool": {"spec": {"disabled": true}}, "total": 0, "podsMoved": 0,
        "done": [], "failed": []
    })
}

/// A lease left by a killed run on another host, long expired.
fn write_stale_lease(c: &TestCluster) {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": "kube-system"},
        "spec": {"holderIdentity": "killed@elsewhere:1", "leaseDurationSeconds": 30,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z"}
    });
    apply(c, "lease.json", &lease.to_string());
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Phases a killed run can leave its record in.
const PHASES: [&str; 7] =
    ["Started", "TargetReady", "CanaryPassed", "SourceDisabled", "MovingPods", "Draining", "SourceDeleted"];

/// Issue 24 item 10: `--dry-run`, `--rollback --dry-run`, and runs without
/// `--yes` (no terminal: they stop at the confirmation) write nothing in any
/// phase a killed run can leave, whether its old pool still exists or was
/// deleted: the record, the lease (left expired by the killed run) and the
/// pools keep their resourceVersions.
#[test]
fn dry_runs_and_unconfirmed_runs_write_nothing_in_any_phase() {
    let c = cluster();
    for pool_exists in [true, false] {
        if pool_exists {
            create_idle_pool(&c);
        } else {
            c.kubectl_ok(&["delete", IPPOOLS, "idle"]);
        }
        for phase in PHASES {
            write_record(&c, &one_pair_record("idle", "10.200.0.0/16", "10.201.0.0/16", phase));
            write_stale_lease(&c);
            let before = (resource_version(&record(&c)), resource_version(&lease(&c)), common::pool_versions(&c));
            let runs: [&[&str]; 4] = [
                &["migrate", "--from", "idle", "--to", "10.201.0.0/16", "--dry-run"],
                &["migrate", "--from", "idle", "--to", "10.201.0.0/16"],
                &["migrate", "--from", "idle", "--rollback", "--dry-run"],
                &["migrate", "--from", "idle", "--rollback"],
            ];
            for args in runs {
                let out = c.ippool(args).write_stdin("").output().unwrap();
                let (so, se) = (text(&out.stdout), text(&out.stderr));
                let what = format!("phase {phase}, old pool exists: {pool_exists}, {args:?}");
                assert!(out.status.code().is_some_and(|code| code <= 3), "{what}: {so}\n{se}");
                assert!(!se.contains("closing the migration record") && !so.contains("is done"), "{what}: {se}");
                let after = (resource_version(&record(&c)), resource_version(&lease(&c)), common::pool_versions(&c));
                assert_eq!(after, before, "{what} wrote:\n{so}\n{se}");
            }
        }
    }
    clear_record_and_lease(&c);
}

fn phase_of(c: &TestCluster) -> String {
    record(c).map(|_| record_state(c)["phase"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

/// `kubectl-ippool <args>` in the background, its stderr in `<cluster dir>/<name>.err`.
fn spawn(c: &TestCluster, name: &str, args: &[&str]) -> std::process::Child {
    let err = std::fs::File::create(c.dir().join(format!("{name}.err"))).unwrap();
    std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-ippool"))
        .env("KUBECONFIG", &c.kubeconfig)
        .env_remove("RUST_LOG")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn kubectl-ippool")
}

const V4: &str = "default-ipv4-ippool";
const V6: &str = "default-ipv6-ippool";

/// Issue 24 item 9: a dual-stack run SIGKILLed while it moves pods, then
/// resumed with only its IPv4 pair, finishes both pairs from the record
/// (both old pools deleted, every pod in both new pools), instead of closing
/// the migration as Done with the IPv6 pool half migrated. Every hint names
/// both pairs: `status`, `verify`, and the refusal of another migration.
#[test]
fn dual_stack_run_resumed_with_one_pair_finishes_both() {
    let c = cluster();
    let full = "--from default-ipv4-ippool --to 10.0.0.0/16 --from default-ipv6-ippool --to fd00:10:20::/112";
    let mut args: Vec<&str> = vec!["migrate"];
    args.extend(full.split(' '));
    // One lane at a time: the run stays a few seconds in MovingPods.
    args.extend(["--yes", "--timeout", "3m", "--max-parallel", "1"]);
    let mut run = spawn(&c, "dual", &args);
    c.wait_until("the dual-stack run to move pods", std::time::Duration::from_secs(180), || {
        ["MovingPods", "Draining"].contains(&phase_of(&c).as_str())
    });
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    let phase = phase_of(&c);
    assert!(["MovingPods", "Draining"].contains(&phase.as_str()), "{phase}");

    let command = format!("kubectl ippool migrate {full}");
    let status = text(&c.ippool(&["status", "-o", "json"]).output().unwrap().stdout);
    assert!(status.contains(&command), "status names every pair: {status}");
    let verify = text(&c.ippool(&["verify"]).output().unwrap().stdout);
    assert!(verify.contains(&command), "verify names every pair: {verify}");
    let out = c.ippool(&["migrate", "--from", V6, "--to", "fd00:10:30::/112", "--dry-run"]).output().unwrap();
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(se.contains(&command), "the refusal names every pair: {se}");

    // Resume with the IPv4 pair alone.
    let out = c.ippool(&["migrate", "--from", V4, "--to", "10.0.0.0/16", "--yes", "--timeout", "3m"]).output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "resume failed:\n{so}\n{se}\n{}", c.log_tail());
    assert!(se.contains("resuming every one of them"), "{se}");
    let state = record_state(&c);
    assert_eq!(state["phase"], "Done", "{state}");
    assert_eq!(state["also"][0]["fromPool"], V6, "{state}");
    let names = c.kubectl_ok(&["get", IPPOOLS, "-o", "name"]);
    assert!(!names.contains(V4) && !names.contains(V6), "both old pools deleted: {names}\n{se}");
    let pods = json(&c, &["get", "pods", "-A"]);
    for p in pods["items"].as_array().unwrap() {
        let ns = p["metadata"]["namespace"].as_str().unwrap();
        if p["spec"]["hostNetwork"] == true || p["status"]["phase"] != "Running" || ns.starts_with("kubectl-ippool-") {
            continue;
        }
        let ips: Vec<&str> =
            p["status"]["podIPs"].as_array().unwrap().iter().map(|i| i["ip"].as_str().unwrap()).collect();
        assert!(
            common::in_cidr(ips[0], "10.0.0.0/16") && common::in_cidr(ips[1], "fd00:10:20::/112"),
            "{}: {ips:?}",
            p["metadata"]["name"]
        );
    }
    c.assert_ipam_clean();
    clear_record_and_lease(&c);
}

/// A disabled pool (so no pod holds its addresses) every node may use,
/// inside the cluster CIDR: a migration from it plans no move and has
/// nodes for its canary.
fn create_idle_pool(c: &TestCluster) {
    apply(
        c,
        "idle.yaml",
        "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: idle}\nspec: {cidr: 10.200.0.0/16, blockSize: 26, ipipMode: Always, natOutgoing: true, nodeSelector: all(), disabled: true}\n",
    );
}

/// Issue 24 item 8: a run that sits at its confirmation prompt (a real
/// terminal: `script` gives it a pty) while another run starts a migration
/// must not overwrite that run's record once confirmed: it reads the record
/// again under the lease and stops, naming the other migration.
#[test]
fn a_run_confirmed_after_another_started_leaves_its_record_alone() {
    use std::io::{Read, Write};
    let c = cluster();
    create_idle_pool(&c);
    let bin = assert_cmd::cargo::cargo_bin("kubectl-ippool");
    let cmd = format!("{} migrate --from idle --to 10.202.0.0/16", bin.display());
    let mut prompt = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("TERM", "xterm")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let seen = std::sync::Arc::new(Mutex::new(String::new()));
    let mut stdout = prompt.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    c.wait_until("the confirmation prompt", std::time::Duration::from_secs(90), || {
        seen.lock().unwrap().contains("Migrate 0 pod(s) from idle")
    });
    // Meanwhile another run starts a migration (and is killed: no lease).
    let mut other = one_pair_record("elsewhere", "10.210.0.0/16", "10.211.0.0/16", "MovingPods");
    other["ruleChanges"] = json!([{"target": {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkSet",
        "plural": "globalnetworksets", "name": "pods"}, "field": "spec.nets", "pointer": "/spec/nets", "added": "10.211.0.0/16"}]);
    write_record(&c, &other);
    let before = resource_version(&record(&c));
    prompt.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
    let status = prompt.wait().unwrap();
    reader.join().unwrap();
    let out = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("while this run waited") && out.contains("--from elsewhere --to 10.211.0.0/16"), "{out}");
    assert_eq!(resource_version(&record(&c)), before, "the other run's record was written: {out}");
    assert!(lease(&c).is_none(), "the lease is released");
    assert!(!c.kubectl_ok(&["get", IPPOOLS, "-o", "name"]).contains("10.202.0.0-16"), "no pool was created");
    c.kubectl_ok(&["delete", IPPOOLS, "idle"]);
    clear_record_and_lease(&c);
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// Set the lease's spec as another run would have written it.
fn write_lease(c: &TestCluster, holder: &str, seconds: i64, renew_time: chrono::DateTime<chrono::Utc>) {
    let t = renew_time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": "kube-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds, "acquireTime": t, "renewTime": t}
    });
    apply(c, "lease.json", &lease.to_string());
}

/// Issue 24 item 6: a lease held under another run ID is never taken over
/// while its holder renews it, even when the holder's `renewTime` (by its
/// clock) is an hour old and its identity names this host and a PID that
/// does not exist here (another container's PID namespace); it is taken
/// over once watched for a whole lease duration without a renewal, even
/// when its `renewTime` lies an hour ahead of this clock.
#[test]
fn a_lease_of_another_run_is_taken_only_once_seen_to_lapse() {
    let c = cluster();
    create_idle_pool(&c);
    write_record(&c, &one_pair_record("idle", "10.200.0.0/16", "10.201.0.0/16", "SourceDisabled"));
    let other = format!("run-00000000000000aa pod kube-system/migrate-x uid 1 root@{}:4194000", hostname());
    write_lease(&c, &other, 6, chrono::Utc::now() - chrono::Duration::hours(1));
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewer = {
        let (renewing, kubeconfig) = (renewing.clone(), c.kubeconfig.clone());
        let kubectl = common::kubesim_bin("kubectl");
        std::thread::spawn(move || {
            let mut n = 0;
            while renewing.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let _ = std::process::Command::new(&kubectl)
                    .env("KUBECONFIG", &kubeconfig)
                    .args(["annotate", "lease", "-n", "kube-system", LEASE, &format!("renewals={n}"), "--overwrite"])
                    .output();
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })
    };
    let out = c.ippool(&["migrate", "--from", "idle", "--rollback", "--yes"]).output().unwrap();
    renewing.store(false, std::sync::atomic::Ordering::Relaxed);
    renewer.join().unwrap();
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(se.contains("another migration is running") && se.contains(&other), "{se}");
    assert_eq!(lease(&c).unwrap()["spec"]["holderIdentity"], other.as_str());
    assert_eq!(record_state(&c)["phase"], "SourceDisabled", "nothing was written");

    // Its clock runs an hour ahead and it renews no more.
    write_lease(&c, "run-00000000000000bb root@elsewhere:1", 6, chrono::Utc::now() + chrono::Duration::hours(1));
    let out = c.ippool(&["migrate", "--from", "idle", "--rollback", "--yes"]).output().unwrap();
    let se = text(&out.stderr);
    assert!(out.status.success(), "{se}");
    assert_eq!(record_state(&c)["phase"], "RolledBack", "{se}");
    c.kubectl_ok(&["delete", IPPOOLS, "idle"]);
    clear_record_and_lease(&c);
}

/// Issue 24 item 7: renewals of the lease fail (the fault proxy answers
/// every PUT of it with 503) and the lease lasts 4 s: once it may have
/// lapsed (after 2.7 s; the run waits 3 s between the new pool and the old
/// pool's disable) the run starts nothing new (no pod is moved), says why, and its
/// exit leaves alone a node cordoned meanwhile under the same annotation
/// (by the run that would now hold the lease).
#[test]
fn a_run_that_cannot_renew_its_lease_starts_nothing_new() {
    let c = cluster();
    let (v4, _) = current_v4_pool(&c);
    let uids = |c: &TestCluster| -> Vec<String> {
        let mut u: Vec<String> = json(c, &["get", "pods", "-n", "shop"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
            .collect();
        u.sort();
        u
    };
    let before = uids(&c);
    let faults = c.dir().join("faults.json");
    std::fs::write(&faults, r#"{"errorRate":1,"codes":[503],"methods":["PUT"],"pathContains":"/leases/"}"#).unwrap();
    let faulty = c.dir().join("kubeconfig-faulty");
    let err = std::fs::File::create(c.dir().join("lapsed.err")).unwrap();
    let mut run = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-ippool"))
        .env("KUBECONFIG", &faulty)
        .env("KUBECTL_IPPOOL_LEASE_SECONDS", "4")
        .env_remove("RUST_LOG")
        .args(["migrate", "--from", &v4, "--to", "10.77.0.0/16", "--yes", "--timeout", "2m"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    c.wait_until("the run to pass TargetReady", std::time::Duration::from_secs(60), || {
        !["", "Started"].contains(&phase_of(&c).as_str()) || run.try_wait().unwrap().is_some()
    });
    // Another run's cordon (as if it held the lease now).
    let node = "kubesim-node-2";
    c.kubectl_ok(&["cordon", node]);
    c.kubectl_ok(&["annotate", "node", node, "ippool.kubectl.io/cordoned=true", "--overwrite"]);
    let status = run.wait().unwrap();
    std::fs::remove_file(&faults).unwrap();
    let se = std::fs::read_to_string(c.dir().join("lapsed.err")).unwrap();
    assert!(!status.success(), "{se}");
    assert!(se.contains("could not be renewed"), "{se}");
    let phase = phase_of(&c);
    assert!(["Started", "TargetReady", "CanaryPassed", "SourceDisabled"].contains(&phase.as_str()), "{phase}\n{se}");
    assert_eq!(uids(&c), before, "no pod was moved:\n{se}");
    let n = json(&c, &["get", "node", node]);
    assert_eq!(n["spec"]["unschedulable"], true, "another run's cordon was undone:\n{se}");
    c.kubectl_ok(&["uncordon", node]);
    c.kubectl_ok(&["annotate", "node", node, "ippool.kubectl.io/cordoned-"]);
    // Undone for the next test; the new pool stays, disabled (calico-node
    // moves its tunnel addresses out of it by itself).
    let out = c.ippool(&["migrate", "--from", &v4, "--rollback", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    clear_record_and_lease(&c);
}

/// The enabled IPv4 pool the pods use now (whichever test ran before): name and CIDR.
fn current_v4_pool(c: &TestCluster) -> (String, String) {
    let pools = json(c, &["get", IPPOOLS]);
    pools["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["spec"]["disabled"] != true
                && p["spec"]["cidr"].as_str().is_some_and(|c| c.contains('.'))
                && p["spec"]["nodeSelector"] != "!all()"
        })
        .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p["spec"]["cidr"].as_str().unwrap().to_string()))
        .expect("an enabled IPv4 pool")
}

/// Issue 24 item 11: the `--update-rules` PATCH of a set lands but its
/// answer is a 504 (kubesim's fault proxy, `landed`, once). The run reads
/// the set back, finds its entry there and keeps it in the record (it used
/// to repeat the PATCH, whose `test` then failed, and drop the entry from
/// the record); `--rollback` then takes it back out.
#[test]
fn a_rules_patch_that_landed_without_an_answer_stays_in_the_record() {
    let c = cluster();
    let (v4, v4_cidr) = current_v4_pool(&c);
    apply(
        &c,
        "landed-set.yaml",
        &format!("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkSet\nmetadata: {{name: landed-set}}\nspec: {{nets: ['{v4_cidr}']}}\n"),
    );
    let faults = c.dir().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"errorRate":1,"codes":[504],"methods":["PATCH"],"pathContains":"/globalnetworksets/landed-set","landed":true,"limit":1}"#,
    )
    .unwrap();
    let out = c
        .ippool(&["migrate", "--from", &v4, "--to", "10.78.0.0/16", "--update-rules", "-l", "app=none", "--yes"])
        .env("KUBECONFIG", c.dir().join("kubeconfig-faulty"))
        .output()
        .unwrap();
    std::fs::remove_file(&faults).unwrap();
    let se = text(&out.stderr);
    let stats = std::fs::read_to_string(c.dir().join("faults-stats.json")).unwrap_or_default();
    assert!(out.status.success(), "{se}\n{stats}");
    let nets = || json(&c, &["get", "globalnetworksets.crd.projectcalico.org", "landed-set"])["spec"]["nets"].clone();
    assert_eq!(nets(), json!([v4_cidr, "10.78.0.0/16"]), "{se}");
    let changes = record_state(&c)["ruleChanges"].clone();
    assert!(changes.to_string().contains("landed-set"), "the landed entry is recorded: {changes}\n{se}");
    let out = c.ippool(&["migrate", "--from", &v4, "--rollback", "--yes"]).output().unwrap();
    let se = text(&out.stderr);
    assert!(out.status.success(), "{se}");
    assert_eq!(nets(), json!([v4_cidr]), "the rollback takes it back out: {se}");
    c.kubectl_ok(&["delete", "globalnetworksets.crd.projectcalico.org", "landed-set"]);
    clear_record_and_lease(&c);
}
