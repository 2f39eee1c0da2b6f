//! `verify --probe`: start a throwaway pod (or one per node) in a temporary
//! namespace, wait for its address by watching it, and clean up on every
//! path, Ctrl-C included.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use rand::Rng;

use super::Cluster;
use crate::core::model::{ProbeOutcome, LABEL_MANAGED_BY};
use crate::error::{Error, KubeResultExt, Result};

pub const PROBE_NAMESPACE_PREFIX: &str = "kubectl-ippool-probe-";
pub const DEFAULT_PROBE_IMAGE: &str = "registry.k8s.io/pause:3.10";

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub image: String,
    pub timeout: Duration,
    /// One pod per node (pinned by nodeName); None means one pod, scheduler's choice.
    pub nodes: Option<Vec<String>>,
}

/// A random namespace name, `kubectl-ippool-probe-x7k2q`.
pub fn probe_namespace_name() -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect();
    format!("{PROBE_NAMESPACE_PREFIX}{suffix}")
}

/// Run the probe and always delete its namespace afterwards. Ctrl-C stops
/// the wait, cleans up, and reports an interruption.
pub async fn run(cluster: &Cluster, opts: &ProbeOptions) -> Result<Vec<ProbeOutcome>> {
    let ns = probe_namespace_name();
    let targets = probe_targets(opts);
    let outcome = tokio::select! {
        r = probe_in(cluster, &ns, opts, &targets) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let names: Vec<String> = targets.iter().map(|(n, _)| n.clone()).collect();
    let cleanup = cleanup(cluster, &ns, &names).await;
    match outcome {
        None => Err(Error::Interrupted(format!(
            "probe stopped; namespace {ns} deleted{}",
            cleanup.err().map(|e| format!(" (cleanup failed: {e})")).unwrap_or_default()
        ))),
        Some(r) => {
            if let Err(e) = cleanup {
                tracing::warn!(
                    "could not delete probe namespace {ns}: {e}; delete it with kubectl delete namespace {ns}"
                );
            }
            r
        }
    }
}

/// Probe pod names and the node each is pinned to.
fn probe_targets(opts: &ProbeOptions) -> Vec<(String, Option<String>)> {
    match &opts.nodes {
        None => vec![("probe".to_string(), None)],
        Some(nodes) => nodes.iter().enumerate().map(|(i, n)| (format!("probe-{i}"), Some(n.clone()))).collect(),
    }
}

async fn probe_in(
    cluster: &Cluster,
    ns: &str,
    opts: &ProbeOptions,
    targets: &[(String, Option<String>)],
) -> Result<Vec<ProbeOutcome>> {
    let labels = BTreeMap::from([(LABEL_MANAGED_BY.to_string(), "kubectl-ippool".to_string())]);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(ns.to_string()), labels: Some(labels.clone()), ..Default::default() },
        ..Default::default()
    };
    namespaces.create(&PostParams::default(), &namespace).await.op("create", "namespaces", None)?;

    // Admission refuses pods until the namespace's default ServiceAccount
    // exists; create it rather than wait for the controller.
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
        ..Default::default()
    };
    // Without permission to create it (the minimal role lacks it), the
    // controller's copy is used and pod creation retries below.
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
        Err(e) => return Err(e).op("create", "serviceaccounts", Some(ns)),
    }

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    for (name, node) in targets {
        let pod = probe_pod(name, node.as_deref(), &opts.image, &labels);
        create_pod(&pods, &pod, ns).await?;
    }

    let waits = targets.iter().map(|(name, node)| {
        let pods = pods.clone();
        async move {
            let got = tokio::time::timeout(opts.timeout, await_condition(pods, name, has_ip_or_finished)).await;
            let pod = match got {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Err(Error::Other(format!("watching probe pod {ns}/{name}: {e}"))),
                Err(_) => None,
            };
            let ip = pod
                .as_ref()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.pod_ip.as_ref())
                .and_then(|i| i.parse().ok());
            let node = pod.as_ref().and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.clone()).or(node.clone());
            Ok((name.clone(), node, ip))
        }
    });
    let results = futures::future::try_join_all(waits).await?;

    // For pods without an address, Calico's reason is in the sandbox events.
    let mut out = Vec::new();
    for (name, node, ip) in results {
        let error = match ip {
            Some(_) => None,
            None => Some(
                sandbox_error(cluster, ns, &name)
                    .await
                    .unwrap_or_else(|| format!("no address after {}", humantime::format_duration(opts.timeout))),
            ),
        };
        out.push(ProbeOutcome { pod: format!("{ns}/{name}"), node, ip, error });
    }
    Ok(out)
}

