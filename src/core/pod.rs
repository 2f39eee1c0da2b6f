//! A pod as the tool keeps it, with its owner and pool annotations: one
//! compact record per pod, since a cluster may have tens of thousands. Names many pods repeat (namespace, node,
//! owner) are shared [`Name`]s, the phase is an enum, and the rare pool
//! annotations sit behind a pointer.

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::name::Name;

/// A pod, reduced to what matters for IP pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    pub namespace: Name,
    pub name: String,
    pub uid: String,
    pub node: Option<Name>,
    /// `status.podIPs` (or `status.podIP`), empty while pending.
    pub ips: Vec<IpAddr>,
    pub phase: PodPhase,
    pub host_network: bool,
    pub ready: bool,
    /// metadata.deletionTimestamp is set.
    pub terminating: bool,
    pub owner: Owner,
    pub pins: PodPins,
    /// `cni.projectcalico.org/containerID`, which names the IPAM handle.
    pub container_id: Option<String>,
    /// Seconds from creation to Ready, for Ready pods.
    pub ready_after: Option<f32>,
}

impl PodInfo {
    /// Finished pods keep showing their last IP; it is no longer theirs.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Holds a Calico-assigned IP right now.
    pub fn holds_pool_ip(&self) -> bool {
        !self.host_network && !self.is_finished() && !self.ips.is_empty()
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What kind of controller owns a pod, as far as moving it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OwnerKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// A ReplicaSet not owned by a Deployment.
    ReplicaSet,
    Job,
    /// A mirror pod of a static pod: cannot be moved through the API.
    Static,
    /// No controller: deleting it loses it for good.
    Bare,
    /// An Argo Rollout (`argoproj.io/v1alpha1`), through its ReplicaSets:
    /// restarted through `spec.restartAt`.
    Rollout,
    /// A ReplicationController: it re-creates evicted pods.
    ReplicationController,
    /// A controller this tool does not know (a custom resource such as a
    /// KubeVirt VirtualMachineInstance): nothing known re-creates an
    /// evicted pod. `other_kind` names its kind.
    Other,
    /// Owner references, none of them a controller: nothing re-creates it.
    /// `other_kind` and `name` name the first owner.
    NotController,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Deployment => "Deployment",
            OwnerKind::StatefulSet => "StatefulSet",
            OwnerKind::DaemonSet => "DaemonSet",
            OwnerKind::ReplicaSet => "ReplicaSet",
            OwnerKind::Job => "Job",
            OwnerKind::Static => "Static",
            OwnerKind::Bare => "Bare",
            OwnerKind::Rollout => "Rollout",
            OwnerKind::ReplicationController => "ReplicationController",
            OwnerKind::Other => "Other",
            OwnerKind::NotController => "NotController",
        }
    }
}

/// The workload a pod belongs to: `Deployment shop/web`, `Bare shop/debug`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub kind: OwnerKind,
    /// For `Other`, the real kind (e.g. `ReplicationController`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_kind: Option<Name>,
    pub namespace: Name,
    pub name: Name,
}

impl Owner {
    pub fn display(&self) -> String {
        let kind = self.other_kind.as_deref().unwrap_or(self.kind.as_str());
        format!("{kind} {}/{}", self.namespace, self.name)
    }
}

/// Pools a pod or namespace asks for by annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolPins {
    /// Pool names or CIDRs from `ipv4pools`/`ipv6pools`.
    pub pools: Vec<String>,
    /// Fixed addresses from `ipAddrs`.
    pub ip_addrs: Vec<String>,
    /// The raw annotation text that could not be parsed, if any.
    pub unparsable: Option<String>,
    /// Extra addresses from `floatingIPs` (NATed to the pod; not a pin).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floating_ips: Vec<String>,
    /// Addresses from `ipAddrsNoIpam`: used without any IPAM allocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_ipam_addrs: Vec<String>,
}

impl PoolPins {
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.ip_addrs.is_empty() && self.unparsable.is_none()
    }
}

/// `status.phase`; a pod without one is Pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn parse(s: &str) -> PodPhase {
        match s {
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            "Pending" => PodPhase::Pending,
            _ => PodPhase::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }
}

impl From<&str> for PodPhase {
    fn from(s: &str) -> PodPhase {
        PodPhase::parse(s)
    }
}

