//! Pods, nodes and namespaces, reduced to `core::model` values page by page.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Resource, ResourceExt};

use super::listing::{list_as, Freshness};
use super::lite::PodObject;
use super::{list_paged, Cluster};
use crate::core::budget::{IntOrPercent, UpdateStrategy};
use crate::core::model::WorkloadInfo;
use crate::core::model::{
    pod_addresses, NamespaceInfo, NodeAddress, NodeInfo, Owner, OwnerKind, PodInfo, PodPhase, PoolPins, ANNOT_IPADDRS,
    ANNOT_IPV4POOLS, ANNOT_IPV6POOLS,
};
use crate::core::name::{Name, Names};
use crate::error::Result;

/// Node annotations where calico-node keeps its tunnel addresses.
pub const TUNNEL_ANNOTATIONS: &[&str] = &[
    "projectcalico.org/IPv4IPIPTunnelAddr",
    "projectcalico.org/IPv4VXLANTunnelAddr",
    "projectcalico.org/IPv6VXLANTunnelAddr",
    "projectcalico.org/IPv4WireguardInterfaceAddr",
    "projectcalico.org/IPv6WireguardInterfaceAddr",
];

/// All pods (of `-n` if given), optionally filtered by a label selector,
/// in one consistent read.
pub async fn list_pods(cluster: &Cluster, label_selector: Option<&str>) -> Result<Vec<PodInfo>> {
    list_pods_from(cluster, label_selector, Freshness::Consistent).await
}

pub async fn list_pods_from(cluster: &Cluster, label_selector: Option<&str>, fresh: Freshness) -> Result<Vec<PodInfo>> {
    let ns = cluster.namespace.as_deref();
    let mut lp = ListParams::default();
    if let Some(sel) = label_selector {
        lp = lp.labels(sel);
    }
    let path = Pod::url_path(&(), ns);
    // One copy of each namespace, node and owner name for all the pods.
    let names = Mutex::new(Names::default());
    list_as(cluster, &path, &lp, fresh, "pods", ns, move |p: PodObject| {
        Some(pod_info(&p, &mut names.lock().unwrap_or_else(|e| e.into_inner())))
    })
    .await
}

pub async fn list_nodes(cluster: &Cluster, fresh: Freshness) -> Result<Vec<NodeInfo>> {
    let path = Node::url_path(&(), None);
    list_as(cluster, &path, &ListParams::default(), fresh, "nodes", None, |n: Node| Some(node_info(&n))).await
}

pub async fn list_namespaces(cluster: &Cluster, fresh: Freshness) -> Result<Vec<NamespaceInfo>> {
    let path = Namespace::url_path(&(), None);
    list_as(cluster, &path, &ListParams::default(), fresh, "namespaces", None, |n: Namespace| {
        Some(NamespaceInfo { name: n.name_any(), labels: n.labels().clone(), pins: pins_from(n.annotations()) })
    })
    .await
}

/// Parse the Calico pool annotations. Values are JSON lists of pool names or
/// CIDRs (`'["pool-a"]'`); anything else is kept as unparsable.
pub fn pins_from(annotations: &std::collections::BTreeMap<String, String>) -> PoolPins {
    let mut pins = PoolPins::default();
    for key in [ANNOT_IPV4POOLS, ANNOT_IPV6POOLS] {
        if let Some(v) = annotations.get(key) {
            match serde_json::from_str::<Vec<String>>(v) {
                Ok(list) => pins.pools.extend(list),
                Err(_) => pins.unparsable = Some(format!("{key}={v}")),
            }
        }
    }
    if let Some(v) = annotations.get(ANNOT_IPADDRS) {
        match serde_json::from_str::<Vec<String>>(v) {
            Ok(list) => pins.ip_addrs.extend(list),
            Err(_) => pins.unparsable = Some(format!("{ANNOT_IPADDRS}={v}")),
        }
    }
    // Not pins (the pod gets its own address as usual), but addresses the
    // old pool's deletion must know about. Calico refuses unparsable values.
    let list =
        |key: &str| annotations.get(key).and_then(|v| serde_json::from_str::<Vec<String>>(v).ok()).unwrap_or_default();
    pins.floating_ips = list("cni.projectcalico.org/floatingIPs");
    pins.no_ipam_addrs = list("cni.projectcalico.org/ipAddrsNoIpam");
    pins
}

