//! Permissions: the documented minimal ClusterRoles (deploy/rbac.yaml) are
//! enough, and missing permissions give a clear, actionable error.

mod common;

use predicates::prelude::*;

const VIEWER: &str = "system:serviceaccount:default:ippool-viewer";
const NOBODY: &str = "system:serviceaccount:default:nobody";

fn setup(c: &common::TestCluster) {
    let rbac = common::repo_root().join("deploy/rbac.yaml");
    c.kubectl_ok(&["apply", "-f", rbac.to_str().unwrap()]);
    c.kubectl_ok(&["create", "serviceaccount", "ippool-viewer", "-n", "default"]);
    c.kubectl_ok(&["create", "serviceaccount", "nobody", "-n", "default"]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "ippool-viewer",
        "--clusterrole=ippool-reader",
        "--serviceaccount=default:ippool-viewer",
    ]);
}

#[test]
fn reader_role_is_enough_for_status_and_verify_and_nobody_gets_a_clear_403() {
    let c = common::TestCluster::seed();
    setup(&c);

    let out = c.ippool(&["status", "-o", "json", "--as", VIEWER]).output().unwrap();
    assert!(out.status.success(), "status as reader: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pools"][0]["name"], "default-ipv4-ippool");
    assert!(!v["clusterNetworks"]["podCidrs"].as_array().unwrap().is_empty(), "reader can discover the pod CIDR");
    assert!(!warning_codes(&v).contains(&"rulesNotChecked".to_string()), "reader can read every kind of rule: {v:#}");

    // verify as reader runs the same checks as the admin and finds the
    // same: same exit code, same document, and nothing it could not check.
    let admin = c.ippool(&["verify", "-o", "json"]).output().unwrap();
    let out = c.ippool(&["verify", "-o", "json", "--as", VIEWER]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), admin.status.code(), "verify as reader vs admin: {err}");
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "verify as reader must run: {err}");
    let doc = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
    };
    let (reader, admin) = (doc(&out), doc(&admin));
    assert_eq!(reader, admin, "the reader's verify saw something else than the admin's");
    // Every check ran: what one could not (nothing retired, no target
    // named) is NOT CHECKED for the admin too, so the equality above holds
    // each check to the admin's status.
    assert!(reader["checks"].as_array().is_some_and(|c| c.len() > 10), "{reader:#}");

    // The control: the reader's role without the rule kinds. status still
    // runs, and says by code which kinds it could not check.
    let mut partial = common::json(&c, &["get", "clusterrole", "ippool-reader"]);
    partial["metadata"] = serde_json::json!({"name": "ippool-reader-no-rules"});
    let rules = partial["rules"].as_array_mut().unwrap();
    rules.retain(|r| !r["resources"].as_array().unwrap().iter().any(|x| x.as_str().unwrap().contains("networkpolic")));
    let path = c.dir().join("partial-role.json");
    std::fs::write(&path, partial.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&["create", "serviceaccount", "partial", "-n", "default"]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "partial",
        "--clusterrole=ippool-reader-no-rules",
        "--serviceaccount=default:partial",
    ]);
    let out = c.ippool(&["status", "-o", "json", "--as", "system:serviceaccount:default:partial"]).output().unwrap();
    assert!(out.status.success(), "status without the rule kinds: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unchecked = v["warnings"].as_array().unwrap().iter().find(|w| w["code"] == "rulesNotChecked");
    let kinds = unchecked.map(|w| w["objects"].to_string()).unwrap_or_default();
    assert!(kinds.contains("networkpolicies"), "the missing rule kinds are not named: {v:#}");

    // No permissions at all: one clear error naming what is missing and how to check.
    c.ippool(&["status", "--as", NOBODY])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("forbidden: cannot").and(predicate::str::contains("kubectl auth can-i")));
}

/// The `code` of each of a status document's warnings.
fn warning_codes(status: &serde_json::Value) -> Vec<String> {
    status["warnings"].as_array().into_iter().flatten().filter_map(|w| w["code"].as_str().map(String::from)).collect()
}
