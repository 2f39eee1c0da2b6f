//! "Never below the budget": every move honours the PodDisruptionBudgets.
//!
//! A `BudgetWatch` (tests/common/budget_watch/) watches pods, PDBs and
//! EndpointSlices of kubesim's `realistic` scenario while something moves
//! pods, and records every instant a PDB had fewer healthy pods than its
//! floor and every Service that lost its last ready endpoint.
//!
//! Run: `cargo test --test budget_e2e -- --test-threads=1 --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::budget_watch::{scaled_up, BudgetWatch, Report, REALISTIC_PDBS, REALISTIC_SERVICES};
use common::{json, TestCluster};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const OLD: &str = "default-ipv4-ippool";
/// Every namespace of the realistic scenario with a PDB or a Service.
const NAMESPACES: &[&str] = &["kube-system", "shop", "data"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Starts a watch on `c`; the returned runtime must outlive the watch.
fn watch(c: &TestCluster) -> (tokio::runtime::Runtime, BudgetWatch) {
    let rt = runtime();
    let w = rt.block_on(async { BudgetWatch::start(c.client().await, NAMESPACES).await });
    (rt, w)
}

fn stop(rt: &tokio::runtime::Runtime, w: BudgetWatch) -> Report {
    let report = rt.block_on(w.stop());
    eprintln!("{}", report.summary());
    report
}

#[test]
fn percent_budgets_round_up_like_the_disruption_controller() {
    let p = |s: &str| IntOrString::String(s.into());
    assert_eq!(scaled_up(&p("80%"), 6), Ok(5)); // api: minAvailable 80% of 6
    assert_eq!(scaled_up(&p("25%"), 10), Ok(3));
    assert_eq!(scaled_up(&p("1%"), 1), Ok(1));
    assert_eq!(scaled_up(&p("0%"), 10), Ok(0));
    assert_eq!(scaled_up(&IntOrString::Int(1), 10), Ok(1));
    assert!(scaled_up(&p("80"), 6).is_err());
}

/// Negative control: a plain `kubectl rollout restart` of web (10 replicas,
/// RollingUpdate maxUnavailable 25% = 2 pods down at once) breaks its PDB
/// (maxUnavailable 1, floor 9). The watch must see it, or it proves nothing.
#[test]
fn watch_catches_a_plain_rollout_restart_breaking_the_budget() {
    let t0 = Instant::now();
    let c = TestCluster::start(&["--scenario", "realistic", "--readiness-delay", "2s"]);
    let up = t0.elapsed();
    let (rt, w) = watch(&c);
    c.kubectl_ok(&["rollout", "restart", "deployment/web", "-n", "shop"]);
    // Stopped at once: the watch must keep watching until the rollout is
    // complete (about 20 s here), not stop with it half done.
    let report = stop(&rt, w);
    let status = json(&c, &["get", "deployment", "web", "-n", "shop"])["status"].clone();
    let counts = ["replicas", "updatedReplicas", "readyReplicas"].map(|f| status[f].as_i64());
    assert_eq!(counts, [Some(10); 3], "the watch stopped before web's rollout was complete: {status}");
    assert!(report.unsettled.is_empty(), "{report}");
    eprintln!("{report}");
    eprintln!("cluster up in {up:?}, test took {:?}", t0.elapsed());

    let web = report.violations_for("shop/web");
    assert!(!web.is_empty(), "the watch missed web going below its budget:\n{report}");
    assert!(
        web.iter().any(|v| v.healthy <= 8 && v.floor == 9 && v.status_desired == Some(9) && v.computed == Ok((10, 9))),
        "expected 8 (or fewer) healthy < 9 for shop/web:\n{report}"
    );
    assert!(report.violations.iter().all(|v| v.pdb == "shop/web"), "only web was touched:\n{report}");
    // web kept 8 ready endpoints: below the budget, but no outage.
    assert!(report.services_at_zero.is_empty(), "{report}");
    assert!(report.watch_errors.is_empty(), "{report}");
    assert_eq!(report.disagreements, 0, "status.desiredHealthy and our computation disagreed:\n{report}");
    // The PDBs nobody touched were seen at full strength on the pod events
    // of web (they are re-evaluated on every pod event of their namespace).
    assert_eq!(report.lowest["shop/api"].healthy, 6, "{report}");
    assert_eq!(report.lowest["shop/api"].floor, 5, "minAvailable 80% of 6 rounds up to 5");
    assert_eq!(report.lowest["shop/front"].floor, 5, "one PDB over front-a 3 + front-b 3, maxUnavailable 1");
    // So `assert_clean` (which panics with the report unless it is clean) fails here.
    assert!(!report.is_clean());
    // Coverage: web's PDB was evaluated on every pod event of shop; data/db,
    // whose pods nobody touched, was never evaluated, and the check says so.
    assert_eq!(report.coverage_problems(&["shop/web", "shop/api"], &["shop/web"]), Vec::<String>::new(), "{report}");
    let unseen = report.coverage_problems(&["data/db"], &["data/db"]);
    assert_eq!(unseen.len(), 2, "an unwatched PDB and Service must be named: {unseen:?}");
    assert!(unseen[0].contains("PDB data/db was never evaluated"), "{unseen:?}");

    // Negative controls for the other floor shapes: a StatefulSet under
    // maxUnavailable 1 (db, 3 replicas: floor 2 from the StatefulSet's
    // scale) and a minAvailable percentage (api, 80% of 6: floor 5).
    // Deleting pods directly bypasses the Eviction API, so both go below.
    let (rt_s, w) = watch(&c);
    c.kubectl_ok(&["delete", "pod", "-n", "data", "db-0", "db-1", "--wait=false"]);
    let api_pods = c.kubectl_ok(&["get", "pods", "-n", "shop", "-l", "app=api", "-o", "name"]);
    let two: Vec<&str> = api_pods.lines().take(2).collect();
    assert_eq!(two.len(), 2, "{api_pods}");
    c.kubectl_ok(&[&["delete", "-n", "shop", "--wait=false"][..], &two[..]].concat());
    for (kind, name, ns, want) in [("statefulset", "db", "data", "3"), ("deployment", "api", "shop", "6")] {
        c.wait_until(&format!("{kind} {ns}/{name} ready again"), Duration::from_secs(90), || {
            let obj = format!("{kind}/{name}");
            c.kubectl_ok(&["get", &obj, "-n", ns, "-o", "jsonpath={.status.readyReplicas}"]).trim() == want
        });
    }
    let report = stop(&rt_s, w);
    eprintln!("{report}");
    assert!(
        report.violations_for("data/db").iter().any(|v| v.healthy <= 1 && v.computed == Ok((3, 2))),
        "the watch missed StatefulSet db (3 replicas, maxUnavailable 1) going below 2:\n{report}"
    );
    assert!(
        report.violations_for("shop/api").iter().any(|v| v.healthy <= 4 && v.computed == Ok((6, 5))),
        "the watch missed api (minAvailable 80% of 6 = 5) going below 5:\n{report}"
    );
    assert_eq!(report.coverage_problems(&["data/db", "shop/api"], &["data/db", "shop/api"]), Vec::<String>::new());

    // Deleting the only pod behind Service shop/single (no eviction, so no
    // PDB stops it) leaves the Service without a ready endpoint until the
    // replacement is ready: the watch must see that too.
    let (rt2, w) = watch(&c);
    c.kubectl_ok(&["delete", "pod", "-n", "shop", "-l", "app=single", "--wait=false"]);
    c.wait_until("Service shop/single to have a ready endpoint again", Duration::from_secs(60), || {
        let sel = "kubernetes.io/service-name=single";
        let ready = "jsonpath={.items[*].endpoints[*].conditions.ready}";
        c.kubectl_ok(&["get", "endpointslices", "-n", "shop", "-l", sel, "-o", ready]).trim() == "true"
    });
    let report = stop(&rt2, w);
    assert!(
        report.services_at_zero.iter().any(|s| s.service == "shop/single" && s.before == 1),
        "the watch missed Service shop/single losing its last ready endpoint:\n{report}"
    );
    assert!(!report.violations_for("shop/single").is_empty(), "and its PDB (minAvailable 1) going below:\n{report}");

    plan_paces_each_workload_within_its_budget(&c);
}

/// On the same cluster (`single` included): the plan picks a rollout only
/// where the strategy fits the budget, says why, and refuses the workload
/// whose budget allows nothing, writing nothing.
fn plan_paces_each_workload_within_its_budget(c: &TestCluster) {
    let out = c
        .ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--dry-run", "-o", "json", "--max-parallel", "4"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let moves = doc["moves"].as_array().unwrap();
    let pick =
        |target: &str| moves.iter().find(|m| m["target"] == target).unwrap_or_else(|| panic!("{target}: {doc:#}"));
    let web = pick("Deployment shop/web");
    assert_eq!((web["kind"].as_str(), web["atOnce"].as_u64()), (Some("evict"), Some(1)), "{web:#}");
    assert!(web["note"].as_str().unwrap().contains("could take 2 pod(s) down at once"), "{web:#}");
    assert_eq!(web["guards"][0]["pdb"], "shop/web");
    let api = pick("Deployment shop/api");
    assert_eq!((api["kind"].as_str(), api["atOnce"].as_u64()), (Some("rollout"), Some(1)), "{api:#}");
    assert_eq!(pick("Deployment shop/legacy")["kind"], "evict", "Recreate takes both pods down; the PDB allows 1");
    assert_eq!(pick("StatefulSet data/db")["kind"], "rollout");
    assert_eq!(pick("Deployment shop/front-a")["lane"], pick("Deployment shop/front-b")["lane"], "one PDB, one lane");
    assert_eq!(doc["estimate"]["parallel"], 4);
    assert!(doc["estimate"]["rounds"].as_u64().unwrap() >= 10, "web alone needs 10 rounds: {:#}", doc["estimate"]);
    let blockers: Vec<&str> = doc["blockers"].as_array().unwrap().iter().filter_map(|b| b.as_str()).collect();
    assert!(
        blockers.iter().any(|b| b.contains("PodDisruptionBudget shop/single (minAvailable 1) allows none")),
        "{blockers:?}"
    );

    // A real run refuses, names the fix, and writes nothing: no pool, no
    // workload, no node, no record or lease, no namespace changes.
    let before = c.fingerprint();
    let out = c.ippool(&["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--yes"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("shop/single") && err.contains("--replicas=2"), "{err}");
    c.assert_nothing_written(&before, "a refusal");
}

/// The realistic scenario without `single`, one fresh cluster per strategy.
fn migrate_within_budget(strategy: &str) {
    let t0 = Instant::now();
    let c = TestCluster::start(&["--scenario", "realistic", "--omit", "single", "--readiness-delay", "2s"]);
    let (rt, w) = watch(&c);
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "--yes",
            "--force",
            "--strategy",
            strategy,
            "--max-parallel",
            "4",
            "--timeout",
            "5m",
        ])
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let report = stop(&rt, w);
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("--strategy {strategy}: migrate took {:?} in all", t0.elapsed());
    assert!(out.status.success(), "migrate --strategy {strategy} failed:\n{so}\n{se}\n{report}");
    report.assert_covered_and_clean(REALISTIC_PDBS, REALISTIC_SERVICES);
    let out = c.ippool(&["verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "verify after --strategy {strategy}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    c.assert_ipam_clean();
}

#[test]
fn migrate_rollout_never_below_the_budget() {
    migrate_within_budget("rollout");
}

#[test]
fn migrate_evict_never_below_the_budget() {
    migrate_within_budget("evict");
}

#[test]
fn migrate_drain_never_below_the_budget() {
    migrate_within_budget("drain");
}

/// `--surge` on the full realistic scenario: `single` (1 replica,
/// minAvailable 1) gets a second replica for its move and goes back to 1;
/// a surge an earlier, killed run left on `api` (noted on the object) is
/// undone first. No budget is crossed on the way.
#[test]
fn surge_moves_a_workload_whose_budget_allows_nothing() {
    let c = TestCluster::start(&["--scenario", "realistic", "--readiness-delay", "2s"]);
    // What a run killed in the middle of a surge leaves: one replica more, and the note.
    c.kubectl_ok(&["annotate", "deployment/api", "-n", "shop", "ippool.kubectl.io/surged-from=6"]);
    c.kubectl_ok(&["scale", "deployment/api", "-n", "shop", "--replicas=7"]);
    c.kubectl_ok(&["rollout", "status", "deployment/api", "-n", "shop", "--timeout", "60s"]);
    let (rt, w) = watch(&c);
    let out = c
        .ippool(&[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            "--yes",
            "--surge",
            "--max-parallel",
            "4",
            "--timeout",
            "5m",
        ])
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let report = stop(&rt, w);
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "migrate --surge failed:\n{so}\n{se}\n{report}");
    assert!(se.contains("Deployment shop/single: scaled to 2 replica(s) for the move (--surge)"), "{se}");
    let pdbs = [REALISTIC_PDBS, &["shop/single"]].concat();
    report.assert_covered_and_clean(&pdbs, &[REALISTIC_SERVICES, &["shop/single"]].concat());
    for (name, want) in [("single", "1"), ("api", "6")] {
        let got = c.kubectl_ok(&["get", "deployment", name, "-n", "shop", "-o", "jsonpath={.spec.replicas}"]);
        assert_eq!(got.trim(), want, "{name} is back to its own replica count");
        let note = c.kubectl_ok(&[
            "get",
            "deployment",
            name,
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.annotations.ippool\\.kubectl\\.io/surged-from}",
        ]);
        assert!(note.trim().is_empty(), "{name} keeps no surge note: {note}");
    }
    c.assert_ipam_clean();
}
