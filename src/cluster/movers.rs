//! Moving pods: rollout restarts, node cordons, `--surge`, and the waits
//! that go with them (evictions are in `evictions.rs`). Every wait is a
//! watch with a deadline.

use std::time::Duration;

use crate::core::cidr::CidrSet;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use super::retry::repeat_unconditional;
use super::watch::{wait_list, wait_object};
use super::workloads::{owner_of, ready_condition};
use super::Cluster;
use crate::core::model::{Owner, OwnerKind};
use crate::error::{Error, KubeResultExt, Result};

/// Annotation kubectl sets for `rollout restart`.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Audit annotation on each workload we restarted.
pub const MIGRATED_ANNOTATION: &str = "ippool.kubectl.io/migrated";
/// Marks nodes we cordoned, so a resumed run uncordons them.
pub const CORDONED_ANNOTATION: &str = "ippool.kubectl.io/cordoned";
/// On a workload `--surge` scaled up: the replica count to go back to.
pub const SURGED_ANNOTATION: &str = "ippool.kubectl.io/surged-from";

/// The pod holds an address in `cidrs` and is not on its way out.
pub fn pod_in(p: &Pod, cidrs: &CidrSet) -> bool {
    if p.metadata.deletion_timestamp.is_some() || p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
        return false;
    }
    let status = p.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed")) {
        return false;
    }
    let ips = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|v| v.iter().map(|i| i.ip.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    let ips = if ips.is_empty() { status.and_then(|s| s.pod_ip.clone()).into_iter().collect() } else { ips };
    ips.iter().filter_map(|i| i.parse::<std::net::IpAddr>().ok()).any(|ip| cidrs.contains(&ip))
}

/// Pods of `owner` still holding an address in `cidr`.
pub async fn owner_pods_in(cluster: &Cluster, owner: &Owner, cidr: &CidrSet) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &owner.namespace);
    let list = api.list(&ListParams::default()).await.op("list", "pods", Some(&owner.namespace))?;
    Ok(list.items.into_iter().filter(|p| &owner_of(p) == owner && pod_in(p, cidr)).collect())
}

/// `kubectl rollout restart`: stamp the pod template, which starts a
/// rollout governed by the workload's own update strategy.
pub async fn restart(cluster: &Cluster, owner: &Owner, note: &str) -> Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = json!({
        "metadata": {"annotations": {MIGRATED_ANNOTATION: format!("{now} {note}")}},
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
    });
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let r = match owner.kind {
        OwnerKind::Deployment => merge_patch(Api::<Deployment>::namespaced(c, ns), &owner.name, &patch).await,
        OwnerKind::StatefulSet => merge_patch(Api::<StatefulSet>::namespaced(c, ns), &owner.name, &patch).await,
        OwnerKind::DaemonSet => merge_patch(Api::<DaemonSet>::namespaced(c, ns), &owner.name, &patch).await,
        OwnerKind::Rollout => {
            // Argo Rollouts' own restart: every pod created before
            // spec.restartAt is evicted by its controller, within the
            // rollout's maxUnavailable and the PodDisruptionBudgets.
            let patch = json!({
                "metadata": {"annotations": {MIGRATED_ANNOTATION: format!("{now} {note}")}},
                "spec": {"restartAt": now}
            });
            let r = merge_patch(rollouts(cluster, ns), &owner.name, &patch).await;
            return r.op("patch", "rollouts.argoproj.io", Some(ns));
        }
        _ => return Err(Error::Other(format!("{} cannot be restarted", owner.display()))),
    };
    r.op("patch", &format!("{}s.apps", owner.kind.as_str().to_lowercase()), Some(ns))
}

/// Argo Rollouts' `Rollout` objects in `ns`.
fn rollouts(cluster: &Cluster, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout");
    Api::namespaced_with(cluster.client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, "rollouts"))
}

/// The replicas an Argo Rollout asks for (1 when unset, as its controller
/// defaults it); None when it is gone.
pub async fn rollout_replicas(cluster: &Cluster, owner: &Owner) -> Result<Option<usize>> {
    let ns = owner.namespace.as_str();
    let found = rollouts(cluster, ns).get_opt(&owner.name).await.op("get", "rollouts.argoproj.io", Some(ns))?;
    Ok(found.map(|r| r.data["spec"]["replicas"].as_u64().unwrap_or(1) as usize))
}

