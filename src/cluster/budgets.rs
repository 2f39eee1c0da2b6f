//! PodDisruptionBudgets, read as the core's plain `PdbInfo`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use std::collections::BTreeMap;

use super::workloads::int_or_percent;
use super::{list_paged, Cluster};
use crate::core::budget::BudgetSpec;
use crate::core::model::PdbInfo;
use crate::core::plan::Guard;
use crate::error::{KubeResultExt, Result};

/// A pod's labels.
type Labels = BTreeMap<String, String>;

/// PodDisruptionBudgets with the pods their selectors match.
pub async fn list_pdbs(cluster: &Cluster) -> Result<Vec<PdbInfo>> {
    let api: Api<PodDisruptionBudget> = cluster.scoped();
    let mut pdbs = Vec::new();
    list_paged(&api, ListParams::default(), "poddisruptionbudgets.policy", cluster.namespace.as_deref(), |p| {
        pdbs.push(p)
    })
    .await?;
    // One LIST of the pods of each namespace with a budget, matched here:
    // a LIST per budget would cost a request per workload.
    let mut labels_in: BTreeMap<String, Vec<(String, Labels)>> = BTreeMap::new();
    let mut out = Vec::new();
    for p in pdbs {
        let ns = p.namespace().unwrap_or_default();
        // policy/v1: a missing selector matches no pod, an empty one every pod of the namespace.
        let selector = p.spec.as_ref().and_then(|s| s.selector.as_ref());
        let mut pods = Vec::new();
        match selector.map(|s| Selector::try_from(s.clone())) {
            None => {}
            Some(Ok(sel)) => {
                if !labels_in.contains_key(&ns) {
                    let mut all = Vec::new();
                    let papi: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
                    list_paged(&papi, ListParams::default(), "pods", Some(&ns), |pod| {
                        all.push((pod.name_any(), pod.metadata.labels.unwrap_or_default()))
                    })
                    .await?;
                    labels_in.insert(ns.clone(), all);
                }
                let all = labels_in.get(&ns).into_iter().flatten();
                pods.extend(all.filter(|(_, l)| sel.matches(l)).map(|(name, _)| format!("{ns}/{name}")));
            }
            // A selector kube cannot evaluate here: the API server does.
            Some(Err(_)) => {
                let selector = label_selector_string(selector.expect("matched Some"));
                let papi: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
                list_paged(&papi, ListParams::default().labels(&selector), "pods", Some(&ns), |pod| {
                    pods.push(format!("{ns}/{}", pod.name_any()))
                })
                .await?;
            }
        }
        let st = p.status.clone().unwrap_or_default();
        let spec = p.spec.as_ref();
        out.push(PdbInfo {
            namespace: ns,
            name: p.name_any(),
            spec: BudgetSpec {
                min_available: int_or_percent(spec.and_then(|s| s.min_available.as_ref())),
                max_unavailable: int_or_percent(spec.and_then(|s| s.max_unavailable.as_ref())),
            },
            disruptions_allowed: st.disruptions_allowed,
            current_healthy: st.current_healthy,
            desired_healthy: st.desired_healthy,
            expected_pods: st.expected_pods,
            pods,
        });
    }
    Ok(out)
}

/// `guards` as their PodDisruptionBudgets are now: each one's allowance
/// when every pod is healthy, from what the disruption controller last
/// counted (`expectedPods - desiredHealthy`). A budget that is gone guards
/// nothing.
pub async fn refresh_guards(cluster: &Cluster, guards: &[Guard]) -> Result<Vec<Guard>> {
    let mut out = Vec::new();
    for g in guards {
        let (ns, name) = g.pdb.split_once('/').unwrap_or(("", &g.pdb));
        let api: Api<PodDisruptionBudget> = Api::namespaced(cluster.client.clone(), ns);
        let Some(p) = api.get_opt(name).await.op("get", "poddisruptionbudgets.policy", Some(ns))? else {
            continue;
        };
        let st = p.status.unwrap_or_default();
        let allowance = (st.expected_pods - st.desired_healthy).max(0);
        out.push(Guard { allowance, scale: st.expected_pods, matched: st.expected_pods, ..g.clone() });
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
