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

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;

mod spec;

pub use spec::{host_network_namespace, namespace, Target, TestPods, TEST_POD_IMAGE};

use super::retry::{already_exists, create_once, repeat_unconditional};
use super::Cluster;
use crate::core::model::{pod_addresses, ANNOT_POD_IPS};
use crate::error::{KubeResultExt, Result};

/// How the namespace and the pods are created (the canary and the probe
/// differ here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creation {
    /// A namespace or pod that already exists (409 AlreadyExists) is used
    /// as it is; otherwise that is an error.
    pub reuse_existing: bool,
    /// Create the namespace's default ServiceAccount first (admission
    /// refuses pods until it exists; 409 and 403 are fine) and retry pod
    /// creation briefly while admission still waits for it.
    pub default_service_account: bool,
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
        Err(e) if how.reuse_existing && already_exists(&e) => {}
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
            Err(e) if how.reuse_existing && already_exists(&e) => return Ok(()),
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
