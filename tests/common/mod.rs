//! Test helper: a fresh local cluster (kubesim: etcd + kube-apiserver +
//! controller-manager + scheduler + a fake kubelet/Calico CNI using Calico's
//! real IPAM library) per test, torn down when the test ends, panics
//! included. Tests never skip silently: if the cluster cannot start, the
//! test fails and says how to build it.
#![allow(dead_code)]

pub mod budget_watch;
pub mod fingerprint;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// kubesim, kubectl and calicoctl: `target/kubesim/` of the repository
/// (not `CARGO_TARGET_DIR`), or `$KUBESIM_BIN_DIR` when set.
pub fn kubesim_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("KUBESIM_BIN_DIR").map_or_else(|| repo_root().join("target/kubesim"), PathBuf::from);
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the local cluster with `scripts/build-kubesim.sh` (or `make kubesim`)",
        p.display()
    );
    p
}

pub struct TestCluster {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl TestCluster {
    /// Start the seed scenario on 3 nodes.
    pub fn seed() -> TestCluster {
        TestCluster::start(&["--scenario", "seed"])
    }

    /// Start kubesim with extra arguments (`--scenario kops`, `--operator`, ...).
    pub fn start(args: &[&str]) -> TestCluster {
        let dir = tempfile::Builder::new().prefix("kubesim-").tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("kubesim.log")).expect("log file");
        let child = Command::new(kubesim_bin("kubesim"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--exit-with-parent")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn kubesim");
        let mut c = TestCluster { child: Some(child), kubeconfig: dir.path().join("kubeconfig"), dir };
        c.wait_ready(Duration::from_secs(240));
        c
    }

