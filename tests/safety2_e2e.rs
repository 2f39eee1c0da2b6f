//! Safety, second round (issue 24): what the plan promises about
//! availability and what it refuses, on one `small` cluster with extra
//! objects applied by the test.
//!
//! Every check runs even when an earlier one fails, and the test lists
//! every failed check at the end: against a build without the fixes each
//! check was seen to fail on its own.
//!
//! Run: `cargo test --test safety2_e2e -- --test-threads=1 --nocapture`

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use common::budget_watch::BlockingBudgetWatch;
use common::{json, TestCluster};
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";

/// Workloads of namespace `s2`:
/// legacy: 4 replicas, Recreate, no PDB, behind a Service (must never go to zero);
/// solo: 1 replica, Recreate (expected to go to zero: listed);
/// surger: 2 replicas, maxSurge 1 / maxUnavailable 0 (AT ONCE shows the surge);
/// slow: a bare ReplicaSet of 6, evicted one at a time: the longest lane;
/// grow: 4 replicas under maxUnavailable 1, planned as a rollout (25% of 4
/// is 1), scaled to 12 while `slow` moves (25% of 12 is 3).
fn s2_yaml() -> String {
    // A workload of pause pods in `s2`: kind, name, replicas, strategy line.
    let workload = |kind: &str, name: &str, replicas: u32, strategy: &str| {
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: s2}}\nspec:\n  replicas: {replicas}\n{strategy}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{terminationGracePeriodSeconds: 1, containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]}}\n"
        )
    };
    let recreate = "  strategy: {type: Recreate}\n";
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: s2}\n".to_string(),
        workload("Deployment", "legacy", 4, recreate),
        "apiVersion: v1\nkind: Service\nmetadata: {name: legacy, namespace: s2}\nspec: {selector: {app: legacy}, ports: [{port: 80}]}\n".into(),
        workload("Deployment", "solo", 1, recreate),
        workload("Deployment", "surger", 2, "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n"),
        workload("ReplicaSet", "slow", 6, ""),
        workload("Deployment", "grow", 4, ""),
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: grow, namespace: s2}\nspec: {maxUnavailable: 1, selector: {matchLabels: {app: grow}}}\n".into(),
    ]
    .join("---\n")
}

/// Namespace `s2-x`: pods of controllers the tool does not know (a KubeVirt
/// VirtualMachineInstance, an owner reference that is no controller) and
/// of an Argo Rollout (through its ReplicaSet). The CRDs are minimal.
fn s2x_yaml() -> String {
    // A minimal namespaced CRD that keeps whatever it is given.
    let crd = |group: &str, version: &str, kind: &str, plural: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}}}\n  versions:\n  - {{name: {version}, served: true, storage: true, schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}}}\n"
        )
    };
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: s2-x}\n".to_string(),
        crd("kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances"),
        crd("argoproj.io", "v1alpha1", "Rollout", "rollouts"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: s2-x}\n".into(),
    ]
    .join("---\n")
}

/// Namespace `s2-sts`: a 1-replica StatefulSet whose budget allows nothing.
const S2STS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: s2-sts}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: quorum, namespace: s2-sts}
spec:
  replicas: 1
  serviceName: quorum
  selector: {matchLabels: {app: quorum}}
  template:
    metadata: {labels: {app: quorum}}
    spec: {terminationGracePeriodSeconds: 1, containers: [{name: c, image: registry.k8s.io/pause:3.10}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: quorum, namespace: s2-sts}
spec: {minAvailable: 1, selector: {matchLabels: {app: quorum}}}
"#;

fn apply(c: &TestCluster, name: &str, yaml: &str) {
    let path = c.dir().join(name);
    std::fs::write(&path, yaml).unwrap();
    c.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

fn uid(c: &TestCluster, args: &[&str]) -> String {
    json(c, args)["metadata"]["uid"].as_str().unwrap().to_string()
}

/// A pause pod in `s2-x` with one owner reference.
fn owned_pod(
    name: &str,
    labels: &str,
    api_version: &str,
    kind: &str,
    owner: &str,
    uid: &str,
    controller: bool,
) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"s2-x","labels":{labels},
        "ownerReferences":[{{"apiVersion":"{api_version}","kind":"{kind}","name":"{owner}","uid":"{uid}","controller":{controller}}}]}},
        "spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"c","image":"registry.k8s.io/pause:3.10"}}]}}}}"#
    )
}

