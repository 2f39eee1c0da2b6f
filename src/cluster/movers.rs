//! Moving pods: rollout restarts, evictions, node drains, and the waits
//! that go with them. Every wait is a watch with a deadline.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, Condition};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::list_paged;
use super::workloads::owner_of;
use super::workloads::pins_from;
use super::Cluster;
use crate::core::model::{CniPools, Owner, OwnerKind, PdbInfo, WorkloadInfo};
use crate::error::{Error, KubeResultExt, Result};
use crate::output::Printer;

/// Annotation kubectl sets for `rollout restart`.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Audit annotation on each workload we restarted.
pub const MIGRATED_ANNOTATION: &str = "ippool.kubectl.io/migrated";
/// Marks nodes we cordoned, so a resumed run uncordons them.
pub const CORDONED_ANNOTATION: &str = "ippool.kubectl.io/cordoned";
/// kubectl drain's delay between eviction attempts refused by a PDB.
const EVICT_RETRY: Duration = Duration::from_secs(5);

/// Watch one object until `cond` holds, or fail after `timeout`.
pub async fn wait_object<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, cond)).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => Err(Error::Other(format!("watching {what}: {e}"))),
        Err(_) => Err(Error::Timeout { what: what.to_string(), after: timeout }),
    }
}

/// Watch a set of objects (a LIST + WATCH kept in memory) until `done`
/// holds for the current set, or fail after `timeout`.
pub async fn wait_list<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[&K]) -> bool,
) -> Result<()>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let run = async {
        let mut stream = std::pin::pin!(watcher(api, config));
        let mut items: BTreeMap<String, K> = BTreeMap::new();
        let mut initial: BTreeMap<String, K> = BTreeMap::new();
        let mut synced = false;
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        while let Some(ev) = stream.try_next().await.map_err(|e| Error::Other(format!("watching {what}: {e}")))? {
            match ev {
                Event::Init => initial.clear(),
                Event::InitApply(o) => {
                    initial.insert(key(&o), o);
                }
                Event::InitDone => {
                    items = std::mem::take(&mut initial);
                    synced = true;
                }
                Event::Apply(o) => {
                    items.insert(key(&o), o);
                }
                Event::Delete(o) => {
                    items.remove(&key(&o));
                }
            }
            if synced {
                let current: Vec<&K> = items.values().collect();
                if done(&current) {
                    return Ok(());
                }
            }
        }
        Err(Error::Other(format!("watch of {what} ended")))
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(Error::Timeout { what: what.to_string(), after: timeout }))
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = std::result::Result<Event<K>, watcher::Error>> + Send
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    watcher::watcher(api, config).boxed()
}

/// The pod holds an address of `cidr` and is not on its way out.
pub fn pod_in(p: &Pod, cidr: &IpNet) -> bool {
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
    ips.iter().filter_map(|i| i.parse::<std::net::IpAddr>().ok()).any(|ip| cidr.contains(&ip))
}

/// Pods of `owner` still holding an address of `cidr`.
pub async fn owner_pods_in(cluster: &Cluster, owner: &Owner, cidr: &IpNet) -> Result<Vec<Pod>> {
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
    let pp = PatchParams::default();
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let r = match owner.kind {
        OwnerKind::Deployment => {
            Api::<Deployment>::namespaced(c, ns).patch(&owner.name, &pp, &Patch::Merge(&patch)).await.map(|_| ())
        }
        OwnerKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(c, ns).patch(&owner.name, &pp, &Patch::Merge(&patch)).await.map(|_| ())
        }
        OwnerKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(c, ns).patch(&owner.name, &pp, &Patch::Merge(&patch)).await.map(|_| ())
        }
        _ => return Err(Error::Other(format!("{} cannot be restarted", owner.display()))),
    };
    r.op("patch", &format!("{}s.apps", owner.kind.as_str().to_lowercase()), Some(ns))
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

/// Evict one pod the way `kubectl drain` does: 429 (a PodDisruptionBudget
/// says no) is reported and retried, never forced; 404 means it is gone.
/// Then wait until the pod with that UID no longer exists.
pub async fn evict(
    cluster: &Cluster,
    printer: &Printer,
    namespace: &str,
    name: &str,
    uid: &str,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let eviction = Eviction {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        delete_options: Some(DeleteOptions {
            preconditions: (!uid.is_empty()).then(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        }),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = EVICT_RETRY;
    loop {
        let r: std::result::Result<serde_json::Value, _> =
            api.create_subresource("eviction", name, &PostParams::default(), &eviction).await;
        match r {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            // The UID precondition failed: a replacement with the same name exists; ours is gone.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 429 => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(Error::Timeout {
                        what: format!("a PodDisruptionBudget to allow evicting pod {namespace}/{name} ({})", s.message),
                        after: timeout,
                    });
                }
                printer.note(format!(
                    "error when evicting pods/\"{name}\" -n \"{namespace}\" (will retry after {}s): {}",
                    delay.as_secs(),
                    s.message
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e).op("create", "pods/eviction", Some(namespace)),
        }
    }
    let uid = uid.to_string();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_secs(1));
    wait_object(api, name, &format!("pod {namespace}/{name} to terminate"), left, move |p: Option<&Pod>| {
        p.is_none_or(|p| p.uid().as_deref() != Some(uid.as_str()))
    })
    .await?;
    Ok(())
}

