//! The few fields of a Pod and an IPAMHandle the inventory uses, as they
//! come over the wire. Deserializing a full `Pod` (every container, volume
//! and managed field) for a handful of values was most of `status`'s CPU;
//! serde skips every field not named here without allocating it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::core::model::{ANNOT_IPADDRS, ANNOT_IPV4POOLS, ANNOT_IPV6POOLS};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodObject {
    pub metadata: PodMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub creation_timestamp: Option<Time>,
    /// Only whether it is set matters.
    pub deletion_timestamp: Option<IgnoredAny>,
    pub labels: PodLabels,
    pub annotations: PodAnnotations,
    pub owner_references: Vec<OwnerRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodLabels {
    #[serde(rename = "pod-template-hash")]
    pub pod_template_hash: Option<String>,
    /// What Argo Rollouts labels its pods with instead.
    #[serde(rename = "rollouts-pod-template-hash")]
    pub rollouts_pod_template_hash: Option<String>,
}

/// The annotations read from a pod; all others are skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodAnnotations {
    #[serde(rename = "cni.projectcalico.org/ipv4pools")]
    pub ipv4pools: Option<String>,
    #[serde(rename = "cni.projectcalico.org/ipv6pools")]
    pub ipv6pools: Option<String>,
    #[serde(rename = "cni.projectcalico.org/ipAddrs")]
    pub ip_addrs: Option<String>,
    #[serde(rename = "cni.projectcalico.org/floatingIPs")]
    pub floating_ips: Option<String>,
    #[serde(rename = "cni.projectcalico.org/ipAddrsNoIpam")]
    pub ip_addrs_no_ipam: Option<String>,
    /// Every address Calico's CNI gave the pod, both families (comma-separated).
    #[serde(rename = "cni.projectcalico.org/podIPs")]
    pub pod_ips: Option<String>,
    #[serde(rename = "cni.projectcalico.org/containerID")]
    pub container_id: Option<String>,
    #[serde(rename = "kubernetes.io/config.mirror")]
    pub mirror: Option<IgnoredAny>,
}

impl PodAnnotations {
    /// The pool and address annotations by key, as `pins_from` reads them.
    pub fn pool_annotations(&self) -> BTreeMap<String, String> {
        [
            (ANNOT_IPV4POOLS, &self.ipv4pools),
            (ANNOT_IPV6POOLS, &self.ipv6pools),
            (ANNOT_IPADDRS, &self.ip_addrs),
            ("cni.projectcalico.org/floatingIPs", &self.floating_ips),
            ("cni.projectcalico.org/ipAddrsNoIpam", &self.ip_addrs_no_ipam),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    pub host_network: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<String>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp>>,
    pub conditions: Option<Vec<PodCondition>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub last_transition_time: Option<Time>,
}

/// An IPAMHandle (v1 or v3): one per pod, so worth keeping small. Its
/// per-block counts are not read: the checks match handles by ID.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HandleObject {
    pub metadata: NameOnly,
    pub spec: HandleSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NameOnly {
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HandleSpec {
    #[serde(rename = "handleID")]
    pub handle_id: Option<String>,
    /// A string in the v1 CRD, a bool in v3.
    pub deleted: Option<Value>,
}
