//! End-to-end tests with calico-node's own tunnel-address allocator
//! (`node/pkg/allocateip`, one kubesim child process per node, kubesim
//! `--real-tunnel-allocator`) instead of the agent's emulation: the drain
//! waits on what calico-node really does with tunnel addresses when the old
//! pool is disabled and deleted.
//! Run: `cargo test --test tunnels_e2e -- --test-threads=1`.

mod common;

use common::{in_cidr, TestCluster};
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";

/// Every node's IPIP tunnel address (from calico-node's allocator).
fn tunnel_addresses(c: &TestCluster) -> Vec<String> {
    let nodes: Value = serde_json::from_str(&c.kubectl_ok(&["get", "nodes", "-o", "json"])).unwrap();
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["metadata"]["annotations"]["projectcalico.org/IPv4IPIPTunnelAddr"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

fn migrate_and_check(c: &TestCluster, extra: &[&str], old_cidr: &str, new_cidr: &str) {
    let before = tunnel_addresses(c);
    assert!(before.iter().all(|t| !t.is_empty() && in_cidr(t, old_cidr)), "allocator did not run: {before:?}");
    let mut args = vec!["migrate", "--from", OLD, "--to", new_cidr, "--yes", "--timeout", "3m"];
    args.extend(extra);
    let out = c.ippool(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log_tail()
    );
    c.assert_gone(&["ippools.crd.projectcalico.org", OLD]);
    let after = tunnel_addresses(c);
    assert!(
        after.iter().all(|t| !t.is_empty() && in_cidr(t, new_cidr)),
        "tunnel addresses not in {new_cidr}: {after:?}"
    );
    c.assert_ipam_clean();
}

#[test]
fn seed_migration_with_calico_nodes_tunnel_allocator() {
    let c = TestCluster::start(&["--scenario", "seed", "--real-tunnel-allocator"]);
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    migrate_and_check(&c, &["--force", "--jobs", "evict"], "192.168.0.0/16", "10.0.0.0/16");
}

#[test]
fn kops_migration_with_calico_nodes_tunnel_allocator() {
    let c = TestCluster::start(&["--scenario", "kops", "--real-tunnel-allocator"]);
    migrate_and_check(&c, &[], "100.64.0.0/10", "100.96.0.0/16");
}
