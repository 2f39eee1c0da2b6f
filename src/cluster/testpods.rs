//! Throwaway test pods: a temporary namespace, pause pods (one, or one
//! pinned to each node), a watch until each has an address (with a
//! deadline), and the cleanup, leftovers of a killed run included.
//!
//! Two callers: the migration canary (`canary.rs`: every address must lie
//! in the new pool) and `verify --probe` (`probe.rs`: records each outcome,
//! Calico's sandbox error included). What they check, their names, labels,
//! messages and Ctrl-C handling stay with them; where they create or clean
//! up differently today, that is a parameter here.
//!
//! Every test pod passes the Pod Security Standard `restricted` (non-root
//! UID 65535, seccomp RuntimeDefault, no privilege escalation, no
//! capabilities) and selects linux nodes, and its namespace is labelled to
//! enforce `restricted`: a cluster enforcing Pod Security admits it wherever
//! it is sent.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, Namespace, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, ServiceAccount, Toleration,
};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;

use super::retry::{create_once, repeat_unconditional};
use super::Cluster;
use crate::core::model::{pod_addresses, ANNOT_POD_IPS, LABEL_NODE_OS};
use crate::error::{KubeResultExt, Result};

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

/// How the namespace and the pods are created (the canary and the probe
/// differ here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creation {
    /// A namespace or pod that already exists (409) is used as it is;
    /// otherwise 409 is an error.
    pub reuse_existing: bool,
    /// Create the namespace's default ServiceAccount first (admission
    /// refuses pods until it exists; 409 and 403 are fine) and retry pod
    /// creation briefly while admission still waits for it.
    pub default_service_account: bool,
}

/// The throwaway namespace object: `labels` plus the Pod Security label
/// enforcing `restricted` (the test pods pass it; whatever the cluster's
/// default level, the namespace asks for exactly that).
pub fn namespace(ns: &str, labels: &BTreeMap<String, String>) -> Namespace {
    let mut labels = labels.clone();
    labels.insert(PSA_ENFORCE_LABEL.to_string(), PSA_LEVEL.to_string());
    Namespace {
        metadata: ObjectMeta { name: Some(ns.to_string()), labels: Some(labels), ..Default::default() },
        ..Default::default()
    }
}

/// Create namespace `ns` (labelled `ns_labels`) and one pod per target in
/// it. The caller deletes the namespace afterwards, on every path.
pub async fn start(
    cluster: &Cluster,
    ns: &str,
    ns_labels: &BTreeMap<String, String>,
    pods: &TestPods,
    targets: &[Target],
    how: Creation,
) -> Result<Api<Pod>> {
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let (ns_object, pp) = (namespace(ns, ns_labels), PostParams::default());
    match create_once(|| namespaces.create(&pp, &ns_object)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if how.reuse_existing && s.code == 409 => {}
        Err(e) => return Err(e).op("create", "namespaces", None),
    }
    if how.default_service_account {
        let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
            ..Default::default()
        };
        // Without permission to create it (the minimal role lacks it), the
        // controller's copy is used and pod creation retries below.
        match create_once(|| sas.create(&pp, &sa)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e).op("create", "serviceaccounts", Some(ns)),
        }
    }
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    for t in targets {
        create_pod(&api, &pods.pod(t), ns, how).await?;
    }
    Ok(api)
}

/// Create a pod; with `default_service_account`, retry briefly while
/// admission still waits for the namespace's default ServiceAccount (a
/// fresh namespace gets it within moments from the controller).
async fn create_pod(pods: &Api<Pod>, pod: &Pod, ns: &str, how: Creation) -> Result<()> {
    let (mut attempts, pp) = (0, PostParams::default());
    loop {
        match create_once(|| pods.create(&pp, pod)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if how.reuse_existing && s.code == 409 => return Ok(()),
            Err(kube::Error::Api(s))
                if how.default_service_account
                    && s.code == 403
                    && s.message.contains("serviceaccount")
                    && attempts < 20 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).op("create", "pods", Some(ns)),
        }
    }
}

/// What the wait for a test pod waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The pod has an address.
    Address,
    /// The pod has an address, or has ended (Failed or Succeeded) without one.
    AddressOrEnd,
}

/// Whether the wait for `p` is over.
pub fn reached(until: Until, p: Option<&Pod>) -> bool {
    let Some(status) = p.and_then(|p| p.status.as_ref()) else { return false };
    let has_ip = status.pod_ip.as_deref().is_some_and(|i| !i.is_empty());
    match until {
        Until::Address => has_ip,
        Until::AddressOrEnd => has_ip || matches!(status.phase.as_deref(), Some("Failed") | Some("Succeeded")),
    }
}

/// Why a wait ended without the condition.
#[derive(Debug)]
pub enum WaitError {
    /// The deadline passed.
    TimedOut,
    /// The watch failed.
    Watch(kube::runtime::wait::Error),
}

