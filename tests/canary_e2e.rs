//! The canary proves connectivity before the old pool is disabled, on
//! `kubesim --dataplane` (real namespaces, block routes, kube-proxy).
//! Negative control first: a new pool whose blocks other nodes do not
//! route (`--unrouted-cidr`) fails the canary and changes nothing; then a
//! routed pool migrates with every path passed. `verify --probe` then
//! sends traffic over the same paths: every one passes on the routed pool,
//! and fails on an unrouted one (its negative control).
//!
//! Run: `cargo test --test canary_e2e -- --test-threads=1` (root, `nft`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{json, pool_specs, TestCluster};
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";
const PATHS: [&str; 4] = [
    "new-pool pod -> old-pool pod on another node (IPv4)",
    "old-pool pod on another node -> new-pool pod (IPv4)",
    "new-pool pod -> ClusterIP Service with an old-pool endpoint (IPv4)",
    "another node (hostNetwork pod) -> new-pool pod (IPv4)",
];

/// A NetworkPolicy naming the old pool's range (OLD_CIDR).
const NETWORK_POLICY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: from-pods
  namespace: default
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: OLD_CIDR}
"#;

/// An IPPool written by hand in the range kubesim leaves unrouted.
const UNROUTED_POOL: &str = r#"apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: unrouted-pool
spec:
  cidr: 10.0.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: Never
  natOutgoing: true
  nodeSelector: all()
"#;

