//! What `verify` reads beyond the snapshot: the pool annotations of
//! workload pod templates, and the sandbox failures kubelet reports as
//! Events. Everything is LISTed page by page; nothing is fetched per pod.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, PodTemplateSpec};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::workloads::pins_from;
use super::{list_paged, Cluster};
use crate::core::model::{SandboxFailure, WorkloadTemplate};
use crate::error::Result;

/// The event reason kubelet uses when CNI ADD (and so Calico IPAM) fails.
pub const SANDBOX_FAILURE_REASON: &str = "FailedCreatePodSandBox";

fn api_for<K>(cluster: &Cluster) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match &cluster.namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    }
}

/// LIST one workload kind and keep the templates that carry pool annotations.
async fn pinned_templates<K>(
    cluster: &Cluster,
    kind: &str,
    plural: &str,
    template: impl Fn(&K) -> Option<&PodTemplateSpec>,
    skip: impl Fn(&K) -> bool,
) -> Result<Vec<WorkloadTemplate>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let mut out = Vec::new();
    list_paged(&api_for::<K>(cluster), ListParams::default(), plural, cluster.namespace.as_deref(), |o| {
        if skip(&o) {
            return;
        }
        let Some(annotations) = template(&o).and_then(|t| t.metadata.as_ref()).and_then(|m| m.annotations.as_ref())
        else {
            return;
        };
        let pins = pins_from(annotations);
        if !pins.is_empty() {
            out.push(WorkloadTemplate {
                kind: kind.to_string(),
                namespace: o.namespace().unwrap_or_default(),
                name: o.name_any(),
                pins,
            });
        }
    })
    .await?;
    Ok(out)
}

/// Pod templates with pool annotations. ReplicaSets owned by a Deployment
/// are skipped (the Deployment's template is what counts; old ReplicaSets
/// keep stale templates), and so are finished Jobs (they start no pods).
pub async fn list_pinned_templates(cluster: &Cluster) -> Result<Vec<WorkloadTemplate>> {
    let (d, s, ds, rs, j) = tokio::try_join!(
        pinned_templates::<Deployment>(
            cluster,
            "Deployment",
            "deployments",
            |o| o.spec.as_ref().map(|s| &s.template),
            |_| false
        ),
        pinned_templates::<StatefulSet>(
            cluster,
            "StatefulSet",
            "statefulsets",
            |o| o.spec.as_ref().map(|s| &s.template),
            |_| false
        ),
        pinned_templates::<DaemonSet>(
            cluster,
            "DaemonSet",
            "daemonsets",
            |o| o.spec.as_ref().map(|s| &s.template),
            |_| false
        ),
        pinned_templates::<ReplicaSet>(
            cluster,
            "ReplicaSet",
            "replicasets",
            |o| o.spec.as_ref().and_then(|s| s.template.as_ref()),
            |o| !o.owner_references().is_empty()
        ),
        pinned_templates::<Job>(cluster, "Job", "jobs", |o| o.spec.as_ref().map(|s| &s.template), job_finished),
    )?;
    Ok([d, s, ds, rs, j].into_iter().flatten().collect())
}

fn job_finished(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"))
}

/// The latest `FailedCreatePodSandBox` event per pod (field selector on the
/// reason, so only those events travel).
pub async fn list_sandbox_failures(cluster: &Cluster) -> Result<Vec<SandboxFailure>> {
    let lp = ListParams::default().fields(&format!("reason={SANDBOX_FAILURE_REASON},involvedObject.kind=Pod"));
    // Per pod: (time of the latest event, the failure).
    let mut latest: HashMap<(String, String), (Option<k8s_openapi::jiff::Timestamp>, SandboxFailure)> = HashMap::new();
    list_paged(&api_for::<Event>(cluster), lp, "events", cluster.namespace.as_deref(), |e| {
        let ns = e.involved_object.namespace.clone().or_else(|| e.namespace()).unwrap_or_default();
        let pod = e.involved_object.name.clone().unwrap_or_default();
        let when = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let failure = SandboxFailure {
            namespace: ns.clone(),
            pod: pod.clone(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
        };
        let entry = latest.entry((ns, pod)).or_insert_with(|| (when, failure.clone()));
        if when > entry.0 {
            *entry = (when, failure);
        }
    })
    .await?;
    let mut out: Vec<SandboxFailure> = latest.into_values().map(|(_, f)| f).collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finished_jobs_are_recognised() {
        let done: Job = serde_json::from_value(
            json!({"metadata":{"name":"report"},"status":{"conditions":[{"type":"Complete","status":"True"}]}}),
        )
        .unwrap();
        let running: Job = serde_json::from_value(json!({"metadata":{"name":"report"},"status":{"active":1}})).unwrap();
        assert!(job_finished(&done));
        assert!(!job_finished(&running));
    }
}