/// The pod's `Ready` condition, when it is True.
pub fn ready_condition(p: &Pod) -> Option<&PodCondition> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's record; `names` gives the shared copy of each repeated name.
pub fn pod_info(p: &PodObject, names: &mut Names) -> PodInfo {
    let (meta, spec, status) = (&p.metadata, &p.spec, &p.status);
    let status_ips: Vec<&str> =
        status.pod_ips.as_ref().map(|v| v.iter().map(|i| i.ip.as_str()).collect()).unwrap_or_default();
    // A host-network pod has the node's addresses; a leftover annotation is not one of them.
    let annotation = if spec.host_network == Some(true) { None } else { meta.annotations.pod_ips.as_deref() };
    let ips = pod_addresses(&status_ips, status.pod_ip.as_deref(), annotation);
    let ready_condition = status.conditions.iter().flatten().find(|c| c.type_ == "Ready" && c.status == "True");
    // Creation to Ready: how long one replacement takes on this cluster.
    let ready_after = match (ready_condition.and_then(|c| c.last_transition_time.as_ref()), &meta.creation_timestamp) {
        (Some(r), Some(c)) => Some(r.0.duration_since(c.0).as_secs_f64() as f32).filter(|s| *s >= 0.0),
        _ => None,
    };
    let refs = OwnerRefs {
        controller: meta.owner_references.iter().find(|o| o.controller == Some(true)).map(|o| (&*o.kind, &*o.name)),
        first: meta.owner_references.first().map(|o| (&*o.kind, &*o.name)),
    };
    let hashes = TemplateHashes {
        deployment: meta.labels.pod_template_hash.as_deref(),
        rollout: meta.labels.rollouts_pod_template_hash.as_deref(),
    };
    let namespace = names.get(&meta.namespace);
    PodInfo {
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        node: spec.node_name.as_deref().map(|n| names.get(n)),
        ips,
        phase: status.phase.as_deref().map_or(PodPhase::Pending, PodPhase::parse),
        host_network: spec.host_network.unwrap_or(false),
        ready: ready_condition.is_some(),
        terminating: meta.deletion_timestamp.is_some(),
        owner: classify_owner(names, &namespace, &meta.name, meta.annotations.mirror.is_some(), hashes, refs),
        namespace,
        pins: pins_from(&meta.annotations.pool_annotations()).into(),
        container_id: meta.annotations.container_id.clone(),
        ready_after,
    }
}

/// Who owns a pod. A ReplicaSet named `<deployment>-<pod-template-hash>`
/// belongs to that Deployment; reading the label avoids listing every
/// ReplicaSet in the cluster.
pub fn owner_of(p: &Pod) -> Owner {
    let owners = p.owner_references();
    let refs = OwnerRefs {
        controller: owners.iter().find(|o| o.controller == Some(true)).map(|o| (&*o.kind, &*o.name)),
        first: owners.first().map(|o| (&*o.kind, &*o.name)),
    };
    let label = |k: &str| p.labels().get(k).map(String::as_str);
    let hashes =
        TemplateHashes { deployment: label("pod-template-hash"), rollout: label("rollouts-pod-template-hash") };
    let mut names = Names::default();
    let namespace = names.get(&p.namespace().unwrap_or_default());
    let mirror = p.annotations().contains_key("kubernetes.io/config.mirror");
    classify_owner(&mut names, &namespace, &p.name_any(), mirror, hashes, refs)
}

/// A pod's owner references as (kind, name): its controller's, and the
/// first one's (which may not be a controller).
struct OwnerRefs<'a> {
    controller: Option<(&'a str, &'a str)>,
    first: Option<(&'a str, &'a str)>,
}

/// The template hash labels a ReplicaSet's owner puts on its pods: the
/// Deployment controller's and Argo Rollouts'.
#[derive(Clone, Copy)]
struct TemplateHashes<'a> {
    deployment: Option<&'a str>,
    rollout: Option<&'a str>,
}

