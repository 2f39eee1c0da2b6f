//! End-to-end tests of leaked addresses during a migration: the kubesim
//! agent leaves the addresses of the first 3 pods deleted from the old pool
//! allocated (as a failed CNI DEL does), so the drain meets real leaks.
//! Run: `cargo test --test leaks_e2e -- --test-threads=1`.

mod common;

use std::process::Output;

use common::TestCluster;
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";
const OLD_CIDR: &str = "192.168.0.0/16";
const NEW_CIDR: &str = "10.0.0.0/16";
const LEAKS: [&str; 4] = ["--leak-on-delete", "3", "--leak-cidr", OLD_CIDR];

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `grace`: leakGracePeriod, longer than moving the pods takes when
/// calico-kube-controllers runs (else it releases the leaks before the drain
/// sees them).
fn start(grace: &str, extra: &[&str]) -> TestCluster {
    let mut args = vec!["--scenario", "seed", "--leak-grace-period", grace];
    args.extend(LEAKS);
    args.extend(extra);
    let c = TestCluster::start(&args);
    // The legacy namespace pins the old pool; unpinned, everything can move.
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    c
}

fn migrate(c: &TestCluster, extra: &[&str]) -> Output {
    let mut args = vec!["migrate", "--from", OLD, "--to", NEW_CIDR, "--force", "--yes", "--jobs", "evict"];
    args.extend(extra);
    c.ippool(&args).output().unwrap()
}

fn pool_exists(c: &TestCluster) -> bool {
    !c.not_found(&["ippools.crd.projectcalico.org", OLD])
}

/// Set leakGracePeriod in KubeControllersConfiguration default (its spec:
/// no calico-kube-controllers runs to write a running configuration).
fn set_grace(c: &TestCluster, grace: &str) {
    let patch = format!(r#"{{"spec":{{"controllers":{{"node":{{"leakGracePeriod":"{grace}"}}}}}}}}"#);
    c.kubectl_ok(&[
        "patch",
        "kubecontrollersconfigurations.crd.projectcalico.org",
        "default",
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
}

/// Addresses of the old pool that kubesim leaked, from its log.
fn leaked(c: &TestCluster) -> usize {
    leaked_ips(c).len()
}

fn leaked_ips(c: &TestCluster) -> Vec<String> {
    let log = std::fs::read_to_string(c.dir().join("kubesim.log")).unwrap_or_default();
    log.split("leaking ").skip(1).filter_map(|s| s.split_whitespace().next()).map(str::to_string).collect()
}

/// Events kubectl-ippool recorded that name a leaked address: the tool
/// records one per address it releases, so none means it released none
/// (whatever the words of its messages).
fn release_events(c: &TestCluster) -> Vec<String> {
    let ips = leaked_ips(c);
    let events: Value = serde_json::from_str(&c.kubectl_ok(&["get", "events", "-A", "-o", "json"])).unwrap();
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingComponent"] == "kubectl-ippool")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| ips.iter().any(|ip| m.split(|ch: char| !(ch.is_ascii_digit() || ch == '.')).any(|w| w == ip)))
        .map(str::to_string)
        .collect()
}

#[test]
fn kube_controllers_release_the_leaks_then_the_pool_is_deleted() {
    let c = start("50s", &["--calico-kube-controllers"]);
    let out = migrate(&c, &["--timeout", "3m"]);
    let all = text(&out);
    assert!(out.status.success(), "migrate failed:\n{all}\n{}", c.log_tail());
    assert_eq!(leaked(&c), 3, "kubesim should have leaked 3 addresses:\n{}", c.log_tail());
    assert!(all.contains("no pod and no node uses them (leaked"), "{all}");
    assert!(all.contains("Waiting for calico-kube-controllers to release them: leakGracePeriod 50s"), "{all}");
    assert_eq!(release_events(&c), Vec::<String>::new(), "the tool released them itself:\n{all}");
    assert!(all.contains("IPPool default-ipv4-ippool deleted"), "{all}");
    assert!(!pool_exists(&c));
    c.assert_ipam_clean();
}

#[test]
fn without_a_controller_the_run_stops_then_release_leaked_finishes() {
    let c = start("20s", &[]);
    // Negative control: nobody releases the leaks, so the pool must stay.
    let out = migrate(&c, &["--timeout", "3m"]);
    let all = text(&out);
    assert!(!out.status.success(), "migrate succeeded with leaked addresses and no controller:\n{all}");
    assert!(
        all.contains("will never be released by calico-kube-controllers: KubeControllersConfiguration default has no status.runningConfig written by calico-kube-controllers"),
        "{all}"
    );
    assert!(all.contains("--release-leaked"), "{all}");
    assert!(pool_exists(&c), "the pool was deleted while it held leaked allocations:\n{all}");
    let pool: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "ippools.crd.projectcalico.org", OLD, "-o", "json"])).unwrap();
    assert_eq!(pool["spec"]["disabled"], true);
    assert_eq!(leaked(&c), 3);
    let check = String::from_utf8_lossy(&c.calicoctl(&["ipam", "check"]).stdout).into_owned();
    assert!(check.contains("found 3 problems"), "{check}");

    // --release-leaked releases only addresses allocated longer than
    // leakGracePeriod ago: with 10 minutes, these leaks are too young, so the
    // run keeps waiting until --timeout and the pool stays.
    set_grace(&c, "10m0s");
    let out = migrate(&c, &["--timeout", "20s", "--release-leaked"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "young leaks released or the pool deleted:\n{all}\n{}", c.log_tail());
    assert_eq!(release_events(&c), Vec::<String>::new(), "released a leak younger than leakGracePeriod:\n{all}");
    assert_eq!(all.matches("was allocated less than leakGracePeriod ago; releasing it at").count(), 3, "{all}");
    assert!(all.contains("timed out after 20s: the addresses of default-ipv4-ippool to be released"), "{all}");
    assert!(all.contains("younger than leakGracePeriod 10m"), "{all}");
    assert!(pool_exists(&c), "the pool was deleted while it held young leaks:\n{all}");
    let check = String::from_utf8_lossy(&c.calicoctl(&["ipam", "check"]).stdout).into_owned();
    assert!(check.contains("found 3 problems"), "{check}");
    // Negative control for assert_ipam_clean: leaked addresses are not pods
    // being torn down, so it fails at once instead of waiting them out.
    let t = std::time::Instant::now();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.assert_ipam_clean()));
    assert!(caught.is_err(), "assert_ipam_clean passed with 3 leaked addresses");
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "it waited {:?} for a leak", t.elapsed());
    set_grace(&c, "20s");

    // The same command with --release-leaked releases them and finishes.
    let out = migrate(&c, &["--timeout", "3m", "--release-leaked"]);
    let all = text(&out);
    assert!(out.status.success(), "migrate --release-leaked failed:\n{all}\n{}", c.log_tail());
    assert_eq!(all.matches("released leaked address").count(), 3, "{all}");
    assert!(!pool_exists(&c));
    c.assert_ipam_clean();
    assert_eq!(release_events(&c).len(), 3, "one Event per released address");
}
