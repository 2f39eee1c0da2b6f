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
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("could not check"), "reader can read every kind of rule: {err}");

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
    assert_eq!(doc(&out), doc(&admin), "the reader's verify saw something else than the admin's");
    assert!(!err.contains("could not check"), "the reader role cannot run every check: {err}");

    // No permissions at all: one clear error naming what is missing and how to check.
    c.ippool(&["status", "--as", NOBODY])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("forbidden: cannot").and(predicate::str::contains("kubectl auth can-i")));
}