/// The owner from a pod's namespace, name, mirror annotation, template hash
/// labels and owner references.
fn classify_owner(
    names: &mut Names,
    ns: &Name,
    pod: &str,
    mirror: bool,
    hashes: TemplateHashes,
    refs: OwnerRefs,
) -> Owner {
    let mut mk = |kind, name: &str, other: Option<&str>| Owner {
        kind,
        other_kind: other.map(|k| names.get(k)),
        namespace: ns.clone(),
        name: names.get(name),
    };
    if mirror {
        return mk(OwnerKind::Static, pod, None);
    }
    let Some((kind, name)) = refs.controller else {
        // A non-controller reference only ties the pod's deletion to its
        // owner: nothing re-creates the pod.
        return match refs.first {
            Some((kind, name)) => mk(OwnerKind::NotController, name, Some(kind)),
            None => mk(OwnerKind::Bare, pod, None),
        };
    };
    // A ReplicaSet is named `<owner>-<hash>`, the hash a label of its pods.
    let owned_rs = |hash: Option<&str>| hash.and_then(|h| name.strip_suffix(&format!("-{h}")).map(str::to_string));
    match kind {
        "ReplicaSet" => match (owned_rs(hashes.deployment), owned_rs(hashes.rollout)) {
            (Some(deploy), _) => mk(OwnerKind::Deployment, &deploy, None),
            (None, Some(rollout)) => mk(OwnerKind::Rollout, &rollout, None),
            (None, None) => mk(OwnerKind::ReplicaSet, name, None),
        },
        "ReplicationController" => mk(OwnerKind::ReplicationController, name, None),
        "StatefulSet" => mk(OwnerKind::StatefulSet, name, None),
        "DaemonSet" => mk(OwnerKind::DaemonSet, name, None),
        "Job" => mk(OwnerKind::Job, name, None),
        "Node" => mk(OwnerKind::Static, pod, None),
        other => mk(OwnerKind::Other, name, Some(other)),
    }
}