fn stage(c: &TestCluster) {
    apply(c, "s2.yaml", &s2_yaml());
    apply(c, "s2x.yaml", &s2x_yaml());
    apply(c, "s2sts.yaml", S2STS);
    c.wait_until("the CRDs to be served", Duration::from_secs(60), || {
        c.kubectl(&["get", "virtualmachineinstances.kubevirt.io,rollouts.argoproj.io", "-n", "s2-x"]).status.success()
    });
    apply(
        c,
        "owners.yaml",
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: vm1, namespace: s2-x}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: canary, namespace: s2-x}\nspec: {replicas: 2}\n",
    );
    let vmi = uid(c, &["get", "virtualmachineinstances.kubevirt.io", "vm1", "-n", "s2-x"]);
    let cfg = uid(c, &["get", "configmap", "cfg", "-n", "s2-x"]);
    let rollout = uid(c, &["get", "rollouts.argoproj.io", "canary", "-n", "s2-x"]);
    let pods = [
        owned_pod(
            "virt-launcher-vm1",
            r#"{"kubevirt.io":"virt-launcher"}"#,
            "kubevirt.io/v1",
            "VirtualMachineInstance",
            "vm1",
            &vmi,
            true,
        ),
        owned_pod("helper", "{}", "v1", "ConfigMap", "cfg", &cfg, false),
    ];
    for (i, p) in pods.iter().enumerate() {
        apply(c, &format!("pod{i}.json"), p);
    }
    // Argo Rollouts' ReplicaSet: named <rollout>-<hash>, its pods labelled with the hash.
    let rs = format!(
        r#"{{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{{"name":"canary-5d8f","namespace":"s2-x",
        "ownerReferences":[{{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","name":"canary","uid":"{rollout}","controller":true}}]}},
        "spec":{{"replicas":2,"selector":{{"matchLabels":{{"app":"canary","rollouts-pod-template-hash":"5d8f"}}}},
        "template":{{"metadata":{{"labels":{{"app":"canary","rollouts-pod-template-hash":"5d8f"}}}},
        "spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"c","image":"registry.k8s.io/pause:3.10"}}]}}}}}}}}"#
    );
    apply(c, "rs.json", &rs);
    c.wait_until("every staged pod to be Ready", Duration::from_secs(120), || {
        ["s2", "s2-x", "s2-sts"].iter().all(|ns| {
            let out = c.kubectl_ok(&[
                "get",
                "pods",
                "-n",
                ns,
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            let states: Vec<&str> = out.split_whitespace().collect();
            !states.is_empty() && states.iter().all(|s| *s == "True")
        })
    });
}

/// `kubectl ippool <args>`: (exit code, stdout, stderr).
fn ippool(c: &TestCluster, args: &[&str]) -> (i32, String, String) {
    let out = c.ippool(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--dry-run -o json` plan of the whole cluster (printed even when blockers refuse it).
fn plan_json(c: &TestCluster, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run", "-o", "json"];
    args.extend_from_slice(extra);
    let (_, out, err) = ippool(c, &args);
    (serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}")), err)
}

fn find_move<'a>(plan: &'a Value, target: &str) -> &'a Value {
    plan["moves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["target"] == target)
        .unwrap_or_else(|| panic!("no move {target}: {:#}", plan["moves"]))
}

/// Item 2: no PDB, 4 replicas, Recreate: evicted in waves keeping one
/// Ready; the 1-replica Recreate is listed, with its gap, before any
/// confirmation; --allow-downtime gives the Recreate back.
fn downtime_is_planned_and_listed(c: &TestCluster) {
    let (plan, _) = plan_json(c, &[]);
    let legacy = find_move(&plan, "Deployment s2/legacy");
    assert_eq!(legacy["kind"], "evict", "{legacy:#}");
    assert_eq!(legacy["atOnce"], 3, "{legacy:#}");
    assert!(legacy.get("downtime").is_none(), "{legacy:#}");
    let solo = find_move(&plan, "Deployment s2/solo");
    assert!(solo["downtime"]["why"].as_str().unwrap().starts_with("1 replica"), "{solo:#}");
    let (plan, _) = plan_json(c, &["--allow-downtime"]);
    let legacy = find_move(&plan, "Deployment s2/legacy");
    assert_eq!((legacy["kind"].as_str(), legacy["atOnce"].as_u64()), (Some("rollout"), Some(4)), "{legacy:#}");
    assert!(legacy["downtime"]["why"].as_str().unwrap().contains("all 4 pods down at once"), "{legacy:#}");
    // The text plan names them under their own heading, before the blockers
    // (and so before any confirmation).
    let (_, text, _) = ippool(c, &["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run", "-n", "s2"]);
    let heading = text.find("Expected to go to zero Ready pods").unwrap_or_else(|| panic!("{text}"));
    assert!(text[heading..].contains("Deployment s2/solo: 1 replica"), "{text}");
    assert!(!text[heading..].contains("s2/legacy"), "{text}");
}

/// Item 3: unknown controllers and non-controller owners block, naming
/// kind, owner and fix; the Argo Rollout is restarted through spec.restartAt.
fn unknown_owners_block(c: &TestCluster) {
    let (plan, err) = plan_json(c, &[]);
    let blockers: Vec<&str> = plan["blockers"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let vm = blockers
        .iter()
        .find(|b| b.contains("s2-x/virt-launcher-vm1"))
        .unwrap_or_else(|| panic!("{blockers:#?}\n{err}"));
    assert!(
        vm.contains("VirtualMachineInstance s2-x/vm1") && vm.contains("virtctl migrate") && vm.contains("--force"),
        "{vm}"
    );
    let helper = blockers.iter().find(|b| b.contains("s2-x/helper")).unwrap_or_else(|| panic!("{blockers:#?}"));
    assert!(helper.contains("ConfigMap s2-x/cfg is not a controller"), "{helper}");
    let canary = find_move(&plan, "Rollout s2-x/canary");
    assert_eq!(canary["kind"], "rollout");
    assert_eq!(canary["pods"].as_array().unwrap().len(), 2);
    assert!(canary["note"].as_str().unwrap().contains("spec.restartAt"), "{canary:#}");
    let (plan, _) = plan_json(c, &["--force"]);
    assert_eq!(find_move(&plan, "VirtualMachineInstance s2-x/vm1")["kind"], "evictForGood");
}

/// Item 17: a rollout that surges says so in AT ONCE.
fn at_once_shows_the_surge(c: &TestCluster) {
    let (_, text, _) = ippool(c, &["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run", "-n", "s2"]);
    let row = text.lines().find(|l| l.contains("Deployment s2/surger")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("rollout restart") && row.contains("+1 surge"), "{row}");
}

/// Item 16: an ExternalIP and an IPv6 node address count as node addresses.
fn every_node_address_counts(c: &TestCluster) {
    let patch = r#"{"status":{"addresses":[{"type":"InternalIP","address":"127.0.1.2"},{"type":"ExternalIP","address":"10.250.0.5"},{"type":"InternalIP","address":"fd00:250::5"},{"type":"Hostname","address":"kubesim-node-1"}]}}"#;
    let before = json(c, &["get", "node", "kubesim-node-1"])["status"]["addresses"].clone();
    let original = serde_json::json!({"status": {"addresses": before}}).to_string();
    c.kubectl_ok(&["patch", "node", "kubesim-node-1", "--subresource", "status", "--type", "merge", "-p", patch]);
    let (code, _, err) = ippool(c, &["migrate", "--from", OLD, "--to", "10.250.0.0/16", "--dry-run"]);
    c.kubectl_ok(&["patch", "node", "kubesim-node-1", "--subresource", "status", "--type", "merge", "-p", &original]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("kubesim-node-1 (ExternalIP 10.250.0.5)"), "{err}");
}

/// Item 15: a target holding blocks of another size (here the old pool's
/// /26 blocks under a /24 blockSize) is refused, naming the blocks.
fn nested_blocks_are_refused(c: &TestCluster) {
    let args = [
        "migrate",
        "--from",
        OLD,
        "--to",
        "192.168.0.0/17",
        "--block-size",
        "24",
        "--dry-run",
        "--allow-outside-cluster-cidr",
    ];
    let (code, _, err) = ippool(c, &args);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("contains IPAM blocks of another size than its blockSize 24: 192.168."), "{err}");
    assert!(err.contains("/26 (IPPool default-ipv4-ippool)"), "{err}");
}

/// Item 13: --surge refuses a StatefulSet.
fn surge_refuses_statefulsets(c: &TestCluster) {
    let (plan, _) = plan_json(c, &["--surge", "-n", "s2-sts"]);
    let blockers = plan["blockers"].to_string();
    assert!(blockers.contains("does not scale StatefulSets"), "{blockers}");
    assert!(plan["moves"].as_array().unwrap().iter().all(|m| m["surge"].is_null()), "{:#}", plan["moves"]);
}

/// Items 13 and 14 as a user who may not list HPAs nor read any source of
/// the Service range (ServiceCIDRs, kube-system ConfigMaps), with the
/// control-plane pods gone: --surge refuses, and the plan warns that the
/// Service range is unknown, refusing the kubernetes Service's ClusterIP.
fn limited_user(c: &TestCluster) {
    let role = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ippool-limited}
rules:
- apiGroups: [""]
  resources: [pods, nodes, namespaces, events, services]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets, replicasets]
  verbs: [get, list, watch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch]
- apiGroups: [crd.projectcalico.org, projectcalico.org]
  resources: ["*"]
  verbs: [get, list, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ippool-limited}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ippool-limited}
subjects: [{kind: User, name: limited}]
"#;
    apply(c, "limited.yaml", role);
    for p in ["kube-apiserver-kubesim-node-0", "kube-controller-manager-kubesim-node-0"] {
        c.kubectl_ok(&["delete", "pod", "-n", "kube-system", p, "--ignore-not-found"]);
    }
    let (plan, err) = plan_json(c, &["--as", "limited", "-n", "s2"]);
    assert!(plan["warnings"].to_string().contains("Service CIDR is unknown"), "{:#}\n{err}", plan["warnings"]);
    assert!(plan["warnings"].to_string().contains("ClusterIP 10.96.0.1"), "{:#}", plan["warnings"]);
    let (code, _, err) = ippool(c, &["migrate", "--from", OLD, "--to", "10.96.0.0/16", "--dry-run", "--as", "limited"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("contains 10.96.0.1, the ClusterIP of Service default/kubernetes"), "{err}");
    // A zero budget over a Deployment: --surge must know who owns its replicas.
    apply(
        c,
        "zero.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: surger, namespace: s2}\nspec: {minAvailable: 2, selector: {matchLabels: {app: surger}}}\n",
    );
    let (plan, _) = plan_json(c, &["--as", "limited", "--surge", "-n", "s2"]);
    c.kubectl_ok(&["delete", "pdb", "surger", "-n", "s2"]);
    let blockers = plan["blockers"].to_string();
    assert!(blockers.contains("listing horizontalpodautoscalers.autoscaling failed"), "{blockers}");
}

/// Items 2 and 4, measured: migrating `s2` never leaves Service s2/legacy
/// without a ready endpoint, and `grow`, scaled from 4 to 12 after the plan
/// chose its rollout, never goes below its budget. Negative control first:
/// a plain rollout restart of the Recreate Deployment empties its Service,
/// and the watch sees it (budget_e2e shows the watch catching a rollout
/// wider than a budget).
fn migration_keeps_services_and_budgets(c: &TestCluster) {
    let w = BlockingBudgetWatch::start(c, &["s2"]);
    c.kubectl_ok(&["rollout", "restart", "deployment/legacy", "-n", "s2"]);
    c.kubectl_ok(&["rollout", "status", "deployment/legacy", "-n", "s2", "--timeout", "120s"]);
    let report = w.stop();
    assert!(
        report.services_at_zero.iter().any(|s| s.service == "s2/legacy"),
        "the watch missed the Recreate:\n{report}"
    );

    let w = BlockingBudgetWatch::start(c, &["s2"]);
    let watching = std::time::Instant::now();
    let run = Background::migrate(c, &["-n", "s2", "--max-parallel", "1"]);
    // `slow` goes first (most rounds): once one of its pods has moved, the
    // plan is made and `grow`'s lane has not started.
    c.wait_until("a pod of slow on the new pool", Duration::from_secs(180), || {
        let ips =
            c.kubectl_ok(&["get", "pods", "-n", "s2", "-l", "app=slow", "-o", "jsonpath={.items[*].status.podIP}"]);
        ips.split_whitespace().any(|ip| common::in_cidr(ip, "10.0.0.0/16"))
    });
    c.kubectl_ok(&["scale", "deployment/grow", "-n", "s2", "--replicas", "12"]);
    // The scale-up itself leaves the budget short until the new pods are
    // Ready: only what happens after that is the migration's doing.
    c.kubectl_ok(&["rollout", "status", "deployment/grow", "-n", "s2", "--timeout", "120s"]);
    // The watch's clock started a moment before `watching`; grow's lane
    // starts seconds later, after every round of `slow`.
    let grown = watching.elapsed() + Duration::from_secs(1);
    let (status, out, err) = run.finish();
    let report = w.stop();
    // The watch vouches for the whole run: grow's budget evaluated on every
    // pod event of s2, legacy's endpoints recounted, no lost watch.
    let mut problems = report.coverage_problems(&["s2/grow"], &["s2/legacy"]);
    problems.extend(report.watch_errors.iter().cloned());
    problems.extend(report.unevaluated.iter().cloned());
    assert!(problems.is_empty(), "the watch cannot vouch for the run: {problems:#?}\n{report}");
    let zero: Vec<_> = report.services_at_zero.iter().filter(|s| s.service == "s2/legacy").collect();
    assert!(zero.is_empty(), "Service s2/legacy went to zero during the migration:\n{report}");
    let late: Vec<_> = report.violations_for("s2/grow").into_iter().filter(|v| v.at > grown).collect();
    assert!(late.is_empty(), "grow went below its budget after reaching 12 Ready ({grown:?}):\n{report}");
    assert!(status.success(), "{out}\n{err}\n{}", c.log_tail());
    assert!(err.contains("Deployment s2/grow: now 12 replica(s)"), "{err}");
    let ips = c.kubectl_ok(&["get", "pods", "-n", "s2", "-o", "jsonpath={.items[*].status.podIP}"]);
    assert!(ips.split_whitespace().all(|ip| common::in_cidr(ip, "10.0.0.0/16")), "{ips}");
}

/// `migrate --from OLD --to 10.0.0.0/16 --yes <extra>` running in the
/// background, its output going to files in the cluster's directory.
struct Background {
    child: std::process::Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Background {
    fn migrate(c: &TestCluster, extra: &[&str]) -> Background {
        let (out, err) = (c.dir().join("migrate.out"), c.dir().join("migrate.err"));
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-ippool"))
            .env("KUBECONFIG", &c.kubeconfig)
            .args(["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--yes"])
            .args(extra)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Background { child, out, err }
    }

    /// Wait for it: its exit status, stdout and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let status = self.child.wait().unwrap();
        (status, std::fs::read_to_string(&self.out).unwrap(), std::fs::read_to_string(&self.err).unwrap())
    }
}

/// Item 3, carried out: the Argo Rollout's move sets spec.restartAt and
/// waits until its pods have left the old pool. kubesim runs no Rollouts
/// controller, so the test plays it: once restartAt is set, it evicts the
/// pods created before it, and their ReplicaSet re-creates them.
fn argo_rollout_restarts(c: &TestCluster) {
    // Replacements take seconds to become Ready, so a move that ended when
    // the old pods were gone (not when their replacements serve) is caught.
    let slow = r#"{"spec":{"template":{"metadata":{"annotations":{"kubesim.io/ready-after":"8s"}}}}}"#;
    c.kubectl_ok(&["patch", "replicaset", "canary-5d8f", "-n", "s2-x", "--type=merge", "-p", slow]);
    let run = Background::migrate(c, &["-n", "s2-x", "-l", "app=canary"]);
    c.wait_until("spec.restartAt on Rollout s2-x/canary", Duration::from_secs(180), || {
        json(c, &["get", "rollouts.argoproj.io", "canary", "-n", "s2-x"])["spec"]["restartAt"].is_string()
    });
    for pod in c.kubectl_ok(&["get", "pods", "-n", "s2-x", "-l", "app=canary", "-o", "name"]).split_whitespace() {
        c.kubectl_ok(&["delete", "-n", "s2-x", pod, "--wait=false"]);
    }
    let (status, out, err) = run.finish();
    assert!(status.success(), "{out}\n{err}\n{}", c.log_tail());
    let ready = c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "s2-x",
        "-l",
        "app=canary",
        "-o",
        r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ]);
    assert_eq!(ready.lines().filter(|l| *l == "True").count(), 2, "Ready pods when migrate exited: {ready:?}\n{err}");
    let ips =
        c.kubectl_ok(&["get", "pods", "-n", "s2-x", "-l", "app=canary", "-o", "jsonpath={.items[*].status.podIP}"]);
    assert_eq!(ips.split_whitespace().count(), 2, "{ips}");
    assert!(ips.split_whitespace().all(|ip| common::in_cidr(ip, "10.0.0.0/16")), "{ips}");
    let rollout = json(c, &["get", "rollouts.argoproj.io", "canary", "-n", "s2-x"]);
    assert!(rollout["metadata"]["annotations"]["ippool.kubectl.io/migrated"].is_string(), "{rollout:#}");
}

/// Item 5: a pool synced by Argo CD or Flux is named and refused without --force.
fn gitops_pool_blocks(c: &TestCluster) {
    let pool = ["ippools.crd.projectcalico.org", OLD];
    for (marker, manager) in [
        ("argocd.argoproj.io/tracking-id=net:crd.projectcalico.org/IPPool:/default-ipv4-ippool", "Argo CD"),
        ("kustomize.toolkit.fluxcd.io/name=infra", "Flux"),
    ] {
        let verb = if manager == "Flux" { "label" } else { "annotate" };
        c.kubectl_ok(&[verb, pool[0], pool[1], marker]);
        let (plan, _) = plan_json(c, &["-n", "s2"]);
        let key = marker.split('=').next().unwrap();
        c.kubectl_ok(&[verb, pool[0], pool[1], &format!("{key}-")]);
        let blockers = plan["blockers"].to_string();
        assert!(blockers.contains(&format!("IPPool default-ipv4-ippool is managed by {manager}")), "{blockers}");
        let (plan, _) = plan_json(c, &["-n", "s2", "--force"]);
        assert!(!plan["blockers"].to_string().contains("managed by"), "{:#}", plan["blockers"]);
    }
}

/// One check on the shared cluster: panics when it fails.
type Check = fn(&TestCluster);

#[test]
fn safety_second_round_on_one_cluster() {
    let c = TestCluster::start(&["--scenario", "small", "--readiness-delay", "2s"]);
    stage(&c);
    let checks: &[(&str, Check)] = &[
        ("item 2: downtime planned and listed", downtime_is_planned_and_listed),
        ("item 3: unknown owners block", unknown_owners_block),
        ("item 17: AT ONCE shows the surge", at_once_shows_the_surge),
        ("item 16: every node address counts", every_node_address_counts),
        ("item 15: nested blocks refused", nested_blocks_are_refused),
        ("item 13: --surge refuses StatefulSets", surge_refuses_statefulsets),
        ("items 13, 14: limited user", limited_user),
        ("item 5: GitOps-managed pool blocks", gitops_pool_blocks),
        ("items 2, 4: migration keeps Services and budgets", migration_keeps_services_and_budgets),
        ("item 3: an Argo Rollout restarts through spec.restartAt", argo_rollout_restarts),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        eprintln!("--- {name}");
        if catch_unwind(AssertUnwindSafe(|| check(&c))).is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
}
