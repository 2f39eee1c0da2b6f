//! What a test pod and its namespace look like: names per node or one lone
//! pod, Pod Security `restricted`, linux nodes, and node affinity for a
//! lone pod that may run only on some nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, Namespace, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Toleration,
};
use kube::api::ObjectMeta;

use crate::core::model::LABEL_NODE_OS;

/// The image of every test pod: it never needs to run, only to get an
/// address. The canary always uses it; it is the default of
/// `verify --probe-image`.
pub const TEST_POD_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The UID and GID test pods run as: not root (Pod Security `restricted`
/// needs runAsNonRoot), the pause image's own `nobody` user.
pub const TEST_POD_UID: i64 = 65535;

/// The Pod Security admission label the test pods' namespace carries, and
/// its level.
pub const PSA_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const PSA_LEVEL: &str = "restricted";

/// What a run's test pods share: `targets` names them, `pod` builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPods {
    /// Pods sent to nodes are `{prefix}-{i}`.
    pub prefix: &'static str,
    /// The name of the single pod when no node is given (the scheduler places it).
    pub lone_name: &'static str,
    /// The name of the pod's one container.
    pub container: &'static str,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// `automountServiceAccountToken`; None leaves it unset.
    pub automount_token: Option<bool>,
    /// The nodes the scheduler may place the lone pod on (node affinity on
    /// `metadata.name`); empty: any node.
    pub lone_among: Vec<String>,
}

/// One test pod: its name and the node it is pinned to (by nodeName).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub node: Option<String>,
}

impl TestPods {
    /// One pod per node, or with `None` one pod the scheduler places.
    /// `Some(&[])` means no pod at all.
    pub fn targets(&self, nodes: Option<&[String]>) -> Vec<Target> {
        match nodes {
            None => vec![Target { name: self.lone_name.to_string(), node: None }],
            Some(nodes) => nodes
                .iter()
                .enumerate()
                .map(|(i, n)| Target { name: format!("{}-{i}", self.prefix), node: Some(n.clone()) })
                .collect(),
        }
    }

    /// The pod for one target. It must run wherever it is sent, cordoned
    /// or tainted nodes included, be admitted under Pod Security
    /// `restricted`, and go at once when deleted.
    pub fn pod(&self, target: &Target) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(target.name.clone()),
                labels: Some(self.labels.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: self.container.to_string(),
                    image: Some(self.image.clone()),
                    security_context: Some(SecurityContext {
                        allow_privilege_escalation: Some(false),
                        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(TEST_POD_UID),
                    run_as_group: Some(TEST_POD_UID),
                    seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
                    ..Default::default()
                }),
                node_selector: Some(BTreeMap::from([(LABEL_NODE_OS.to_string(), "linux".to_string())])),
                node_name: target.node.clone(),
                affinity: self.affinity(target),
                restart_policy: Some("Never".into()),
                termination_grace_period_seconds: Some(0),
                automount_service_account_token: self.automount_token,
                tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl TestPods {
    /// Required node affinity for the lone pod when it may run only on some
    /// nodes. It names nodes (`matchFields` on `metadata.name`, as the
    /// DaemonSet controller does) rather than translating pool selectors:
    /// every Calico selector the planner can evaluate is covered that way.
    fn affinity(&self, target: &Target) -> Option<Affinity> {
        if target.node.is_some() || self.lone_among.is_empty() {
            return None;
        }
        // A field requirement takes one value: one term per node (terms are ORed).
        let terms = self
            .lone_among
            .iter()
            .map(|n| NodeSelectorTerm {
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec![n.clone()]),
                }]),
                match_expressions: None,
            })
            .collect();
        Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector { node_selector_terms: terms }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// The throwaway namespace object: `labels` plus the Pod Security label
/// enforcing `restricted` (the test pods pass it; whatever the cluster's
/// default level, the namespace asks for exactly that).
pub fn namespace(ns: &str, labels: &BTreeMap<String, String>) -> Namespace {
    namespace_at(ns, labels, PSA_LEVEL)
}

/// A namespace for hostNetwork test pods only: Pod Security `privileged`,
/// the one level that admits the host network.
pub fn host_network_namespace(ns: &str, labels: &BTreeMap<String, String>) -> Namespace {
    namespace_at(ns, labels, "privileged")
}

