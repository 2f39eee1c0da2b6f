//! Every verb against a cluster whose `projectcalico.org/v3` is served by
//! Calico's own aggregated API server (kubesim `--calico-apiserver`; on by
//! default with `--operator`), as on most operator installs: pools, policies,
//! network sets and reservations go through v3, IPAM blocks, affinities and
//! handles through the `crd.projectcalico.org/v1` CRDs beneath (the API
//! server does not serve them). The same verbs in the v1-CRD mode are the
//! `*_crd_v1` tests of status_e2e, verify_e2e and migrate_e2e.
//! Run: `cargo test --test apiserver_e2e -- --test-threads=2`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{in_cidr, json, pool_specs, TestCluster, ROLLBACK_WRITES};
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";
const NEW: &str = "10.0.0.0-16";
const V3_POOLS: &str = "ippools.projectcalico.org";
const VIEWER: &str = "system:serviceaccount:default:viewer";
const MIGRATOR: &str = "system:serviceaccount:default:migrator";

/// Objects naming the old pool's CIDR, created through the API server (which
/// validates them as it would for any v3 client).
const CALICO_RULES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-pods}
spec:
  selector: all()
  ingress:
  - action: Allow
    source: {nets: [192.168.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: from-pods, namespace: shop}
spec:
  selector: all()
  ingress:
  - action: Allow
    source: {nets: [192.168.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: pods}
spec: {nets: [192.168.0.0/16]}
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kubectl-ippool <args>`: (exit code, stdout, stderr).
fn run(c: &TestCluster, args: &[&str]) -> (i32, String, String) {
    let out = c.ippool(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The writes (method and path) in a `-v=6` request log.
fn writes(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("API request ").and_then(|(_, r)| r.split_once(": ")).map(|(_, r)| r.to_string()))
        .filter(|r| !r.starts_with("GET "))
        .collect()
}

fn check<'a>(v: &'a Value, code: &str) -> &'a Value {
    v["checks"].as_array().unwrap().iter().find(|c| c["code"] == code).unwrap_or_else(|| panic!("no check {code}"))
}

/// calicoctl's "Check complete; found N problems."
fn calicoctl_problems(c: &TestCluster) -> u64 {
    let out = c.calicoctl(&["ipam", "check"]);
    let t = text(&out.stdout);
    let line = t.lines().find(|l| l.contains("Check complete; found")).unwrap_or_else(|| panic!("no summary in {t}"));
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap()
}

fn verify_json(c: &TestCluster) -> (Value, i32) {
    let (code, so, se) = run(c, &["verify", "-o", "json"]);
    assert!(code == 0 || code == 1, "verify exited {code}: {se}");
    (serde_json::from_str(&so).unwrap_or_else(|e| panic!("{e}: {so}")), code)
}

/// Every running, non-hostNetwork pod holds an address of `cidr`.
fn assert_all_pods_in(c: &TestCluster, cidr: &str) {
    let pods = json(c, &["get", "pods", "-A"]);
    let wrong: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["spec"]["hostNetwork"].as_bool() != Some(true)
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .filter(|p| !p["status"]["podIP"].as_str().is_some_and(|ip| in_cidr(ip, cidr)))
        .map(|p| format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]))
        .collect();
    assert!(wrong.is_empty(), "pods not in {cidr}: {wrong:?}");
}

/// No pool of that name through v3, and no IPAMBlock left in `cidr`.
fn assert_old_pool_gone(c: &TestCluster) {
    c.assert_gone(&[V3_POOLS, OLD]);
    let blocks = json(c, &["get", "ipamblocks.crd.projectcalico.org"]);
    let left: Vec<&str> = blocks["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["spec"]["cidr"].as_str())
        .filter(|cidr| cidr.starts_with("192.168."))
        .collect();
    assert!(left.is_empty(), "blocks of the old pool remain: {left:?}");
}

/// Mark a free address of the first IPAMBlock allocated to a pod that does
/// not exist (what a CNI DEL that never ran leaves). Returns the block's
/// original spec, for `restore_block`.
fn inject_leak(c: &TestCluster) -> (String, Value) {
    let list = json(c, &["get", "ipamblocks.crd.projectcalico.org"]);
    let mut block = list["items"][0].clone();
    let name = block["metadata"]["name"].as_str().unwrap().to_string();
    let original = block["spec"].clone();
    let spec = block["spec"].as_object_mut().unwrap();
    let ordinal = spec["unallocated"].as_array_mut().unwrap().remove(0).as_u64().unwrap() as usize;
    let attr_index = spec["attributes"].as_array().unwrap().len();
    let node = spec["affinity"].as_str().unwrap().trim_start_matches("host:").to_string();
    spec["allocations"][ordinal] = Value::from(attr_index);
    spec["attributes"].as_array_mut().unwrap().push(serde_json::json!({
        "handle_id": "k8s-pod-network.leaked-by-test",
        "secondary": {"namespace": "shop", "pod": "ghost", "node": node}
    }));
    replace(c, &block);
    (name, original)
}

fn restore_block(c: &TestCluster, name: &str, spec: Value) {
    let mut block = json(c, &["get", "ipamblocks.crd.projectcalico.org", name]);
    block["spec"] = spec;
    replace(c, &block);
}

fn replace(c: &TestCluster, obj: &Value) {
    let path = c.dir().join("replace.json");
    std::fs::write(&path, serde_json::to_vec(obj).unwrap()).unwrap();
    c.kubectl_ok(&["replace", "-f", path.to_str().unwrap()]);
}

#[test]
fn seed_status_verify_rules_rollback_and_migration_apiserver() {
    let c = TestCluster::start(&["--scenario", "seed", "--calico-apiserver"]);
    // kubesim's ready file means the aggregator serves v3 already.
    c.kubectl_ok(&["get", V3_POOLS, OLD]);

    // status: the mode is visible, the figures are calicoctl's.
    let (code, so, se) = run(&c, &["status", "-o", "json"]);
    assert_eq!(code, 0, "{se}");
    let report: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(report["calico"]["mode"], "apiServer", "{:#}", report["calico"]);
    assert_eq!(report["calico"]["operator"], false);
    let pool = &report["pools"][0];
    assert_eq!(pool["name"], OLD);
    let show = text(&c.calicoctl(&["ipam", "show"]).stdout);
    let in_use = show
        .lines()
        .find(|l| l.contains("IP Pool") && l.contains("192.168.0.0/16"))
        .and_then(|l| l.split('|').nth(4))
        .and_then(|col| col.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no pool row in calicoctl ipam show:\n{show}"));
    assert_eq!(pool["allocated"].as_u64().unwrap(), in_use, "allocated vs calicoctl IPS IN USE");
    assert_eq!(pool["pods"].as_u64().unwrap() + pool["tunnelAllocations"].as_u64().unwrap(), in_use);
    let (code, table, _) = run(&c, &["status"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("NAME ") && table.contains(OLD), "{table}");

    // verify: clean, then a leaked allocation is found, as calicoctl finds it.
    let (v, code) = verify_json(&c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ipam"]["calicoctlProblems"], 0);
    assert_eq!(calicoctl_problems(&c), 0);
    let (block, original) = inject_leak(&c);
    let (v, code) = verify_json(&c);
    assert_eq!(code, 1, "a leak must fail verify: {v:#}");
    assert_eq!(check(&v, "leakedAllocations")["status"], "FAIL", "{v:#}");
    assert_eq!(v["ipam"]["calicoctlProblems"].as_u64().unwrap(), calicoctl_problems(&c));
    restore_block(&c, &block, original);
    let (v, code) = verify_json(&c);
    assert_eq!(code, 0, "{v:#}");

    // A filtered run with --update-rules: pools and rules are written through v3.
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let rules = c.dir().join("rules.yaml");
    std::fs::write(&rules, CALICO_RULES).unwrap();
    c.kubectl_ok(&["create", "-f", rules.to_str().unwrap()]);

    // deploy/rbac.yaml's roles, as Calico's API server authorizes them (policies per tier).
    c.kubectl_ok(&["apply", "-f", common::repo_root().join("deploy/rbac.yaml").to_str().unwrap()]);
    for (sa, role) in [("viewer", "ippool-reader"), ("migrator", "ippool-migrator")] {
        c.kubectl_ok(&["create", "serviceaccount", sa, "-n", "default"]);
        let (role, sa_ref) = (format!("--clusterrole={role}"), format!("--serviceaccount=default:{sa}"));
        c.kubectl_ok(&["create", "clusterrolebinding", sa, &role, &sa_ref]);
    }
    let (code, so, se) = run(&c, &["status", "-o", "json", "--as", VIEWER]);
    assert_eq!(code, 0, "{se}");
    let status: serde_json::Value = serde_json::from_str(&so).unwrap();
    let codes: Vec<&str> = status["warnings"].as_array().unwrap().iter().filter_map(|w| w["code"].as_str()).collect();
    assert!(!codes.contains(&"rulesNotChecked"), "the reader role must read every kind of rule through v3: {status:#}");
    let (code, _, se) = run(
        &c,
        &[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "-n",
            "shop",
            "-l",
            "app=web",
            "--update-rules",
            "--yes",
            "--as",
            VIEWER,
        ],
    );
    assert_eq!(code, 2, "{se}");
    // (The reader may already get tiers.)
    for want in
        ["patch tier.globalnetworkpolicies.projectcalico.org", "patch tier.networkpolicies.projectcalico.org -n shop"]
    {
        assert!(se.contains(want), "{want:?} not in the preflight's list:\n{se}");
    }

    let specs_before = pool_specs(&c, "projectcalico.org");
    let (code, so, se) = run(
        &c,
        &[
            "--as",
            MIGRATOR,
            "-v=6",
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "-n",
            "shop",
            "-l",
            "app=web",
            "--update-rules",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{so}\n{se}");
    assert!(so.contains("kept (disabled)"), "{so}");
    let specs_run = pool_specs(&c, "projectcalico.org");
    let w = writes(&se);
    for expected in [
        "POST /apis/projectcalico.org/v3/ippools",
        "/apis/projectcalico.org/v3/ippools/default-ipv4-ippool",
        "PATCH /apis/projectcalico.org/v3/globalnetworksets/pods",
        "PATCH /apis/projectcalico.org/v3/globalnetworkpolicies/allow-pods",
        "PATCH /apis/projectcalico.org/v3/namespaces/shop/networkpolicies/from-pods",
    ] {
        assert!(w.iter().any(|r| r.contains(expected)), "no write {expected:?} in {w:#?}");
    }
    assert!(!w.iter().any(|r| r.contains("/crd.projectcalico.org/v1/ippools")), "a pool written through v1: {w:#?}");
    // libcalico-go keeps a v3 object's metadata in an annotation of the v1 CRD beneath.
    let stored = json(&c, &["get", "ippools.crd.projectcalico.org", NEW]);
    let meta = stored["metadata"]["annotations"]["projectcalico.org/metadata"].as_str().unwrap_or("");
    assert!(meta.contains("ippool.kubectl.io/created-by"), "the pool was not created through v3: {stored:#}");
    let nets = json(&c, &["get", "globalnetworksets.projectcalico.org", "pods"]);
    assert_eq!(nets["spec"]["nets"], serde_json::json!(["192.168.0.0/16", "10.0.0.0/16"]));

    // Rollback: the pools swap back; the rules keep what was added while the
    // moved web pods hold new-pool addresses, and lose exactly that once they
    // are restarted into the old pool and the rollback is run again.
    let before_rollback = c.fingerprint();
    let (code, _, se) = run(&c, &["migrate", "--from", OLD, "--rollback", "--yes"]);
    assert_eq!(code, 0, "{se}");
    // By content: the old pool's spec is what it was before the run, the new
    // one is as the run made it but disabled, and nothing else was written
    // (the rules keep their entries on this first rollback).
    let specs = pool_specs(&c, "projectcalico.org");
    assert_eq!(specs[OLD], specs_before[OLD], "the old pool is not back as it was");
    let mut made = specs_run[NEW].clone();
    made["disabled"] = Value::Bool(true);
    assert_eq!(specs[NEW], made, "the new pool changed beyond being disabled");
    let touched = before_rollback.changes_besides(&c.fingerprint(), &ROLLBACK_WRITES);
    assert_eq!(touched, Vec::<String>::new(), "the rollback wrote what it must not touch");
    let nets = json(&c, &["get", "globalnetworksets.projectcalico.org", "pods"]);
    assert_eq!(nets["spec"]["nets"], serde_json::json!(["192.168.0.0/16", "10.0.0.0/16"]), "{se}");
    assert!(se.contains("kept the"), "{se}");
    c.kubectl_ok(&["rollout", "restart", "deployment/web", "-n", "shop"]);
    c.kubectl_ok(&["rollout", "status", "deployment/web", "-n", "shop", "--timeout=180s"]);
    c.wait_no_pod_in("10.0.0.0/16");
    let (code, _, se) = run(&c, &["migrate", "--from", OLD, "--rollback", "--yes"]);
    assert_eq!(code, 0, "{se}");
    assert!(!se.contains("kept the"), "{se}");
    let nets = json(&c, &["get", "globalnetworksets.projectcalico.org", "pods"]);
    assert_eq!(nets["spec"]["nets"], serde_json::json!(["192.168.0.0/16"]));

    // The full migration into the re-enabled pool.
    c.kubectl_ok(&["patch", V3_POOLS, NEW, "--type", "merge", "-p", r#"{"spec":{"disabled":false}}"#]);
    let (code, so, se) = run(
        &c,
        &[
            "migrate",
            "--from",
            OLD,
            "--to-pool",
            NEW,
            "--update-rules",
            "--force",
            "--yes",
            "--jobs",
            "evict",
            "--timeout",
            "3m",
        ],
    );
    assert_eq!(code, 0, "{so}\n{se}\n{}", c.log_tail());
    assert!(so.contains("IPPool default-ipv4-ippool deleted"), "{so}");
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c);
    c.assert_ipam_clean();
    let cm = json(&c, &["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration"]);
    let state: Value = serde_json::from_str(cm["data"]["state.json"].as_str().unwrap()).unwrap();
    assert_eq!(state["phase"], "Done");
    assert_eq!(state["originalFromPool"]["apiVersion"], "projectcalico.org/v3");

    // verify afterwards: no pod on a retired pool; the rules still naming it are warned about.
    let (v, code) = verify_json(&c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "podsOnRetiredPools")["status"], "PASS", "{v:#}");
    assert_eq!(check(&v, "rulesNameRetiredCidr")["status"], "WARN", "{v:#}");
}

#[test]
fn operator_migration_through_the_installation_apiserver() {
    // --operator runs the API server by default, as a real operator install does.
    let c = TestCluster::start(&["--scenario", "seed", "--operator"]);
    let (code, so, se) = run(&c, &["status", "-o", "json"]);
    assert_eq!(code, 0, "{se}");
    let report: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(report["calico"]["mode"], "apiServer", "{:#}", report["calico"]);
    assert_eq!(report["calico"]["operator"], true);
    assert_eq!(report["pools"][0]["managedBy"], "operator", "{:#}", report["pools"]);

    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let (code, so, se) = run(
        &c,
        &[
            "-v=6",
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "--force",
            "--yes",
            "--jobs",
            "evict",
            "--timeout",
            "3m",
        ],
    );
    assert_eq!(code, 0, "{so}\n{se}\n{}", c.log_tail());
    assert!(so.contains("IPPool default-ipv4-ippool deleted"), "{so}");
    // Pools change through the Installation only; reads go through v3.
    let w = writes(&se);
    assert!(w.iter().any(|r| r.contains("/apis/operator.tigera.io/v1/installations/default")), "{w:#?}");
    assert!(!w.iter().any(|r| r.contains("ippools")), "a pool written past the operator: {w:#?}");
    assert!(se.contains("GET /apis/projectcalico.org/v3/ippools"), "pools not read through v3");
    let inst = json(&c, &["get", "installations.operator.tigera.io", "default"]);
    let pools = inst["spec"]["calicoNetwork"]["ipPools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(pools[0]["name"], NEW);
    // Through v3 the operator's label is a real label.
    let pool = json(&c, &["get", V3_POOLS, NEW]);
    assert_eq!(pool["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tigera-operator", "{pool:#}");
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c);
    c.assert_ipam_clean();
    let (v, code) = verify_json(&c);
    assert_eq!(code, 0, "{v:#}");

    // Calico's API server stopped (SIGSTOP: kubesim would restart an exited one): discovery
    // still lists projectcalico.org, so the tool must look at the APIService and refuse at once.
    let kubesim_pid = std::fs::read_to_string(c.dir().join("kubesim.pid")).unwrap().trim().to_string();
    let pgrep = Command::new("pgrep").args(["-P", &kubesim_pid, "-f", "calico-apiserver"]).output().unwrap();
    let child = text(&pgrep.stdout).trim().to_string();
    assert!(!child.is_empty() && !child.contains('\n'), "one calico-apiserver child of {kubesim_pid}: {child:?}");
    signal(&child, "-STOP");
    let available = || {
        c.kubectl_ok(&[
            "get",
            "apiservice",
            "v3.projectcalico.org",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ])
    };
    c.wait_until("APIService v3.projectcalico.org unavailable", Duration::from_secs(90), || available() == "False");
    let before = c.fingerprint();
    for verb in [&["status"][..], &["migrate", "--from", NEW, "--to", "10.1.0.0/16", "--yes"][..]] {
        let (code, _, se) = run(&c, verb);
        assert_eq!(code, 2, "{verb:?}: {se}");
        assert!(
            se.contains("Calico's API server is not available (APIService v3.projectcalico.org: FailedDiscoveryCheck"),
            "{verb:?}: {se}"
        );
    }
    c.assert_nothing_written(&before, "a refusal while the aggregated API is down");
    signal(&child, "-CONT");
}

fn signal(pid: &str, sig: &str) {
    assert!(Command::new("kill").args([sig, pid]).status().unwrap().success(), "kill {sig} {pid}");
}
