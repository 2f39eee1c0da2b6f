//! Safety holes: a rollback undoes only what the migration changed, and a
//! drain leaves a node an administrator cordoned cordoned. One seed cluster
//! for both, in order.

mod common;

use common::TestCluster;
use serde_json::Value;

const OLD: &str = "default-ipv4-ippool";
const IPPOOLS: &str = "ippools.crd.projectcalico.org";

fn json(c: &TestCluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&a)).unwrap()
}

fn disabled(c: &TestCluster, pool: &str) -> bool {
    json(c, &["get", IPPOOLS, pool])["spec"]["disabled"] == Value::Bool(true)
}

fn run(c: &TestCluster, args: &[&str]) -> String {
    let out = c.ippool(args).output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubectl ippool {args:?}:\n{so}\n{se}\n{}", c.log_tail());
    format!("{so}{se}")
}

#[test]
fn rollback_and_drain_leave_alone_what_the_migration_did_not_change() {
    let c = TestCluster::seed();
    c.kubectl_ok(&["annotate", "namespace", "legacy", "cni.projectcalico.org/ipv4pools-"]);
    // A pool that serves pods before any migration, created by Calico's own client.
    let spare = c.dir().join("spare.yaml");
    std::fs::write(
        &spare,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: spare\nspec:\n  cidr: 10.1.0.0/16\n  blockSize: 26\n  ipipMode: Always\n  natOutgoing: true\n  nodeSelector: all()\n",
    )
    .unwrap();
    let out = c.calicoctl(&["create", "-f", spare.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // 1. A filtered run into the existing pool, then a rollback: the old pool
    // comes back, and the pool that existed before stays enabled.
    let text = run(&c, &["migrate", "--from", OLD, "--to-pool", "spare", "-n", "shop", "-l", "app=web", "--yes"]);
    assert!(text.contains("kept (disabled)"), "{text}");
    assert!(disabled(&c, OLD));
    let text = run(&c, &["migrate", "--from", OLD, "--rollback", "--yes"]);
    assert!(text.contains("IPPool spare left as it was"), "{text}");
    assert!(!disabled(&c, OLD), "the old pool is enabled again");
    assert!(!disabled(&c, "spare"), "a rollback must not disable a pool the migration did not create");

    // 2. An administrator cordoned a node; a drain migration cordons and
    // uncordons the others, and leaves that one cordoned.
    c.kubectl_ok(&["cordon", "kubesim-node-1"]);
    let text = run(
        &c,
        &["migrate", "--from", OLD, "--to-pool", "spare", "--strategy", "drain", "--force", "--jobs", "evict", "--yes"],
    );
    assert!(text.contains("node/kubesim-node-1 was already cordoned; it stays so"), "{text}");
    for node in ["kubesim-node-0", "kubesim-node-1", "kubesim-node-2"] {
        let n = json(&c, &["get", "node", node]);
        let cordoned = n["spec"]["unschedulable"] == Value::Bool(true);
        assert_eq!(cordoned, node == "kubesim-node-1", "{node}: {}", n["spec"]);
        assert!(n["metadata"]["annotations"]["ippool.kubectl.io/cordoned"].is_null(), "{node} keeps no mark of ours");
    }
    let out = c.ippool(&["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    c.assert_ipam_clean();

    // 3. Someone deletes the old pool in the middle of a migration: a re-run
    // must not close the record while pods still hold its addresses.
    let third = c.dir().join("third.yaml");
    std::fs::write(
        &third,
        std::fs::read_to_string(&spare).unwrap().replace("spare", "third").replace("10.1.", "10.2."),
    )
    .unwrap();
    let out = c.calicoctl(&["create", "-f", third.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let filtered = ["migrate", "--from", "spare", "--to-pool", "third", "-n", "shop", "-l", "app=web", "--yes"];
    run(&c, &filtered);
    let out = c.calicoctl(&["delete", "ippool", "spare"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.ippool(&filtered).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("IPPool spare is gone, but") && err.contains("still hold addresses of 10.1.0.0/16"), "{err}");
    let record = c.kubectl_ok(&[
        "get",
        "configmap",
        "-n",
        "kube-system",
        "kubectl-ippool-migration",
        "-o",
        "jsonpath={.data.state\\.json}",
    ]);
    assert!(!record.contains("\"phase\": \"Done\""), "the record was closed: {record}");
}
