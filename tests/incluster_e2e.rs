//! In a pod: no kubeconfig, `KUBERNETES_SERVICE_HOST`/`PORT` set, and the
//! service account's token and CA mounted at
//! /var/run/secrets/kubernetes.io/serviceaccount. Reproduced for real: a
//! private mount namespace (`unshare -m`, so needs root) binds a directory
//! holding a TokenRequest token of the ServiceAccount deploy/job.yaml
//! creates (bound to deploy/rbac.yaml's ippool-migrator) over that path,
//! and `status` and a whole migration run on it against the local cluster,
//! while `status --watch` follows that migration from "another terminal".

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestCluster;
use serde_json::Value;

/// Mounts `$1` over the service-account path in a private mount namespace
/// (on a fresh tmpfs at /run when the path does not exist on this host),
/// then runs the rest of the arguments there.
const IN_POD: &str = r#"set -e
mount --make-rprivate /
if [ ! -d /var/run/secrets/kubernetes.io/serviceaccount ]; then
  mount -t tmpfs tmpfs /run
  mkdir -p /var/run/secrets/kubernetes.io/serviceaccount
fi
mount --bind "$1" /var/run/secrets/kubernetes.io/serviceaccount
shift
exec "$@"
"#;

struct Pod {
    sa: tempfile::TempDir,
    home: tempfile::TempDir,
    port: String,
}

impl Pod {
    /// The service-account directory of a pod running as `kube-system/kubectl-ippool`.
    fn new(c: &TestCluster, token: &str) -> Pod {
        let sa = tempfile::tempdir().unwrap();
        std::fs::write(sa.path().join("token"), token).unwrap();
        std::fs::copy(c.dir().join("pki/ca.crt"), sa.path().join("ca.crt")).unwrap();
        std::fs::write(sa.path().join("namespace"), "kube-system").unwrap();
        let ready: Value = serde_json::from_slice(&std::fs::read(c.dir().join("ready")).unwrap()).unwrap();
        let server = ready["server"].as_str().unwrap();
        // kubesim's serving certificate names 127.0.0.1, the address the pod "sees".
        assert!(server.starts_with("https://127.0.0.1:"), "{server}");
        let port = server.trim_start_matches("https://127.0.0.1:").trim_end_matches('/').to_string();
        Pod { sa, home: tempfile::tempdir().unwrap(), port }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("unshare")
            .args(["-m", "sh", "-c", IN_POD, "sh"])
            .arg(self.sa.path())
            .arg(ippool_bin())
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env("HOME", self.home.path())
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &self.port)
            .output()
            .expect("unshare (util-linux)")
    }
}

