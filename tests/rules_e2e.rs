//! Rules that name the old CIDR, on one seed cluster, in order: a pod with
//! `ipAddrsNoIpam` in the old pool blocks (nothing written); `--dry-run`
//! lists a NetworkPolicy (ipBlock with except), a GlobalNetworkPolicy, a
//! GlobalNetworkSet, the ip-masq-agent ConfigMap and an IPReservation (and a
//! kube-proxy DaemonSet's `--cluster-cidr`) with their field paths; a filtered `--update-rules` run (stopped before the
//! old pool's deletion) adds 10.0.0.0/16 to the first four and changes
//! nothing else; `--rollback` keeps them while moved pods hold 10.0.0.0/16
//! addresses, and once those pods are restarted takes exactly that back out
//! (an edit made meanwhile stays); a full `--update-rules` run, then `verify` warns about
//! the retired 192.168.0.0/16 in each.

mod common;

use std::collections::BTreeMap;

use common::TestCluster;
use serde_json::{json, Value};

const OLD: &str = "default-ipv4-ippool";
const V1: &str = "crd.projectcalico.org";
/// The kube-proxy DaemonSet here names only the old pool in --cluster-cidr:
/// every migration acknowledges that the new pool lies outside it.
const OUTSIDE: &str = "--allow-outside-cluster-cidr";

/// The objects under test: (kubectl resource, namespace, name).
const NP: (&str, Option<&str>, &str) = ("networkpolicies.networking.k8s.io", Some("shop"), "from-pods");
const GNP: (&str, Option<&str>, &str) = ("globalnetworkpolicies.crd.projectcalico.org", None, "default.allow-pods");
const GNS: (&str, Option<&str>, &str) = ("globalnetworksets.crd.projectcalico.org", None, "pods");
const MASQ: (&str, Option<&str>, &str) = ("configmaps", Some("kube-system"), "ip-masq-agent");
const RES: (&str, Option<&str>, &str) = ("ipreservations.crd.projectcalico.org", None, "reserved");

/// Objects no run may touch: a reservation, rules that do not name the old
/// pool (or already reach every pool), and ConfigMaps that mention CIDRs.
const UNTOUCHED: &[(&str, Option<&str>, &str)] = &[
    RES,
    ("networkpolicies.networking.k8s.io", Some("shop"), "elsewhere"),
    ("globalnetworksets.crd.projectcalico.org", None, "everything"),
    ("configmaps", Some("kube-system"), "kube-proxy"),
    ("daemonsets.apps", Some("kube-system"), "kube-proxy"),
    ("configmaps", Some("kube-system"), "kubeadm-config"),
];

const K8S_OBJECTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-pods, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: elsewhere, namespace: shop}
spec:
  podSelector: {}
  egress:
  - to:
    - ipBlock: {cidr: 172.16.0.0/12}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-proxy, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-proxy}}
  template:
    metadata: {labels: {k8s-app: kube-proxy}}
    spec:
      nodeSelector: {no-node-has: this-label}
      containers:
      - name: kube-proxy
        image: registry.k8s.io/pause:3.10
        command: [kube-proxy, --cluster-cidr=192.168.0.0/16]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ip-masq-agent, namespace: kube-system}
data:
  config: |
    nonMasqueradeCIDRs:
      - 192.168.0.0/16
    masqLinkLocal: false
"#;

