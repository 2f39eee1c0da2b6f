//! `verify` against the local cluster. Each failure class is produced on
//! purpose and verify must name the object and exit 1; on a clean cluster it
//! exits 0; and its IPAM problem count equals `calicoctl ipam check`'s
//! "found N problems" on the same cluster at every step.
//!
//! How the IPAM faults are made (the fake kubelet releases a pod's address
//! whenever the pod goes away, even on a forced delete, so deleting pods
//! cannot leak): a free ordinal of an existing IPAMBlock is marked allocated
//! to a handle and a pod that do not exist, keeping the block structurally
//! valid (attribute appended, ordinal removed from `unallocated`). That is
//! exactly what a CNI DEL that never ran leaves behind. An orphan handle is
//! an IPAMHandle object that no allocation refers to.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// `verify -o json <extra>`: the document and the exit code.
fn verify(c: &common::TestCluster, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["verify", "-o", "json"];
    args.extend_from_slice(extra);
    let out = c.ippool(&args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "verify exited {code}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify -o json is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["kind"], "IPPoolVerify");
    // The human summary goes to stderr, never into the data.
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify "), "no summary line on stderr");
    (v, code)
}

fn check<'a>(v: &'a Value, code: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == code)
        .unwrap_or_else(|| panic!("no check {code} in {v:#}"))
}

fn status(v: &Value, code: &str) -> String {
    check(v, code)["status"].as_str().unwrap().to_string()
}

fn objects(v: &Value, code: &str) -> Vec<String> {
    check(v, code)["objects"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect()
}

/// calicoctl's "Check complete; found N problems."
fn calicoctl_problems(c: &common::TestCluster) -> u64 {
    let out = c.calicoctl(&["ipam", "check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "calicoctl ipam check failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let line =
        text.lines().find(|l| l.contains("Check complete; found")).unwrap_or_else(|| panic!("no summary in {text}"));
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("cannot read {line:?}"))
}

/// Our count in calicoctl's classes equals calicoctl's. The two reads are
/// not atomic, so while the cluster is still settling (tunnel addresses
/// being reassigned, pods starting) retry for a while; at rest they must match.
fn assert_agrees_with_calicoctl(c: &common::TestCluster, v: &Value) {
    let mut ours = v["ipam"]["calicoctlProblems"].as_u64().unwrap();
    let mut theirs = calicoctl_problems(c);
    let mut figures = v["ipam"].clone();
    let start = std::time::Instant::now();
    while ours != theirs && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        let (again, _) = verify(c, &[]);
        ours = again["ipam"]["calicoctlProblems"].as_u64().unwrap();
        figures = again["ipam"].clone();
        theirs = calicoctl_problems(c);
    }
    assert_eq!(
        ours, theirs,
        "verify counts {ours} problems in calicoctl's classes, calicoctl ipam check found {theirs}: {figures:#}"
    );
}

fn failing(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect()
}

/// Allocate a free address of the first IPAMBlock to a pod that does not
/// exist (see the module comment). Returns the block name.
fn inject_leak(c: &common::TestCluster) -> String {
    let list: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "ipamblocks.crd.projectcalico.org", "-o", "json"])).unwrap();
    let mut block = list["items"][0].clone();
    let name = block["metadata"]["name"].as_str().unwrap().to_string();
    let spec = block["spec"].as_object_mut().unwrap();
    let ordinal = spec["unallocated"].as_array_mut().unwrap().remove(0).as_u64().unwrap() as usize;
    let attr_index = spec["attributes"].as_array().unwrap().len();
    let node = spec["affinity"].as_str().unwrap().trim_start_matches("host:").to_string();
    spec["allocations"][ordinal] = Value::from(attr_index);
    spec["attributes"].as_array_mut().unwrap().push(serde_json::json!({
        "handle_id": "k8s-pod-network.leaked-by-test",
        "secondary": {"namespace": "shop", "pod": "ghost", "node": node}
    }));
    let path = c.dir().join("leak.json");
    std::fs::write(&path, serde_json::to_vec(&block).unwrap()).unwrap();
    c.kubectl_ok(&["replace", "-f", path.to_str().unwrap()]);
    name
}