/// Wait until no pod of `owner` holds an address in `cidr` (for owners
/// whose controller reports no rollout status this tool reads).
pub async fn wait_owner_off(cluster: &Cluster, owner: &Owner, cidr: &CidrSet, timeout: Duration) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &owner.namespace);
    let what = format!("{} to replace its pods on {cidr}", owner.display());
    let (owner, cidr) = (owner.clone(), cidr.clone());
    wait_list(api, watcher::Config::default(), &what, timeout, move |pods| {
        !pods.iter().any(|p| owner_of(p) == owner && pod_in(p, &cidr))
    })
    .await
}

/// Wait until the rollout of `owner` has finished, like `kubectl rollout status`.
pub async fn wait_rollout(cluster: &Cluster, owner: &Owner, timeout: Duration) -> Result<()> {
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let what = format!(
        "the rollout of {} (check `kubectl rollout status -n {ns} {}/{}`)",
        owner.display(),
        owner.kind.as_str().to_lowercase(),
        owner.name
    );
    match owner.kind {
        OwnerKind::Deployment => {
            wait_object(Api::<Deployment>::namespaced(c, ns), &owner.name, &what, timeout, |d: Option<&Deployment>| {
                d.is_none_or(deployment_done)
            })
            .await?;
        }
        OwnerKind::StatefulSet => {
            wait_object(
                Api::<StatefulSet>::namespaced(c, ns),
                &owner.name,
                &what,
                timeout,
                |s: Option<&StatefulSet>| s.is_none_or(statefulset_done),
            )
            .await?;
        }
        OwnerKind::DaemonSet => {
            wait_object(Api::<DaemonSet>::namespaced(c, ns), &owner.name, &what, timeout, |d: Option<&DaemonSet>| {
                d.is_none_or(daemonset_done)
            })
            .await?;
        }
        _ => {}
    }
    Ok(())
}

pub fn deployment_done(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else { return false };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) >= want
        && s.replicas.unwrap_or(0) <= want
        && s.available_replicas.unwrap_or(0) >= want
}

pub fn statefulset_done(ss: &StatefulSet) -> bool {
    let want = ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &ss.status else { return false };
    s.observed_generation.unwrap_or(0) >= ss.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) >= want
        && s.ready_replicas.unwrap_or(0) >= want
        && (s.update_revision.is_none() || s.current_revision == s.update_revision)
}

pub fn daemonset_done(ds: &DaemonSet) -> bool {
    let Some(s) = &ds.status else { return false };
    s.observed_generation.unwrap_or(0) >= ds.metadata.generation.unwrap_or(0)
        && s.updated_number_scheduled.unwrap_or(0) >= s.desired_number_scheduled
        && s.number_available.unwrap_or(0) >= s.desired_number_scheduled
}

/// The label selector of `owner`'s pods (its `spec.selector`), so counting
/// them reads only them, not their whole namespace. Empty (every pod of the
/// namespace, filtered by owner) for owners without one.
pub async fn pod_selector(cluster: &Cluster, owner: &Owner) -> Result<String> {
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let what = format!("{}s.apps", owner.kind.as_str().to_lowercase());
    let sel = match owner.kind {
        OwnerKind::Deployment => Api::<Deployment>::namespaced(c, ns)
            .get_opt(&owner.name)
            .await
            .op("get", &what, Some(ns))?
            .and_then(|d| d.spec.map(|s| s.selector)),
        OwnerKind::StatefulSet => Api::<StatefulSet>::namespaced(c, ns)
            .get_opt(&owner.name)
            .await
            .op("get", &what, Some(ns))?
            .and_then(|d| d.spec.map(|s| s.selector)),
        OwnerKind::DaemonSet => Api::<DaemonSet>::namespaced(c, ns)
            .get_opt(&owner.name)
            .await
            .op("get", &what, Some(ns))?
            .and_then(|d| d.spec.map(|s| s.selector)),
        _ => None,
    };
    Ok(sel.map(|s| super::budgets::label_selector_string(&s)).unwrap_or_default())
}

/// Wait until `owner` has at least `want` healthy pods again: the
/// replacements of evicted pods are Ready.
pub async fn wait_ready_pods(
    cluster: &Cluster,
    owner: &Owner,
    selector: &str,
    want: usize,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &owner.namespace);
    let what = format!("{} to have {want} Ready pod(s) again (the replacements of evicted pods)", owner.display());
    let owner = owner.clone();
    wait_list(api, watcher::Config::default().labels(selector), &what, timeout, move |pods| {
        pods.iter().filter(|p| owner_of(p) == owner && is_healthy(p)).count() >= want
    })
    .await
}

