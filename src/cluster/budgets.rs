//! PodDisruptionBudgets, read as the core's plain `PdbInfo`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::{list_paged, Cluster};
use crate::core::model::PdbInfo;
use crate::error::Result;

/// PodDisruptionBudgets with the pods their selectors match.
pub async fn list_pdbs(cluster: &Cluster) -> Result<Vec<PdbInfo>> {
    let api: Api<PodDisruptionBudget> = match &cluster.namespace {
        Some(n) => Api::namespaced(cluster.client.clone(), n),
        None => Api::all(cluster.client.clone()),
    };
    let mut pdbs = Vec::new();
    list_paged(&api, ListParams::default(), "poddisruptionbudgets.policy", cluster.namespace.as_deref(), |p| {
        pdbs.push(p)
    })
    .await?;
    let mut out = Vec::new();
    for p in pdbs {
        let ns = p.namespace().unwrap_or_default();
        let selector = p.spec.as_ref().and_then(|s| s.selector.as_ref()).map(label_selector_string).unwrap_or_default();
        let mut pods = Vec::new();
        if !selector.is_empty() {
            let papi: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
            list_paged(&papi, ListParams::default().labels(&selector), "pods", Some(&ns), |pod| {
                pods.push(format!("{ns}/{}", pod.name_any()))
            })
            .await?;
        }
        let st = p.status.clone().unwrap_or_default();
        out.push(PdbInfo {
            namespace: ns,
            name: p.name_any(),
            disruptions_allowed: st.disruptions_allowed,
            current_healthy: st.current_healthy,
            expected_pods: st.expected_pods,
            pods,
        });
    }
    Ok(out)
}

/// A LabelSelector in the `-l` syntax the API accepts.
pub fn label_selector_string(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in s.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}
