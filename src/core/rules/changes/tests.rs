use super::*;
use crate::core::model::{Owner, OwnerKind, PodInfo, PoolPins};

fn n(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn obj(class: RuleClass, kind: &str, name: &str, body: Value) -> RuleObject {
    RuleObject {
        class,
        target: ObjectRef {
            api_version: "v1".into(),
            kind: kind.into(),
            plural: "x".into(),
            namespace: None,
            name: name.into(),
        },
        body,
    }
}

/// The seed cluster's rules: four that name 192.168.0.0/16, a reservation
/// in each pool, and a bystander.
fn world() -> Vec<RuleObject> {
    vec![
        obj(
            RuleClass::KubernetesPolicy,
            "NetworkPolicy",
            "np",
            json!({"spec": {
                "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["192.168.0.0/16"]}}]}]}}),
        ),
        obj(
            RuleClass::CalicoPolicy,
            "GlobalNetworkPolicy",
            "gnp",
            json!({"spec": {"ingress": [{"action": "Allow", "source": {"nets": ["192.168.0.0/16"]}}]}}),
        ),
        obj(
            RuleClass::NetworkSet,
            "GlobalNetworkSet",
            "gns",
            json!({"spec": {"nets": ["192.168.0.0/16", "1.2.3.4/32"]}}),
        ),
        obj(
            RuleClass::IpMasqAgent,
            "ConfigMap",
            "ip-masq-agent",
            json!({"data": {"config": "nonMasqueradeCIDRs:\n  - 192.168.0.0/16\nmasqLinkLocal: false\n"}}),
        ),
        obj(
            RuleClass::IpReservation,
            "IPReservation",
            "res",
            json!({"spec": {"reservedCIDRs": ["192.168.7.0/24", "10.0.5.0/28"]}}),
        ),
        obj(
            RuleClass::NetworkSet,
            "GlobalNetworkSet",
            "bystander",
            json!({"spec": {"nets": ["172.16.0.0/12", "0.0.0.0/0"]}}),
        ),
    ]
}

/// A small RFC 6902 applier for the operations we send.
fn apply(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let (parent, last) = path.rsplit_once('/').unwrap();
        match op["op"].as_str().unwrap() {
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test of {path} failed"));
                }
            }
            "add" => {
                let list = doc.pointer_mut(parent).and_then(Value::as_array_mut).ok_or("no list")?;
                assert_eq!(last, "-");
                list.push(op["value"].clone());
            }
            "replace" => *doc.pointer_mut(path).ok_or("no value")? = op["value"].clone(),
            "remove" => {
                let list = doc.pointer_mut(parent).and_then(Value::as_array_mut).ok_or("no list")?;
                list.remove(last.parse::<usize>().unwrap());
            }
            o => panic!("unexpected op {o}"),
        }
    }
    Ok(())
}

#[test]
fn every_hit_is_listed_with_its_field_path() {
    let (old, new) = (n("192.168.0.0/16"), n("10.0.0.0/16"));
    let h: Vec<String> = hits(&world(), &old, &[new], Some(&new))
        .iter()
        .map(|h| format!("{} {} {}", h.object, h.field, h.cidr))
        .collect();
    assert_eq!(
        h,
        vec![
            "NetworkPolicy np spec.ingress[0].from[0].ipBlock.cidr 192.168.0.0/16",
            "NetworkPolicy np spec.ingress[0].from[0].ipBlock.except[0] 192.168.1.0/24",
            "NetworkPolicy np spec.egress[0].to[0].ipBlock.except[0] 192.168.0.0/16",
            "GlobalNetworkPolicy gnp spec.ingress[0].source.nets[0] 192.168.0.0/16",
            "GlobalNetworkSet gns spec.nets[0] 192.168.0.0/16",
            "ConfigMap ip-masq-agent data.config nonMasqueradeCIDRs[0] 192.168.0.0/16",
            "IPReservation res spec.reservedCIDRs[0] 192.168.7.0/24",
            "IPReservation res spec.reservedCIDRs[1] 10.0.5.0/28",
        ]
    );
    let all = hits(&world(), &old, &[new], Some(&new));
    assert!(all[7].action.contains("reserves 16 address(es)"), "{}", all[7].action);
    assert!(all[1].action.contains("no change needed"), "{}", all[1].action);
}

#[test]
fn update_adds_the_new_cidr_to_the_first_four_and_rollback_removes_exactly_that() {
    let (old, new) = (n("192.168.0.0/16"), n("10.0.0.0/16"));
    let mut objects = world();
    let original = objects.clone();
    let ps = patches(&objects, &old, &new);
    let names: Vec<&str> = ps.iter().map(|p| p.target.name.as_str()).collect();
    assert_eq!(names, vec!["np", "gnp", "gns", "ip-masq-agent"]);
    let np = &ps[0];
    assert_eq!(np.changes.len(), 2, "a peer for the ingress block, an except for 0.0.0.0/0");
    assert_eq!(np.json_patch[0]["op"], "test");
    assert_eq!(np.json_patch[1]["op"], "test");
    assert_eq!(
        np.json_patch[2],
        json!({"op": "add", "path": "/spec/ingress/0/from/-", "value": {"ipBlock": {"cidr": "10.0.0.0/16"}}})
    );
    assert_eq!(
        np.json_patch[3],
        json!({"op": "add", "path": "/spec/egress/0/to/0/ipBlock/except/-", "value": "10.0.0.0/16"})
    );
    for p in &ps {
        let o = objects.iter_mut().find(|o| o.target == p.target).unwrap();
        apply(&mut o.body, &p.json_patch).unwrap();
    }
    assert_eq!(objects[1].body["spec"]["ingress"][0]["source"]["nets"], json!(["192.168.0.0/16", "10.0.0.0/16"]));
    assert_eq!(
        objects[3].body["data"]["config"],
        "nonMasqueradeCIDRs:\n  - 192.168.0.0/16\n  - 10.0.0.0/16\nmasqLinkLocal: false\n"
    );
    assert_eq!(objects[4..], original[4..], "the reservation and the bystander are untouched");
    assert!(patches(&objects, &old, &new).is_empty(), "a second run adds nothing");
    // With the new CIDR beside the old one, the old one still names the retired range...
    let left = hits(&objects, &old, &[new], None);
    assert_eq!(left.len(), 7, "{left:#?}");
    // ...but nothing is left to update: only the reservation (it is never updated).
    let todo: Vec<String> = uncovered_hits(&objects, &old, &[new]).iter().map(|h| h.object.clone()).collect();
    assert_eq!(todo, vec!["IPReservation res"]);
    assert_eq!(uncovered_hits(&original, &old, &[new]).len(), 6, "before: all but the unreachable except");

    // A user adds their own entry meanwhile; the rollback leaves it.
    objects[2].body["spec"]["nets"].as_array_mut().unwrap().push(json!("10.9.0.0/16"));
    for c in ps.iter().flat_map(|p| &p.changes).rev() {
        let o = objects.iter_mut().find(|o| o.target == c.target).unwrap();
        let ops = removal_ops(&o.body, c).unwrap();
        apply(&mut o.body, &ops).unwrap();
    }
    let mut expected = original.clone();
    expected[2].body["spec"]["nets"].as_array_mut().unwrap().push(json!("10.9.0.0/16"));
    assert_eq!(objects, expected);
    let again = removal_ops(&objects[1].body, &ps[1].changes[0]).unwrap_err();
    assert!(again.contains("removed already"), "{again}");
}

#[test]
fn a_concurrent_edit_fails_the_test_operation() {
    let (old, new) = (n("192.168.0.0/16"), n("10.0.0.0/16"));
    let mut objects = world();
    let ps = patches(&objects, &old, &new);
    objects[2].body["spec"]["nets"] = json!(["192.168.0.0/16", "8.8.8.8/32"]);
    let before = objects[2].body.clone();
    let mut doc = objects[2].body.clone();
    assert!(apply(&mut doc, &ps[2].json_patch).is_err());
    assert_eq!(before, objects[2].body);
}

#[test]
fn lists_already_covering_the_new_pool_and_wide_cidrs_need_nothing() {
    let (old, new) = (n("192.168.0.0/16"), n("10.0.0.0/16"));
    let objects = vec![
        obj(RuleClass::NetworkSet, "NetworkSet", "both", json!({"spec": {"nets": ["192.168.0.0/16", "10.0.0.0/8"]}})),
        obj(RuleClass::NetworkSet, "NetworkSet", "all", json!({"spec": {"nets": ["0.0.0.0/0"]}})),
        obj(
            RuleClass::KubeProxy,
            "DaemonSet",
            "kube-proxy",
            json!({"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy", "--cluster-cidr=192.168.0.0/16"]}]}}}}),
        ),
    ];
    assert!(patches(&objects, &old, &new).is_empty());
    let h = hits(&objects, &old, &[new], Some(&new));
    assert_eq!(h.len(), 2, "{h:#?}");
    assert!(h[0].action.contains("covers the new pool already"));
    assert!(h[1].action.contains("kube-proxy takes one CIDR per family"), "{}", h[1].action);
}

