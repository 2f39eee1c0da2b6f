//! Reliability suite, part 1: a table of bad inputs against ONE
//! seed cluster. Every row must exit 2 with a clear `error:` on stderr that
//! names the problem, and the whole table must write nothing: the shared
//! fingerprint (every kind, with UIDs, resourceVersions and deletions; see
//! tests/common/fingerprint.rs) is the same before and after.
//! Run: `cargo test --test bad_inputs`.

mod common;

use common::TestCluster;

const OLD: &str = "default-ipv4-ippool";

/// The kubeconfig text with its `users:` section replaced.
fn with_user(kubeconfig: &str, user_yaml: &str) -> String {
    let head = kubeconfig.split("\nusers:").next().unwrap();
    format!("{head}\nusers:\n- name: kubesim-admin\n  user:\n{user_yaml}")
}

struct Row {
    what: &'static str,
    args: Vec<String>,
    /// A word or phrase the error must contain.
    expect: &'static str,
    /// The plan preview (context line, warnings) may precede the error.
    after_plan: bool,
}

#[test]
fn bad_inputs_exit_2_with_a_clear_error_and_write_nothing() {
    let c = TestCluster::seed();
    let dir = c.dir().to_path_buf();
    // Set-up (before the snapshot): unpin `legacy`, so that the namespace
    // blocker does not hide the reasons we test, and add a disabled spare
    // pool to overlap with.
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    let spare = dir.join("spare.yaml");
    std::fs::write(&spare, "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: spare\nspec:\n  cidr: 10.1.0.0/16\n  blockSize: 26\n  disabled: true\n  nodeSelector: all()\n").unwrap();
    c.kubectl_ok(&["apply", "-f", spare.to_str().unwrap()]);

    // Broken kubeconfigs.
    let kc = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let p = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let malformed = p("kc-malformed", "apiVersion: v1\nclusters: [\n  - this is: not: yaml\n");
    let missing = dir.join("kc-does-not-exist").to_str().unwrap().to_string();
    let server_line = kc.lines().find(|l| l.trim_start().starts_with("server:")).unwrap();
    let unreachable = p("kc-unreachable", &kc.replace(server_line, "    server: https://127.0.0.1:1"));
    let bogus_token = p("kc-bogus-token", &with_user(&kc, "    token: expired-or-made-up-token\n"));
    let no_creds = p("kc-anonymous", &with_user(&kc, "    {}\n").replace("  user:\n    {}", "  user: {}"));

    // A /24 around a node's InternalIP: kubesim gives nodes loopback
    // addresses, or 198.18.0.0/15 ones with its dataplane on.
    let node_ip = c.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let node_ip: std::net::Ipv4Addr =
        node_ip.split_whitespace().find_map(|a| a.parse().ok()).expect("a node with an IPv4 InternalIP");
    let node_net = ipnet::Ipv4Net::new(node_ip, 24).unwrap().trunc().to_string();

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // `migrate --from OLD --force` plus the row's arguments; no --yes, so a
    // row that got past every check would still stop at the confirmation.
    let m = |extra: &[&str]| {
        let mut a = s(&["migrate", "--from", OLD, "--force"]);
        a.extend(s(extra));
        a
    };
    let row = |what, args, expect| Row { what, args, expect, after_plan: false };
    let late = |what, args, expect| Row { what, args, expect, after_plan: true };
    let rows: Vec<Row> = vec![
        // CIDRs
        row("host bits set", m(&["--to", "10.0.0.1/16"]), "the canonical form is 10.0.0.0/16"),
        row("garbage CIDR", m(&["--to", "banana"]), "is not a CIDR"),
        row("prefix /33", m(&["--to", "10.0.0.0/33"]), "is not a CIDR"),
        row("address without prefix", m(&["--to", "10.0.0.0"]), "is not a CIDR"),
        row("empty --to", m(&["--to", ""]), "is not a CIDR"),
        row("non-canonical IPv6", m(&["--to", "fd00:0:0::/64"]), "use fd00::/64"),
        row("wrong family", m(&["--to", "fd00::/64"]), "stays within one IP family"),
        row("link-local / everything", m(&["--to", "0.0.0.0/0"]), "link-local"),
        // block sizes
        row("block size below range", m(&["--to", "10.0.0.0/16", "--block-size", "19"]), "out of range"),
        row("block size above range", m(&["--to", "10.0.0.0/16", "--block-size", "33"]), "out of range"),
        row("block size not a u8", m(&["--to", "10.0.0.0/16", "--block-size", "300"]), "--block-size"),
        row("block bigger than the CIDR", m(&["--to", "10.0.0.0/24", "--block-size", "20"]), "smaller than one block"),
        row("CIDR smaller than a block", m(&["--to", "10.0.0.0/30"]), "smaller than one block"),
        // pools
        row(
            "unknown --from",
            s(&["migrate", "--from", "no-such-pool", "--to", "10.0.0.0/16"]),
            "\"no-such-pool\" not found",
        ),
        row("unknown --to-pool", m(&["--to-pool", "no-such-pool"]), "no such IPPool"),
        row("--to-pool is the source", m(&["--to-pool", OLD]), "is the pool being migrated from"),
        row("--to is the source CIDR", m(&["--to", "192.168.0.0/16", "--allow-outside-cluster-cidr"]), "itself"),
        row("--to-pool disabled", m(&["--to-pool", "spare"]), "spare"),
        row("--name is the source's name", m(&["--to", "10.0.0.0/16", "--name", OLD]), "the old pool's name"),
        row(
            "--name taken by another CIDR",
            m(&["--to", "10.0.0.0/16", "--name", "spare"]),
            "already exists with CIDR 10.1.0.0/16",
        ),
        row("--name not an object name", m(&["--to", "10.0.0.0/16", "--name", "Bad_Name"]), "not a valid object name"),
        row("overlap with a disabled pool", m(&["--to", "10.1.0.0/20"]), "overlaps IPPool spare (10.1.0.0/16)"),
        row(
            "overlap with the source pool",
            m(&["--to", "192.0.0.0/8", "--allow-outside-cluster-cidr"]),
            "overlaps IPPool default-ipv4-ippool",
        ),
        row("Service CIDR overlap", m(&["--to", "10.96.0.0/16"]), "overlaps the Service CIDR 10.96.0.0/12"),
        row("node IP overlap", m(&["--to", &node_net, "--allow-outside-cluster-cidr"]), "contains node addresses"),
        row("outside the cluster CIDR", m(&["--to", "172.20.0.0/16"]), "outside the cluster pod CIDR"),
        row("capacity too small", m(&["--to", "10.2.0.0/25"]), "holds 128 addresses"),
        row(
            "IPIP and VXLAN both on",
            m(&["--to", "10.0.0.0/16", "--ipip-mode", "Always", "--vxlan-mode", "Always"]),
            "cannot both be enabled",
        ),
        row(
            "bad node selector",
            m(&["--to", "10.0.0.0/16", "--node-selector", "has(("]),
            "not a valid Calico selector",
        ),
        // flags
        row("--to with --to-pool", m(&["--to", "10.0.0.0/16", "--to-pool", "spare"]), "cannot be used with"),
        row(
            "--rollback with --to, nothing to roll back",
            m(&["--rollback", "--to", "10.0.0.0/16"]),
            "no unfinished migration",
        ),
        row("-o xml", m(&["--to", "10.0.0.0/16", "-o", "xml"]), "invalid value 'xml'"),
        row("--timeout garbage", m(&["--to", "10.0.0.0/16", "--timeout", "banana"]), "not a duration"),
        row("--request-timeout garbage", m(&["--to", "10.0.0.0/16", "--request-timeout", "soon"]), "not a duration"),
        row("--strategy unknown", m(&["--to", "10.0.0.0/16", "--strategy", "yolo"]), "invalid value 'yolo'"),
        row(
            "--ipip-mode unknown",
            m(&["--to", "10.0.0.0/16", "--ipip-mode", "sometimes"]),
            "expected Never, Always or CrossSubnet",
        ),
        row("--max-parallel 0", m(&["--to", "10.0.0.0/16", "--max-parallel", "0"]), "--max-parallel"),
        row("--nat-outgoing maybe", m(&["--to", "10.0.0.0/16", "--nat-outgoing", "maybe"]), "--nat-outgoing"),
        row("no --from", s(&["migrate", "--to", "10.0.0.0/16"]), "--from"),
        row("neither --to nor --to-pool", s(&["migrate", "--from", OLD]), "--to"),
        row("bad label selector", m(&["--to", "10.0.0.0/16", "-l", "app in (("]), "unable to parse requirement"),
        row("status -o xml", s(&["status", "-o", "xml"]), "invalid value 'xml'"),
        // connection and credentials
        row("malformed kubeconfig", m(&["--to", "10.0.0.0/16", "--kubeconfig", &malformed]), "kubeconfig"),
        row("missing kubeconfig", m(&["--to", "10.0.0.0/16", "--kubeconfig", &missing]), "kubeconfig"),
        row("unknown context", m(&["--to", "10.0.0.0/16", "--context", "nope"]), "context \"nope\" not found"),
        row("unknown user", m(&["--to", "10.0.0.0/16", "--user", "nope"]), "user \"nope\" not found"),
        row("unknown cluster", m(&["--to", "10.0.0.0/16", "--cluster", "nope"]), "cluster \"nope\" not found"),
        row(
            "unreachable server",
            m(&["--to", "10.0.0.0/16", "--kubeconfig", &unreachable]),
            "cannot reach the Kubernetes API server",
        ),
        row("invalid token (401)", m(&["--to", "10.0.0.0/16", "--kubeconfig", &bogus_token]), "401 Unauthorized"),
        row("anonymous (no credentials)", m(&["--to", "10.0.0.0/16", "--kubeconfig", &no_creds]), "forbidden"),
        row(
            "no permissions (--as)",
            m(&["--to", "10.0.0.0/16", "--as", "system:serviceaccount:default:nobody"]),
            "forbidden",
        ),
        row(
            "verify, no permissions (--as)",
            s(&["verify", "--as", "system:serviceaccount:default:nobody"]),
            "forbidden",
        ),
        row("status, unreachable server", s(&["status", "--kubeconfig", &unreachable]), "cannot reach"),
        // valid, but no terminal and no --yes
        late("no --yes without a terminal", m(&["--to", "10.0.0.0/16"]), "--yes"),
    ];

    let before = c.fingerprint();
    let (mut tried, mut exit2) = (0, 0);
    let mut failures = Vec::new();
    for r in &rows {
        tried += 1;
        let out = c.ippool(&r.args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code();
        if code == Some(2) {
            exit2 += 1;
        }
        let first = err.lines().next().unwrap_or("");
        let error_at = err.find("error:");
        let clear =
            if r.after_plan { err.lines().any(|l| l.starts_with("error:")) } else { first.starts_with("error:") };
        let named = error_at.is_some_and(|i| err[i..].contains(r.expect));
        // A panic, or kube's Debug dump of a Status, is not a clear error.
        let panicked = err.contains("panicked at") || err.contains("Status {");
        eprintln!(
            "[{}] {:<45} exit {:?}  {}",
            if code == Some(2) && clear && named && !panicked { "ok" } else { "FAIL" },
            r.what,
            code,
            first
        );
        if code != Some(2) || !clear || !named || panicked {
            failures.push(format!(
                "{} ({:?}): exit {code:?}, expected {:?} in an `error:`:\n{err}",
                r.what, r.args, r.expect
            ));
        }
    }
    let changed = before.diff(&c.fingerprint());
    println!("bad inputs tried: {tried}, exit 2: {exit2}, objects changed: {}", changed.len());
    println!("RELIABILITY bad_inputs={tried} bad_inputs_exit2={exit2} bad_inputs_objects_changed={}", changed.len());
    // Every row of the table ran and exited 2 (the table's size is not a claim).
    assert_eq!((tried, exit2), (rows.len(), rows.len()), "{}", failures.join("\n---\n"));
    assert!(failures.is_empty(), "{} of {tried} rows failed:\n{}", failures.len(), failures.join("\n---\n"));
    assert!(changed.is_empty(), "bad inputs wrote to the cluster: {changed:#?}");
    fingerprint_sees_every_kind_and_deletions(&c);
}

/// Negative control for the shared fingerprint: it covers pods, PDBs,
/// pools and IPAM objects, and it sees a change, a creation and a deletion
/// (a lease of ours taken over and dropped, the case a compare of new rows
/// alone misses).
fn fingerprint_sees_every_kind_and_deletions(c: &TestCluster) {
    let fp = c.fingerprint();
    for kind in [
        "v1 Pod",
        "policy/v1 PodDisruptionBudget",
        "apps/v1 Deployment",
        "crd.projectcalico.org/v1 IPPool",
        "crd.projectcalico.org/v1 IPAMBlock",
        "crd.projectcalico.org/v1 BlockAffinity",
        "crd.projectcalico.org/v1 IPAMHandle",
        "v1 Namespace",
        "v1 Node",
    ] {
        assert!(fp.has_kind(kind), "the fingerprint has no {kind}");
    }
    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kubectl-ippool\n  namespace: kube-system\nspec:\n  holderIdentity: someone-else\n";
    let path = c.dir().join("lease.yaml");
    std::fs::write(&path, lease).unwrap();
    c.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    let held = c.fingerprint();
    let created = fp.diff(&held);
    assert!(
        created.iter().any(|d| d.starts_with("+ coordination.k8s.io/v1 Lease kube-system/kubectl-ippool")),
        "{created:?}"
    );
    c.kubectl_ok(&["annotate", "namespace", "default", "example.com/touched=1"]);
    c.kubectl_ok(&["delete", "lease", "-n", "kube-system", "kubectl-ippool"]);
    let diff = held.diff(&c.fingerprint());
    assert!(
        diff.iter().any(|d| d.starts_with("- coordination.k8s.io/v1 Lease kube-system/kubectl-ippool")),
        "{diff:?}"
    );
    assert!(diff.iter().any(|d| d.starts_with("~ v1 Namespace /default")), "{diff:?}");

    // "Gone" checks (TestCluster::not_found, behind every lease-released,
    // pool-deleted and record-absent assertion) accept only a NotFound
    // answer: the lease just deleted is NotFound, and a read the API server
    // refuses (Forbidden) must fail the check rather than pass as "gone".
    assert!(c.not_found(&["lease", "-n", "kube-system", "kubectl-ippool"]));
    assert!(!c.not_found(&["namespace", "default"]));
    let forbidden = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.not_found(&["lease", "-n", "kube-system", "kubectl-ippool", "--as", "system:serviceaccount:default:nobody"])
    }));
    assert!(forbidden.is_err(), "a Forbidden read was taken for NotFound");
}
