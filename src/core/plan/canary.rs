//! Where the canary may run: on nodes the old pool serves and the new pool
//! selects. Anywhere else the canary proves nothing about the pods being
//! moved, and on a node another pool serves it would get that pool's address
//! and stop the run half-done.

use serde::Serialize;

use crate::core::model::{NodeInfo, Pool};
use crate::core::selector::eval_selector;

/// The nodes a canary pod may be sent to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryNodes {
    /// Schedulable linux nodes the old pool serves and the new pool selects
    /// (every node the new pool selects, when the old pool selects none).
    pub nodes: Vec<String>,
    /// Why the set is a guess, when a selector could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Which nodes the canary may run on. `Err` says why there is none.
pub fn canary_nodes(nodes: &[NodeInfo], from: &Pool, to: &Pool) -> Result<CanaryNodes, String> {
    let candidates: Vec<&NodeInfo> = nodes.iter().filter(|n| !n.unschedulable && n.is_linux()).collect();
    let selects = |pool: &Pool, n: &NodeInfo| eval_selector(&pool.node_selector, &n.labels);
    let old_serves_any = candidates.iter().any(|n| selects(from, n) != Some(false));
    let mut sure = Vec::new();
    let mut unsure = Vec::new();
    for n in &candidates {
        let old = if old_serves_any { selects(from, n) } else { Some(true) };
        match (old, selects(to, n)) {
            (Some(true), Some(true)) => sure.push(n.name.clone()),
            (Some(false), _) | (_, Some(false)) => {}
            _ => unsure.push(n.name.clone()),
        }
    }
    if !sure.is_empty() {
        return Ok(CanaryNodes { nodes: sure, warning: None });
    }
    if !unsure.is_empty() {
        let warning = format!(
            "cannot evaluate the nodeSelector of IPPool {} ({:?}) or {} ({:?}); the canary may run on any of {}",
            from.name,
            from.node_selector,
            to.name,
            to.node_selector,
            unsure.join(", ")
        );
        return Ok(CanaryNodes { nodes: unsure, warning: Some(warning) });
    }
    Err(format!(
        "the canary has no node to run on: no schedulable linux node is both served by {} (nodeSelector {:?}) and selected by the new pool {} (nodeSelector {:?}). Give the new pool the old pool's --node-selector",
        from.name, from.node_selector, to.name, to.node_selector
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("topology.kubernetes.io/zone".to_string(), zone.to_string()),
                ("kubernetes.io/hostname".to_string(), name.to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn pool(name: &str, cidr: &str, selector: &str) -> Pool {
        let mut p = Pool::new(name, cidr.parse().unwrap());
        p.node_selector = selector.into();
        p
    }

    fn zones() -> Vec<NodeInfo> {
        vec![node("n0", "a"), node("n1", "b"), node("n2", "c"), node("n3", "a")]
    }

    #[test]
    fn only_nodes_both_pools_serve() {
        let from = pool("zone-a", "10.1.0.0/16", "topology.kubernetes.io/zone == 'a'");
        let to = pool("new", "10.11.0.0/16", "topology.kubernetes.io/zone == 'a'");
        let c = canary_nodes(&zones(), &from, &to).unwrap();
        assert_eq!(c.nodes, ["n0", "n3"]);
        assert_eq!(c.warning, None);

        // The new pool selects more than the old one serves: still only zone a.
        let wide = pool("new", "10.11.0.0/16", "all()");
        assert_eq!(canary_nodes(&zones(), &from, &wide).unwrap().nodes, ["n0", "n3"]);
    }

    /// The reported case: the old pool serves every node but node 2, which
    /// has its own pool; the canary must never be sent to node 2.
    #[test]
    fn a_node_of_another_pool_is_never_a_canary_node() {
        let from = pool("default-ipv4-ippool", "192.168.0.0/16", "kubernetes.io/hostname != 'n2'");
        let to = pool("new", "10.0.0.0/16", "kubernetes.io/hostname != 'n2'");
        let nodes = vec![node("n0", "a"), node("n1", "a"), node("n2", "a")];
        assert_eq!(canary_nodes(&nodes, &from, &to).unwrap().nodes, ["n0", "n1"]);
    }

    #[test]
    fn unschedulable_and_non_linux_nodes_are_left_out() {
        let mut nodes = zones();
        nodes[0].unschedulable = true;
        nodes[3].labels.insert("kubernetes.io/os".into(), "windows".into());
        let all = pool("p", "10.1.0.0/16", "all()");
        assert_eq!(canary_nodes(&nodes, &all, &all).unwrap().nodes, ["n1", "n2"]);
    }

    #[test]
    fn an_old_pool_that_serves_no_node_leaves_the_new_pools_nodes() {
        let from = pool("old", "10.1.0.0/16", "!all()");
        let to = pool("new", "10.11.0.0/16", "topology.kubernetes.io/zone == 'b'");
        assert_eq!(canary_nodes(&zones(), &from, &to).unwrap().nodes, ["n1"]);
    }

    #[test]
    fn no_common_node_is_an_error_naming_both_selectors() {
        let from = pool("zone-a", "10.1.0.0/16", "topology.kubernetes.io/zone == 'a'");
        let to = pool("new", "10.11.0.0/16", "topology.kubernetes.io/zone == 'b'");
        let e = canary_nodes(&zones(), &from, &to).unwrap_err();
        assert!(e.contains("zone-a") && e.contains("zone == 'b'") && e.contains("--node-selector"), "{e}");
    }

    #[test]
    fn selectors_it_cannot_read_give_a_warning_not_a_guess_it_hides() {
        let from = pool("old", "10.1.0.0/16", "topology.kubernetes.io/zone in {'a'}");
        let to = pool("new", "10.11.0.0/16", "topology.kubernetes.io/zone in {'a'}");
        let c = canary_nodes(&zones(), &from, &to).unwrap();
        assert_eq!(c.nodes.len(), 4);
        assert!(c.warning.unwrap().contains("cannot evaluate"));
        // One readable selector still narrows it down.
        let to = pool("new", "10.11.0.0/16", "topology.kubernetes.io/zone == 'b'");
        assert_eq!(canary_nodes(&zones(), &from, &to).unwrap().nodes, ["n1"]);
    }
}