fn pod(name: &str, pins: PoolPins) -> PodInfo {
    PodInfo {
        namespace: "shop".into(),
        name: name.into(),
        uid: "u".into(),
        node: None,
        ips: vec![],
        phase: "Running".into(),
        host_network: false,
        ready: true,
        terminating: false,
        owner: Owner { kind: OwnerKind::Bare, other_kind: None, namespace: "shop".into(), name: name.into() },
        pins: pins.into(),
        container_id: None,
        ready_after: None,
    }
}

#[test]
fn ip_addrs_no_ipam_in_the_old_pool_blocks_floating_ips_warn() {
    let old = n("192.168.0.0/16");
    let pods = vec![
        pod("fixed", PoolPins { no_ipam_addrs: vec!["192.168.9.9".into()], ..Default::default() }),
        pod("float", PoolPins { floating_ips: vec!["192.168.9.10".into()], ..Default::default() }),
        pod("elsewhere", PoolPins { no_ipam_addrs: vec!["172.16.0.1".into()], ..Default::default() }),
    ];
    let b = pod_blockers(&pods, &old);
    assert_eq!(b.len(), 1);
    assert!(b[0].starts_with("Pod shop/fixed has cni.projectcalico.org/ipAddrsNoIpam 192.168.9.9"), "{}", b[0]);
    let h = pod_hits(&pods, &old, None);
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].field, "metadata.annotations[cni.projectcalico.org/floatingIPs]");
}

#[test]
fn reservations_are_listed_for_the_capacity_check() {
    assert_eq!(reserved_cidrs(&world()), vec![n("192.168.7.0/24"), n("10.0.5.0/28")]);
}

#[test]
fn a_change_record_round_trips() {
    let ps = patches(&world(), &n("192.168.0.0/16"), &n("10.0.0.0/16"));
    for c in ps.iter().flat_map(|p| &p.changes) {
        let v = serde_json::to_value(c).unwrap();
        assert_eq!(&serde_json::from_value::<RuleChange>(v).unwrap(), c);
    }
}