/// Free the allocation of a running pod's address in its IPAMBlock (as a
/// botched manual release would): the pod then holds an address IPAM may
/// hand out again, its handle has no addresses, and the block keeps an
/// unreferenced attribute.
fn unallocate_pod_ip(c: &common::TestCluster, ns: &str, pod: &str) {
    let ip: std::net::IpAddr =
        c.kubectl_ok(&["get", "pod", "-n", ns, pod, "-o", "jsonpath={.status.podIP}"]).trim().parse().unwrap();
    let list: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "ipamblocks.crd.projectcalico.org", "-o", "json"])).unwrap();
    let mut block = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["spec"]["cidr"].as_str().unwrap().parse::<ipnet::IpNet>().unwrap().contains(&ip))
        .expect("block of the pod's address")
        .clone();
    let net: ipnet::IpNet = block["spec"]["cidr"].as_str().unwrap().parse().unwrap();
    let ordinal = match (ip, net.network()) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => (u32::from(a) - u32::from(n)) as usize,
        _ => unreachable!("the seed cluster is IPv4"),
    };
    block["spec"]["allocations"][ordinal] = Value::Null;
    block["spec"]["unallocated"].as_array_mut().unwrap().push(Value::from(ordinal));
    let path = c.dir().join("unallocate.json");
    std::fs::write(&path, serde_json::to_vec(&block).unwrap()).unwrap();
    c.kubectl_ok(&["replace", "-f", path.to_str().unwrap()]);
}

fn create_orphan_handle(c: &common::TestCluster) {
    let path = c.dir().join("orphan-handle.json");
    let handle = serde_json::json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMHandle",
        "metadata": {"name": "k8s-pod-network.orphan-by-test"},
        "spec": {"handleID": "k8s-pod-network.orphan-by-test", "block": {}}
    });
    std::fs::write(&path, serde_json::to_vec(&handle).unwrap()).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
}

