//! What still holds an address of a new pool. While anything does, a
//! rollback keeps the entries `--update-rules` added for that pool: the
//! allow rules of pods still holding its addresses must go on matching,
//! and their traffic must not start being masqueraded.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::{parse_net, RuleChange};
use crate::core::model::{NodeInfo, PodInfo};

/// One holder of an address: `Pod shop/web-1 (10.0.3.4)`, `node n1 tunnel (10.0.0.1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub ip: IpAddr,
}

/// Pods (their IPAM addresses) and node tunnel addresses inside any of `cidrs`.
pub fn holders(pods: &[PodInfo], nodes: &[NodeInfo], cidrs: &[IpNet]) -> Vec<Holder> {
    let inside = |ip: &IpAddr| cidrs.iter().any(|c| c.contains(ip));
    let from_pods = pods.iter().filter(|p| p.holds_pool_ip()).flat_map(|p| {
        p.ips.iter().filter(|ip| inside(ip)).map(move |ip| Holder { name: format!("Pod {}", p.key()), ip: *ip })
    });
    let from_nodes = nodes.iter().flat_map(|n| {
        n.tunnel_ips
            .iter()
            .filter(|ip| inside(ip))
            .map(move |ip| Holder { name: format!("node {} tunnel", n.name), ip: *ip })
    });
    from_pods.chain(from_nodes).collect()
}

/// The CIDR an entry added: a CIDR string, or an `ipBlock` peer's.
pub fn added_cidr(change: &RuleChange) -> Option<IpNet> {
    match &change.added {
        Value::String(s) => parse_net(s),
        v => v.pointer("/ipBlock/cidr").and_then(Value::as_str).and_then(parse_net),
    }
}

/// Splits `changes` into those still needed (an address inside what they
/// added is held) and those free to take back. An entry whose CIDR cannot
/// be read is kept: nothing is removed on a guess.
pub fn split_needed(changes: Vec<RuleChange>, held: &[Holder]) -> (Vec<RuleChange>, Vec<RuleChange>) {
    changes.into_iter().partition(|c| added_cidr(c).is_none_or(|net| held.iter().any(|h| net.contains(&h.ip))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(added: Value) -> RuleChange {
        RuleChange {
            target: crate::core::rules::global_network_set("pods"),
            field: "spec.nets".into(),
            pointer: "/spec/nets".into(),
            added,
            text_key: None,
        }
    }

    fn node(name: &str, tunnel: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: Default::default(),
            addresses: vec![],
            tunnel_ips: vec![tunnel.parse().unwrap()],
            unschedulable: false,
        }
    }

    #[test]
    fn entries_stay_while_a_node_tunnel_or_pod_holds_an_address_of_their_cidr() {
        let v4 = change(json!("10.0.0.0/16"));
        let peer = change(json!({"ipBlock": {"cidr": "10.0.0.0/16"}}));
        let v6 = change(json!("fd00:10:20::/112"));
        let cidrs: Vec<IpNet> = vec!["10.0.0.0/16".parse().unwrap(), "fd00:10:20::/112".parse().unwrap()];
        let held = holders(&[], &[node("n1", "10.0.3.1"), node("n2", "192.168.0.1")], &cidrs);
        assert_eq!(held, vec![Holder { name: "node n1 tunnel".into(), ip: "10.0.3.1".parse().unwrap() }]);
        let (keep, remove) = split_needed(vec![v4.clone(), peer.clone(), v6.clone()], &held);
        assert_eq!((keep, remove), (vec![v4.clone(), peer.clone()], vec![v6.clone()]));
        let (keep, remove) = split_needed(vec![v4.clone(), v6.clone()], &[]);
        assert_eq!((keep.len(), remove.len()), (0, 2), "nothing holds an address: all go");
        let web = crate::core::inventory::tests::pod(
            "shop",
            "web-1",
            "10.0.9.9",
            crate::core::model::OwnerKind::Deployment,
            "web",
        );
        let held = holders(&[web], &[], &cidrs);
        assert_eq!(held[0].name, "Pod shop/web-1");
        assert_eq!(split_needed(vec![v6.clone(), v4.clone()], &held), (vec![v4], vec![v6]));
        let odd = change(json!({"something": "else"}));
        assert_eq!(split_needed(vec![odd.clone()], &[]).0, vec![odd], "unreadable entries are kept");
    }
}