/// Watch pod `name` until `until` holds or `timeout` passes. `Ok(None)`:
/// the pod was deleted.
pub async fn wait(
    pods: &Api<Pod>,
    name: &str,
    until: Until,
    timeout: Duration,
) -> std::result::Result<Option<Pod>, WaitError> {
    let cond = move |p: Option<&Pod>| reached(until, p);
    match tokio::time::timeout(timeout, await_condition(pods.clone(), name, cond)).await {
        Err(_) => Err(WaitError::TimedOut),
        Ok(Err(e)) => Err(WaitError::Watch(e)),
        Ok(Ok(p)) => Ok(p),
    }
}

/// The pod's address, if it has a readable one.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).and_then(|i| i.parse().ok())
}

/// Every address of the pod (`status.podIPs`, and those Calico recorded in
/// its `cni.projectcalico.org/podIPs` annotation), in status order.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let status = pod.status.as_ref();
    let listed: Vec<&str> =
        status.and_then(|s| s.pod_ips.as_ref()).map(|v| v.iter().map(|i| i.ip.as_str()).collect()).unwrap_or_default();
    let annotation = pod.metadata.annotations.as_ref().and_then(|a| a.get(ANNOT_POD_IPS)).map(String::as_str);
    pod_addresses(&listed, status.and_then(|s| s.pod_ip.as_deref()), annotation)
}

/// The node the pod runs on (or is pinned to).
pub fn pod_node(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// Delete these pods at once (grace period 0, so their addresses are
/// released before we exit); pods already gone, or any error, are ignored.
pub async fn delete_pods_now(cluster: &Cluster, ns: &str, names: &[String]) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    for name in names {
        let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
    }
}

/// Delete the namespace, not waiting for it to go; one already gone is fine.
pub async fn delete_namespace(
    cluster: &Cluster,
    ns: &str,
    params: &DeleteParams,
) -> std::result::Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    match repeat_unconditional(|| namespaces.delete(ns, params)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Warn that a `what` namespace could not be deleted, and how to do it by hand.
pub fn warn_undeleted(what: &str, ns: &str, e: &dyn Display) {
    tracing::warn!("could not delete {what} namespace {ns}: {e}; delete it with kubectl delete namespace {ns}");
}

/// Namespaces matching the label `selector` that are not already being
/// deleted: the leftovers of a killed run. A failed list gives none.
pub async fn leftover_namespaces(cluster: &Cluster, selector: &str) -> Vec<String> {
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    match namespaces.list(&ListParams::default().labels(selector)).await {
        Ok(list) => {
            list.items.iter().filter(|n| n.metadata.deletion_timestamp.is_none()).map(|n| n.name_any()).collect()
        }
        Err(_) => vec![],
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
        assert_eq!(n.metadata.labels, Some(want));
        assert!(n.spec.is_none());
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

    #[test]
    fn waits_for_an_address_or_the_end() {
        let mut p = Pod::default();
        for until in [Until::Address, Until::AddressOrEnd] {
            assert!(!reached(until, None));
            assert!(!reached(until, Some(&p)));
        }
        p.status = Some(serde_json::from_value(serde_json::json!({"phase":"Pending","podIP":""})).unwrap());
        assert!(!reached(Until::Address, Some(&p)) && !reached(Until::AddressOrEnd, Some(&p)));
        p.status = Some(serde_json::from_value(serde_json::json!({"phase":"Failed"})).unwrap());
        assert!(!reached(Until::Address, Some(&p)));
        assert!(reached(Until::AddressOrEnd, Some(&p)));
        p.status = Some(serde_json::from_value(serde_json::json!({"phase":"Running","podIP":"10.1.0.5"})).unwrap());
        assert!(reached(Until::Address, Some(&p)) && reached(Until::AddressOrEnd, Some(&p)));
        assert_eq!(pod_ip(&p), Some("10.1.0.5".parse().unwrap()));
    }

    #[test]
    fn address_and_node_of_a_pod() {
        let mut p = Pod::default();
        assert_eq!(pod_ip(&p), None);
        assert_eq!(pod_node(&p), None);
        p.status = Some(serde_json::from_value(serde_json::json!({"podIP":"not-an-ip"})).unwrap());
        assert_eq!(pod_ip(&p), None);
        p.status = Some(serde_json::from_value(serde_json::json!({"podIP":"fd00::5"})).unwrap());
        assert_eq!(pod_ip(&p), Some("fd00::5".parse().unwrap()));
        p.status = Some(
            serde_json::from_value(
                serde_json::json!({"podIP":"10.0.0.5","podIPs":[{"ip":"10.0.0.5"},{"ip":"fd00::5"}]}),
            )
            .unwrap(),
        );
        assert_eq!(pod_ips(&p), ["10.0.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        p.spec = Some(serde_json::from_value(serde_json::json!({"containers":[],"nodeName":"n1"})).unwrap());
        assert_eq!(pod_node(&p).as_deref(), Some("n1"));
    }
}