impl PartialEq<&str> for PodPhase {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for PodPhase {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PodPhase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PodPhase, D::Error> {
        String::deserialize(d).map(|s| PodPhase::parse(&s))
    }
}

/// A pod's pool annotations. Most pods have none, so the record holds a
/// pointer, set only when there are some; it reads and writes as a
/// [`PoolPins`] all the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodPins(Option<Box<PoolPins>>);

static NO_PINS: PoolPins = PoolPins {
    pools: Vec::new(),
    ip_addrs: Vec::new(),
    unparsable: None,
    floating_ips: Vec::new(),
    no_ipam_addrs: Vec::new(),
};

impl From<PoolPins> for PodPins {
    fn from(pins: PoolPins) -> PodPins {
        PodPins((pins != NO_PINS).then(|| Box::new(pins)))
    }
}

impl Deref for PodPins {
    type Target = PoolPins;
    fn deref(&self) -> &PoolPins {
        self.0.as_deref().unwrap_or(&NO_PINS)
    }
}

impl DerefMut for PodPins {
    fn deref_mut(&mut self) -> &mut PoolPins {
        self.0.get_or_insert_with(Default::default)
    }
}

impl Serialize for PodPins {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PodPins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PodPins, D::Error> {
        PoolPins::deserialize(d).map(PodPins::from)
    }
}

/// A pod's addresses: `status.podIPs` (or `status.podIP`), then any the
/// CNI plugin recorded in `cni.projectcalico.org/podIPs` that the status
/// does not show yet. Unreadable entries are skipped.
pub fn pod_addresses(status_ips: &[&str], pod_ip: Option<&str>, annotation: Option<&str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = status_ips.iter().filter_map(|i| i.trim().parse().ok()).collect();
    if out.is_empty() {
        out.extend(pod_ip.and_then(|i| i.trim().parse::<IpAddr>().ok()));
    }
    for part in annotation.unwrap_or_default().split(',') {
        let addr = part.trim().split('/').next().unwrap_or_default();
        if let Ok(ip) = addr.parse::<IpAddr>() {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    // Kept for the pod's lifetime in the inventory: no spare capacity.
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_from_status_and_the_cni_annotation() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Both families in the status, in its order; the annotation adds nothing new.
        assert_eq!(
            pod_addresses(&["10.0.0.5", "fd00::5"], Some("10.0.0.5"), Some("10.0.0.5/32,fd00::5/128")),
            [ip("10.0.0.5"), ip("fd00::5")]
        );
        // Only status.podIP, the IPv6 address only in the annotation.
        assert_eq!(
            pod_addresses(&[], Some("10.0.0.5"), Some("10.0.0.5/32, fd00::5/128")),
            [ip("10.0.0.5"), ip("fd00::5")]
        );
        // Blank (released) or unreadable annotations add nothing.
        assert_eq!(pod_addresses(&["fd00::5"], None, Some("")), [ip("fd00::5")]);
        assert_eq!(pod_addresses(&[], None, Some("garbage")), Vec::<IpAddr>::new());
    }

    #[test]
    fn pins_are_stored_only_when_there_are_some() {
        let none = PodPins::from(PoolPins::default());
        assert!(none.0.is_none() && none.pools.is_empty());
        let mut pins = PodPins::default();
        pins.pools.push("blue".into());
        assert_eq!(pins.pools, ["blue"]);
        let floating = PodPins::from(PoolPins { floating_ips: vec!["10.9.0.1".into()], ..Default::default() });
        assert!(floating.0.is_some(), "floating IPs alone are kept too");
        assert_eq!(serde_json::to_value(&none).unwrap(), serde_json::to_value(PoolPins::default()).unwrap());
    }

    /// One record per pod, so its size is the memory each pod costs: a
    /// field added as a `String` where a shared `Name` would do shows here.
    #[test]
    fn the_record_stays_compact() {
        assert!(std::mem::size_of::<PodInfo>() <= 208, "PodInfo is {} bytes", std::mem::size_of::<PodInfo>());
        assert!(std::mem::size_of::<Owner>() <= 56, "Owner is {} bytes", std::mem::size_of::<Owner>());
    }

    #[test]
    fn phases_read_and_compare_as_their_names() {
        assert_eq!(PodPhase::parse("Succeeded"), PodPhase::Succeeded);
        assert_eq!(PodPhase::from("Running"), "Running");
        assert_eq!(serde_json::to_string(&PodPhase::Failed).unwrap(), "\"Failed\"");
    }
}