/// Mark a node unschedulable (or schedulable again), noting that we did it.
pub async fn cordon(cluster: &Cluster, node: &str, on: bool) -> Result<()> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let ann = if on { json!("true") } else { serde_json::Value::Null };
    let patch = json!({"metadata": {"annotations": {CORDONED_ANNOTATION: ann}}, "spec": {"unschedulable": on}});
    api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.op("patch", "nodes", None).map(|_| ())
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

/// Wait until no pod of Job `owner` holds an address of `cidr`.
pub async fn wait_job(cluster: &Cluster, owner: &Owner, cidr: &IpNet, timeout: Duration) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &owner.namespace);
    let cfg = watcher::Config::default().labels(&format!("job-name={}", owner.name));
    let cidr = *cidr;
    wait_list(api, cfg, &format!("{} to finish (or pass --jobs evict|skip)", owner.display()), timeout, move |pods| {
        !pods.iter().any(|p| pod_in(p, &cidr))
    })
    .await
}

/// Deployments, StatefulSets and DaemonSets (of `-n`, or all), with their
/// template pins and update strategy.
pub async fn list_workloads(cluster: &Cluster) -> Result<Vec<WorkloadInfo>> {
    let mut out = Vec::new();
    let c = cluster.client.clone();
    let ns = cluster.namespace.as_deref();
    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope>>(c: kube::Client, ns: Option<&str>) -> Api<K>
    where
        K::DynamicType: Default,
    {
        match ns {
            Some(n) => Api::namespaced(c, n),
            None => Api::all(c),
        }
    }
    let mk = |kind, o: &dyn ResourceLike, strategy: Option<String>| WorkloadInfo {
        owner: Owner { kind, other_kind: None, namespace: o.ns(), name: o.nm() },
        template_pins: pins_from(&o.template_annotations()),
        update_strategy: strategy.unwrap_or_else(|| "RollingUpdate".into()),
    };
    list_paged(&api::<Deployment>(c.clone(), ns), ListParams::default(), "deployments.apps", ns, |d| {
        let s = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.clone());
        out.push(mk(OwnerKind::Deployment, &d, s))
    })
    .await?;
    list_paged(&api::<StatefulSet>(c.clone(), ns), ListParams::default(), "statefulsets.apps", ns, |d| {
        let s = d.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.clone());
        out.push(mk(OwnerKind::StatefulSet, &d, s))
    })
    .await?;
    list_paged(&api::<DaemonSet>(c, ns), ListParams::default(), "daemonsets.apps", ns, |d| {
        let s = d.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.clone());
        out.push(mk(OwnerKind::DaemonSet, &d, s))
    })
    .await?;
    Ok(out)
}

/// Just enough of a workload object to describe it.
trait ResourceLike {
    fn ns(&self) -> String;
    fn nm(&self) -> String;
    fn template_annotations(&self) -> BTreeMap<String, String>;
}

macro_rules! resource_like {
    ($t:ty) => {
        impl ResourceLike for $t {
            fn ns(&self) -> String {
                self.namespace().unwrap_or_default()
            }
            fn nm(&self) -> String {
                self.name_any()
            }
            fn template_annotations(&self) -> BTreeMap<String, String> {
                self.spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.annotations.clone())
                    .unwrap_or_default()
            }
        }
    };
}
resource_like!(Deployment);
resource_like!(StatefulSet);
resource_like!(DaemonSet);

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

/// `ipv4_pools`/`ipv6_pools` of the manifest install's CNI config
/// (ConfigMap kube-system/calico-config, key cni_network_config).
pub async fn read_cni_pools(cluster: &Cluster) -> Option<CniPools> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "kube-system");
    let cm = api.get_opt("calico-config").await.ok().flatten()?;
    let text = cm.data.as_ref()?.get("cni_network_config")?.clone();
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut pools = Vec::new();
    let mut visit = vec![&v];
    while let Some(x) = visit.pop() {
        match x {
            serde_json::Value::Object(m) => {
                for (k, val) in m {
                    if k == "ipv4_pools" || k == "ipv6_pools" {
                        pools.extend(
                            val.as_array().into_iter().flatten().filter_map(|p| p.as_str()).map(str::to_string),
                        );
                    } else {
                        visit.push(val);
                    }
                }
            }
            serde_json::Value::Array(a) => visit.extend(a.iter()),
            _ => {}
        }
    }
    (!pools.is_empty())
        .then(|| CniPools { source: "ConfigMap kube-system/calico-config (cni_network_config)".into(), pools })
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
        let cidr: IpNet = "192.168.0.0/16".parse().unwrap();
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
