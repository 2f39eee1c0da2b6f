//! Pods, nodes and namespaces, reduced to `core::model` values page by page.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::{list_paged, Cluster};
use crate::core::budget::{IntOrPercent, UpdateStrategy};
use crate::core::model::WorkloadInfo;
use crate::core::model::{
    pod_addresses, NamespaceInfo, NodeInfo, Owner, OwnerKind, PodInfo, PoolPins, ANNOT_IPADDRS, ANNOT_IPV4POOLS,
    ANNOT_IPV6POOLS, ANNOT_POD_IPS,
};
use crate::error::Result;

/// Node annotations where calico-node keeps its tunnel addresses.
pub const TUNNEL_ANNOTATIONS: &[&str] = &[
    "projectcalico.org/IPv4IPIPTunnelAddr",
    "projectcalico.org/IPv4VXLANTunnelAddr",
    "projectcalico.org/IPv6VXLANTunnelAddr",
    "projectcalico.org/IPv4WireguardInterfaceAddr",
    "projectcalico.org/IPv6WireguardInterfaceAddr",
];

/// All pods (of `-n` if given), optionally filtered by a label selector.
pub async fn list_pods(cluster: &Cluster, label_selector: Option<&str>) -> Result<Vec<PodInfo>> {
    let api: Api<Pod> = match &cluster.namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let mut lp = ListParams::default();
    if let Some(sel) = label_selector {
        lp = lp.labels(sel);
    }
    let mut out = Vec::new();
    list_paged(&api, lp, "pods", cluster.namespace.as_deref(), |p| out.push(pod_info(&p))).await?;
    Ok(out)
}

pub async fn list_nodes(cluster: &Cluster) -> Result<Vec<NodeInfo>> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let mut out = Vec::new();
    list_paged(&api, ListParams::default(), "nodes", None, |n| out.push(node_info(&n))).await?;
    Ok(out)
}

pub async fn list_namespaces(cluster: &Cluster) -> Result<Vec<NamespaceInfo>> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let mut out = Vec::new();
    list_paged(&api, ListParams::default(), "namespaces", None, |n| {
        out.push(NamespaceInfo { name: n.name_any(), labels: n.labels().clone(), pins: pins_from(n.annotations()) })
    })
    .await?;
    Ok(out)
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

pub fn pod_info(p: &Pod) -> PodInfo {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let status_ips: Vec<&str> =
        status.and_then(|s| s.pod_ips.as_ref()).map(|v| v.iter().map(|i| i.ip.as_str()).collect()).unwrap_or_default();
    // A host-network pod has the node's addresses; a leftover annotation is not one of them.
    let annotation =
        if spec.and_then(|s| s.host_network) == Some(true) { None } else { p.annotations().get(ANNOT_POD_IPS) };
    let ips = pod_addresses(&status_ips, status.and_then(|s| s.pod_ip.as_deref()), annotation.map(String::as_str));
    let ready_condition = ready_condition(p);
    let ready = ready_condition.is_some();
    // Creation to Ready: how long one replacement takes on this cluster.
    let ready_after =
        match (ready_condition.and_then(|c| c.last_transition_time.as_ref()), &p.metadata.creation_timestamp) {
            (Some(r), Some(c)) => Some(r.0.duration_since(c.0).as_secs_f64() as f32).filter(|s| *s >= 0.0),
            _ => None,
        };
    PodInfo {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
        uid: p.uid().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ips,
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        ready,
        terminating: p.metadata.deletion_timestamp.is_some(),
        owner: owner_of(p),
        pins: pins_from(p.annotations()),
        container_id: p.annotations().get("cni.projectcalico.org/containerID").cloned(),
        ready_after,
    }
}

