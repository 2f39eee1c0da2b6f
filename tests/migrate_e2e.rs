//! End-to-end tests of `kubectl ippool migrate` on the local kubesim
//! cluster (real kube-apiserver + controllers, Calico IPAM library).
//! Run: `cargo test --test migrate_e2e -- --test-threads=1`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::budget_watch::{BlockingBudgetWatch, Report};
use common::{in_cidr, json, pool_specs, TestCluster, ROLLBACK_WRITES};
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";

/// Every running, non-hostNetwork pod holds an address of `cidr`.
fn assert_all_pods_in(c: &TestCluster, cidr: &str) {
    let pods = json(c, &["get", "pods", "-A"]);
    let mut wrong = Vec::new();
    for p in pods["items"].as_array().unwrap() {
        if p["spec"]["hostNetwork"].as_bool() == Some(true)
            || matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        {
            continue;
        }
        let ip = p["status"]["podIP"].as_str().unwrap_or("");
        if ip.is_empty() || !in_cidr(ip, cidr) {
            wrong.push(format!(
                "{}/{} {ip:?}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
    assert!(wrong.is_empty(), "pods not in {cidr}: {wrong:?}");
}

/// No IPAMBlock or BlockAffinity of `cidr` remains, and the pool is gone.
fn assert_old_pool_gone(c: &TestCluster, pool: &str, cidr: &str, new_cidr: &str) {
    c.assert_gone(&["ippools.crd.projectcalico.org", pool]);
    for kind in ["ipamblocks.crd.projectcalico.org", "blockaffinities.crd.projectcalico.org"] {
        let v = json(c, &["get", kind]);
        let left: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                let net: ipnet::IpNet = o["spec"]["cidr"].as_str().unwrap().parse().unwrap();
                cidr.parse::<ipnet::IpNet>().unwrap().contains(&net)
                    && !new_cidr.parse::<ipnet::IpNet>().unwrap().contains(&net)
            })
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert!(left.is_empty(), "{kind} of {cidr} remain: {left:?}");
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the watch and asserts the seed's PDBs (web: minAvailable 2 of 3;
/// api and coredns: maxUnavailable 1 of 2) were evaluated on the moves and
/// never went below their floors, and no Service lost its last ready endpoint.
fn assert_within_budget(w: BlockingBudgetWatch) -> Report {
    let report = w.stop();
    eprintln!("{report}");
    // The seed scenario has no Services.
    report.assert_covered_and_clean(&["shop/web", "shop/api", "kube-system/coredns"], &[]);
    report
}

#[test]
fn seed_refusals_dry_run_then_full_migration_crd_v1() {
    let c = TestCluster::start(&["--scenario", "seed", "--readiness-delay", "1s"]);
    // A disabled spare pool: overlapping it must be refused too.
    let spare = c.dir().join("spare.yaml");
    std::fs::write(&spare, "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: spare\nspec:\n  cidr: 10.1.0.0/16\n  blockSize: 26\n  disabled: true\n  nodeSelector: all()\n").unwrap();
    c.kubectl_ok(&["apply", "-f", spare.to_str().unwrap()]);
    // The test itself unpins the legacy namespace below; nothing else may change.
    let before = c.fingerprint().without(" Namespace /legacy");

    // (3) Refusals name the reason and write nothing.
    let cases: &[(&[&str], &str)] = &[
        (&["--to", "10.1.0.0/20"], "overlaps IPPool spare (10.1.0.0/16) (disabled pools count too"),
        (
            &["--to", "192.0.0.0/8", "--allow-outside-cluster-cidr"],
            "overlaps IPPool default-ipv4-ippool (192.168.0.0/16)",
        ),
        (&["--to", "10.2.0.0/25"], "holds 128 addresses"),
        (&["--to", "172.20.0.0/16"], "outside the cluster pod CIDR"),
        (&["--to", "10.0.0.1/16"], "the canonical form is 10.0.0.0/16"),
        (&["--to", "banana"], "is not a CIDR"),
        (&["--to", "192.168.0.0/16"], "is the CIDR of default-ipv4-ippool itself"),
        (&["--to-pool", OLD], "is the pool being migrated from"),
        (&["--to", "10.0.0.0/16", "--block-size", "33"], "blockSize 33 is out of range"),
        (&["--to", "10.96.0.0/16"], "overlaps the Service CIDR 10.96.0.0/12"),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["migrate", "--from", OLD, "--yes", "--force"];
        args.extend_from_slice(extra);
        let out = c.ippool(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(expect), "{args:?}: expected {expect:?} in:\n{}", stderr_of(&out));
    }
    let out = c.ippool(&["migrate", "--from", OLD, "--to", "172.20.0.0/16", "--yes"]).output().unwrap();
    insta::assert_snapshot!("seed_outside_cluster_cidr", stderr_of(&out));

    // Dry run: shows the plan and the blockers, writes nothing at all.
    let out = c.ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run"]).output().unwrap();
    let (so, se) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(2), "blockers refuse even a dry run's go-ahead: {se}");
    assert!(so.contains("create IPPool 10.0.0.0-16 (10.0.0.0/16, blockSize 26, IPIP/Always, natOutgoing true"), "{so}");
    assert!(so.contains("Deployment shop/web") && so.contains("rollout restart"), "{so}");
    assert!(se.contains("kubectl annotate namespace legacy cni.projectcalico.org/ipv4pools-"), "{se}");
    assert!(se.contains("bare pod(s) with no controller: shop/debug"), "{se}");
    let out = c
        .ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run", "--force", "-o", "json"])
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr_of(&out)));
    assert_eq!(plan["kind"], "IPPoolMigrationPlan");
    assert_eq!(plan["to"]["name"], "10.0.0.0-16");
    assert!(plan["blockers"].as_array().unwrap().iter().any(|b| b.as_str().unwrap().contains("namespace legacy")));
    // A manifest install's CNI config naming the old pool is a blocker.
    let cni = c.dir().join("calico-config.yaml");
    std::fs::write(&cni, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: calico-config\n  namespace: kube-system\ndata:\n  cni_network_config: '{\"name\":\"k8s-pod-network\",\"plugins\":[{\"type\":\"calico\",\"ipam\":{\"type\":\"calico-ipam\",\"ipv4_pools\":[\"default-ipv4-ippool\"]}}]}'\n").unwrap();
    c.kubectl_ok(&["apply", "-f", cni.to_str().unwrap()]);
    let out = c.ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run", "--force"]).output().unwrap();
    assert!(stderr_of(&out).contains("the CNI config in ConfigMap kube-system/calico-config"), "{}", stderr_of(&out));
    c.kubectl_ok(&["delete", "configmap", "-n", "kube-system", "calico-config"]);

    // Without a terminal and without --yes: refused, nothing written.
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let out = c.ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--force"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--yes"), "{}", stderr_of(&out));
    let after = c.fingerprint().without(" Namespace /legacy");
    assert_eq!(before.diff(&after), Vec::<String>::new(), "a refused or dry run wrote something");

    // (1) The real thing, watched: no PDB below its floor, no Service at 0 ready endpoints.
    let watcher = BlockingBudgetWatch::start(&c, &[]);
    let start = Instant::now();
    let out = c
        .ippool(&[
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
        ])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "migrate failed:\n{}\n{}\n{}", stdout_of(&out), stderr_of(&out), c.log_tail());
    eprintln!("seed migration took {took:?}");
    assert_within_budget(watcher);
    assert!(stdout_of(&out).contains("IPPool default-ipv4-ippool deleted"), "{}", stdout_of(&out));

    c.wait_until("pods settle in the new pool", Duration::from_secs(60), || {
        let pods = json(&c, &["get", "pods", "-A"]);
        pods["items"].as_array().unwrap().iter().all(|p| {
            p["spec"]["hostNetwork"].as_bool() == Some(true)
                || matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                || p["status"]["podIP"].as_str().is_some_and(|ip| in_cidr(ip, "10.0.0.0/16"))
        })
    });
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c, OLD, "192.168.0.0/16", "10.0.0.0/16");
    c.assert_ipam_clean();
    // Node tunnel addresses moved too.
    let nodes = json(&c, &["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        let tunnel = n["metadata"]["annotations"]["projectcalico.org/IPv4IPIPTunnelAddr"].as_str().unwrap_or("");
        assert!(in_cidr(tunnel, "10.0.0.0/16"), "tunnel address {tunnel}");
    }
    // The record says Done; the lease is released; the canary namespace is gone.
    let cm = json(&c, &["get", "configmap", "-n", "kube-system", "kubectl-ippool-migration"]);
    let state: Value = serde_json::from_str(cm["data"]["state.json"].as_str().unwrap()).unwrap();
    assert_eq!(state["phase"], "Done");
    c.assert_gone(&["lease", "-n", "kube-system", "kubectl-ippool"]);
    let ns = c.kubectl_ok(&["get", "ns", "-o", "name"]);
    assert!(ns.contains("namespace/kube-system"), "{ns}");
    assert!(!ns.contains("kubectl-ippool-canary"), "{ns}");
    // Audit trail.
    let events = c.kubectl_ok(&["get", "events", "-A", "--field-selector", "reason=IPPoolMigration", "-o", "name"]);
    assert!(events.lines().count() >= 5, "{events}");
}

