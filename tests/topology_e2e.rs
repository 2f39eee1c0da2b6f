//! End-to-end test of a migration where pools serve only some nodes:
//! kubesim's `zones` scenario (nodes in zones a, b, c; pools zone-a, zone-b,
//! zone-c, each selecting its zone; Deployment shop/web-<zone> per zone).
//! Run: `cargo test --test topology_e2e -- --test-threads=1`.

mod common;

use std::collections::BTreeMap;

use common::{in_cidr, json, pool_versions, TestCluster};
use serde_json::Value;

/// name -> (uid, node, podIP) of the pods in namespace shop.
fn shop_pods(c: &TestCluster) -> BTreeMap<String, (String, String, String)> {
    let v = json(c, &["get", "pods", "-n", "shop"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (s(&p["metadata"]["name"]), (s(&p["metadata"]["uid"]), s(&p["spec"]["nodeName"]), s(&p["status"]["podIP"])))
        })
        .collect()
}

/// Zone a's pool is migrated with a canary on every node it may run on:
/// the canary runs in zone a only (node 0), zone a's pods move to the new
/// pool, and zones b and c are left exactly as they were: the same pods
/// (UIDs) and pools never written (resourceVersion). Before the canary was
/// limited to the nodes both pools serve, it also went to nodes 1 and 2, got
/// zone-b's address there, and the run stopped with zone-a disabled.
#[test]
fn migrating_one_zones_pool_touches_only_that_zone() {
    // Without a dataplane (explicitly: it is on by default on 3 nodes), the
    // canary's paths are NOT CHECKED; tests/dataplane_e2e.rs migrates a zone
    // with one and real traffic.
    let c = TestCluster::start(&["--scenario", "zones", "--dataplane=false"]);
    let before = shop_pods(&c);
    let pools_before = pool_versions(&c);
    assert_eq!(before.len(), 6, "{before:?}");

    let out = c
        .ippool(&[
            "migrate",
            "--from",
            "zone-a",
            "--to",
            "10.11.0.0/16",
            "--canary-per-node",
            "--yes",
            "--timeout",
            "3m",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate failed:\n{stderr}\n{}", String::from_utf8_lossy(&out.stdout));

    // The canary ran on zone a's node only.
    let canary = stderr.lines().find(|l| l.starts_with("Canary passed:")).expect("canary line");
    assert!(
        canary.contains("on kubesim-node-0") && !canary.contains("node-1") && !canary.contains("node-2"),
        "{canary}"
    );
    assert_eq!(canary.matches(" on ").count(), 1, "{canary}");
    // Without --dataplane no packet flows: every path is NOT CHECKED, none passed.
    for path in [
        "new-pool pod -> old-pool pod on another node (IPv4)",
        "old-pool pod on another node -> new-pool pod (IPv4)",
        "new-pool pod -> ClusterIP Service with an old-pool endpoint (IPv4)",
    ] {
        let warning = format!("canary path NOT CHECKED: {path}: the client container cannot run: CreateContainerError");
        assert!(stderr.contains(&warning), "{warning} missing:\n{stderr}");
    }
    assert!(!stderr.contains("Canary paths passed"), "{stderr}");

    let after = shop_pods(&c);
    for (name, (uid, node, ip)) in &before {
        if name.starts_with("web-a-") {
            assert!(!after.contains_key(name), "{name} was not restarted");
        } else {
            assert_eq!(after.get(name), Some(&(uid.clone(), node.clone(), ip.clone())), "{name} changed");
        }
    }
    let moved: Vec<_> = after.iter().filter(|(n, _)| n.starts_with("web-a-")).collect();
    assert_eq!(moved.len(), 2, "{after:?}");
    for (name, (_, node, ip)) in moved {
        assert!(in_cidr(ip, "10.11.0.0/16") && node == "kubesim-node-0", "{name} on {node} with {ip}");
    }

    let pools_after = pool_versions(&c);
    for zone in ["zone-b", "zone-c"] {
        assert_eq!(pools_after.get(zone), pools_before.get(zone), "{zone} was written");
    }
    assert!(!pools_after.contains_key("zone-a"), "{pools_after:?}");
    let new = json(&c, &["get", "ippools.crd.projectcalico.org", "10.11.0.0-16"]);
    assert_eq!(new["spec"]["nodeSelector"], "topology.kubernetes.io/zone == 'a'");

    c.ippool(&["verify"]).assert().success();
    c.assert_ipam_clean();
}