    fn wait_ready(&mut self, limit: Duration) {
        let ready = self.dir.path().join("ready");
        let start = Instant::now();
        while !ready.exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("kubesim exited with {status} before it was ready; log:\n{}", self.log_tail());
            }
            if start.elapsed() > limit {
                panic!("kubesim not ready after {limit:?}; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("kubesim.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// `kubectl-ippool <args>` against this cluster (assert_cmd).
    pub fn ippool(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("kubectl-ippool").unwrap();
        cmd.env("KUBECONFIG", &self.kubeconfig).env_remove("RUST_LOG").args(args);
        cmd
    }

    /// Run the real kubectl built with the cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(kubesim_bin("kubectl")).env("KUBECONFIG", &self.kubeconfig).args(args).output().expect("kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `kubectl get <what>` answers NotFound. Any other failure (an
    /// unreachable API server, a forbidden read) panics: it says nothing
    /// about whether the object is gone.
    pub fn not_found(&self, what: &[&str]) -> bool {
        let out = self.kubectl(&[&["get"], what].concat());
        if out.status.success() {
            return false;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("(NotFound)"), "kubectl get {what:?} failed, but not with NotFound: {err}");
        true
    }

    /// `kubectl get <what>` must answer NotFound.
    pub fn assert_gone(&self, what: &[&str]) {
        assert!(self.not_found(what), "{what:?} still exists");
    }

    /// Run calicoctl (built from the same Calico module) against this cluster.
    pub fn calicoctl(&self, args: &[&str]) -> Output {
        Command::new(kubesim_bin("calicoctl"))
            .env("DATASTORE_TYPE", "kubernetes")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .arg("--allow-version-mismatch")
            .output()
            .expect("calicoctl")
    }

    /// `calicoctl ipam check` must report no problems, now. One case is
    /// expected to finish a moment later and is waited for (30 s at most):
    /// an address still in use by a pod that is terminating (a canary or
    /// probe namespace deleted in the background), whose allocation the CNI
    /// DEL already released before the pod object is gone. Any other problem
    /// fails at once.
    pub fn assert_ipam_clean(&self) {
        let start = Instant::now();
        loop {
            let Err((text, stderr)) = self.ipam_check() else { return };
            let problems: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.starts_with("  ")
                        && (l.contains(" leaked;")
                            || l.contains(" in use by ")
                            || l.contains(" multiple owners")
                            || l.contains("doesn't have any active IPs"))
                })
                .collect();
            let terminating = self.terminating_pod_ips();
            let expected = !problems.is_empty()
                && problems.iter().all(|l| {
                    l.contains(" in use by ")
                        && l.split_whitespace().next().is_some_and(|ip| terminating.iter().any(|t| t == ip))
                });
            if !expected || start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "calicoctl ipam check ({}):\n{text}\n{}",
                    if expected {
                        "addresses of terminating pods still listed after 30 s"
                    } else {
                        "not a pod being torn down"
                    },
                    stderr
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `calicoctl ipam check` must reach 0 problems within `bound`, for a
    /// reason the caller names: something Calico finishes on its own after
    /// the run (calico-node moving node tunnel addresses after a pool's
    /// enablement changed, say). Prefer `assert_ipam_clean`.
    pub fn assert_ipam_clean_within(&self, why: &str, bound: Duration) {
        let start = Instant::now();
        loop {
            let Err((text, _)) = self.ipam_check() else { return };
            assert!(start.elapsed() < bound, "calicoctl ipam check, still not clean after {bound:?} ({why}):\n{text}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `calicoctl ipam check`: Ok at 0 problems, else its stdout and stderr.
    fn ipam_check(&self) -> Result<(), (String, String)> {
        let out = self.calicoctl(&["ipam", "check"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("found 0 problems") {
            return Ok(());
        }
        Err((text, String::from_utf8_lossy(&out.stderr).into_owned()))
    }

    /// Addresses of pods that have a deletionTimestamp.
    fn terminating_pod_ips(&self) -> Vec<String> {
        let pods = json(self, &["get", "pods", "-A"]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
            .flat_map(|p| p["status"]["podIPs"].as_array().cloned().unwrap_or_default())
            .filter_map(|ip| ip["ip"].as_str().map(str::to_string))
            .collect()
    }

    /// Poll `f` every 250 ms until it returns true or `limit` passes.
    pub fn wait_until(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}; kubesim log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Wait (2 min at most) until no pod holds an address in `cidr`: what a
    /// rollback that kept `--update-rules` entries waits for before it may
    /// take them out.
    pub fn wait_no_pod_in(&self, cidr: &str) {
        self.wait_until(&format!("no pod to hold a {cidr} address"), Duration::from_secs(120), || {
            let pods: serde_json::Value =
                serde_json::from_str(&self.kubectl_ok(&["get", "pods", "-A", "-o", "json"])).unwrap();
            !pods["items"].as_array().unwrap().iter().any(|p| {
                p["status"]["podIPs"]
                    .as_array()
                    .is_some_and(|ips| ips.iter().any(|i| i["ip"].as_str().is_some_and(|ip| in_cidr(ip, cidr))))
            })
        });
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            sigterm(child.id());
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM without a libc dependency: the `kill` command.
fn sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// `kubectl <args> -o json` on `c`, parsed.
pub fn json(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&a)).expect("kubectl json")
}

/// Every IPPool's spec by name, from `ippools.<group>` (`disabled` written out).
pub fn pool_specs(c: &TestCluster, group: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    json(c, &["get", &format!("ippools.{group}")])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut spec = p["spec"].clone();
            // Calico's default: an absent `disabled` is false (a rollback writes it out).
            if spec["disabled"].is_null() {
                spec["disabled"] = serde_json::Value::Bool(false);
            }
            (p["metadata"]["name"].as_str().unwrap().to_string(), spec)
        })
        .collect()
}

/// What may change during a rollback: the pools, our record, our Events;
/// and what calico-node does on its own once the old pool is enabled again
/// and the new one disabled: it moves each node's tunnel address back
/// (IPAM blocks, affinities and tunnel handles, and the Node's tunnel
/// annotation). Workloads, pods, PDBs, Services, namespaces and the rest
/// must not change.
pub const ROLLBACK_WRITES: [&str; 7] = [
    " IPPool ",
    "v1 ConfigMap kube-system/kubectl-ippool-migration",
    "v1 Event ",
    " IPAMBlock ",
    " IPAMHandle /ipip-tunnel-addr-",
    " BlockAffinity ",
    "v1 Node ",
];

/// Whether address `ip` lies in `cidr` (both must parse).
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    cidr.parse::<ipnet::IpNet>().unwrap().contains(&ip)
}

/// Every IPPool (v1 CRD) name with its resourceVersion: what a run that
/// writes nothing must leave as it was.
pub fn pool_versions(c: &TestCluster) -> std::collections::BTreeMap<String, String> {
    let v = json(c, &["get", "ippools.crd.projectcalico.org"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["resourceVersion"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
