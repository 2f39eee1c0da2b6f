//! End-to-end tests on `kubesim --dataplane`: real network namespaces, block
//! routes, serving pods and kube-proxy (nftables) per node. "No outage" is
//! measured by traffic (tests/common/traffic.rs), not by ready counts.
//!
//! Run: `cargo test --test dataplane_e2e -- --test-threads=1` (root, `nft`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::traffic::TrafficMonitor;
use common::{json, kubesim_bin, TestCluster};

const OLD: &str = "default-ipv4-ippool";

/// A Service in front of three agnhost netexec pods (ready on a real HTTP
/// probe, 7 s to start, 15 s preStop sleep, a PDB of maxUnavailable 1), and a
/// hostNetwork netexec pod on port 8081: a server that never moves.
const WORKLOAD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: traffic, labels: {pod-security.kubernetes.io/enforce: privileged}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: traffic}
spec:
  replicas: 3
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  selector: {matchLabels: {app: echo}}
  template:
    metadata:
      labels: {app: echo}
      annotations: {kubesim.io/ready-after: 7s}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=8080]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
        # Longer than kube-proxy can lag behind an EndpointSlice change on a
        # loaded 2-core machine (5 s was seen to be too short: a request
        # reached a pod that had stopped serving).
        lifecycle: {preStop: {sleep: {seconds: 15}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: echo, namespace: traffic}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: echo}}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: traffic}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: host-echo, namespace: traffic}
spec:
  hostNetwork: true
  nodeName: kubesim-node-0
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=8081]
    ports: [{containerPort: 8081}]
"#;

/// The cluster with WORKLOAD running; the Service's targets ("IP:80/hostname",
/// one per family) and the hostNetwork server's addresses.
fn start_with_workload(args: &[&str]) -> (TestCluster, Vec<String>, Vec<String>) {
    let c = TestCluster::start(args);
    let path = c.dir().join("traffic.yaml");
    std::fs::write(&path, WORKLOAD).unwrap();
    c.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    c.kubectl_ok(&["-n", "traffic", "rollout", "status", "deploy/echo", "--timeout=120s"]);
    c.wait_until("host-echo ready", Duration::from_secs(60), || {
        let p = json(&c, &["-n", "traffic", "get", "pod", "host-echo"]);
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "True"))
    });
    let svc = json(&c, &["-n", "traffic", "get", "svc", "echo"]);
    let targets =
        svc["spec"]["clusterIPs"].as_array().unwrap().iter().map(|ip| format!("{}:80/hostname", bracket(ip))).collect();
    let host = json(&c, &["-n", "traffic", "get", "pod", "host-echo"]);
    let hosts =
        host["status"]["podIPs"].as_array().unwrap().iter().map(|ip| format!("{}:8081", bracket(&ip["ip"]))).collect();
    (c, targets, hosts)
}