fn namespace_at(ns: &str, labels: &BTreeMap<String, String>, level: &str) -> Namespace {
    let mut labels = labels.clone();
    labels.insert(PSA_ENFORCE_LABEL.to_string(), level.to_string());
    Namespace {
        metadata: ObjectMeta { name: Some(ns.to_string()), labels: Some(labels), ..Default::default() },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> TestPods {
        TestPods {
            prefix: "t",
            lone_name: "t-lone",
            container: "c",
            image: "example/img:1".into(),
            labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
            automount_token: Some(false),
            lone_among: vec![],
        }
    }

    /// The lone pod restricted to some nodes gets a required node affinity
    /// naming them; a pod sent to a node, or an unrestricted one, gets none.
    #[test]
    fn lone_pod_affinity_names_the_allowed_nodes() {
        let p = TestPods { lone_among: vec!["n1".into(), "n3".into()], ..pods() };
        let pod = p.pod(&Target { name: "t-lone".into(), node: None });
        let v = serde_json::to_value(pod.spec.unwrap().affinity.unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}
            ]}}})
        );
        assert!(p.pod(&Target { name: "t-0".into(), node: Some("n1".into()) }).spec.unwrap().affinity.is_none());
        assert!(pods().pod(&Target { name: "t-lone".into(), node: None }).spec.unwrap().affinity.is_none());
    }

    #[test]
    fn targets_per_node_or_one_lone_pod() {
        let p = pods();
        assert_eq!(p.targets(None), vec![Target { name: "t-lone".into(), node: None }]);
        let nodes = vec!["n1".to_string(), "n2".to_string()];
        assert_eq!(
            p.targets(Some(&nodes)),
            vec![
                Target { name: "t-0".into(), node: Some("n1".into()) },
                Target { name: "t-1".into(), node: Some("n2".into()) }
            ]
        );
        assert!(p.targets(Some(&[])).is_empty());
    }

    #[test]
    fn pod_shape() {
        let p = pods();
        let pod = p.pod(&Target { name: "t-0".into(), node: Some("n1".into()) });
        assert_eq!(pod.metadata.name.as_deref(), Some("t-0"));
        assert_eq!(pod.metadata.labels, Some(BTreeMap::from([("a".to_string(), "b".to_string())])));
        assert!(pod.metadata.namespace.is_none(), "the Api sets the namespace");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert!(spec.affinity.is_none(), "pinned by nodeName");
        assert_eq!(
            spec.node_selector,
            Some(BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())])),
            "linux nodes only"
        );
        assert_eq!(spec.containers.len(), 1);
        assert_eq!(spec.containers[0].name, "c");
        assert_eq!(spec.containers[0].image.as_deref(), Some("example/img:1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let tol = spec.tolerations.unwrap();
        assert_eq!(tol.len(), 1);
        assert_eq!(tol[0].operator.as_deref(), Some("Exists"));
        assert!(tol[0].key.is_none() && tol[0].effect.is_none(), "tolerates every taint");

        let lone = TestPods { automount_token: None, ..p }.pod(&Target { name: "t-lone".into(), node: None });
        let spec = lone.spec.unwrap();
        assert!(spec.node_name.is_none());
        assert!(spec.automount_service_account_token.is_none());
    }

    #[test]
    fn pod_serializes_like_the_handwritten_json() {
        let pod = pods().pod(&Target { name: "t-0".into(), node: None });
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            v["spec"],
            serde_json::json!({
                "containers": [{
                    "name": "c",
                    "image": "example/img:1",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                }],
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65535,
                    "runAsGroup": 65535,
                    "seccompProfile": {"type": "RuntimeDefault"}
                },
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "tolerations": [{"operator": "Exists"}]
            })
        );
    }

    #[test]
    fn namespace_shape() {
        let labels = BTreeMap::from([("x".to_string(), "y".to_string())]);
        let n = namespace("ns-1", &labels);
        assert_eq!(n.metadata.name.as_deref(), Some("ns-1"));
        let mut want = labels.clone();
        want.insert("pod-security.kubernetes.io/enforce".into(), "restricted".into());
        assert_eq!(n.metadata.labels, Some(want.clone()));
        assert!(n.spec.is_none());
        want.insert("pod-security.kubernetes.io/enforce".into(), "privileged".into());
        assert_eq!(host_network_namespace("ns-1", &labels).metadata.labels, Some(want));
    }

    /// What Pod Security `restricted` (latest) asks of a pod, checked field by
    /// field: kubesim's `--pod-security restricted` end-to-end test admits it.
    #[test]
    fn pod_passes_pod_security_restricted() {
        for target in [Target { name: "t-0".into(), node: Some("n1".into()) }, Target { name: "t".into(), node: None }]
        {
            let spec = pods().pod(&target).spec.unwrap();
            let psc = spec.security_context.as_ref().expect("pod securityContext");
            assert_eq!(psc.run_as_non_root, Some(true));
            assert!(psc.run_as_user.is_some_and(|u| u != 0), "a non-root UID");
            assert_eq!(psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
            assert!(spec.host_network.is_none() && spec.host_pid.is_none() && spec.host_ipc.is_none());
            assert!(spec.volumes.is_none() && spec.init_containers.is_none());
            for c in &spec.containers {
                let sc = c.security_context.as_ref().expect("container securityContext");
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert!(sc.privileged.is_none() && sc.run_as_user.is_none() && sc.run_as_non_root.is_none());
                let caps = sc.capabilities.as_ref().unwrap();
                assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
                assert!(caps.add.is_none());
                assert!(c.ports.is_none());
            }
        }
    }
}