fn ippool_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-ippool"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// deploy/job.yaml without the Job: the ServiceAccount and its binding
/// (kubesim's node agent would start the Job's pod, but not its image).
fn apply_job_rbac(c: &TestCluster, dir: &Path) {
    let job = std::fs::read_to_string(common::repo_root().join("deploy/job.yaml")).unwrap();
    let mut kinds = Vec::new();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&job)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|d| {
            kinds.push(d["kind"].as_str().unwrap_or("").to_string());
            d["kind"] != "Job"
        })
        .collect();
    assert_eq!(kinds, ["ServiceAccount", "ClusterRoleBinding", "Job"]);
    let path = dir.join("job-rbac.json");
    std::fs::write(
        &path,
        serde_json::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs})).unwrap(),
    )
    .unwrap();
    c.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn status_and_a_migration_run_on_the_pods_service_account() {
    let c = TestCluster::seed();
    let scratch = tempfile::tempdir().unwrap();
    c.kubectl_ok(&["apply", "-f", common::repo_root().join("deploy/rbac.yaml").to_str().unwrap()]);
    apply_job_rbac(&c, scratch.path());
    let token = c.kubectl_ok(&["create", "token", "kubectl-ippool", "-n", "kube-system", "--duration", "1h"]);
    let pod = Pod::new(&c, token.trim());

    // A token the API server does not know: refused, so the one above is
    // what the tool authenticates with (no admin credentials leak in).
    let bogus = Pod::new(&c, "not-a-token");
    let out = bogus.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).to_lowercase().contains("unauthorized"), "{}", text(&out.stderr));

    let out = pod.run(&["status", "-o", "json"]);
    assert!(out.status.success(), "in-cluster status failed: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["context"], "in-cluster");
    assert_eq!(report["pools"][0]["name"], "default-ipv4-ippool");

    // Naming a kubeconfig entry with no kubeconfig is a usage error.
    let out = pod.run(&["status", "--context", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--context names a kubeconfig entry"), "{}", text(&out.stderr));

    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    // Another terminal, with the admin kubeconfig: started before the
    // migration, it waits for one and follows it to its end.
    let watcher = WaitOutput::watch_status(&c);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = pod.run(&[
        "migrate",
        "--from",
        "default-ipv4-ippool",
        "--to",
        "10.0.0.0/16",
        "--force",
        "--jobs",
        "evict",
        "--yes",
        "--timeout",
        "3m",
    ]);
    assert!(out.status.success(), "in-cluster migrate failed: {}{}", text(&out.stdout), text(&out.stderr));
    let out = pod.run(&["status", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["migration"]["phase"], "Done", "{report}");
    let names: Vec<&str> = report["pools"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(!names.contains(&"default-ipv4-ippool"), "old pool still there: {names:?}");
    c.assert_ipam_clean();

    let watched = watcher.finish(std::time::Duration::from_secs(60));
    let (stdout, stderr) = (text(&watched.stdout), text(&watched.stderr));
    assert_eq!(watched.status.code(), Some(0), "status --watch: {stdout}{stderr}");
    assert!(stderr.contains("waiting for one to start"), "{stderr}");
    assert!(stderr.contains("Migration default-ipv4-ippool -> 10.0.0.0-16"), "{stderr}");
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("PHASE"), "{stdout}");
    let phases: Vec<&str> = lines.map(|l| l.split_whitespace().next().unwrap()).collect();
    let mut distinct = phases.clone();
    distinct.dedup();
    // A watch sees every write of the record: every phase, in order.
    assert_eq!(
        distinct,
        ["Started", "TargetReady", "CanaryPassed", "SourceDisabled", "MovingPods", "Draining", "SourceDeleted", "Done"],
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    let moved = last.split_whitespace().nth(1).unwrap();
    let (done, total) = moved.split_once('/').unwrap();
    assert_eq!(done, total, "{last}");
}

/// `status --watch` follows a run that is killed (SIGKILL: no cleanup, the
/// lease is left to expire): it says the run stopped without finishing and
/// how to go on, and exits 1, instead of waiting forever. Then the same
/// command resumes the migration to its end.
#[test]
fn status_watch_says_when_the_run_it_follows_stops_without_finishing() {
    let c = TestCluster::seed();
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let args = ["migrate", "--from", "default-ipv4-ippool", "--to", "10.0.0.0/16", "--force", "--jobs", "evict"];
    let run = || {
        std::process::Command::new(ippool_bin())
            .args(args)
            .args(["--yes", "--timeout", "3m"])
            .env("KUBECONFIG", &c.kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let watcher = WaitOutput::watch_status(&c);
    let mut migrate = run();
    let phase = || {
        let out = c.kubectl(&["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration", "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["data"]["state.json"].as_str().and_then(|t| serde_json::from_str::<Value>(t).ok()))
            .and_then(|st| st["phase"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    c.wait_until("the migration to move pods", std::time::Duration::from_secs(120), || phase() == "MovingPods");
    migrate.kill().unwrap();
    migrate.wait().unwrap();

    // The lease lasts 30 s from its last renewal.
    let watched = watcher.finish(std::time::Duration::from_secs(75));
    let (stdout, stderr) = (text(&watched.stdout), text(&watched.stderr));
    assert_eq!(watched.status.code(), Some(1), "status --watch: {stdout}{stderr}");
    assert!(
        stderr.contains("stopped renewing the migration lease")
            && stderr.contains("without finishing")
            && stderr.contains("kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16"),
        "{stderr}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("MovingPods")), "{stdout}");

    let status = run().wait().unwrap();
    assert!(status.success(), "the resumed migration failed: {}", c.log_tail());
    assert_eq!(phase(), "Done");
    c.assert_ipam_clean();
}

/// A child process whose output is read on a thread, with a deadline.
struct WaitOutput(std::sync::mpsc::Receiver<Output>, u32);

impl WaitOutput {
    /// `status --watch` with the admin kubeconfig, "another terminal".
    fn watch_status(c: &TestCluster) -> WaitOutput {
        let child = std::process::Command::new(ippool_bin())
            .args(["status", "--watch"])
            .env("KUBECONFIG", &c.kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        WaitOutput::start(child)
    }

    fn start(child: std::process::Child) -> WaitOutput {
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output().unwrap());
        });
        WaitOutput(rx, pid)
    }

    fn finish(self, limit: std::time::Duration) -> Output {
        match self.0.recv_timeout(limit) {
            Ok(out) => out,
            Err(_) => {
                let _ = Command::new("kill").arg(self.1.to_string()).status();
                let out = self.0.recv().unwrap();
                panic!("status --watch still running after {limit:?}: {}{}", text(&out.stdout), text(&out.stderr));
            }
        }
    }
}
