//! Traffic rules and addresses that name a pool's CIDR: Kubernetes and
//! Calico policies, network sets, IP reservations, the ip-masq-agent's
//! list, kube-proxy's `--cluster-cidr`, and pods' fixed addresses.
//!
//! Objects arrive as JSON (`RuleObject`); `sites` finds every list of CIDRs
//! in one, `changes` decides what `migrate --update-rules` adds and what a
//! rollback removes. A CIDR *names* the old pool when it overlaps it and
//! does not also cover the new one: `0.0.0.0/0` names nothing, and a list
//! that already covers the new pool needs nothing.

mod changes;
mod holders;
mod sites;
pub mod text;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use changes::{hits, patches, pod_blockers, pod_hits, removal_ops, reserved_cidrs, uncovered_hits, ObjectPatch};
pub use holders::{holders, split_needed, Holder};

use super::cidr::{overlaps, within};

/// The ip-masq-agent's list key.
pub const MASQ_KEY: &str = "nonMasqueradeCIDRs";

/// Which shape an object has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleClass {
    /// `networking.k8s.io/v1` NetworkPolicy (and Calico's StagedKubernetesNetworkPolicy).
    KubernetesPolicy,
    /// Calico (Global)NetworkPolicy and their Staged variants.
    CalicoPolicy,
    /// Calico NetworkSet and GlobalNetworkSet.
    NetworkSet,
    IpReservation,
    /// ConfigMap kube-system/ip-masq-agent.
    IpMasqAgent,
    /// DaemonSet kube-system/kube-proxy.
    KubeProxy,
    Pod,
}

/// An object that may name CIDRs, as read from the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleObject {
    pub class: RuleClass,
    pub target: ObjectRef,
    /// The whole object as JSON.
    pub body: Value,
}

/// Enough to find an object again and write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// `NetworkPolicy shop/allow`, `GlobalNetworkSet pods`; Calico's
    /// namespaced NetworkPolicy is told apart from the Kubernetes one.
    pub fn display(&self) -> String {
        let kind = if self.kind == "NetworkPolicy" && self.api_version.contains("projectcalico.org") {
            "NetworkPolicy.projectcalico.org"
        } else {
            &self.kind
        };
        match &self.namespace {
            Some(ns) => format!("{kind} {ns}/{}", self.name),
            None => format!("{kind} {}", self.name),
        }
    }

    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
    }
}

/// One CIDR (or address) that names the old pool, where it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHit {
    pub class: RuleClass,
    /// `GlobalNetworkSet pods`.
    pub object: String,
    /// `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    pub cidr: String,
    /// What `--update-rules` does about it, or why it does nothing.
    pub action: String,
}

/// One list entry `migrate --update-rules` added: kept in the migration
/// record so `--rollback` removes exactly this and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleChange {
    pub target: ObjectRef,
    /// Display path of the list: `spec.ingress[0].from`.
    pub field: String,
    /// JSON pointer of the list, or of the text holding it.
    pub pointer: String,
    /// The entry added: a CIDR, or an `ipBlock` peer.
    pub added: Value,
    /// Set when the list is inside a text document (`nonMasqueradeCIDRs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_key: Option<String>,
}

/// A GlobalNetworkSet of the v1 CRD, for unit tests.
#[cfg(test)]
pub(crate) fn global_network_set(name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "crd.projectcalico.org/v1".into(),
        kind: "GlobalNetworkSet".into(),
        plural: "globalnetworksets".into(),
        namespace: None,
        name: name.into(),
    }
}

impl RuleChange {
    pub fn describe(&self) -> String {
        let what = match &self.added {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        format!("{} {}: added {what}", self.target.display(), self.field)
    }
}

/// Everything found for one old → new move, shown by the plan.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesReport {
    pub old_cidr: Option<IpNet>,
    pub new_cidr: Option<IpNet>,
    pub hits: Vec<RuleHit>,
    /// The JSON patches `--update-rules` sends, one per object.
    pub patches: Vec<ObjectPatch>,
    /// Kinds that could not be read (forbidden): not checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// The same for the other IP family's pair, when one run moves both.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<RulesReport>,
}

impl RulesReport {
    /// This pair's report, then the other pair's.
    pub fn pairs(&self) -> impl Iterator<Item = &RulesReport> {
        std::iter::once(self).chain(self.also.iter())
    }
}

/// `cidr` names `old`: it overlaps it and covers none of `covers` (the
/// pools that stay). Addresses count as /32 or /128.
pub fn names(cidr: &IpNet, old: &IpNet, covers: &[IpNet]) -> bool {
    overlaps(cidr, old) && !covers.iter().any(|c| within(c, cidr))
}

/// A CIDR or a bare address, as rules write them.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let t = text.trim();
    t.parse::<IpNet>().ok().or_else(|| t.parse::<std::net::IpAddr>().ok().map(IpNet::from)).map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn naming_means_overlapping_the_old_and_not_covering_the_new() {
        let (old, new) = (n("192.168.0.0/16"), n("10.0.0.0/16"));
        assert!(names(&n("192.168.0.0/16"), &old, &[new]));
        assert!(names(&n("192.168.4.0/24"), &old, &[new]), "a part of the old pool");
        assert!(names(&n("192.0.0.0/8"), &old, &[new]), "a superset that still leaves the new pool out");
        assert!(!names(&n("0.0.0.0/0"), &old, &[new]), "covers the new pool too");
        assert!(!names(&n("172.16.0.0/12"), &old, &[new]), "unrelated");
        assert!(!names(&n("fd00::/8"), &old, &[new]));
        assert_eq!(parse_net("192.168.3.4"), Some(n("192.168.3.4/32")));
        assert_eq!(parse_net("nonsense"), None);
    }

    #[test]
    fn objects_display_like_kubectl_kinds() {
        let r = ObjectRef {
            api_version: "crd.projectcalico.org/v1".into(),
            kind: "NetworkPolicy".into(),
            plural: "networkpolicies".into(),
            namespace: Some("shop".into()),
            name: "a".into(),
        };
        assert_eq!(r.display(), "NetworkPolicy.projectcalico.org shop/a");
        assert_eq!(r.group(), "crd.projectcalico.org");
        let k = ObjectRef { api_version: "networking.k8s.io/v1".into(), ..r };
        assert_eq!(k.display(), "NetworkPolicy shop/a");
    }
}