#[test]
fn kops_pool_overlapping_service_cidr_moves_into_cluster_cidr_crd_v1() {
    let c = TestCluster::start(&["--scenario", "kops"]);
    let out =
        c.ippool(&["migrate", "--from", OLD, "--to", "100.96.0.0/16", "--yes", "--timeout", "3m"]).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
    let pool = json(&c, &["get", "ippools.crd.projectcalico.org", "100.96.0.0-16"]);
    assert_eq!(pool["spec"]["ipipMode"], "CrossSubnet", "copied from the old pool");
    assert_all_pods_in(&c, "100.96.0.0/16");
    assert_old_pool_gone(&c, OLD, "100.64.0.0/10", "100.96.0.0/16");
    c.assert_ipam_clean();
}

/// (5) A second run refuses while the first holds the lease; (4) the first
/// is SIGKILLed mid-way and the same command, run again, finishes the job.
#[test]
fn concurrent_run_refused_then_sigkill_and_resume_crd_v1() {
    let c = TestCluster::start(&["--scenario", "seed", "--readiness-delay", "2s"]);
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let args =
        ["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--force", "--yes", "--jobs", "evict", "--timeout", "3m"];
    let bin = assert_cmd::cargo::cargo_bin("kubectl-ippool");
    let mut first = Command::new(&bin)
        .env("KUBECONFIG", &c.kubeconfig)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let phase = || -> String {
        let out = c.kubectl(&[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "kubectl-ippool-migration",
            "-o",
            "jsonpath={.data.state\\.json}",
        ]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["phase"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    c.wait_until("the first run to start moving pods", Duration::from_secs(120), || phase() == "MovingPods");

    let out = c.ippool(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let se = stderr_of(&out);
    assert!(se.contains("another migration is running") && se.contains(&format!(":{}", first.id())), "{se}");

    // Ctrl-C: exit 130, lease released, canary namespace gone, record kept.
    Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C exit code");
    c.assert_gone(&["lease", "-n", "kube-system", "kubectl-ippool"]);
    assert_eq!(phase(), "MovingPods");

    // Resume, then SIGKILL it: the lease stays behind, held by a dead
    // process; the next run takes it once it has seen it unrenewed for its
    // whole duration (30 s).
    // It stops for good once it has saved Draining (before the old pool's
    // delete), so the kill lands where a resume is left to do whatever the
    // machine's speed: killed later, the pool can already be gone.
    let mut second = Command::new(&bin)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBECTL_IPPOOL_PAUSE_AT", "checkpoint:Draining")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.wait_until("the second run to hold the lease", Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kubectl-ippool",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).ends_with(&format!(":{}", second.id()))
    });
    // Killed at once: the refusal above now waits to see the first run renew
    // its lease (up to 10 s), by which time few pods are left to move, and
    // the second run could finish before a later kill.
    second.kill().unwrap(); // SIGKILL
    second.wait().unwrap();
    assert!(matches!(phase().as_str(), "MovingPods" | "Draining"), "{}", phase());

    let out = c.ippool(&args).output().unwrap();
    assert!(out.status.success(), "resume failed:\n{}\n{}", stdout_of(&out), stderr_of(&out));
    assert!(stderr_of(&out).contains("Resuming the migration"), "{}", stderr_of(&out));
    assert_eq!(phase(), "Done");
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c, OLD, "192.168.0.0/16", "10.0.0.0/16");
    c.assert_ipam_clean();
    let ns = c.kubectl_ok(&["get", "ns", "-o", "name"]);
    assert!(!ns.contains("kubectl-ippool-canary"), "{ns}");
}