/// Who owns a pod. A ReplicaSet named `<deployment>-<pod-template-hash>`
/// belongs to that Deployment; reading the label avoids listing every
/// ReplicaSet in the cluster.
pub fn owner_of(p: &Pod) -> Owner {
    let ns = p.namespace().unwrap_or_default();
    let mk = |kind, name: &str, other: Option<&str>| Owner {
        kind,
        other_kind: other.map(str::to_string),
        namespace: ns.clone(),
        name: name.to_string(),
    };
    if p.annotations().contains_key("kubernetes.io/config.mirror") {
        return mk(OwnerKind::Static, &p.name_any(), None);
    }
    let Some(ctl) = p.owner_references().iter().find(|o| o.controller == Some(true)).or(p.owner_references().first())
    else {
        return mk(OwnerKind::Bare, &p.name_any(), None);
    };
    match ctl.kind.as_str() {
        "ReplicaSet" => {
            let hash = p.labels().get("pod-template-hash");
            match hash.and_then(|h| ctl.name.strip_suffix(&format!("-{h}"))) {
                Some(deploy) => mk(OwnerKind::Deployment, deploy, None),
                None => mk(OwnerKind::ReplicaSet, &ctl.name, None),
            }
        }
        "StatefulSet" => mk(OwnerKind::StatefulSet, &ctl.name, None),
        "DaemonSet" => mk(OwnerKind::DaemonSet, &ctl.name, None),
        "Job" => mk(OwnerKind::Job, &ctl.name, None),
        "Node" => mk(OwnerKind::Static, &p.name_any(), None),
        other => mk(OwnerKind::Other, &ctl.name, Some(other)),
    }
}

pub fn node_info(n: &Node) -> NodeInfo {
    let internal_ips = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| a.iter().filter(|a| a.type_ == "InternalIP").filter_map(|a| a.address.parse().ok()).collect())
        .unwrap_or_default();
    let tunnel_ips = TUNNEL_ANNOTATIONS
        .iter()
        .filter_map(|k| n.annotations().get(*k))
        .filter_map(|v| v.split('/').next().and_then(|ip| ip.parse().ok()))
        .collect();
    NodeInfo {
        name: n.name_any(),
        labels: n.labels().clone(),
        internal_ips,
        tunnel_ips,
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

/// Deployments, StatefulSets and DaemonSets (of `-n`, or all), with their
/// template pins and update strategy.
pub async fn list_workloads(cluster: &Cluster) -> Result<Vec<WorkloadInfo>> {
    let mut out = Vec::new();
    let ns = cluster.namespace.as_deref();
    let mk = |kind, o: &dyn ResourceLike, replicas: i32, strategy: UpdateStrategy, paused: bool| WorkloadInfo {
        owner: Owner { kind, other_kind: None, namespace: o.ns(), name: o.nm() },
        template_pins: pins_from(&o.template_annotations()),
        replicas,
        strategy,
        paused,
        autoscaler: None,
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
    if let Err(e) = r {
        tracing::debug!("cannot list autoscalers: {e}");
    }
    for w in &mut out {
        let key = (w.owner.namespace.clone(), w.owner.kind.as_str().to_string(), w.owner.name.clone());
        w.autoscaler = scaled.get(&key).cloned();
    }
    Ok(out)
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
        let p: Pod = serde_json::from_value(json!({"metadata":{"name":"web-7d9f-abcde","namespace":"shop","labels":{"pod-template-hash":"7d9f"},
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f","uid":"u","controller":true}]},
            "spec":{"containers":[],"nodeName":"n1"},"status":{"phase":"Running","podIPs":[{"ip":"192.168.0.4"}],
            "conditions":[{"type":"Ready","status":"True"}]}}))
        .unwrap();
        let info = pod_info(&p);
        assert_eq!(info.owner.kind, OwnerKind::Deployment);
        assert_eq!(info.owner.name, "web");
        assert!(info.ready);
        assert_eq!(info.ips, vec!["192.168.0.4".parse::<std::net::IpAddr>().unwrap()]);
    }

    #[test]
    fn bare_and_pinned_pods() {
        let p: Pod = serde_json::from_value(json!({"metadata":{"name":"debug","namespace":"shop",
            "annotations":{"cni.projectcalico.org/ipv4pools":"[\"default-ipv4-ippool\"]"}},"spec":{"containers":[]}}))
        .unwrap();
        let info = pod_info(&p);
        assert_eq!(info.owner.kind, OwnerKind::Bare);
        assert_eq!(info.pins.pools, vec!["default-ipv4-ippool"]);
        assert_eq!(info.phase, "Pending");
    }
}
