//! `status` against the local cluster, checked figure for figure against
//! `calicoctl ipam show --show-blocks` run on the same cluster.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;

/// calicoctl's table: pool CIDR -> (IPs in use, number of Block rows).
fn calicoctl_figures(c: &common::TestCluster) -> BTreeMap<String, (u64, usize)> {
    let out = c.calicoctl(&["ipam", "show", "--show-blocks"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "calicoctl ipam show failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let mut pools: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    let mut blocks: Vec<ipnet::IpNet> = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() < 5 {
            continue;
        }
        let in_use: u64 = cols[4].split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        match cols[1] {
            "IP Pool" => {
                pools.insert(cols[2].to_string(), (in_use, 0));
            }
            "Block" => blocks.push(cols[2].parse().unwrap()),
            _ => {}
        }
    }
    for b in blocks {
        for (cidr, v) in pools.iter_mut() {
            if cidr.parse::<ipnet::IpNet>().unwrap().contains(&b) {
                v.1 += 1;
            }
        }
    }
    pools
}

fn status_json(c: &common::TestCluster, extra: &[&str]) -> Value {
    let mut args = vec!["status", "-o", "json"];
    args.extend_from_slice(extra);
    let out = c.ippool(&args).output().unwrap();
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status -o json is JSON")
}

/// The parts of the report that do not depend on which addresses IPAM
/// happened to pick.
fn stable_view(v: &Value) -> Value {
    let pools: Vec<Value> = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p["name"], "cidr": p["cidr"], "blockSize": p["blockSize"], "disabled": p["disabled"],
                "encapsulation": p["encapsulation"], "natOutgoing": p["natOutgoing"], "pods": p["pods"],
                "managedBy": p["managedBy"], "capacity": p["capacity"], "tunnelAllocations": p["tunnelAllocations"],
            })
        })
        .collect();
    let warnings: Vec<Value> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| serde_json::json!({"code": w["code"], "objects": w["objects"]}))
        .collect();
    serde_json::json!({"kind": v["kind"], "calico": v["calico"], "clusterNetworks": v["clusterNetworks"], "pools": pools, "warnings": warnings})
}