const CALICO_OBJECTS: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-pods}
spec:
  selector: all()
  ingress:
  - action: Allow
    source: {nets: [192.168.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: pods}
spec: {nets: [192.168.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: everything}
spec: {nets: [0.0.0.0/0]}
---
apiVersion: projectcalico.org/v3
kind: IPReservation
metadata: {name: reserved}
spec: {reservedCIDRs: [192.168.250.0/28]}
"#;

fn get(c: &TestCluster, (res, ns, name): (&str, Option<&str>, &str)) -> Value {
    let mut args = vec!["get", res, name, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    serde_json::from_str(&c.kubectl_ok(&args)).unwrap()
}

/// What a rule object says (spec, or a ConfigMap's data).
fn content(c: &TestCluster, obj: (&str, Option<&str>, &str)) -> Value {
    let v = get(c, obj);
    if v["kind"] == "ConfigMap" {
        v["data"].clone()
    } else {
        v["spec"].clone()
    }
}

fn versions(c: &TestCluster) -> BTreeMap<String, String> {
    UNTOUCHED
        .iter()
        .map(|o| (format!("{} {}", o.0, o.2), get(c, *o)["metadata"]["resourceVersion"].as_str().unwrap().to_string()))
        .collect()
}

fn run(c: &TestCluster, args: &[&str]) -> (String, String) {
    let out = c.ippool(args).output().unwrap();
    let (so, se) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "kubectl ippool {args:?}:\n{so}\n{se}\n{}", c.log_tail());
    (so, se)
}

fn apply(c: &TestCluster, file: &str, text: &str) {
    let path = c.dir().join(file);
    std::fs::write(&path, text).unwrap();
    c.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

/// The four objects with `cidr` added where `--update-rules` puts it.
fn with_added(originals: &[Value; 4], cidr: &str) -> [Value; 4] {
    let [mut np, mut gnp, mut gns, mut masq] = originals.clone();
    np["ingress"][0]["from"].as_array_mut().unwrap().push(json!({"ipBlock": {"cidr": cidr}}));
    gnp["ingress"][0]["source"]["nets"].as_array_mut().unwrap().push(json!(cidr));
    gns["nets"].as_array_mut().unwrap().push(json!(cidr));
    let text =
        masq["config"].as_str().unwrap().replace("  - 192.168.0.0/16\n", &format!("  - 192.168.0.0/16\n  - {cidr}\n"));
    masq["config"] = json!(text);
    [np, gnp, gns, masq]
}

fn four(c: &TestCluster) -> [Value; 4] {
    [content(c, NP), content(c, GNP), content(c, GNS), content(c, MASQ)]
}

#[test]
fn rules_naming_the_old_cidr_are_listed_updated_rolled_back_and_verified() {
    let c = TestCluster::seed();
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    apply(&c, "k8s.yaml", K8S_OBJECTS);
    let path = c.dir().join("calico.yaml");
    std::fs::write(&path, CALICO_OBJECTS).unwrap();
    let out = c.calicoctl(&["create", "-f", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let originals = four(&c);
    let untouched = versions(&c);

    // 1. A pod using an old-pool address without IPAM blocks; nothing is written.
    apply(
        &c,
        "fixed.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: fixed\n  namespace: shop\n  annotations:\n    cni.projectcalico.org/ipAddrsNoIpam: '[\"192.168.200.5\"]'\nspec:\n  containers:\n  - {name: c, image: registry.k8s.io/pause:3.10}\n",
    );
    // kube-proxy's --cluster-cidr names only the old pool: the new one lies
    // outside the cluster's pod CIDR as kube-proxy sees it (refused unless
    // acknowledged).
    let args =
        ["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--update-rules", "--force", "--jobs", "evict", "--yes"];
    let before = c.fingerprint();
    let out = c.ippool(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("outside the cluster pod CIDR")
            && err.contains("DaemonSet kube-system/kube-proxy (--cluster-cidr)"),
        "{err}"
    );
    let out = c.ippool(&[&args[..], &[OUTSIDE]].concat()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Pod shop/fixed has cni.projectcalico.org/ipAddrsNoIpam 192.168.200.5, inside 192.168.0.0/16: that address bypasses Calico IPAM"),
        "{err}"
    );
    c.assert_gone(&[&format!("ippools.{V1}"), "10.0.0.0-16"]);
    c.assert_gone(&["configmap", "-n", "kube-system", "kubectl-ippool-migration"]);
    assert_eq!(four(&c), originals, "no rule was changed");
    c.assert_nothing_written(&before, "the refusals");
    c.kubectl_ok(&["delete", "pod", "-n", "shop", "fixed", "--wait=true"]);

    // 2. The dry run lists all five with their field paths, and each patch.
    let (so, _) = run(&c, &["migrate", "--from", OLD, "--to", "10.0.0.0/16", OUTSIDE, "--force", "--dry-run"]);
    let section = &so[so.find("Rules and addresses").expect(&so)..];
    insta::assert_snapshot!("dry_run_rules_section", section);
    let (so, _) =
        run(&c, &["migrate", "--from", OLD, "--to", "10.0.0.0/16", OUTSIDE, "--force", "--dry-run", "-o", "json"]);
    let doc: Value = serde_json::from_str(&so).unwrap();
    let objects: Vec<&str> =
        doc["rules"]["hits"].as_array().unwrap().iter().map(|h| h["object"].as_str().unwrap()).collect();
    for want in [
        "NetworkPolicy shop/from-pods",
        "GlobalNetworkPolicy default.allow-pods",
        "GlobalNetworkSet pods",
        "ConfigMap kube-system/ip-masq-agent",
        "IPReservation reserved",
        "DaemonSet kube-system/kube-proxy",
    ] {
        assert!(objects.contains(&want), "{want} missing from {objects:?}");
    }
    assert_eq!(doc["rules"]["patches"].as_array().unwrap().len(), 4);

    // status warns once per class about the rules naming a retiring (here:
    // disabled by hand, with another pool enabled) pool's range.
    let ippools = format!("ippools.{V1}");
    let spare = c.dir().join("spare.yaml");
    std::fs::write(
        &spare,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: spare}\nspec: {cidr: 10.5.0.0/16}\n",
    )
    .unwrap();
    assert!(c.calicoctl(&["create", "-f", spare.to_str().unwrap()]).status.success());
    c.kubectl_ok(&["patch", &ippools, OLD, "--type", "merge", "-p", r#"{"spec":{"disabled":true}}"#]);
    let (so, _) = run(&c, &["status", "-o", "json"]);
    c.kubectl_ok(&["patch", &ippools, OLD, "--type", "merge", "-p", r#"{"spec":{"disabled":false}}"#]);
    assert!(c.calicoctl(&["delete", "ippool", "spare"]).status.success());
    let v: Value = serde_json::from_str(&so).unwrap();
    let classes: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "rulesNameOldCidr")
        .map(|w| w["message"].as_str().unwrap().split(" entr(ies)").next().unwrap())
        .collect();
    assert_eq!(
        classes,
        vec![
            "1 NetworkPolicy ipBlock",
            "1 Calico policy nets/notNets",
            "1 NetworkSet nets",
            "1 IPReservation",
            "1 ip-masq-agent nonMasqueradeCIDRs",
            "1 kube-proxy --cluster-cidr"
        ]
    );

    // 3. A filtered run stops before the old pool's deletion: the new CIDR is
    // beside the old one in the four, and nothing else changed.
    let (so, se) = run(
        &c,
        &[
            "migrate",
            "--from",
            OLD,
            "--to",
            "10.0.0.0/16",
            OUTSIDE,
            "-n",
            "shop",
            "-l",
            "app=web",
            "--update-rules",
            "--yes",
        ],
    );
    assert!(so.contains("kept (disabled)"), "{so}");
    assert!(se.contains("GlobalNetworkSet pods spec.nets: added 10.0.0.0/16"), "{se}");
    assert_eq!(four(&c), with_added(&originals, "10.0.0.0/16"));
    assert_eq!(versions(&c), untouched, "objects --update-rules must not touch were changed");
    let events = c.kubectl_ok(&["get", "events", "-A", "--field-selector", "reason=IPPoolMigration", "-o", "json"]);
    let added_events = events.matches("--update-rules: added 10.0.0.0/16 beside 192.168.0.0/16").count();
    assert_eq!(added_events, 4, "one Event per change: {events}");
    let record = get(&c, ("configmaps", Some("kube-system"), "kubectl-ippool-migration"));
    let state: Value = serde_json::from_str(record["data"]["state.json"].as_str().unwrap()).unwrap();
    assert_eq!(state["ruleChanges"].as_array().unwrap().len(), 4, "{state}");

    // status, mid-migration: the old pool is retiring; the four reach the new
    // pool now, so only the reservation is left to warn about.
    let (so, _) = run(&c, &["status", "-o", "json"]);
    let v: Value = serde_json::from_str(&so).unwrap();
    let warned: Vec<&Value> =
        v["warnings"].as_array().unwrap().iter().filter(|w| w["code"] == "rulesNameOldCidr").collect();
    assert_eq!(warned.len(), 2, "{warned:#?}");
    // kube-proxy's --cluster-cidr is a source of the cluster's pod CIDR too.
    assert!(
        v["clusterNetworks"]["podCidrs"].as_array().unwrap().iter().any(
            |p| p["cidr"] == "192.168.0.0/16" && p["source"] == "DaemonSet kube-system/kube-proxy (--cluster-cidr)"
        ),
        "{}",
        v["clusterNetworks"]
    );
    assert_eq!(warned[0]["objects"], json!(["IPReservation reserved spec.reservedCIDRs[0]: 192.168.250.0/28"]));
    assert_eq!(
        warned[1]["objects"],
        json!(["DaemonSet kube-system/kube-proxy spec.template.spec.containers[0].command[1] (--cluster-cidr): 192.168.0.0/16"])
    );

    // Someone edits the set meanwhile; the rollback keeps their edit.
    c.kubectl_ok(&[
        "patch",
        &format!("globalnetworksets.{V1}"),
        "pods",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/nets/-","value":"10.9.0.0/16"}]"#,
    ]);
    let (_, se) = run(&c, &["migrate", "--from", OLD, "--rollback", "--dry-run"]);
    assert_eq!(se.matches("(added by --update-rules)").count(), 4, "{se}");
    assert!(se.contains("remove 10.0.0.0/16 from GlobalNetworkSet pods spec.nets"), "{se}");
    assert_eq!(
        content(&c, GNS)["nets"],
        json!(["192.168.0.0/16", "10.0.0.0/16", "10.9.0.0/16"]),
        "a dry run writes nothing"
    );
    // The moved pods of shop/web still hold 10.0.0.0/16 addresses: the
    // rollback keeps what was added for them, says so, and keeps it in the
    // record (issue 24 item 1: it used to strip them).
    let (_, se) = run(&c, &["migrate", "--from", OLD, "--rollback", "--yes"]);
    assert!(se.contains("kept the 4 entr(ies) --update-rules added") && se.contains("Pod shop/web-"), "{se}");
    let mut kept = with_added(&originals, "10.0.0.0/16");
    kept[2]["nets"].as_array_mut().unwrap().push(json!("10.9.0.0/16"));
    assert_eq!(four(&c), kept, "entries that moved pods need are kept");
    let record = get(&c, ("configmaps", Some("kube-system"), "kubectl-ippool-migration"));
    let state: Value = serde_json::from_str(record["data"]["state.json"].as_str().unwrap()).unwrap();
    assert_eq!(state["ruleChanges"].as_array().unwrap().len(), 4, "{state}");
    assert_ne!(state["phase"], "RolledBack", "{state}");
    // Once web's pods are back in the old pool (restarted), a second
    // rollback takes exactly what --update-rules added back out.
    c.kubectl_ok(&["rollout", "restart", "deployment/web", "-n", "shop"]);
    c.kubectl_ok(&["rollout", "status", "deployment/web", "-n", "shop", "--timeout=180s"]);
    c.wait_no_pod_in("10.0.0.0/16");
    let (_, se) = run(&c, &["migrate", "--from", OLD, "--rollback", "--yes"]);
    assert!(!se.contains("kept the"), "{se}");
    let mut expected = originals.clone();
    expected[2]["nets"].as_array_mut().unwrap().push(json!("10.9.0.0/16"));
    assert_eq!(four(&c), expected, "the rollback removes exactly what --update-rules added");
    assert_eq!(versions(&c), untouched);
    c.kubectl_ok(&[
        "patch",
        &format!("globalnetworksets.{V1}"),
        "pods",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/nets/1"}]"#,
    ]);
    assert_eq!(four(&c), originals);

    // 4. A full run: the old pool is deleted; then verify warns about every entry
    // still naming 192.168.0.0/16.
    c.kubectl_ok(&[
        "patch",
        &format!("ippools.{V1}"),
        "10.0.0.0-16",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"disabled":false}}"#,
    ]);
    let (so, _) = run(
        &c,
        &[
            "migrate",
            OUTSIDE,
            "--from",
            OLD,
            "--to-pool",
            "10.0.0.0-16",
            "--update-rules",
            "--force",
            "--jobs",
            "evict",
            "--yes",
            "--timeout",
            "3m",
            "-o",
            "json",
        ],
    );
    let summary: Value = serde_json::from_str(&so).unwrap_or_else(|e| panic!("{e}: {so}"));
    assert_eq!(summary["oldPoolDeleted"], true, "{summary}");
    let mut reported: Vec<&str> =
        summary["ruleChanges"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    reported.sort();
    assert_eq!(reported.len(), 4, "the summary lists each rule change: {summary}");
    assert!(reported.iter().all(|c| c.contains("added") && c.contains("10.0.0.0/16")), "{reported:?}");
    assert_eq!(four(&c), with_added(&originals, "10.0.0.0/16"));
    assert_eq!(versions(&c), untouched);
    let out = c.ippool(&["verify", "-o", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = v["checks"].as_array().unwrap().iter().find(|c| c["code"] == "rulesNameRetiredCidr").unwrap().clone();
    assert_eq!(check["status"], "WARN", "{check}");
    let mut listed: Vec<&str> = check["objects"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "ConfigMap kube-system/ip-masq-agent data.config nonMasqueradeCIDRs[0]: 192.168.0.0/16",
            "DaemonSet kube-system/kube-proxy spec.template.spec.containers[0].command[1] (--cluster-cidr): 192.168.0.0/16",
            "GlobalNetworkPolicy default.allow-pods spec.ingress[0].source.nets[0]: 192.168.0.0/16",
            "GlobalNetworkSet pods spec.nets[0]: 192.168.0.0/16",
            "IPReservation reserved spec.reservedCIDRs[0]: 192.168.250.0/28",
            "NetworkPolicy shop/from-pods spec.ingress[0].from[0].ipBlock.cidr: 192.168.0.0/16",
            "NetworkPolicy shop/from-pods spec.ingress[0].from[0].ipBlock.except[0]: 192.168.1.0/24",
        ]
    );
    c.assert_ipam_clean();
}
