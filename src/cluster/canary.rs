//! The canary: before any real pod moves, a throw-away pod (one, or one per
//! node) in a temporary namespace must get an address from the new pool.
//! The namespace is deleted on every path; leftovers of a killed run are
//! found by label and deleted at the next start.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;
use serde_json::json;

use super::lease::COMPONENT;
use super::Cluster;
use crate::error::{Error, KubeResultExt, Result};

pub const CANARY_LABEL: &str = "ippool.kubectl.io/canary";

/// The namespace a canary run uses (random suffix: no clash with a leftover).
pub fn canary_namespace() -> String {
    format!("kubectl-ippool-canary-{:05x}", rand::random::<u32>() & 0xfffff)
}

/// Start the canary pods in `ns` and wait until each has an IP; every IP
/// must lie in `target`. The caller deletes the namespace afterwards.
pub async fn run(
    cluster: &Cluster,
    ns: &str,
    nodes: &[String],
    target: &IpNet,
    timeout: Duration,
) -> Result<Vec<(String, IpAddr)>> {
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    let namespace: Namespace = serde_json::from_value(
        json!({"metadata": {"name": ns, "labels": {CANARY_LABEL: "true", "app.kubernetes.io/managed-by": COMPONENT}}}),
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    match ns_api.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).op("create", "namespaces", None),
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let targets: Vec<Option<&String>> = if nodes.is_empty() { vec![None] } else { nodes.iter().map(Some).collect() };
    let mut names = Vec::new();
    for (i, node) in targets.iter().enumerate() {
        let name = format!("canary-{i}");
        let mut spec = json!({
            "containers": [{"name": "canary", "image": "registry.k8s.io/pause:3.10"}],
            "terminationGracePeriodSeconds": 0,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}]
        });
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {CANARY_LABEL: "true"}}, "spec": spec}))
                .map_err(|e| Error::Other(e.to_string()))?;
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).op("create", "pods", Some(ns)),
        }
        names.push(name);
    }
    let mut out = Vec::new();
    for name in names {
        let has_ip = |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()).and_then(|s| s.pod_ip.as_ref()).is_some_and(|ip| !ip.is_empty())
        };
        let pod = tokio::time::timeout(timeout, await_condition(pods.clone(), &name, has_ip))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("canary pod {ns}/{name} to get an IP (check `kubectl describe pod -n {ns} {name}`)"),
                after: timeout,
            })?
            .map_err(|e| Error::Other(format!("watching canary pod {ns}/{name}: {e}")))?;
        let pod = pod.ok_or_else(|| Error::Other(format!("canary pod {ns}/{name} disappeared")))?;
        let ip: IpAddr = pod
            .status
            .and_then(|s| s.pod_ip)
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| Error::Other(format!("canary pod {ns}/{name} has an unreadable IP")))?;
        let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        if !target.contains(&ip) {
            return Err(Error::Other(format!(
                "canary pod {ns}/{name} on node {node} got {ip}, which is not in the new pool {target}: another enabled pool or a pin is in the way; no workload was moved"
            )));
        }
        out.push((node, ip));
    }
    Ok(out)
}

/// Delete one canary namespace (not waiting for it to go).
pub async fn cleanup(cluster: &Cluster, ns: &str) {
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    if let Err(e) = ns_api.delete(ns, &DeleteParams::default()).await {
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            tracing::warn!("could not delete canary namespace {ns}: {e}; delete it with kubectl delete namespace {ns}");
        }
    }
}

/// Delete canary namespaces left behind by a killed run.
pub async fn cleanup_leftovers(cluster: &Cluster) {
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    if let Ok(list) = ns_api.list(&ListParams::default().labels(&format!("{CANARY_LABEL}=true"))).await {
        for n in list.items {
            if n.metadata.deletion_timestamp.is_none() {
                cleanup(cluster, &n.name_any()).await;
            }
        }
    }
}