#[test]
fn seed_status_matches_calicoctl_and_the_table_reads_like_kubectl_crd_v1() {
    let c = common::TestCluster::seed();
    let report = status_json(&c, &[]);
    let pool = &report["pools"][0];
    assert_eq!(pool["name"], "default-ipv4-ippool");
    let figures = calicoctl_figures(&c);
    let (in_use, blocks) = figures["192.168.0.0/16"];
    assert_eq!(pool["allocated"].as_u64().unwrap(), in_use, "allocated vs calicoctl IPS IN USE");
    assert_eq!(pool["blocks"].as_u64().unwrap() as usize, blocks, "blocks vs calicoctl Block rows");
    // Every allocation is a running pod or a node tunnel address.
    assert_eq!(pool["pods"].as_u64().unwrap() + pool["tunnelAllocations"].as_u64().unwrap(), in_use);
    insta::assert_json_snapshot!("seed_status", stable_view(&report));

    // The default table: kubectl style, data on stdout, warnings on stderr.
    let out = c.ippool(&["status"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.starts_with("NAME "), "{stdout}");
    assert!(stdout.lines().next().unwrap().contains("USED/CAPACITY"));
    assert!(!stdout.contains("Warning"), "warnings belong on stderr");
    assert!(
        stderr.contains("Warning: IPPool default-ipv4-ippool (192.168.0.0/16) lies outside the cluster pod CIDR"),
        "{stderr}"
    );
    assert!(stderr.contains("namespace legacy pins"), "{stderr}");

    // --no-headers: the same rows, without the header line, for scripts.
    let bare = c.ippool(&["status", "--no-headers"]).output().unwrap();
    let bare = String::from_utf8_lossy(&bare.stdout);
    assert_eq!(bare.lines().collect::<Vec<_>>(), stdout.lines().skip(1).collect::<Vec<_>>(), "{bare}");
    assert!(bare.starts_with("default-ipv4-ippool "), "{bare}");
    let nodes = c.ippool(&["status", "--nodes", "--no-headers"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&nodes.stdout).contains("BLOCKS"));
    let verify = c.ippool(&["verify", "--no-headers"]).output().unwrap();
    let verify = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.starts_with("Target pool ") && !verify.contains("DETAILS"), "{verify}");

    // --pool lists the pods by owner; --nodes shows per-node blocks.
    let detail = status_json(&c, &["--pool", "default-ipv4-ippool", "--nodes"]);
    let owners: Vec<String> = detail["pool"]["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}/{}",
                o["owner"]["kind"].as_str().unwrap(),
                o["owner"]["namespace"].as_str().unwrap(),
                o["owner"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "Deployment shop/web",
        "StatefulSet shop/db",
        "DaemonSet shop/agent",
        "Bare shop/debug",
        "Deployment legacy/old-app",
    ] {
        assert!(owners.iter().any(|o| o == expected), "{expected} not in {owners:?}");
    }
    assert!(!owners.iter().any(|o| o.contains("node-probe")), "hostNetwork pods hold no pool IP");
    let node_blocks: u64 = detail["nodes"].as_array().unwrap().iter().map(|n| n["blocks"].as_u64().unwrap()).sum();
    assert_eq!(node_blocks as usize, blocks);

    let wide = c.ippool(&["status", "-o", "wide"]).output().unwrap();
    assert!(String::from_utf8_lossy(&wide.stdout).contains("NODE-SELECTOR"));
    let yaml = c.ippool(&["status", "-o", "yaml"]).output().unwrap();
    let parsed: Value = serde_yaml_ng::from_slice(&yaml.stdout).expect("yaml parses");
    assert_eq!(parsed["kind"], "IPPoolStatus");

    c.ippool(&["status", "--pool", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("IPPool \"nope\" not found"));

    displays_read_the_watch_cache_and_migrate_plans_from_consistent_reads(&c);
    namespaces_complete_from_the_cluster(&c);
    the_heap_report_is_on_stderr_only_when_asked(&c);
}

/// `-n <TAB>` lists the cluster's namespaces (cobra's protocol).
fn namespaces_complete_from_the_cluster(c: &common::TestCluster) {
    let complete = |words: &[&str]| {
        let out = c.ippool(&[&["__complete"][..], words].concat()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete(&["status", "-n", "kube-"]), ["kube-node-lease", "kube-public", "kube-system", ":4"]);
    assert_eq!(complete(&["verify", "--namespace=leg"]), ["--namespace=legacy", ":4"]);
}

/// `KUBECTL_IPPOOL_HEAP_REPORT=1` (make bench) adds one line on stderr.
fn the_heap_report_is_on_stderr_only_when_asked(c: &common::TestCluster) {
    let heap_line = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stderr).lines().find(|l| l.starts_with("heap: ")).map(str::to_string)
    };
    let out = c.ippool(&["status", "-o", "json"]).env("KUBECTL_IPPOOL_HEAP_REPORT", "1").output().unwrap();
    let line = heap_line(&out).expect("a heap line on stderr");
    let bytes: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(bytes > 100_000 && line.ends_with("bytes live after reading the cluster"), "{line}");
    serde_json::from_slice::<Value>(&out.stdout).expect("stdout stays the JSON document");
    assert_eq!(heap_line(&c.ippool(&["status"]).output().unwrap()), None);
}

/// The LISTs of pods a run made, from its `-v=6` request log.
fn pod_lists(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("API request ").map(|(_, r)| r.to_string()))
        .filter(|r| r.contains("GET ") && r.contains("/api/v1/pods") && !r.contains("labelSelector=component"))
        .collect()
}

/// `status` and `verify` read from the watch cache in one LIST per kind;
/// `migrate` plans from consistent, paged reads.
fn displays_read_the_watch_cache_and_migrate_plans_from_consistent_reads(c: &common::TestCluster) {
    for verb in [&["status", "-v=6"][..], &["verify", "-v=6"][..]] {
        let out = c.ippool(verb).output().unwrap();
        let lists = pod_lists(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(lists.len(), 1, "{verb:?}: one unpaged LIST of pods: {lists:?}");
        assert!(lists[0].contains("resourceVersion=0") && !lists[0].contains("limit="), "{verb:?}: {lists:?}");
    }
    let out = c
        .ippool(&["migrate", "--from", "default-ipv4-ippool", "--to", "10.0.0.0/16", "--dry-run", "--force", "-v=6"])
        .output()
        .unwrap();
    let lists = pod_lists(&String::from_utf8_lossy(&out.stderr));
    assert!(!lists.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    for l in &lists {
        assert!(l.contains("limit=500") && !l.contains("resourceVersion="), "migrate plans from consistent reads: {l}");
    }
}

#[test]
fn kops_overlap_with_service_range_is_flagged_crd_v1() {
    let c = common::TestCluster::start(&["--scenario", "kops"]);
    let report = status_json(&c, &[]);
    let codes: Vec<&str> = report["warnings"].as_array().unwrap().iter().map(|w| w["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"poolOverlapsServiceCidr"), "{codes:?}");
    let w = report["warnings"].as_array().unwrap().iter().find(|w| w["code"] == "poolOverlapsServiceCidr").unwrap();
    assert!(w["message"].as_str().unwrap().contains("100.64.0.0/13"), "{w}");
    let figures = calicoctl_figures(&c);
    let (in_use, blocks) = figures["100.64.0.0/10"];
    assert_eq!(report["pools"][0]["allocated"].as_u64().unwrap(), in_use);
    assert_eq!(report["pools"][0]["blocks"].as_u64().unwrap() as usize, blocks);
}