/// Ready and not being deleted: what a PodDisruptionBudget counts as healthy.
pub fn is_healthy(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && ready_condition(p).is_some()
}

/// Mark a node unschedulable (or schedulable again), noting that we did it.
pub async fn cordon(cluster: &Cluster, node: &str, on: bool) -> Result<()> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let ann = if on { json!("true") } else { serde_json::Value::Null };
    let patch = json!({"metadata": {"annotations": {CORDONED_ANNOTATION: ann}}, "spec": {"unschedulable": on}});
    merge_patch(api, node, &patch).await.op("patch", "nodes", None)
}

/// Cordon `node` for a drain, unless someone else already did: returns
/// whether this run cordoned it (and so must uncordon it after). A node an
/// administrator cordoned stays cordoned.
pub async fn cordon_for_drain(cluster: &Cluster, node: &str) -> Result<bool> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let n = api.get(node).await.op("get", "nodes", None)?;
    let unschedulable = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    if unschedulable && !n.annotations().contains_key(CORDONED_ANNOTATION) {
        return Ok(false);
    }
    cordon(cluster, node, true).await?;
    Ok(true)
}

/// Uncordon every node a previous (interrupted) run cordoned.
pub async fn uncordon_ours(cluster: &Cluster) -> Result<Vec<String>> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let list = api.list(&ListParams::default()).await.op("list", "nodes", None)?;
    let mut done = Vec::new();
    for n in list.items.iter().filter(|n| n.annotations().contains_key(CORDONED_ANNOTATION)) {
        cordon(cluster, &n.name_any(), false).await?;
        done.push(n.name_any());
    }
    Ok(done)
}

/// Scale `owner` (a Deployment or StatefulSet) up by `extra` replicas,
/// noting the count to return to on the object itself, in the same write,
/// so an interrupted run still knows it. Scaling an already surged workload
/// keeps its first noted count. Returns the count to return to.
pub async fn surge(cluster: &Cluster, owner: &Owner, extra: i32) -> Result<i32> {
    let (replicas, noted) = scale_of(cluster, owner).await?;
    let original = noted.unwrap_or(replicas);
    let patch = json!({
        "metadata": {"annotations": {SURGED_ANNOTATION: original.to_string()}},
        "spec": {"replicas": original + extra}
    });
    patch_workload(cluster, owner, &patch).await?;
    Ok(original)
}

/// Take a surged workload back to its noted replica count and drop the note.
pub async fn unsurge(cluster: &Cluster, owner: &Owner) -> Result<Option<i32>> {
    let (_, noted) = scale_of(cluster, owner).await?;
    let Some(original) = noted else { return Ok(None) };
    let patch = json!({"metadata": {"annotations": {SURGED_ANNOTATION: null}}, "spec": {"replicas": original}});
    patch_workload(cluster, owner, &patch).await?;
    Ok(Some(original))
}

/// Undo every surge an earlier (interrupted) run left behind (in the
/// namespace of `-n`, or all).
pub async fn unsurge_ours(cluster: &Cluster) -> Result<Vec<(Owner, i32)>> {
    let mut surged = Vec::new();
    let scope = cluster.namespace.as_deref();
    let deployments =
        cluster.scoped::<Deployment>().list(&ListParams::default()).await.op("list", "deployments.apps", scope)?;
    for d in deployments.items.iter().filter(|d| d.annotations().contains_key(SURGED_ANNOTATION)) {
        let ns = d.namespace().unwrap_or_default();
        surged.push(Owner {
            kind: OwnerKind::Deployment,
            other_kind: None,
            namespace: ns.into(),
            name: d.name_any().into(),
        });
    }
    let sets =
        cluster.scoped::<StatefulSet>().list(&ListParams::default()).await.op("list", "statefulsets.apps", scope)?;
    for s in sets.items.iter().filter(|s| s.annotations().contains_key(SURGED_ANNOTATION)) {
        let ns = s.namespace().unwrap_or_default();
        surged.push(Owner {
            kind: OwnerKind::StatefulSet,
            other_kind: None,
            namespace: ns.into(),
            name: s.name_any().into(),
        });
    }
    let mut done = Vec::new();
    for o in surged {
        if let Some(n) = unsurge(cluster, &o).await? {
            done.push((o, n));
        }
    }
    Ok(done)
}