pub fn node_info(n: &Node) -> NodeInfo {
    // Every type: an ExternalIP or an IPv6 address inside a pod range
    // collides as surely as an InternalIP (Hostname entries do not parse).
    let addresses = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address.parse().ok().map(|ip| NodeAddress { kind: a.type_.clone(), ip }))
                .collect()
        })
        .unwrap_or_default();
    let tunnel_ips = TUNNEL_ANNOTATIONS
        .iter()
        .filter_map(|k| n.annotations().get(*k))
        .filter_map(|v| v.split('/').next().and_then(|ip| ip.parse().ok()))
        .collect();
    NodeInfo {
        name: n.name_any(),
        labels: n.labels().clone(),
        addresses,
        tunnel_ips,
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

/// Wait (a watch on nodes, at most `timeout`) until no node tunnel address
/// lies in `cidrs`; false when some still do at the end.
pub async fn wait_tunnels_leave(
    cluster: &Cluster,
    cidrs: &[ipnet::IpNet],
    timeout: std::time::Duration,
) -> Result<bool> {
    let api: kube::Api<Node> = kube::Api::all(cluster.client.clone());
    let left = |nodes: &[&Node]| {
        nodes.iter().any(|n| node_info(n).tunnel_ips.iter().any(|ip| cidrs.iter().any(|c| c.contains(ip))))
    };
    let what = "node tunnel addresses to leave the new pool";
    match super::watch::wait_list(api, kube::runtime::watcher::Config::default(), what, timeout, |n| !left(n)).await {
        Ok(()) => Ok(true),
        Err(crate::error::Error::Timeout { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deployments, StatefulSets and DaemonSets (of `-n`, or all), with their
/// template pins and update strategy.
pub async fn list_workloads(cluster: &Cluster) -> Result<Vec<WorkloadInfo>> {
    let mut out = Vec::new();
    let ns = cluster.namespace.as_deref();
    let mk = |kind, o: &dyn ResourceLike, replicas: i32, strategy: UpdateStrategy, paused: bool| WorkloadInfo {
        owner: Owner { kind, other_kind: None, namespace: o.ns().into(), name: o.nm().into() },
        template_pins: pins_from(&o.template_annotations()),
        replicas,
        strategy,
        paused,
        autoscaler: None,
        autoscalers_unread: None,
    };
    list_paged(&cluster.scoped::<Deployment>(), ListParams::default(), "deployments.apps", ns, |d| {
        let spec = d.spec.as_ref();
        let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
        let paused = spec.and_then(|s| s.paused).unwrap_or(false);
        out.push(mk(OwnerKind::Deployment, &d, replicas, deployment_strategy(&d), paused))
    })
    .await?;
    list_paged(&cluster.scoped::<StatefulSet>(), ListParams::default(), "statefulsets.apps", ns, |d| {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        out.push(mk(OwnerKind::StatefulSet, &d, replicas, statefulset_strategy(&d), false))
    })
    .await?;
    list_paged(&cluster.scoped::<DaemonSet>(), ListParams::default(), "daemonsets.apps", ns, |d| {
        let replicas = d.status.as_ref().map_or(0, |s| s.desired_number_scheduled);
        out.push(mk(OwnerKind::DaemonSet, &d, replicas, daemonset_strategy(&d), false))
    })
    .await?;
    // Who owns the replica count matters only for --surge; a user who may
    // not list autoscalers still gets a plan.
    let hpas = cluster.scoped::<HorizontalPodAutoscaler>();
    let mut scaled: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let r = list_paged(&hpas, ListParams::default(), "horizontalpodautoscalers.autoscaling", ns, |h| {
        if let Some(spec) = &h.spec {
            let t = &spec.scale_target_ref;
            scaled.insert((h.namespace().unwrap_or_default(), t.kind.clone(), t.name.clone()), h.name_any());
        }
    })
    .await;
    let unread = r.err().map(|e| {
        tracing::debug!("cannot list autoscalers: {e}");
        e.to_string()
    });
    for w in &mut out {
        let key = (w.owner.namespace.to_string(), w.owner.kind.as_str().to_string(), w.owner.name.to_string());
        w.autoscaler = scaled.get(&key).cloned();
        w.autoscalers_unread.clone_from(&unread);
    }
    Ok(out)
}

/// `owner` (a Deployment, StatefulSet or DaemonSet) as it is now; None
/// when it is gone or of another kind. Its autoscaler is not read again.
pub async fn read_workload(cluster: &Cluster, owner: &Owner) -> Result<Option<WorkloadInfo>> {
    use crate::error::KubeResultExt;
    let ns = owner.namespace.as_str();
    let c = cluster.client.clone();
    let what = format!("{}s.apps", owner.kind.as_str().to_lowercase());
    let found = match owner.kind {
        OwnerKind::Deployment => {
            kube::Api::<Deployment>::namespaced(c, ns).get_opt(&owner.name).await.op("get", &what, Some(ns))?.map(|d| {
                let spec = d.spec.as_ref();
                let paused = spec.and_then(|s| s.paused).unwrap_or(false);
                (spec.and_then(|s| s.replicas).unwrap_or(1), deployment_strategy(&d), paused)
            })
        }
        OwnerKind::StatefulSet => kube::Api::<StatefulSet>::namespaced(c, ns)
            .get_opt(&owner.name)
            .await
            .op("get", &what, Some(ns))?
            .map(|d| (d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1), statefulset_strategy(&d), false)),
        OwnerKind::DaemonSet => kube::Api::<DaemonSet>::namespaced(c, ns)
            .get_opt(&owner.name)
            .await
            .op("get", &what, Some(ns))?
            .map(|d| (d.status.as_ref().map_or(0, |s| s.desired_number_scheduled), daemonset_strategy(&d), false)),
        _ => None,
    };
    Ok(found.map(|(replicas, strategy, paused)| WorkloadInfo {
        owner: owner.clone(),
        template_pins: PoolPins::default(),
        replicas,
        strategy,
        paused,
        autoscaler: None,
        autoscalers_unread: Some("not read again when the lane started".into()),
    }))
}

pub(crate) fn int_or_percent(v: Option<&IntOrString>) -> Option<IntOrPercent> {
    match v? {
        IntOrString::Int(i) => Some(IntOrPercent::Int(*i)),
        IntOrString::String(s) => IntOrPercent::parse_str(s),
    }
}

fn deployment_strategy(d: &Deployment) -> UpdateStrategy {
    let s = d.spec.as_ref().and_then(|s| s.strategy.as_ref());
    if s.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return UpdateStrategy::Recreate;
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    UpdateStrategy::DeploymentRolling {
        max_surge: int_or_percent(ru.and_then(|r| r.max_surge.as_ref())).unwrap_or(IntOrPercent::Percent(25)),
        max_unavailable: int_or_percent(ru.and_then(|r| r.max_unavailable.as_ref()))
            .unwrap_or(IntOrPercent::Percent(25)),
    }
}

fn statefulset_strategy(ss: &StatefulSet) -> UpdateStrategy {
    let s = ss.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if s.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return UpdateStrategy::OnDelete;
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    UpdateStrategy::StatefulSetRolling {
        max_unavailable: int_or_percent(ru.and_then(|r| r.max_unavailable.as_ref())),
        partition: ru.and_then(|r| r.partition).unwrap_or(0),
    }
}

fn daemonset_strategy(ds: &DaemonSet) -> UpdateStrategy {
    let s = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if s.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return UpdateStrategy::OnDelete;
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    UpdateStrategy::DaemonSetRolling {
        max_unavailable: int_or_percent(ru.and_then(|r| r.max_unavailable.as_ref())).unwrap_or(IntOrPercent::Int(1)),
        max_surge: int_or_percent(ru.and_then(|r| r.max_surge.as_ref())).unwrap_or(IntOrPercent::Int(0)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_owner_from_pod_template_hash() {
        let v = json!({"metadata":{"name":"web-7d9f-abcde","namespace":"shop","labels":{"pod-template-hash":"7d9f"},
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f","uid":"u","controller":true}]},
            "spec":{"containers":[],"nodeName":"n1"},"status":{"phase":"Running","podIPs":[{"ip":"192.168.0.4"}],
            "conditions":[{"type":"Ready","status":"True"}]}});
        let info = pod_info(&serde_json::from_value(v.clone()).unwrap(), &mut Names::default());
        let p: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(owner_of(&p), info.owner, "the full Pod and the lite object give one owner");
        assert_eq!(info.owner.kind, OwnerKind::Deployment);
        assert_eq!(info.owner.name, "web");
        assert!(info.ready);
        assert_eq!(info.ips, vec!["192.168.0.4".parse::<std::net::IpAddr>().unwrap()]);
    }

    /// Argo Rollouts' pods, ReplicationControllers, custom controllers and
    /// owner references that are not controllers: each its own kind, the
    /// lite object and the full Pod agreeing.
    #[test]
    fn owners_beyond_the_apps_controllers() {
        let owner = |refs: serde_json::Value, labels: serde_json::Value| {
            let v = json!({"metadata":{"name":"p","namespace":"shop","labels":labels,"ownerReferences":refs},
                "spec":{"containers":[]}});
            let lite = pod_info(&serde_json::from_value(v.clone()).unwrap(), &mut Names::default()).owner;
            assert_eq!(owner_of(&serde_json::from_value(v).unwrap()), lite);
            (lite.kind, lite.display())
        };
        let rs = json!([{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-6f7d","uid":"u","controller":true}]);
        assert_eq!(
            owner(rs.clone(), json!({"rollouts-pod-template-hash":"6f7d"})),
            (OwnerKind::Rollout, "Rollout shop/web".into())
        );
        assert_eq!(owner(rs, json!({})), (OwnerKind::ReplicaSet, "ReplicaSet shop/web-6f7d".into()));
        let rc = json!([{"apiVersion":"v1","kind":"ReplicationController","name":"old","uid":"u","controller":true}]);
        assert_eq!(owner(rc, json!({})).0, OwnerKind::ReplicationController);
        let vmi = json!([{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance","name":"vm1","uid":"u","controller":true}]);
        assert_eq!(owner(vmi, json!({})), (OwnerKind::Other, "VirtualMachineInstance shop/vm1".into()));
        let not_controller = json!([{"apiVersion":"v1","kind":"ConfigMap","name":"cfg","uid":"u"}]);
        assert_eq!(owner(not_controller, json!({})), (OwnerKind::NotController, "ConfigMap shop/cfg".into()));
    }

    #[test]
    fn bare_and_pinned_pods() {
        let p: PodObject = serde_json::from_value(json!({"metadata":{"name":"debug","namespace":"shop",
            "annotations":{"cni.projectcalico.org/ipv4pools":"[\"default-ipv4-ippool\"]"}},"spec":{"containers":[]}}))
        .unwrap();
        let info = pod_info(&p, &mut Names::default());
        assert_eq!(info.owner.kind, OwnerKind::Bare);
        assert_eq!(info.pins.pools, vec!["default-ipv4-ippool"]);
        assert_eq!(info.phase, "Pending");
    }
}