/// Every pod that is not hostNetwork: namespace/name -> UID.
fn pod_uids(c: &TestCluster) -> BTreeMap<String, String> {
    let pods = json(c, &["get", "pods", "-A"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["hostNetwork"].as_bool() != Some(true))
        .map(|p| {
            let m = &p["metadata"];
            (
                format!("{}/{}", m["namespace"].as_str().unwrap(), m["name"].as_str().unwrap()),
                m["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn canary_namespaces(c: &TestCluster) -> Vec<String> {
    let ns = json(c, &["get", "namespaces"]);
    ns["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("kubectl-ippool-canary-"))
        .map(str::to_string)
        .collect()
}

fn record_phase(c: &TestCluster) -> String {
    let cm = json(c, &["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration"]);
    let state: Value = serde_json::from_str(cm["data"]["state.json"].as_str().unwrap()).unwrap();
    state["phase"].as_str().unwrap().to_string()
}

#[test]
fn an_unrouted_new_pool_fails_the_canary_and_changes_nothing_then_a_routed_one_migrates() {
    let c = TestCluster::start(&["--scenario", "small", "--dataplane", "--unrouted-cidr", "10.0.0.0/16"]);
    let before = pod_uids(&c);
    assert!(!before.is_empty());

    // The plan names every path, the image, and what it does not check.
    let out = c
        .ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--force", "--jobs", "evict", "--dry-run"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{plan}");
    for p in PATHS {
        assert!(plan.contains(p), "{p} not in the plan:\n{plan}");
    }
    assert!(plan.contains("agnhost:2.53") && !plan.contains("NOT CHECKED (not in this version)"), "{plan}");
    let mirrored = ["--canary-image", "mirror.example/agnhost:2.53", "--dry-run", "-o", "json"];
    let out = c
        .ippool(&[&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--force"][..], &mirrored].concat())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let step = doc["steps"].as_array().unwrap().iter().find(|s| s["action"] == "canary").unwrap().clone();
    assert_eq!(step["image"], "mirror.example/agnhost:2.53", "{step}");
    assert_eq!(step["paths"].as_array().unwrap().len(), 4, "{step}");
    let canary_step = plan.find("canary, while the old pool still serves").expect("canary step");
    assert!(canary_step < plan.find("disable IPPool").expect("disable step"), "canary before the disable:\n{plan}");

    // Negative control: the new pool hands out addresses nothing else routes.
    // With --update-rules, a NetworkPolicy naming the old range gets the new
    // one beside it before the canary, and must get it taken out again.
    let old_cidr = pool_specs(&c, "crd.projectcalico.org")[OLD]["cidr"].as_str().unwrap().to_string();
    let policy = c.dir().join("policy.yaml");
    std::fs::write(&policy, NETWORK_POLICY.replace("OLD_CIDR", &old_cidr)).unwrap();
    c.kubectl_ok(&["apply", "-f", policy.to_str().unwrap()]);
    let policy_spec = || json(&c, &["get", "networkpolicy", "-n", "default", "from-pods"])["spec"].clone();
    let policy_before = policy_spec();
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "--update-rules",
            "--force",
            "--jobs",
            "evict",
            "--yes",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(2), "the canary must fail the run:\n{err}");
    assert!(err.contains("the canary failed, so no pod was moved"), "{err}");
    for p in PATHS {
        assert!(err.contains(p), "{p} did not fail:\n{err}");
    }
    assert!(err.contains("check that every node routes 10.0.0.0/16"), "{err}");
    assert!(!err.contains("Canary passed"), "{err}");
    let pools = pool_specs(&c, "crd.projectcalico.org");
    assert!(!pools[OLD]["disabled"].as_bool().unwrap_or(false), "the old pool stays enabled: {pools:?}");
    assert!(
        !pools.values().any(|s| s["cidr"].as_str() == Some("10.0.0.0/16")),
        "the new pool this run created is deleted: {pools:?}"
    );
    assert_eq!(record_phase(&c), "RolledBack");
    assert!(err.contains("NetworkPolicy default/from-pods spec.ingress[0].from: removed"), "{err}");
    assert!(err.contains("the rule entries --update-rules added taken out"), "{err}");
    assert_eq!(policy_spec(), policy_before, "the rule entry --update-rules added is taken out again");
    let after: BTreeMap<String, String> =
        pod_uids(&c).into_iter().filter(|(k, _)| !k.starts_with("kubectl-ippool-canary-")).collect();
    assert_eq!(after, before, "no workload pod was moved or restarted");
    c.wait_until("the canary namespace to go", Duration::from_secs(60), || canary_namespaces(&c).is_empty());
    c.assert_ipam_clean();

    // The same cluster with a routed new pool: every path passes.
    let out = c
        .ippool(&["migrate", "--from", OLD, "--to", "10.1.0.0/16", "--force", "--jobs", "evict", "--yes"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "migrate failed:\n{err}\n{}", c.log_tail());
    let passed = err.lines().find(|l| l.contains("Canary paths passed")).unwrap_or_else(|| panic!("{err}"));
    for p in PATHS {
        assert!(passed.contains(p), "{p} not passed: {passed}");
    }
    assert!(!err.contains("NOT CHECKED: new-pool") && !err.contains("NOT CHECKED: old-pool"), "{err}");
    assert_eq!(record_phase(&c), "Done");
    c.wait_until("the canary namespace to go", Duration::from_secs(60), || canary_namespaces(&c).is_empty());

    // verify --probe: the same paths between two pods of the target pool
    // (the record's), all passed.
    let probe = |extra: &[&str]| {
        let out = c
            .ippool(&[&["verify", "--probe", "--probe-timeout", "60s", "-o", "json"][..], extra].concat())
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        (v, out.status.code())
    };
    let check = |v: &Value| v["checks"].as_array().unwrap().iter().find(|c| c["code"] == "probePaths").unwrap().clone();
    let (v, code) = probe(&[]);
    assert_eq!(check(&v)["status"], "PASS", "{:#}", v["probePaths"]);
    assert_eq!(code, Some(0), "{v:#}");
    let paths = v["probePaths"].as_array().unwrap();
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(paths.iter().all(|p| p["result"] == "passed"), "{paths:?}");
    assert!(paths.iter().any(|p| p["path"].as_str().unwrap().contains("(hostNetwork pod) -> pod on")), "{paths:?}");

    // Its negative control: pinned to a pool nothing routes, the paths
    // between nodes fail and verify exits 1.
    let file = c.dir().join("unrouted-pool.yaml");
    std::fs::write(&file, UNROUTED_POOL).unwrap();
    c.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let (v, code) = probe(&["--to", "unrouted-pool"]);
    let got = check(&v);
    assert_eq!(got["status"], "FAIL", "{got:#}");
    assert_eq!(code, Some(1), "{got:#}");
    let failed: Vec<&str> = v["probePaths"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"] == "failed")
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert!(failed.iter().any(|p| p.starts_with("node ")), "the node path fails too: {failed:?}");
    assert!(failed.len() >= 3, "{failed:?}");
    let leftover = || {
        json(&c, &["get", "namespaces"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .filter(|n| n.starts_with("kubectl-ippool-probe-"))
            .count()
    };
    c.wait_until("the probe namespaces to go", Duration::from_secs(60), || leftover() == 0);
}