fn bracket(ip: &serde_json::Value) -> String {
    let ip = ip.as_str().unwrap();
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// Runs `migrate` with `args` under traffic to every family of the Service
/// and long-lived connections to the hostNetwork server; asserts 0 failed
/// requests, 0 broken connections, and answers from old and new pods.
fn migrate_under_traffic(c: &TestCluster, targets: &[String], hosts: &[String], args: &[&str], min_backends: usize) {
    for t in targets {
        wait_service_answers(c, t);
    }
    let named: Vec<(String, &str)> = targets.iter().map(|t| (format!("traffic/echo {t}"), t.as_str())).collect();
    let named: Vec<(&str, &str)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let monitor = TrafficMonitor::start(c, &named, &hosts);
    std::thread::sleep(Duration::from_secs(2));
    let mut a = vec!["migrate"];
    a.extend_from_slice(args);
    a.extend(["--force", "--yes", "--jobs", "evict", "--timeout", "5m"]);
    let out = c.ippool(&a).output().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let report = monitor.stop();
    eprintln!("{}", report.summary());
    assert!(
        out.status.success(),
        "migrate failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log_tail()
    );
    // With a dataplane every canary path is checked, in every family migrated.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("NOT CHECKED"), "{err}");
    let passed = err.lines().find(|l| l.starts_with("Canary paths passed")).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(passed.matches(" -> ").count(), 4 * targets.len(), "{passed}");
    eprintln!("{passed}");
    assert!(report.requests() > 100 * targets.len() as u64, "too few samples:\n{}", report.summary());
    assert_eq!(report.failed_requests(), 0, "requests failed during the migration:\n{}", report.summary());
    assert_eq!(report.long_lived.len(), hosts.len() * report.nodes.len());
    assert_eq!(report.broken_connections(), 0, "long-lived connections broke:\n{}", report.summary());
    for t in &report.targets {
        assert!(t.backends.len() >= min_backends, "{} answered from old and new pods: {:?}", t.name, t.backends);
    }
}

/// Block routes of one node's namespace ("CIDR via GW").
fn node_routes(c: &TestCluster, node: usize, family: &str) -> Vec<String> {
    let ns = format!("{}node{node}", prefix_of(c.dir()));
    let out = Command::new("ip").args(["netns", "exec", &ns, "ip", family, "-o", "route"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(" via ")).map(str::to_string).collect()
}

/// Waits until the Service answers from every node (kube-proxy has its rules).
fn wait_service_answers(c: &TestCluster, target: &str) {
    let start = Instant::now();
    loop {
        let m = TrafficMonitor::start(c, &[("echo", target)], &[]);
        std::thread::sleep(Duration::from_millis(600));
        let r = m.stop();
        if r.requests() > 0 && r.failed_requests() == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Service never answered from every node:\n{}\n{}",
            r.summary(),
            c.log_tail()
        );
    }
}

#[test]
fn seed_migration_under_traffic_fails_no_request_and_breaks_no_connection() {
    let (c, targets, hosts) = start_with_workload(&["--scenario", "seed", "--dataplane"]);
    let before = node_routes(&c, 0, "-4");
    assert!(before.iter().any(|r| r.starts_with("192.168.")), "no block routes before: {before:?}");
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    migrate_under_traffic(&c, &targets, &hosts, &["--from", OLD, "--to", "10.0.0.0/16"], 6);
    let pods = json(&c, &["-n", "traffic", "get", "pods", "-l", "app=echo"]);
    for p in pods["items"].as_array().unwrap() {
        let ip = p["status"]["podIP"].as_str().unwrap_or_default();
        assert!(common::in_cidr(ip, "10.0.0.0/16"), "echo pod not moved: {ip}");
    }
    // The old pool's blocks were released with the pool: their routes went with them.
    c.wait_until("old block routes gone, new ones present", Duration::from_secs(30), || {
        let r = node_routes(&c, 0, "-4");
        !r.iter().any(|r| r.starts_with("192.168.")) && r.iter().any(|r| r.starts_with("10.0."))
    });
}

/// A run SIGKILLed while it moves pods (stopped by the pause hook after its
/// second progress save, so the kill lands in MovingPods on any machine),
/// then resumed by the same command: traffic sees no failure across both.
#[test]
fn sigkill_while_moving_pods_then_resume_under_traffic_fails_no_request() {
    let (c, targets, hosts) = start_with_workload(&["--scenario", "seed", "--dataplane"]);
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    for t in &targets {
        wait_service_answers(&c, t);
    }
    let named: Vec<(String, &str)> = targets.iter().map(|t| (format!("traffic/echo {t}"), t.as_str())).collect();
    let named: Vec<(&str, &str)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let monitor = TrafficMonitor::start(&c, &named, &hosts);
    std::thread::sleep(Duration::from_secs(2));
    let args =
        ["migrate", "--from", OLD, "--to", "10.0.0.0/16", "--force", "--yes", "--jobs", "evict", "--timeout", "5m"];
    let pause_file = c.dir().join("paused");
    let bin = assert_cmd::cargo::cargo_bin("kubectl-ippool");
    let mut first = Command::new(&bin)
        .env("KUBECONFIG", c.dir().join("kubeconfig"))
        .env("KUBECTL_IPPOOL_PAUSE_AT", "checkpoint:MovingPods#2")
        .env("KUBECTL_IPPOOL_PAUSE_FILE", &pause_file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.wait_until("the first run to stop in MovingPods", Duration::from_secs(180), || {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before its pause point");
        pause_file.exists()
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let state = || -> serde_json::Value {
        let record = json(&c, &["-n", "kube-system", "get", "configmap", "kubectl-ippool-migration"]);
        serde_json::from_str(record["data"]["state.json"].as_str().unwrap()).unwrap()
    };
    let killed = state();
    assert_eq!(killed["phase"], "MovingPods", "{killed:#}");
    let out = c.ippool(&args).output().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let report = monitor.stop();
    eprintln!("{}", report.summary());
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the resumed run failed:\n{so}\n{se}\n{}", c.log_tail());
    let done = state();
    assert_eq!(done["startedAt"], killed["startedAt"], "not a resume of the killed run's record: {done:#}");
    assert_eq!(done["phase"], "Done", "{done:#}");
    assert!(report.requests() > 100, "too few samples:\n{}", report.summary());
    assert_eq!(report.failed_requests(), 0, "requests failed across the kill and the resume:\n{}", report.summary());
    assert_eq!(report.broken_connections(), 0, "long-lived connections broke:\n{}", report.summary());
}

/// Both families of a dual-stack cluster at once, under traffic to both
/// ClusterIPs and long-lived connections over IPv4 and IPv6.
#[test]
fn dual_stack_migration_under_traffic_fails_no_request() {
    let (c, targets, hosts) = start_with_workload(&["--scenario", "small", "--ip-family", "dual", "--dataplane"]);
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(node_routes(&c, 0, "-6").iter().any(|r| r.starts_with("fd00:10:")));
    let args = [
        "--from",
        "default-ipv4-ippool",
        "--to",
        "10.0.0.0/16",
        "--from",
        "default-ipv6-ippool",
        "--to",
        "fd00:10:20::/112",
    ];
    migrate_under_traffic(&c, &targets, &hosts, &args, 6);
}

/// Zone a's pool only (kubesim-node-0 is zone a): the Service (whose
/// Deployment spans the zones, so all its pods restart) keeps answering, and
/// long-lived connections to a pod of zone b, which does not move, and to the
/// hostNetwork server never break.
#[test]
fn zone_migration_under_traffic_fails_no_request_and_keeps_other_zones_connections() {
    let (c, targets, mut hosts) = start_with_workload(&["--scenario", "zones", "--dataplane"]);
    let steady = c.dir().join("steady.yaml");
    std::fs::write(
        &steady,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: steady, namespace: traffic}\nspec:\n  nodeName: kubesim-node-1\n  \
         containers:\n  - {name: netexec, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}\n",
    )
    .unwrap();
    c.kubectl_ok(&["apply", "-f", steady.to_str().unwrap()]);
    c.kubectl_ok(&["-n", "traffic", "wait", "pod/steady", "--for=condition=Ready", "--timeout=60s"]);
    let ip = json(&c, &["-n", "traffic", "get", "pod", "steady"])["status"]["podIP"].as_str().unwrap().to_string();
    hosts.push(format!("{ip}:8080"));
    migrate_under_traffic(&c, &targets, &hosts, &["--from", "zone-a", "--to", "10.11.0.0/16", "--canary-per-node"], 6);
    let after = json(&c, &["-n", "traffic", "get", "pod", "steady"]);
    assert_eq!(after["status"]["podIP"].as_str(), Some(ip.as_str()), "the zone b pod was not to move");
}

/// Negative control: deleting all of a Service's pods at once (no PDB, no
/// rollout, a 1 s grace period that cuts their drain short) leaves it without
/// a serving endpoint while the replacements start, and the monitor must see it.
#[test]
fn deleting_a_services_pods_is_seen_as_failed_requests() {
    let (c, targets, _) = start_with_workload(&["--scenario", "seed", "--dataplane"]);
    let target = &targets[0];
    wait_service_answers(&c, target);
    let monitor = TrafficMonitor::start(&c, &[("traffic/echo", target)], &[]);
    std::thread::sleep(Duration::from_secs(1));
    c.kubectl_ok(&["-n", "traffic", "delete", "pods", "-l", "app=echo", "--grace-period=1", "--wait=false"]);
    c.kubectl_ok(&["-n", "traffic", "rollout", "status", "deploy/echo", "--timeout=120s"]);
    std::thread::sleep(Duration::from_secs(2));
    let report = monitor.stop();
    eprintln!("{}", report.summary());
    assert!(report.failed_requests() > 0, "the monitor missed an outage:\n{}", report.summary());
    assert!(report.targets[0].longest_gap_ms >= 500, "{}", report.summary());
}

/// Negative control of the routes: block affinities deleted while pods still
/// use the blocks take the blocks' routes away (as when a pool is deleted too
/// early), and traffic between nodes breaks.
#[test]
fn deleting_block_affinities_under_running_pods_is_seen_as_failures() {
    let (c, targets, _) = start_with_workload(&["--scenario", "seed", "--dataplane"]);
    let target = &targets[0];
    wait_service_answers(&c, target);
    let pod = json(&c, &["-n", "traffic", "get", "pods", "-l", "app=echo"])["items"][0].clone();
    let pod_addr = format!("{}:8080", pod["status"]["podIP"].as_str().unwrap());
    let monitor = TrafficMonitor::start(&c, &[("traffic/echo", target)], &[&pod_addr]);
    std::thread::sleep(Duration::from_secs(1));
    c.kubectl_ok(&["delete", "blockaffinities.crd.projectcalico.org", "--all"]);
    std::thread::sleep(Duration::from_secs(3));
    let report = monitor.stop();
    eprintln!("{}", report.summary());
    assert!(report.failed_requests() > 0, "the monitor missed unrouted blocks:\n{}", report.summary());
    // The failures name the endpoints of that moment: every pod still ready,
    // so the routes, not the endpoints, failed these requests.
    let ready = |e: &String| e.split(' ').nth(1).is_some_and(|c| c.split(',').any(|x| x == "ready"));
    assert!(
        report.failures.iter().all(|f| f.endpoints.iter().filter(|e| ready(e)).count() == 3),
        "a failure without the Service's 3 ready endpoints beside it:\n{}",
        report.summary()
    );
    assert_eq!(report.broken_connections(), 2, "the two other nodes lose the pod:\n{}", report.summary());
    assert!(node_routes(&c, 0, "-4").is_empty(), "routes left: {:?}", node_routes(&c, 0, "-4"));
}

/// Output of a command run inside node `node`'s namespace.
fn in_node(c: &TestCluster, node: usize, cmd: &[&str]) -> String {
    let ns = format!("{}node{node}", prefix_of(c.dir()));
    let out = Command::new("ip").args(["netns", "exec", &ns]).args(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each node's projectcalico.org/IPv4VXLANTunnelAddr ("" when none), by node index.
fn vxlan_tunnels(c: &TestCluster) -> Vec<String> {
    (0..3)
        .map(|i| {
            let n = json(c, &["get", "node", &format!("kubesim-node-{i}")]);
            n["metadata"]["annotations"]["projectcalico.org/IPv4VXLANTunnelAddr"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

/// Whether node 0's namespace is programmed as Felix does it for `tunnels`:
/// vxlan.calico holds node 0's tunnel address as /32, there is a permanent
/// neighbour and an FDB entry for each other node's VTEP, and every block
/// route inside `pool` goes via another node's tunnel address on vxlan.calico.
/// Returns what is missing, or None.
fn vxlan_programmed(c: &TestCluster, tunnels: &[String], pool: &str) -> Option<String> {
    if tunnels.iter().any(|t| !common::in_cidr(t, pool)) {
        return Some(format!("tunnel addresses not all in {pool}: {tunnels:?}"));
    }
    let addr = in_node(c, 0, &["ip", "-4", "-o", "addr", "show", "dev", "vxlan.calico"]);
    if !addr.contains(&format!("inet {}/32 ", tunnels[0])) || addr.lines().count() != 1 {
        return Some(format!("vxlan.calico addresses: {addr}"));
    }
    let neigh = in_node(c, 0, &["ip", "neigh", "show", "dev", "vxlan.calico", "nud", "permanent"]);
    let fdb = in_node(c, 0, &["bridge", "fdb", "show", "dev", "vxlan.calico"]);
    for (i, t) in tunnels.iter().enumerate().skip(1) {
        if !neigh.lines().any(|l| l.starts_with(&format!("{t} lladdr "))) {
            return Some(format!("no neighbour entry for {t}: {neigh}"));
        }
        if !fdb.lines().any(|l| l.contains(&format!("dst 198.18.0.{} ", i + 1)) && l.contains("permanent")) {
            return Some(format!("no FDB entry for node {i}: {fdb}"));
        }
    }
    if neigh.lines().count() != 2 || fdb.lines().count() != 2 {
        return Some(format!("stale entries:\n{neigh}\n{fdb}"));
    }
    let routes = node_routes(c, 0, "-4");
    let blocks: Vec<&String> =
        routes.iter().filter(|r| common::in_cidr(r.split(['/', ' ']).next().unwrap(), pool)).collect();
    let mut vias = std::collections::BTreeSet::new();
    for r in &blocks {
        let via = r.split_whitespace().nth(2).unwrap_or_default();
        if !r.contains(" dev vxlan.calico ") || !r.contains("onlink") || !tunnels[1..].iter().any(|t| t == via) {
            return Some(format!("not via a tunnel address on vxlan.calico: {r}"));
        }
        vias.insert(via.to_string());
    }
    if vias.len() != 2 {
        return Some(format!("block routes of both other nodes expected: {routes:?}"));
    }
    None
}

/// VXLAN pools are routed through real VXLAN devices as Felix programs them,
/// and they follow the tunnel addresses when the migration moves them to the
/// new pool, without a failed request or a broken connection.
#[test]
fn vxlan_pool_routes_through_vxlan_devices_and_migrates_under_traffic() {
    let (c, targets, hosts) = start_with_workload(&["--scenario", "seed", "--dataplane", "--encap", "vxlan"]);
    let mut tunnels = vxlan_tunnels(&c);
    c.wait_until("vxlan.calico programmed on node 0", Duration::from_secs(30), || {
        tunnels = vxlan_tunnels(&c);
        vxlan_programmed(&c, &tunnels, "192.168.0.0/16").is_none()
    });
    let link = in_node(&c, 0, &["ip", "-d", "link", "show", "vxlan.calico"]);
    for want in ["vxlan id 4096 ", "local 198.18.0.1 ", "dstport 4789 ", "nolearning", "mtu 1450 "] {
        assert!(link.contains(want), "{want:?} not in {link}");
    }
    eprintln!("before: tunnels {tunnels:?}; node 0 routes {:?}", node_routes(&c, 0, "-4"));
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    migrate_under_traffic(&c, &targets, &hosts, &["--from", OLD, "--to", "10.0.0.0/16"], 6);
    let mut after = vec![];
    let mut why = None;
    c.wait_until("routes via the new tunnel addresses", Duration::from_secs(30), || {
        after = vxlan_tunnels(&c);
        why = vxlan_programmed(&c, &after, "10.0.0.0/16");
        why.is_none()
    });
    assert!(after.iter().all(|t| !tunnels.contains(t)), "tunnel addresses did not move: {tunnels:?} -> {after:?}");
    let routes = node_routes(&c, 0, "-4");
    assert!(!routes.iter().any(|r| r.starts_with("192.168.")), "old block routes left: {routes:?}");
    eprintln!("after: tunnels {after:?}; node 0 routes {routes:?}");
}

/// Negative control of the encapsulation: with the FDB entries of one node's
/// vxlan.calico deleted, that node cannot send to the other VTEPs, so the
/// answers of a pod behind it to the other nodes are lost (traffic between
/// nodes really goes through the VXLAN devices, not the underlay routes).
#[test]
fn deleting_a_nodes_vxlan_fdb_entries_is_seen_as_failures() {
    let (c, targets, _) = start_with_workload(&["--scenario", "seed", "--dataplane", "--encap", "vxlan"]);
    c.wait_until("vxlan.calico programmed on node 0", Duration::from_secs(30), || {
        vxlan_programmed(&c, &vxlan_tunnels(&c), "192.168.0.0/16").is_none()
    });
    let target = &targets[0];
    wait_service_answers(&c, target);
    let pods = json(&c, &["-n", "traffic", "get", "pods", "-l", "app=echo"]);
    let pod = pods["items"].as_array().unwrap().iter().find(|p| p["spec"]["nodeName"] != "kubesim-node-0").unwrap();
    let node: usize = pod["spec"]["nodeName"].as_str().unwrap().trim_start_matches("kubesim-node-").parse().unwrap();
    let pod_addr = format!("{}:8080", pod["status"]["podIP"].as_str().unwrap());
    let monitor = TrafficMonitor::start(&c, &[("traffic/echo", target)], &[&pod_addr]);
    std::thread::sleep(Duration::from_secs(1));
    let fdb = in_node(&c, node, &["bridge", "fdb", "show", "dev", "vxlan.calico"]);
    for l in fdb.lines() {
        let mac = l.split_whitespace().next().unwrap();
        in_node(&c, node, &["bridge", "fdb", "del", mac, "dev", "vxlan.calico", "self"]);
    }
    std::thread::sleep(Duration::from_secs(3));
    let report = monitor.stop();
    eprintln!("FDB of node {node} deleted ({} entries):\n{}", fdb.lines().count(), report.summary());
    assert_eq!(fdb.lines().count(), 2, "{fdb}");
    assert!(report.failed_requests() > 0, "the monitor missed the lost FDB:\n{}", report.summary());
    assert_eq!(report.broken_connections(), 2, "the two other nodes lose the pod:\n{}", report.summary());
    let intact = report.long_lived.iter().find(|l| !l.broken).unwrap();
    assert_eq!(intact.from, format!("kubesim-node-{node}"), "only the pod's own node still reaches it");
}

fn dataplane_namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn prefix_of(dir: &std::path::Path) -> String {
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("dataplane.json")).unwrap()).unwrap();
    info["prefix"].as_str().unwrap().to_string()
}

fn spawn_kubesim(dir: &std::path::Path) -> std::process::Child {
    let log = std::fs::File::create(dir.join("kubesim.log")).unwrap();
    Command::new(kubesim_bin("kubesim"))
        .args(["--scenario", "small", "--nodes", "2", "--dataplane", "--exit-with-parent", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn wait_file(dir: &std::path::Path, name: &str) {
    let start = Instant::now();
    while !dir.join(name).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no {name}: {}",
            std::fs::read_to_string(dir.join("kubesim.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every namespace goes on a clean stop; after a SIGKILL, the next start and
/// `kubesim sweep` (what scripts/cluster-down.sh runs) remove the leftovers.
#[test]
fn no_namespace_is_left_behind() {
    let dir = tempfile::Builder::new().prefix("kubesim-dp-").tempdir().unwrap();
    let host_before = host_network();
    // Clean stop.
    let mut child = spawn_kubesim(dir.path());
    wait_file(dir.path(), "ready");
    let prefix = prefix_of(dir.path());
    let running = dataplane_namespaces(&prefix);
    assert!(running.len() >= 4, "underlay, 2 nodes and pods expected: {running:?}");
    // The machine's own namespace is untouched while the cluster runs: no
    // link, address, route (pod, node or Service range) or nft rule of ours.
    assert_eq!(host_network(), host_before, "kubesim changed the host's own network namespace");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    assert_eq!(dataplane_namespaces(&prefix), Vec::<String>::new(), "left behind after SIGTERM");

    // SIGKILL: the namespaces stay; the next start sweeps them.
    let _ = std::fs::remove_file(dir.path().join("ready"));
    let mut child = spawn_kubesim(dir.path());
    wait_file(dir.path(), "ready");
    let before_kill = dataplane_namespaces(&prefix);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = dataplane_namespaces(&prefix);
    assert!(!left.is_empty(), "a SIGKILL cannot clean up; expected leftovers");
    let _ = std::fs::remove_file(dir.path().join("ready"));
    let mut child = spawn_kubesim(dir.path());
    wait_file(dir.path(), "ready");
    let now = dataplane_namespaces(&prefix);
    let stale: Vec<_> = before_kill.iter().filter(|n| n.contains("pod-") && now.contains(n)).collect();
    assert!(stale.is_empty(), "pod namespaces of the killed run survived the next start: {stale:?}");
    child.kill().unwrap();
    child.wait().unwrap();

    // ... and `kubesim sweep` (scripts/cluster-down.sh) removes them.
    assert!(!dataplane_namespaces(&prefix).is_empty());
    let st = Command::new(kubesim_bin("kubesim")).args(["sweep", "--dir"]).arg(dir.path()).status().unwrap();
    assert!(st.success());
    assert_eq!(dataplane_namespaces(&prefix), Vec::<String>::new(), "left behind after sweep");
    assert_eq!(host_network(), host_before, "the host's own network namespace is not as it was");
}

/// The host network namespace as text: the nft ruleset, its links, its
/// addresses and every routing table of both families. Counters and timers
/// (rule counters, address lifetimes, route expiry) are left out, so only a
/// change of configuration shows.
fn host_network() -> Vec<String> {
    let mut lines = Vec::new();
    for (cmd, args) in [
        ("nft", &["list", "ruleset"][..]),
        ("ip", &["-o", "link", "show"]),
        ("ip", &["-o", "addr", "show"]),
        ("ip", &["route", "show", "table", "all"]),
        ("ip", &["-6", "route", "show", "table", "all"]),
    ] {
        let out = Command::new(cmd).args(args).output().expect(cmd);
        assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = Vec::new();
            let mut it = l.split_whitespace();
            while let Some(w) = it.next() {
                match w {
                    // Timers, counters and link flags change on their own.
                    "expires" | "valid_lft" | "preferred_lft" | "packets" | "bytes" => {
                        it.next();
                    }
                    w if w.starts_with('<') => {}
                    w => words.push(w),
                }
            }
            lines.push(format!("{cmd} {}: {}", args.join(" "), words.join(" ")));
        }
    }
    lines
}
