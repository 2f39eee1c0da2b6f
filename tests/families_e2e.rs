//! End-to-end tests of IP families and encapsulations, each on a fresh
//! kubesim `small` cluster (coredns 2, shop/web 2, shop/db 1): dual-stack
//! with both pools migrated in one run, IPv6 only, and a VXLAN seed pool.
//! Every IPv6 address here is a ULA used as data only: nothing sends
//! traffic to node or pod addresses.
//! Run: `cargo test --test families_e2e -- --test-threads=1`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{in_cidr, json, TestCluster};
use serde_json::Value;

/// uid -> every status.podIPs address, of the running pods that are not
/// host-network (the canary's namespace, deleted in the background, left out).
fn pod_addresses(c: &TestCluster) -> BTreeMap<String, (String, Vec<String>)> {
    let v = json(c, &["get", "pods", "-A"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["hostNetwork"].as_bool() != Some(true) && p["status"]["phase"] == "Running")
        .filter(|p| !p["metadata"]["namespace"].as_str().unwrap().starts_with("kubectl-ippool-"))
        .map(|p| {
            let ips = p["status"]["podIPs"]
                .as_array()
                .map(|a| a.iter().map(|i| i["ip"].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let name =
                format!("{}/{}", p["metadata"]["namespace"].as_str().unwrap(), p["metadata"]["name"].as_str().unwrap());
            (p["metadata"]["uid"].as_str().unwrap().to_string(), (name, ips))
        })
        .collect()
}

fn migrate_ok(c: &TestCluster, args: &[&str]) -> (String, String) {
    let mut a = vec!["migrate"];
    a.extend_from_slice(args);
    a.extend(["--yes", "--timeout", "3m"]);
    let out = c.ippool(&a).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "migrate {args:?} failed:\n{stderr}\n{stdout}\n{}", c.log_tail());
    (stdout, stderr)
}

fn verify_and_ipam_clean(c: &TestCluster) {
    let out = c.ippool(&["verify"]).output().unwrap();
    assert!(out.status.success(), "verify:\n{}", String::from_utf8_lossy(&out.stdout));
    c.assert_ipam_clean();
}

/// How many revisions a workload has had: ReplicaSets of a Deployment,
/// ControllerRevisions of a StatefulSet. A restart adds exactly one.
fn revisions(c: &TestCluster, kind: &str, ns: &str, app: &str) -> usize {
    let v = json(c, &["get", kind, "-n", ns, "-l", &format!("app={app}")]);
    v["items"].as_array().unwrap().len()
}

/// Dual-stack: both pools migrated in one run. Each pod restarts once
/// (every workload gains exactly one revision, every pod has a new UID) and
/// ends with its IPv4 address in the new IPv4 pool and its IPv6 address in
/// the new IPv6 pool. Before the run, `status` counts every pod under both
/// pools and shows the /64's capacity as 2^64 (exact in JSON). A network set
/// naming both old pools gets both new ones (`--update-rules`, both pairs).
#[test]
fn dual_stack_both_pools_in_one_run_restart_each_pod_once() {
    let c = TestCluster::start(&["--scenario", "small", "--ip-family", "dual"]);
    let before = pod_addresses(&c);
    assert_eq!(before.len(), 5, "{before:?}");
    assert!(before.values().all(|(_, ips)| ips.len() == 2), "{before:?}");

    let status: Value =
        serde_json::from_slice(&c.ippool(&["status", "-o", "json"]).output().unwrap().stdout).expect("status json");
    let pools = status["pools"].as_array().unwrap();
    let v6 = pools.iter().find(|p| p["name"] == "default-ipv6-ippool").unwrap();
    assert_eq!((v6["pods"].as_u64(), v6["capacity"].as_str()), (Some(5), Some("18446744073709551616")));
    let v4 = pools.iter().find(|p| p["name"] == "default-ipv4-ippool").unwrap();
    assert_eq!(v4["pods"].as_u64(), Some(5));
    let table =
        String::from_utf8_lossy(&c.ippool(&["status", "--pool", "default-ipv6-ippool"]).output().unwrap().stdout)
            .into_owned();
    assert!(table.contains("/2^64 (<1%)") && table.contains("shop") && table.contains("fd00:10::"), "{table}");

    let revs = |c: &TestCluster| {
        (
            revisions(c, "replicasets", "kube-system", "coredns"),
            revisions(c, "replicasets", "shop", "web"),
            revisions(c, "controllerrevisions", "shop", "db"),
        )
    };
    assert_eq!(revs(&c), (1, 1, 1));
    // A set naming both old pools: --update-rules adds each new pool beside its own.
    let set = c.dir().join("set.yaml");
    std::fs::write(
        &set,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: pods}\nspec: {nets: [192.168.0.0/16, fd00:10::/64]}\n",
    )
    .unwrap();
    assert!(c.calicoctl(&["create", "-f", set.to_str().unwrap()]).status.success());
    let (_, stderr) = migrate_ok(
        &c,
        &[
            "--from",
            "default-ipv4-ippool",
            "--to",
            "10.0.0.0/16",
            "--from",
            "default-ipv6-ippool",
            "--to",
            "fd00:10:20::/112",
            "--update-rules",
        ],
    );
    assert!(stderr.contains("Canary passed: 10.0.") && stderr.contains(" and fd00:10:20::"), "{stderr}");
    assert_eq!(revs(&c), (2, 2, 2), "every workload restarted exactly once");
    let nets = json(&c, &["get", "globalnetworksets.crd.projectcalico.org", "pods"])["spec"]["nets"].clone();
    assert_eq!(
        nets,
        serde_json::json!(["192.168.0.0/16", "fd00:10::/64", "10.0.0.0/16", "fd00:10:20::/112"]),
        "both families' rules updated: {stderr}"
    );

    let after = pod_addresses(&c);
    assert_eq!(after.len(), 5, "{after:?}");
    for (uid, (name, ips)) in &after {
        assert!(!before.contains_key(uid), "{name} was not restarted");
        assert_eq!(ips.len(), 2, "{name}: {ips:?}");
        assert!(in_cidr(&ips[0], "10.0.0.0/16") && in_cidr(&ips[1], "fd00:10:20::/112"), "{name}: {ips:?}");
    }
    let names = c.kubectl_ok(&["get", "ippools.crd.projectcalico.org", "-o", "name"]);
    assert!(!names.contains("default-ipv4-ippool") && !names.contains("default-ipv6-ippool"), "{names}");
    verify_and_ipam_clean(&c);
}

/// `--rollback` of an unfinished dual-stack run undoes both pairs: both old
/// pools enabled again, both new pools (created by the run) disabled. The
/// run is left unfinished by moving only the pods labelled app=web.
#[test]
fn dual_stack_rollback_restores_both_pairs() {
    let c = TestCluster::start(&["--scenario", "small", "--ip-family", "dual"]);
    let specs_before = common::pool_specs(&c, "crd.projectcalico.org");
    let flags = [
        "--from",
        "default-ipv6-ippool",
        "--to",
        "fd00:10:20::/112",
        "--from",
        "default-ipv4-ippool",
        "--to",
        "10.0.0.0/16",
    ];
    let mut args = flags.to_vec();
    args.extend(["-l", "app=web"]);
    let (_, stderr) = migrate_ok(&c, &args);
    assert!(stderr.contains("is kept, disabled"), "{stderr}");
    let record = c.kubectl_ok(&["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration", "-o", "json"]);
    assert!(record.contains("fd00.10.20.0.0-112") && record.contains("10.0.0.0-16"), "{record}");
    let disabled = |c: &TestCluster| -> BTreeMap<String, bool> {
        json(c, &["get", "ippools.crd.projectcalico.org"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p["spec"]["disabled"] == true))
            .collect()
    };
    let want = |old: bool, new: bool| -> BTreeMap<String, bool> {
        [("default-ipv4-ippool", old), ("default-ipv6-ippool", old), ("10.0.0.0-16", new), ("fd00.10.20.0.0-112", new)]
            .into_iter()
            .map(|(n, d)| (n.to_string(), d))
            .collect()
    };
    assert_eq!(disabled(&c), want(true, false));
    let specs_run = common::pool_specs(&c, "crd.projectcalico.org");
    let before_rollback = c.fingerprint();
    let out = c.ippool(&["migrate", "--from", "default-ipv4-ippool", "--rollback", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("IPPool default-ipv6-ippool enabled") && text.contains("IPPool default-ipv4-ippool enabled"),
        "{text}"
    );
    assert_eq!(disabled(&c), want(false, true));
    // By content: both old pools are as before the run, both new ones as
    // the run made them but disabled, and nothing else was written.
    let specs = common::pool_specs(&c, "crd.projectcalico.org");
    for (name, spec) in &specs_before {
        assert_eq!(&specs[name], spec, "{name} is not back as it was");
    }
    for name in ["10.0.0.0-16", "fd00.10.20.0.0-112"] {
        let mut want = specs_run[name].clone();
        want["disabled"] = serde_json::Value::Bool(true);
        assert_eq!(specs[name], want, "{name} changed beyond being disabled");
    }
    let touched = before_rollback.changes_besides(&c.fingerprint(), &common::ROLLBACK_WRITES);
    assert_eq!(touched, Vec::<String>::new(), "the rollback wrote what it must not touch");
    // The old pools are enabled again and the new ones disabled: calico-node
    // moves each node's tunnel addresses back on its own, after the run.
    c.assert_ipam_clean_within(
        "calico-node moving node tunnel addresses back to the re-enabled pools",
        Duration::from_secs(30),
    );
}

/// IPv6 only: the IPv6 pool is migrated.
#[test]
fn ipv6_only_pool_is_migrated() {
    let c = TestCluster::start(&["--scenario", "small", "--ip-family", "ipv6"]);
    let before = pod_addresses(&c);
    assert!(before.values().all(|(_, ips)| ips.len() == 1 && ips[0].starts_with("fd00:10::")), "{before:?}");
    migrate_ok(&c, &["--from", "default-ipv6-ippool", "--to", "fd00:10:20::/112"]);
    let after = pod_addresses(&c);
    assert_eq!(after.len(), 5);
    for (uid, (name, ips)) in &after {
        assert!(!before.contains_key(uid), "{name} was not restarted");
        assert!(ips.len() == 1 && in_cidr(&ips[0], "fd00:10:20::/112"), "{name}: {ips:?}");
    }
    verify_and_ipam_clean(&c);
}

/// A VXLAN seed pool: every node's VXLAN tunnel address moves to the new
/// pool before the old one is deleted. The nodes move their tunnel
/// addresses only 8 s after the old pool is disabled (kubesim
/// `--tunnel-delay`), longer than moving the pods takes, so a run that did
/// not wait for them would end with them still in the old pool.
#[test]
fn vxlan_tunnel_addresses_move_to_the_new_pool() {
    let c = TestCluster::start(&["--scenario", "small", "--encap", "vxlan", "--tunnel-delay", "8s"]);
    let tunnels = |c: &TestCluster| -> Vec<String> {
        let v = json(c, &["get", "nodes"]);
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                n["metadata"]["annotations"]["projectcalico.org/IPv4VXLANTunnelAddr"].as_str().unwrap_or("").to_string()
            })
            .collect()
    };
    let old = tunnels(&c);
    assert!(old.iter().all(|t| in_cidr(t, "192.168.0.0/16")), "{old:?}");
    let pools = json(&c, &["get", "ippools.crd.projectcalico.org"]);
    assert_eq!(pools["items"][0]["spec"]["vxlanMode"], "Always");
    migrate_ok(&c, &["--from", "default-ipv4-ippool", "--to", "10.0.0.0/16"]);
    // Read right after the run: it must have waited for the nodes.
    let new = tunnels(&c);
    assert!(new.len() == 3 && new.iter().all(|t| in_cidr(t, "10.0.0.0/16")), "{new:?}");
    let new_pool = json(&c, &["get", "ippools.crd.projectcalico.org", "10.0.0.0-16"]);
    assert_eq!(new_pool["spec"]["vxlanMode"], "Always");
    verify_and_ipam_clean(&c);
}