/// `spec.replicas` and the noted pre-surge count of a Deployment or StatefulSet.
async fn scale_of(cluster: &Cluster, owner: &Owner) -> Result<(i32, Option<i32>)> {
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let noted = |a: &std::collections::BTreeMap<String, String>| a.get(SURGED_ANNOTATION).and_then(|v| v.parse().ok());
    match owner.kind {
        OwnerKind::Deployment => {
            let d =
                Api::<Deployment>::namespaced(c, ns).get(&owner.name).await.op("get", "deployments.apps", Some(ns))?;
            Ok((d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1), noted(d.annotations())))
        }
        OwnerKind::StatefulSet => {
            let s = Api::<StatefulSet>::namespaced(c, ns).get(&owner.name).await.op(
                "get",
                "statefulsets.apps",
                Some(ns),
            )?;
            Ok((s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1), noted(s.annotations())))
        }
        _ => Err(Error::Other(format!("{} cannot be scaled", owner.display()))),
    }
}

async fn patch_workload(cluster: &Cluster, owner: &Owner, patch: &serde_json::Value) -> Result<()> {
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let r = match owner.kind {
        OwnerKind::Deployment => merge_patch(Api::<Deployment>::namespaced(c, ns), &owner.name, patch).await,
        OwnerKind::StatefulSet => merge_patch(Api::<StatefulSet>::namespaced(c, ns), &owner.name, patch).await,
        _ => return Err(Error::Other(format!("{} cannot be scaled", owner.display()))),
    };
    r.op("patch", &format!("{}s.apps", owner.kind.as_str().to_lowercase()), Some(ns))
}

/// Wait until no pod of Job `owner` holds an address of `cidr`.
pub async fn wait_job(cluster: &Cluster, owner: &Owner, cidr: &CidrSet, timeout: Duration) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &owner.namespace);
    let cfg = watcher::Config::default().labels(&format!("job-name={}", owner.name));
    let cidr = cidr.clone();
    wait_list(api, cfg, &format!("{} to finish (or pass --jobs evict|skip)", owner.display()), timeout, move |pods| {
        !pods.iter().any(|p| pod_in(p, &cidr))
    })
    .await
}

/// A merge patch of absolute values: making it twice changes nothing more,
/// so it is made again after a transient failure or a conflict.
async fn merge_patch<K>(api: Api<K>, name: &str, patch: &serde_json::Value) -> kube::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PatchParams::default();
    let patch = Patch::Merge(patch);
    repeat_unconditional(|| api.patch(name, &pp, &patch)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_completion_rules() {
        let d: Deployment = serde_json::from_value(
            json!({"metadata":{"name":"web","generation":3},"spec":{"replicas":3,"selector":{},"template":{}},
            "status":{"observedGeneration":3,"replicas":4,"updatedReplicas":3,"availableReplicas":3}}),
        )
        .unwrap();
        assert!(!deployment_done(&d), "an old pod is still terminating");
        let d: Deployment = serde_json::from_value(
            json!({"metadata":{"name":"web","generation":3},"spec":{"replicas":3,"selector":{},"template":{}},
            "status":{"observedGeneration":3,"replicas":3,"updatedReplicas":3,"availableReplicas":3}}),
        )
        .unwrap();
        assert!(deployment_done(&d));
        let ss: StatefulSet = serde_json::from_value(json!({"metadata":{"name":"db","generation":2},"spec":{"replicas":2,"selector":{},"template":{},"serviceName":"db"},
            "status":{"observedGeneration":2,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"currentRevision":"a","updateRevision":"b"}}))
        .unwrap();
        assert!(!statefulset_done(&ss));
    }

    #[test]
    fn pod_in_pool_ignores_finished_and_host_network() {
        let cidr = CidrSet(vec!["192.168.0.0/16".parse().unwrap()]);
        let p: Pod = serde_json::from_value(
            json!({"metadata":{"name":"a"},"status":{"phase":"Running","podIPs":[{"ip":"192.168.1.1"}]}}),
        )
        .unwrap();
        assert!(pod_in(&p, &cidr));
        let p: Pod = serde_json::from_value(
            json!({"metadata":{"name":"a"},"status":{"phase":"Succeeded","podIP":"192.168.1.1"}}),
        )
        .unwrap();
        assert!(!pod_in(&p, &cidr));
    }
}