#[test]
fn operator_mode_goes_through_the_installation_crd_v1() {
    // Without the aggregated API server (kubesim starts it by default with --operator): the
    // same migration through it is apiserver_e2e's operator test.
    let c = TestCluster::start(&["--scenario", "seed", "--operator", "--calico-apiserver=false"]);
    let status: Value = serde_json::from_slice(&c.ippool(&["status", "-o", "json"]).output().unwrap().stdout).unwrap();
    assert_eq!(status["calico"]["mode"], "crdV1");
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let out = c
        .ippool(&[
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
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}\n{}", stdout_of(&out), stderr_of(&out), c.log_tail());
    assert!(stdout_of(&out).contains("IPPool default-ipv4-ippool deleted"));
    let inst = json(&c, &["get", "installations.operator.tigera.io", "default"]);
    let pools = inst["spec"]["calicoNetwork"]["ipPools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(pools[0]["name"], "10.0.0.0-16");
    assert_eq!(pools[0]["encapsulation"], "IPIP");
    let pool = json(&c, &["get", "ippools.crd.projectcalico.org", "10.0.0.0-16"]);
    // libcalico's v1 backend keeps v3 labels in the projectcalico.org/metadata annotation.
    let meta =
        format!("{} {}", pool["metadata"]["labels"], pool["metadata"]["annotations"]["projectcalico.org/metadata"]);
    assert!(meta.contains("tigera-operator"), "the operator created the pool: {meta}");
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c, OLD, "192.168.0.0/16", "10.0.0.0/16");
    c.assert_ipam_clean();
}

#[test]
fn filtered_run_rollback_then_to_pool_crd_v1() {
    let c = TestCluster::start(&["--scenario", "seed"]);
    filtered_run_rollback_then_to_pool_on(&c, "crd.projectcalico.org");
}

/// A filtered run keeps the old pool; rollback re-enables it; a full run
/// into the existing new pool finishes. `group` is the Calico API group the
/// cluster serves pools and blocks from.
fn filtered_run_rollback_then_to_pool_on(c: &TestCluster, group: &str) {
    let ippools = format!("ippools.{group}");
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let specs_before = pool_specs(c, group);
    // Filtered run: only shop/web moves, the old pool is kept (disabled); then roll back.
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "-n",
            "shop",
            "-l",
            "app=web",
            "--yes",
            "--timeout",
            "2m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
    assert!(stdout_of(&out).contains("kept (disabled)"), "{}", stdout_of(&out));
    let specs_run = pool_specs(c, group);
    let before_rollback = c.fingerprint();
    let out = c.ippool(&["migrate", "--from", OLD, "--rollback", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Exactly undone, by content: the old pool's spec is what it was before
    // the run; the new pool (the run made it) is as the run left it, disabled;
    // nothing but the pools, the record and our Events was written.
    let specs = pool_specs(c, group);
    assert_eq!(specs[OLD], specs_before[OLD], "the old pool is not back as it was");
    let mut new = specs_run["10.0.0.0-16"].clone();
    new["disabled"] = Value::Bool(true);
    assert_eq!(specs["10.0.0.0-16"], new, "the new pool changed beyond being disabled");
    let touched = before_rollback.changes_besides(&c.fingerprint(), &ROLLBACK_WRITES);
    assert_eq!(touched, Vec::<String>::new(), "the rollback wrote what it must not touch");
    for n in json(c, &["get", "nodes"])["items"].as_array().unwrap() {
        assert_ne!(n["spec"]["unschedulable"], Value::Bool(true), "the rollback cordoned {}", n["metadata"]["name"]);
    }

    // A fresh, full migration into the (re-enabled) new pool.
    c.kubectl_ok(&["patch", &ippools, "10.0.0.0-16", "--type", "merge", "-p", r#"{"spec":{"disabled":false}}"#]);
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to-pool",
            "10.0.0.0-16",
            "--force",
            "--yes",
            "--jobs",
            "evict",
            "--timeout",
            "3m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}\n{}", stdout_of(&out), stderr_of(&out), c.log_tail());
    assert_all_pods_in(c, "10.0.0.0/16");
    c.assert_gone(&[&ippools, OLD]);
    let blocks = json(c, &["get", &format!("ipamblocks.{group}")]);
    assert!(blocks["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| !b["spec"]["cidr"].as_str().unwrap().starts_with("192.168.")));
    c.assert_ipam_clean();
}

/// `--strategy evict`: evictions wait for room in the PodDisruptionBudgets
/// (never forced), so no budget goes below its floor and the Eviction API
/// hardly ever has to refuse one.
#[test]
fn evict_strategy_paces_within_the_budget_crd_v1() {
    let c = TestCluster::start(&["--scenario", "seed", "--readiness-delay", "3s"]);
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let watcher = BlockingBudgetWatch::start(&c, &[]);
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "--strategy",
            "evict",
            "--force",
            "--yes",
            "--jobs",
            "evict",
            "--timeout",
            "3m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
    assert_within_budget(watcher);
    // Evictions wait for the budget's room instead of bouncing off it: the
    // watch above saw no PDB below its floor, and the API never had to say
    // no (429) more than a race allows.
    let refusals = stderr_of(&out).matches("will retry after").count();
    assert!(refusals <= 1, "{refusals} evictions refused by a PDB:\n{}", stderr_of(&out));
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c, OLD, "192.168.0.0/16", "10.0.0.0/16");
    c.assert_ipam_clean();
}

/// `--strategy drain`: node by node, every node schedulable again afterwards.
#[test]
fn drain_strategy_cordons_and_uncordons_crd_v1() {
    let c = TestCluster::start(&["--scenario", "seed", "--readiness-delay", "1s"]);
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "--strategy",
            "drain",
            "--force",
            "--yes",
            "--jobs",
            "evict",
            "--timeout",
            "3m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
    let se = stderr_of(&out);
    assert!(se.contains("node/kubesim-node-0 cordoned") && se.contains("node/kubesim-node-0 uncordoned"), "{se}");
    let nodes = json(&c, &["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        assert_ne!(n["spec"]["unschedulable"], Value::Bool(true), "{} left cordoned", n["metadata"]["name"]);
        assert!(n["metadata"]["annotations"]["ippool.kubectl.io/cordoned"].is_null());
    }
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c, OLD, "192.168.0.0/16", "10.0.0.0/16");
    c.assert_ipam_clean();
}

/// The permission preflight lists every missing permission before any
/// write; the documented ippool-migrator role (deploy/rbac.yaml) suffices.
#[test]
fn permission_preflight_and_migrator_role_crd_v1() {
    let c = TestCluster::start(&["--scenario", "seed"]);
    c.kubectl_ok(&["apply", "-f", common::repo_root().join("deploy/rbac.yaml").to_str().unwrap()]);
    for (sa, role) in [("viewer", "ippool-reader"), ("migrator", "ippool-migrator")] {
        c.kubectl_ok(&["create", "serviceaccount", sa, "-n", "default"]);
        c.kubectl_ok(&[
            "create",
            "clusterrolebinding",
            sa,
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount=default:{sa}"),
        ]);
    }
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let before = c.fingerprint();
    let args =
        ["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--force", "--yes", "--jobs", "evict", "--timeout", "3m"];

    let mut as_viewer = args.to_vec();
    as_viewer.extend(["--as", "system:serviceaccount:default:viewer"]);
    let out = c.ippool(&as_viewer).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let se = stderr_of(&out);
    for want in [
        "missing permissions (nothing was changed)",
        "create ippools.crd.projectcalico.org",
        "patch deployments.apps -n shop",
        "create pods --subresource=eviction -n shop",
        "kubectl auth can-i",
    ] {
        assert!(se.contains(want), "{want:?} not in:\n{se}");
    }
    c.assert_nothing_written(&before, "the preflight");

    let mut as_migrator = args.to_vec();
    as_migrator.extend(["--as", "system:serviceaccount:default:migrator"]);
    let out = c.ippool(&as_migrator).output().unwrap();
    assert!(out.status.success(), "as ippool-migrator:\n{}\n{}", stdout_of(&out), stderr_of(&out));
    // The role lets the canary make its Service and pods (on kubesim's
    // default dataplane its paths run).
    assert!(!stderr_of(&out).contains("forbidden"), "{}", stderr_of(&out));
    assert_all_pods_in(&c, "10.0.0.0/16");
    assert_old_pool_gone(&c, OLD, "192.168.0.0/16", "10.0.0.0/16");
}