fn probe_namespaces(c: &common::TestCluster) -> Vec<String> {
    c.kubectl_ok(&["get", "namespaces", "-o", "name"])
        .lines()
        .filter(|l| l.contains("kubectl-ippool-probe-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn seed_clean_then_each_failure_class_crd_v1() {
    let c = common::TestCluster::seed();

    // Clean: every check PASS or WARN (the seed pool lies outside the
    // cluster CIDR), exit 0, counts agree with calicoctl (0); with no pool
    // named and no migration recorded, the target and the old pool are
    // NOT_CHECKED (an enabled pool is no evidence of either), which is not
    // a failure; so are rules naming a retired pool (none is retired).
    let (v, code) = verify(&c, &[]);
    assert_eq!(code, 0, "clean seed cluster must pass: {:?}", failing(&v));
    assert!(failing(&v).is_empty());
    assert_eq!(status(&v, "poolOutsideClusterCidr"), "WARN");
    for code in ["targetPool", "oldPoolRetired", "rulesNameRetiredCidr"] {
        assert_eq!(status(&v, code), "NOT_CHECKED", "{:#}", check(&v, code));
    }
    assert_eq!(v["summary"]["notChecked"], 3, "{:#}", v["summary"]);
    assert_eq!(v["result"], "WARN");
    let not_checked: Vec<&Value> =
        v["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "NOT_CHECKED").collect();
    assert_eq!(not_checked.len(), 3, "only those three: {not_checked:#?}");
    assert_eq!(v["ipam"]["calicoctlProblems"], 0);
    assert_agrees_with_calicoctl(&c, &v);
    // --strict turns that warning into exit 1.
    let (v, code) = verify(&c, &["--strict"]);
    assert_eq!((code, v["result"].as_str().unwrap()), (1, "FAIL"));
    // The table goes to stdout.
    let out = c.ippool(&["verify"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("CHECK") && table.contains("Leaked allocations"), "{table}");
    for title in ["Target pool", "Old pool retired"] {
        let row = table.lines().find(|l| l.starts_with(title)).unwrap_or_else(|| panic!("no {title} row: {table}"));
        assert!(row.contains("NOT CHECKED") && !row.contains("PASS"), "{row}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(", 3 not checked;"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Probe: a pod per node gets an address from the enabled pool; its
    // namespace is gone afterwards and IPAM stays clean.
    let (v, code) = verify(&c, &["--probe", "--probe-per-node"]);
    assert_eq!(code, 0, "{:?} {:#}", failing(&v), check(&v, "probe"));
    assert_eq!(status(&v, "probe"), "PASS");
    assert_eq!(v["probe"].as_array().unwrap().len(), 3);
    assert!(v["probe"].as_array().unwrap().iter().all(|p| p["ip"].as_str().unwrap().starts_with("192.168.")));
    c.wait_until("probe namespace deleted", Duration::from_secs(60), || probe_namespaces(&c).is_empty());
    c.wait_until("probe addresses released", Duration::from_secs(30), || calicoctl_problems(&c) == 0);

    // Naming the seed pool as the target fails: it lies outside the cluster CIDR.
    let (v, code) = verify(&c, &["--to", "default-ipv4-ippool"]);
    assert_eq!(code, 1);
    assert_eq!(objects(&v, "targetPool"), vec!["IPPool default-ipv4-ippool"]);
    assert!(check(&v, "targetPool")["message"].as_str().unwrap().contains("outside the cluster CIDR 10.0.0.0/8"));

    // A leaked allocation and an orphan handle.
    let block = inject_leak(&c);
    create_orphan_handle(&c);
    let (v, code) = verify(&c, &[]);
    assert_eq!(code, 1);
    let leaked = objects(&v, "leakedAllocations");
    assert_eq!(leaked.len(), 1, "{leaked:?}");
    assert!(leaked[0].contains("pod shop/ghost") && leaked[0].contains(&format!("IPAMBlock {block}")), "{leaked:?}");
    assert_eq!(objects(&v, "handlesWithoutIps"), vec!["IPAMHandle k8s-pod-network.orphan-by-test"]);
    assert_eq!(objects(&v, "missingHandles"), vec!["IPAMHandle k8s-pod-network.leaked-by-test"]);
    assert_eq!(v["ipam"]["calicoctlProblems"], 2);
    assert_agrees_with_calicoctl(&c, &v);

    // A running pod whose address has no allocation.
    unallocate_pod_ip(&c, "shop", "debug");
    let (v, code) = verify(&c, &[]);
    assert_eq!(code, 1);
    let unallocated = objects(&v, "ipsWithoutAllocation");
    assert_eq!(unallocated.len(), 1);
    assert!(unallocated[0].starts_with("Pod shop/debug ("), "{unallocated:?}");
    assert_eq!(objects(&v, "handlesWithoutIps").len(), 2);
    assert_eq!(status(&v, "invalidBlocks"), "FAIL");
    assert_eq!(v["ipam"]["calicoctlProblems"], 4);
    assert_agrees_with_calicoctl(&c, &v);

    // Disable the seed pool: the pinned namespace, the pods left on it, and
    // a pod recreated there stuck Pending with Calico's reason.
    c.kubectl_ok(&[
        "patch",
        "ippools.crd.projectcalico.org",
        "default-ipv4-ippool",
        "--type=merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);
    let old_pods = c.kubectl_ok(&["get", "pods", "-n", "legacy", "-o", "name"]);
    c.kubectl_ok(&["delete", "pods", "-n", "legacy", "--all", "--wait=false"]);
    c.wait_until("a legacy pod stuck Pending on IPAM", Duration::from_secs(60), || {
        let (v, _) = verify(&c, &[]);
        status(&v, "podsPendingOnIpam") == "FAIL"
    });
    let (v, code) = verify(&c, &["--from", "default-ipv4-ippool"]);
    assert_eq!(code, 1);
    assert_eq!(objects(&v, "pinnedToRetiredPool"), vec!["Namespace legacy"]);
    assert!(check(&v, "pinnedToRetiredPool")["message"].as_str().unwrap().contains("default-ipv4-ippool is disabled"));
    let on_old = objects(&v, "podsOnRetiredPools");
    assert!(on_old.iter().any(|o| o.starts_with("Pod shop/db-0 ")), "{on_old:?}");
    assert!(on_old.iter().all(|o| o.contains("disabled IPPool default-ipv4-ippool")), "{on_old:?}");
    let pending = objects(&v, "podsPendingOnIpam");
    assert!(pending.iter().all(|p| p.starts_with("Pod legacy/old-app-")) && !pending.is_empty(), "{pending:?}");
    assert!(!old_pods.contains(pending[0].trim_start_matches("Pod legacy/")), "the pending pod is the recreated one");
    let msg = check(&v, "podsPendingOnIpam")["message"].as_str().unwrap();
    assert!(!msg.contains("rpc error"), "only Calico's reason: {msg}");
    assert_eq!(status(&v, "targetPool"), "FAIL", "no enabled pool is left");
    // The pod without an allocation is now outside every active pool (calicoctl's other class).
    assert_eq!(objects(&v, "ipsWithoutAllocation"), Vec::<String>::new());
    assert!(
        objects(&v, "ipsOutsideActivePools").iter().any(|o| o.starts_with("Pod shop/debug (")),
        "{:#}",
        check(&v, "ipsOutsideActivePools")
    );
    assert_agrees_with_calicoctl(&c, &v);

    // A workload template pinned to the disabled pool is named too (its
    // Deployment, not the ReplicaSets it owns).
    c.kubectl_ok(&["patch", "deployment", "-n", "shop", "api", "--type=merge", "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"cni.projectcalico.org/ipv4pools":"[\"default-ipv4-ippool\"]"}}}}}"#]);
    let (v, _) = verify(&c, &[]);
    let pinned = objects(&v, "pinnedToRetiredPool");
    assert!(pinned.contains(&"Deployment shop/api".to_string()), "{pinned:?}");
    assert!(!pinned.iter().any(|o| o.starts_with("ReplicaSet ")), "{pinned:?}");

    // A probe now gets no address; Calico's reason is reported and the
    // namespace is cleaned up.
    let (v, code) = verify(&c, &["--probe", "--probe-timeout", "5s"]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "probe"), "FAIL");
    assert!(v["probe"][0]["ip"].is_null());
    c.wait_until("probe namespace deleted", Duration::from_secs(60), || probe_namespaces(&c).is_empty());

    // Ctrl-C during a probe: exit 130 and the namespace is deleted.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-ippool"))
        .env("KUBECONFIG", &c.kubeconfig)
        .args(["verify", "--probe", "--probe-timeout", "120s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.wait_until("probe namespace created", Duration::from_secs(30), || !probe_namespaces(&c).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "Ctrl-C exits 130");
    c.wait_until("probe namespace deleted after Ctrl-C", Duration::from_secs(60), || {
        let phase = c.kubectl(&[
            "get",
            "namespaces",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}",
        ]);
        String::from_utf8_lossy(&phase.stdout)
            .lines()
            .filter(|l| l.starts_with("kubectl-ippool-probe-"))
            .all(|l| l.ends_with("=Terminating"))
    });

    // Blocks affine to a deleted node.
    c.kubectl_ok(&["delete", "node", "kubesim-node-2"]);
    let (v, code) = verify(&c, &[]);
    assert_eq!(code, 1);
    let aff = objects(&v, "affinityForMissingNode");
    assert!(!aff.is_empty() && aff.iter().all(|o| o.contains("missing Node kubesim-node-2")), "{aff:?}");
    assert!(
        aff.iter().any(|o| o.starts_with("IPAMBlock ")) && aff.iter().any(|o| o.starts_with("BlockAffinity ")),
        "{aff:?}"
    );
    assert_agrees_with_calicoctl(&c, &v);
}

#[test]
fn kops_pool_over_the_service_range_fails_crd_v1() {
    let c = common::TestCluster::start(&["--scenario", "kops"]);
    let (v, code) = verify(&c, &[]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "poolOverlapsServiceCidr"), "FAIL");
    assert_eq!(objects(&v, "poolOverlapsServiceCidr"), vec!["IPPool default-ipv4-ippool"]);
    assert!(check(&v, "poolOverlapsServiceCidr")["message"].as_str().unwrap().contains("100.64.0.0/13"));
    assert_agrees_with_calicoctl(&c, &v);
    // A half-done migration recorded in the cluster fails verify.
    let record = serde_json::json!({
        "fromPool": "default-ipv4-ippool", "fromCidr": "100.64.0.0/10", "toPool": "new-pool", "toCidr": "100.96.0.0/16",
        "createdTarget": true, "phase": "MovingPods", "startedAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:05:00Z",
        "startedBy": "test@host", "originalFromPool": null, "total": 5, "podsMoved": 1, "done": ["Deployment shop/web"], "failed": []
    });
    c.kubectl_ok(&[
        "create",
        "configmap",
        "-n",
        "kube-system",
        "kubectl-ippool-migration",
        &format!("--from-literal=state.json={record}"),
    ]);
    let (v, code) = verify(&c, &[]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "migrationComplete"), "FAIL");
    assert!(check(&v, "migrationComplete")["message"].as_str().unwrap().contains("phase MovingPods, 1/5 moved"));
    // The record's target does not exist and its source is still enabled.
    assert_eq!(objects(&v, "targetPool"), vec!["IPPool new-pool"]);
    assert_eq!(objects(&v, "oldPoolRetired"), vec!["IPPool default-ipv4-ippool"]);

    // -o wide lists the object under its code.
    let out = c.ippool(&["verify", "-o", "wide"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("poolOverlapsServiceCidr") && l.ends_with("IPPool default-ipv4-ippool")),
        "{text}"
    );
}

/// A migration done by hand: new pool, old pool disabled, pods moved. While
/// pods remain on the old pool verify fails naming them; once all moved and
/// the old pool is deleted, every check passes and calicoctl agrees.
#[test]
fn hand_migration_is_verified_clean_crd_v1() {
    let c = common::TestCluster::seed();
    let path = c.dir().join("new-pool.json");
    let pool = serde_json::json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "new-pool"},
        "spec": {"cidr": "10.1.0.0/16", "blockSize": 26, "ipipMode": "Always", "natOutgoing": true, "nodeSelector": "all()"}
    });
    std::fs::write(&path, serde_json::to_vec(&pool).unwrap()).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&[
        "patch",
        "ippools.crd.projectcalico.org",
        "default-ipv4-ippool",
        "--type=merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);

    let (v, code) = verify(&c, &["--to", "new-pool", "--from", "default-ipv4-ippool"]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "targetPool"), "PASS", "{:#}", check(&v, "targetPool"));
    assert_eq!(status(&v, "oldPoolRetired"), "PASS");
    assert!(objects(&v, "podsOnRetiredPools").iter().any(|o| o.starts_with("Pod shop/debug ")));
    assert_eq!(objects(&v, "pinnedToRetiredPool"), vec!["Namespace legacy"]);
    assert_agrees_with_calicoctl(&c, &v);

    // Move everything: unpin legacy, recreate every pod (the bare pod is simply gone).
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    // The StatefulSet's pods are replaced under the same names, racing with
    // their predecessors' removal: kubesim keys its per-pod IPAM state by
    // UID, so an old pod's teardown never releases its successor's handle
    // (it once did, when that state was keyed by namespace/name).
    c.kubectl_ok(&["delete", "pods", "-n", "shop", "--all", "--wait=false"]);
    c.kubectl_ok(&["delete", "pods", "-n", "legacy", "--all", "--wait=false"]);
    c.kubectl_ok(&["delete", "pods", "-n", "kube-system", "-l", "app=coredns", "--wait=false"]);
    let start = std::time::Instant::now();
    loop {
        let (v, _) = verify(&c, &["--to", "new-pool", "--from", "default-ipv4-ippool"]);
        let last = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "FAIL")
            .map(|c| c["message"].clone())
            .collect::<Vec<_>>();
        if last.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "pods did not all move: {last:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Delete the old pool the way calicoctl does (releases its empty blocks).
    let out = c.calicoctl(&["delete", "ippool", "default-ipv4-ippool"]);
    assert!(out.status.success(), "calicoctl delete ippool: {}", String::from_utf8_lossy(&out.stderr));
    let (v, code) =
        verify(&c, &["--to", "new-pool", "--from", "default-ipv4-ippool", "--from-cidr", "192.168.0.0/16", "--strict"]);
    let not_pass: Vec<_> = v["checks"].as_array().unwrap().iter().filter(|c| c["status"] != "PASS").collect();
    assert!(not_pass.is_empty(), "{not_pass:#?}");
    assert_eq!(code, 0);
    assert_eq!(check(&v, "oldPoolRetired")["message"], "IPPool default-ipv4-ippool is deleted");
    assert_agrees_with_calicoctl(&c, &v);
    c.assert_ipam_clean();
}

/// Errors exit 2 (no cluster needed).
#[test]
fn errors_exit_2() {
    let bin = assert_cmd::cargo::cargo_bin("kubectl-ippool");
    let out = std::process::Command::new(&bin).args(["verify", "--from-cidr", "10.0.0.1/8"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10.0.0.0/8"), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        std::process::Command::new(&bin).args(["verify", "--kubeconfig", "/nonexistent/kubeconfig"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