/// Create a pod, retrying briefly while admission still waits for the
/// namespace's default ServiceAccount (a fresh namespace gets it within
/// moments from the controller).
async fn create_pod(pods: &Api<Pod>, pod: &Pod, ns: &str) -> Result<()> {
    let mut attempts = 0;
    loop {
        match pods.create(&PostParams::default(), pod).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("serviceaccount") && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).op("create", "pods", Some(ns)),
        }
    }
}

fn has_ip_or_finished(p: Option<&Pod>) -> bool {
    let Some(status) = p.and_then(|p| p.status.as_ref()) else { return false };
    status.pod_ip.as_deref().is_some_and(|i| !i.is_empty())
        || matches!(status.phase.as_deref(), Some("Failed") | Some("Succeeded"))
}

async fn sandbox_error(cluster: &Cluster, ns: &str, pod: &str) -> Option<String> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let lp = ListParams::default()
        .fields(&format!("involvedObject.name={pod},reason={}", super::templates::SANDBOX_FAILURE_REASON));
    let list = events.list(&lp).await.ok()?;
    let msg = list.items.last()?.message.clone()?;
    let reason = match msg.rfind("failed (add): ") {
        Some(i) => msg[i + "failed (add): ".len()..].to_string(),
        None => msg,
    };
    Some(reason)
}

fn probe_pod(name: &str, node: Option<&str>, image: &str, labels: &BTreeMap<String, String>) -> Pod {
    let spec = serde_json::json!({
        "containers": [{"name": "pause", "image": image}],
        "nodeName": node,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": false,
        // The probe must run wherever it is sent, cordoned or tainted nodes included.
        "tolerations": [{"operator": "Exists"}],
    });
    Pod {
        metadata: ObjectMeta { name: Some(name.to_string()), labels: Some(labels.clone()), ..Default::default() },
        spec: Some(serde_json::from_value(spec).expect("probe pod spec")),
        ..Default::default()
    }
}

/// Delete the probe pods at once (so their addresses are released before
/// we exit) and the namespace; objects already gone are fine.
async fn cleanup(cluster: &Cluster, ns: &str, pod_names: &[String]) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    for name in pod_names {
        let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
    }
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    match namespaces.delete(ns, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).op("delete", "namespaces", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_and_pod_shape() {
        let ns = probe_namespace_name();
        assert!(ns.starts_with(PROBE_NAMESPACE_PREFIX) && ns.len() == PROBE_NAMESPACE_PREFIX.len() + 5, "{ns}");
        let pod = probe_pod("probe-0", Some("node-1"), DEFAULT_PROBE_IMAGE, &BTreeMap::new());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.containers[0].image.as_deref(), Some(DEFAULT_PROBE_IMAGE));
        assert!(probe_pod("probe", None, "x", &BTreeMap::new()).spec.unwrap().node_name.is_none());
    }

    #[test]
    fn waits_for_an_address_or_the_end() {
        let mut p = Pod::default();
        assert!(!has_ip_or_finished(Some(&p)));
        p.status = Some(serde_json::from_value(serde_json::json!({"phase":"Running","podIP":"10.1.0.5"})).unwrap());
        assert!(has_ip_or_finished(Some(&p)));
        assert!(!has_ip_or_finished(None));
    }
}
