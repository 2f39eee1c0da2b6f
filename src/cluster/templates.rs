//! The pool annotations of workload pod templates (what `verify` reads
//! beyond the snapshot). Everything is LISTed page by page.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::ListParams;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::workloads::pins_from;
use super::{list_paged, Cluster};
use crate::core::model::WorkloadTemplate;
use crate::error::Result;

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
    list_paged(&cluster.scoped::<K>(), ListParams::default(), plural, cluster.namespace.as_deref(), |o| {
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
