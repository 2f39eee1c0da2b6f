use super::*;
use crate::core::inventory::tests::pod;
use crate::core::model::OwnerKind;

fn node(name: &str, tunnel: &[&str]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        tunnel_ips: tunnel.iter().map(|t| t.parse().unwrap()).collect(),
        ..Default::default()
    }
}

fn alloc(ip: &str, pod: Option<(&str, &str)>, kind: Option<&str>) -> Allocation {
    Allocation {
        ip: ip.parse().unwrap(),
        handle: Some(format!("h-{ip}").into()),
        namespace: pod.map(|p| p.0.into()),
        pod: pod.map(|p| p.1.to_string()),
        node: Some("node-0".into()),
        kind: kind.map(Into::into),
    }
}

fn entry(a: Allocation) -> (String, Allocation, Option<String>) {
    ("blk".into(), a, Some("2026-11-30 06:00:00.5 +0000 UTC".into()))
}

#[test]
fn only_allocations_nothing_uses_are_leaks() {
    let allocs = vec![
        entry(alloc("10.0.0.1", Some(("shop", "web-1")), None)), // pod has it
        entry(alloc("10.0.0.2", Some(("shop", "gone")), None)),  // leaked
        entry(alloc("10.0.0.3", None, Some("ipipTunnelAddress"))), // tunnel kind
        entry(alloc("10.0.0.4", Some(("shop", "other")), None)), // node's tunnel address
        entry(alloc("10.0.0.5", None, None)),                    // unknown origin
        entry(alloc("10.0.0.6", Some(("shop", "starting")), None)), // its pod has no IP yet
        entry(alloc("10.0.0.7", Some(("shop", "web-1")), None)), // pod exists, has another IP
    ];
    let pods = vec![
        pod("shop", "web-1", "10.0.0.1", OwnerKind::Deployment, "web"),
        pod("shop", "starting", "", OwnerKind::Deployment, "web"),
    ];
    let nodes = vec![node("node-0", &["10.0.0.4"])];
    let leaks = find_leaks(&allocs, &pods, &nodes);
    let ips: Vec<String> = leaks.iter().map(|l| l.allocation.ip.to_string()).collect();
    assert_eq!(ips, ["10.0.0.2", "10.0.0.7"]);
    assert_eq!(leaks[0].describe(), "10.0.0.2 (handle h-10.0.0.2, was pod shop/gone)");
}

#[test]
fn go_timestamps_parse_and_age_against_the_grace_period() {
    let t = parse_go_time("2026-11-30 06:10:31.123456789 +0000 UTC").unwrap();
    assert_eq!(t.to_rfc3339(), "2026-11-30T06:10:31.123456789+00:00");
    assert_eq!(parse_go_time("2026-11-30 07:10:31 +0100 CET").unwrap().to_rfc3339(), "2026-11-30T06:10:31+00:00");
    assert!(parse_go_time("yesterday").is_none());
    let leak = Leak { block: "b".into(), allocation: alloc("10.0.0.2", None, None), allocated_at: Some(t) };
    let now = t + chrono::Duration::seconds(30);
    assert_eq!(leak.older_than(Duration::from_secs(20), now), Some(true));
    assert_eq!(leak.older_than(Duration::from_secs(60), now), Some(false));
    let unknown = Leak { allocated_at: None, ..leak };
    assert_eq!(unknown.older_than(Duration::from_secs(20), now), None);
}

fn block_spec() -> Value {
    // 10.0.0.0/30: ordinal 0 -> attr 0 (h-a), 1 -> attr 1 (h-b), 2 -> attr 1 (h-b), 3 free.
    json!({
        "cidr": "10.0.0.0/30",
        "affinity": "host:node-0",
        "allocations": [0, 1, 1, null],
        "unallocated": [3],
        "attributes": [
            {"handle_id": "h-a", "secondary": {"pod": "a"}},
            {"handle_id": "h-b", "secondary": {"pod": "b"}}
        ],
        "sequenceNumber": 7,
        "sequenceNumberForAllocation": {"0": 4, "1": 5, "2": 6}
    })
}

#[test]
fn releasing_the_last_address_of_an_attribute_removes_it_and_renumbers() {
    let cidr: IpNet = "10.0.0.0/30".parse().unwrap();
    let r = release_from_block(&block_spec(), &cidr, &[("10.0.0.0".parse().unwrap(), Some("h-a".into()))]);
    assert_eq!(r.spec["allocations"], json!([null, 0, 0, null]));
    assert_eq!(r.spec["attributes"], json!([{"handle_id": "h-b", "secondary": {"pod": "b"}}]));
    assert_eq!(r.spec["unallocated"], json!([3, 0]));
    assert_eq!(r.spec["sequenceNumberForAllocation"], json!({"1": 5, "2": 6}));
    assert_eq!(r.spec["sequenceNumber"], json!(7));
    assert_eq!(r.per_handle, BTreeMap::from([("h-a".to_string(), 1)]));
    assert!(!r.empty);
}

#[test]
fn an_attribute_still_referenced_is_kept() {
    let cidr: IpNet = "10.0.0.0/30".parse().unwrap();
    let r = release_from_block(&block_spec(), &cidr, &[("10.0.0.1".parse().unwrap(), Some("h-b".into()))]);
    assert_eq!(r.spec["allocations"], json!([0, null, 1, null]));
    assert_eq!(r.spec["attributes"].as_array().unwrap().len(), 2);
    let all =
        [("10.0.0.0".parse().unwrap(), None), ("10.0.0.1".parse().unwrap(), None), ("10.0.0.2".parse().unwrap(), None)];
    let r = release_from_block(&block_spec(), &cidr, &all);
    assert!(r.empty);
    assert_eq!(r.spec["attributes"], json!([]));
    assert_eq!(r.spec["unallocated"], json!([3, 0, 1, 2]));
    assert_eq!(r.per_handle, BTreeMap::from([("h-a".to_string(), 1), ("h-b".to_string(), 2)]));
}

