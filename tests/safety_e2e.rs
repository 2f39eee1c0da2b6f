//! Safety holes: a rollback undoes only what the migration changed, and a
//! drain leaves a node an administrator cordoned cordoned (one seed cluster
//! for both, in order); the canary and the probe pass Pod Security
//! `restricted`, and admission refusing the canary refuses the migration
//! before anything is written (one seed cluster enforcing `restricted`).

mod common;

use common::{json, pool_specs, TestCluster, ROLLBACK_WRITES};
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";
const IPPOOLS: &str = "ippools.crd.projectcalico.org";

fn disabled(c: &TestCluster, pool: &str) -> bool {
    json(c, &["get", IPPOOLS, pool])["spec"]["disabled"] == Value::Bool(true)
}

fn run(c: &TestCluster, args: &[&str]) -> String {
    let out = c.ippool(args).output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubectl ippool {args:?}:\n{so}\n{se}\n{}", c.log_tail());
    format!("{so}{se}")
}

#[test]
fn rollback_and_drain_leave_alone_what_the_migration_did_not_change() {
    let c = TestCluster::seed();
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    // A pool that serves pods before any migration, created by Calico's own client.
    let spare = c.dir().join("spare.yaml");
    std::fs::write(
        &spare,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: spare\nspec:\n  cidr: 10.1.0.0/16\n  blockSize: 26\n  ipipMode: Always\n  natOutgoing: true\n  nodeSelector: all()\n",
    )
    .unwrap();
    let out = c.calicoctl(&["create", "-f", spare.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // 1. A filtered run into the existing pool, then a rollback: the old pool
    // comes back, and the pool that existed before stays enabled.
    let specs_before = pool_specs(&c, "crd.projectcalico.org");
    let text = run(&c, &["migrate", "--from", OLD, "--to-pool", "spare", "-n", "shop", "-l", "app=web", "--yes"]);
    assert!(text.contains("kept (disabled)"), "{text}");
    assert!(disabled(&c, OLD));
    let before_rollback = c.fingerprint();
    let text = run(&c, &["migrate", "--from", OLD, "--rollback", "--yes"]);
    assert!(text.contains("IPPool spare left as it was"), "{text}");
    // By content, not by the disabled flags alone: both pools are exactly as
    // they were before the run (the run did not create `spare`, so the
    // rollback leaves it enabled), and nothing but what a rollback may write
    // changed (the moved web pods stay where they are).
    assert_eq!(pool_specs(&c, "crd.projectcalico.org"), specs_before, "the pools are not back as they were");
    let touched = before_rollback.changes_besides(&c.fingerprint(), &ROLLBACK_WRITES);
    assert_eq!(touched, Vec::<String>::new(), "the rollback wrote what it must not touch");

    // 2. An administrator cordoned a node; a drain migration cordons and
    // uncordons the others, and leaves that one cordoned.
    c.kubectl_ok(&["cordon", "kubesim-node-1"]);
    let text = run(
        &c,
        &["migrate", "--from", OLD, "--to-pool", "spare", "--strategy", "drain", "--force", "--jobs", "evict", "--yes"],
    );
    assert!(text.contains("node/kubesim-node-1 was already cordoned; it stays so"), "{text}");
    for node in ["kubesim-node-0", "kubesim-node-1", "kubesim-node-2"] {
        let n = json(&c, &["get", "node", node]);
        let cordoned = n["spec"]["unschedulable"] == Value::Bool(true);
        assert_eq!(cordoned, node == "kubesim-node-1", "{node}: {}", n["spec"]);
        assert!(n["metadata"]["annotations"]["ippool.kubectl.io/cordoned"].is_null(), "{node} keeps no mark of ours");
    }
    let out = c.ippool(&["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    c.assert_ipam_clean();

    // 3. Someone deletes the old pool in the middle of a migration: a re-run
    // must not close the record while pods still hold its addresses.
    let third = c.dir().join("third.yaml");
    std::fs::write(
        &third,
        std::fs::read_to_string(&spare).unwrap().replace("spare", "third").replace("10.1.", "10.2."),
    )
    .unwrap();
    let out = c.calicoctl(&["create", "-f", third.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let filtered = ["migrate", "--from", "spare", "--to-pool", "third", "-n", "shop", "-l", "app=web", "--yes"];
    run(&c, &filtered);
    let out = c.calicoctl(&["delete", "ippool", "spare"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.ippool(&filtered).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("IPPool spare is gone, but") && err.contains("still hold addresses of 10.1.0.0/16"), "{err}");
    let record = c.kubectl_ok(&[
        "get",
        "configmap",
        "-n",
        "kube-system",
        "kubectl-ippool-migration",
        "-o",
        "jsonpath={.data.state\\.json}",
    ]);
    let state: serde_json::Value = serde_json::from_str(&record).unwrap_or_else(|e| panic!("{e}: {record}"));
    let phase = state["phase"].as_str().unwrap_or_else(|| panic!("no phase in the record: {record}"));
    assert_ne!(phase, "Done", "the record was closed: {record}");
}

const MIGRATE: &[&str] =
    &["migrate", "--from", OLD, "--to", "10.1.0.0/16", "-n", "shop", "-l", "app=web", "--canary-per-node", "--yes"];

/// Would the API server admit a pod labelled as a canary (in kube-system,
/// which Pod Security exempts, so only the test policy below can say no)?
fn canary_label_admitted(c: &TestCluster) -> bool {
    let out = c.kubectl(&[
        "run",
        "vap-check",
        "-n",
        "kube-system",
        "--image=registry.k8s.io/pause:3.10",
        "--labels=ippool.kubectl.io/canary=true",
        "--restart=Never",
        "--dry-run=server",
    ]);
    out.status.success()
}

/// A ValidatingAdmissionPolicy (and its binding) that denies every pod
/// labelled as a canary, in every namespace.
const NO_CANARY_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: no-canary
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  validations:
  - expression: "!has(object.metadata.labels) || !('ippool.kubectl.io/canary' in object.metadata.labels)"
    message: "test policy: no canary pods"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: no-canary
spec:
  policyName: no-canary
  validationActions: ["Deny"]
"#;

/// A cluster enforcing Pod Security `restricted` by default (kubesim
/// `--pod-security restricted`: every namespace without its own label but
/// kube-system; the seed workloads' namespaces are labelled privileged).
#[test]
fn canary_and_probe_pass_pod_security_restricted() {
    let c = TestCluster::start(&["--scenario", "seed", "--pod-security", "restricted"]);
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);

    // 0. The flag bites: a pod without a securityContext (what the canary
    // and the probe were) is refused in a fresh namespace, and in default.
    c.kubectl_ok(&["create", "namespace", "psa-control"]);
    for ns in ["psa-control", "default"] {
        let out = c.kubectl(&["run", "plain", "-n", ns, "--image=registry.k8s.io/pause:3.10", "--restart=Never"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("violates PodSecurity \"restricted:latest\""), "{ns}: {err}");
    }

    // 1. verify --probe: a probe pod per node is admitted and gets an address.
    let out = c.ippool(&["verify", "--probe", "--probe-per-node", "-o", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let probe = v["checks"].as_array().unwrap().iter().find(|c| c["code"] == "probe").unwrap();
    assert_eq!(probe["status"], "PASS", "{probe:#}");
    assert_eq!(v["probe"].as_array().unwrap().len(), 3, "{:#}", v["probe"]);

    // 2. Admission that refuses the canary refuses the migration up front
    // (server-side dry run), with the reason, and nothing is written.
    let policy = c.dir().join("no-canary.yaml");
    std::fs::write(&policy, NO_CANARY_POLICY).unwrap();
    c.kubectl_ok(&["apply", "-f", policy.to_str().unwrap()]);
    c.wait_until("the test policy is in force", std::time::Duration::from_secs(30), || !canary_label_admitted(&c));
    let before = c.fingerprint();
    let out = c.ippool(MIGRATE).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("refusing to migrate default-ipv4-ippool: the canary could not run (nothing was changed)"),
        "{err}"
    );
    assert!(err.contains("the API server refuses the canary pod (server-side dry run in namespace default)"), "{err}");
    assert!(err.contains("test policy: no canary pods"), "{err}");
    c.assert_nothing_written(&before, "a refused migration");
    c.kubectl_ok(&["delete", "-f", policy.to_str().unwrap()]);
    c.wait_until("the test policy is gone", std::time::Duration::from_secs(30), || canary_label_admitted(&c));

    // 3. migrate: the dry run passes, and the canary pods (one per node, in
    // their namespace enforcing restricted) get addresses from the new pool.
    let text = run(&c, MIGRATE);
    let canary = text.lines().find(|l| l.starts_with("Canary passed: 10.1.")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(canary.matches(" on kubesim-node-").count(), 3, "a canary per node: {text}");
    // With the dataplane (kubesim's default here) its client pods, under
    // restricted too, run and pass every path.
    assert!(text.contains("Canary paths passed"), "{text}");
    assert!(text.contains("kept (disabled)"), "{text}");
    c.assert_ipam_clean();
}