#[test]
fn an_address_now_held_by_another_handle_or_free_is_left_alone() {
    let cidr: IpNet = "10.0.0.0/30".parse().unwrap();
    let r = release_from_block(
        &block_spec(),
        &cidr,
        &[
            ("10.0.0.0".parse().unwrap(), Some("h-new-pod".into())),
            ("10.0.0.3".parse().unwrap(), None),
            ("10.9.9.9".parse().unwrap(), None),
        ],
    );
    assert!(r.released.is_empty());
    assert_eq!(r.spec, block_spec());
}

#[test]
fn handles_are_decremented_then_deleted() {
    let spec = json!({"handleID": "h-b", "block": {"10.0.0.0/30": 2, "10.0.1.0/30": 1}});
    assert_eq!(
        decrement_handle(&spec, "10.0.0.0/30", 1),
        HandleChange::Update(json!({"handleID": "h-b", "block": {"10.0.0.0/30": 1, "10.0.1.0/30": 1}}))
    );
    assert_eq!(
        decrement_handle(&spec, "10.0.0.0/30", 2),
        HandleChange::Update(json!({"handleID": "h-b", "block": {"10.0.1.0/30": 1}}))
    );
    let single = json!({"handleID": "h-a", "block": {"10.0.0.0/30": 1}});
    assert_eq!(decrement_handle(&single, "10.0.0.0/30", 1), HandleChange::Delete);
}

#[test]
fn go_durations_parse() {
    assert_eq!(parse_go_duration("15m0s"), Some(Duration::from_secs(900)));
    assert_eq!(parse_go_duration("20s"), Some(Duration::from_secs(20)));
    assert_eq!(parse_go_duration("1h0m0s"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("soon"), None);
    assert_eq!(parse_go_duration("5x"), None);
}

#[test]
fn the_running_configuration_decides_whether_leaks_are_collected() {
    let running = json!({
        "spec": {"controllers": {"node": {"leakGracePeriod": "15m0s"}}},
        "status": {"runningConfig": {"logSeverityScreen": "Info", "controllers": {"node": {"leakGracePeriod": "20s"}}}}
    });
    let p = gc_policy(Some(&running));
    assert_eq!((p.grace, p.never_because), (Duration::from_secs(20), None));
    assert_eq!(p.grace_source, "status.runningConfig.controllers.node.leakGracePeriod");

    let unset =
        json!({"spec": {}, "status": {"runningConfig": {"logSeverityScreen": "Info", "controllers": {"node": {}}}}});
    let p = gc_policy(Some(&unset));
    assert_eq!((p.grace, p.never_because), (DEFAULT_LEAK_GRACE, None));

    // Never run: no status, or the empty status Calico's Go types serialise.
    for status in [json!(null), json!({"runningConfig": {"controllers": {}}})] {
        let not_running = json!({"spec": {"controllers": {"node": {"leakGracePeriod": "20s"}}}, "status": status});
        let p = gc_policy(Some(&not_running));
        assert_eq!(p.grace, Duration::from_secs(20));
        assert!(p.never_because.unwrap().contains("does not appear to be running"));
    }

    let node_off = json!({"status": {"runningConfig": {"logSeverityScreen": "Info", "controllers": {"policy": {}}}}});
    assert!(gc_policy(Some(&node_off)).never_because.unwrap().contains("node controller"));

    let zero = json!({"status": {"runningConfig": {"logSeverityScreen": "Info", "controllers": {"node": {"leakGracePeriod": "0s"}}}}});
    assert!(gc_policy(Some(&zero)).never_because.unwrap().contains("leakGracePeriod is 0"));

    assert!(gc_policy(None).never_because.unwrap().contains("does not exist"));
}

/// Issue 24 item 11: a handle decrement whose answer was lost is not made
/// again once it shows, and is made again when it does not; a block
/// release that landed counts as made (its handles are then decremented).
#[test]
fn a_write_whose_answer_was_lost_is_judged_by_what_is_there() {
    let before = json!({"handleID": "h", "block": {"10.0.0.0/26": 2}});
    let HandleChange::Update(sent) = decrement_handle(&before, "10.0.0.0/26", 1) else { panic!("an update") };
    assert!(write_landed(Some(&sent), Some(&sent)), "landed: no second decrement");
    assert!(!write_landed(Some(&sent), Some(&before)), "not landed: decrement again");
    assert!(!write_landed(Some(&sent), None), "gone meanwhile: worked out again");
    assert!(write_landed(None, None), "a delete that landed");
    assert!(!write_landed(None, Some(&before)), "a delete that did not");
    let block = json!({"cidr": "10.0.0.0/30", "allocations": [0, null, null, null], "unallocated": [1, 2, 3],
        "attributes": [{"handle_id": "h", "secondary": null}], "sequenceNumberForAllocation": {"0": 1}});
    let change =
        release_from_block(&block, &"10.0.0.0/30".parse().unwrap(), &[("10.0.0.0".parse().unwrap(), Some("h".into()))]);
    assert_eq!(change.released.len(), 1);
    assert!(write_landed(Some(&change.spec), Some(&change.spec)), "the release landed: its handles are decremented");
    assert!(!write_landed(Some(&change.spec), Some(&block)));
}
