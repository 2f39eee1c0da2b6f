//! Plain-data views of the cluster objects the tool reasons about.
//!
//! The cluster layer (`crate::cluster`) builds these from Kubernetes and
//! Calico objects, whichever API group they came from; the core never sees
//! JSON or API versions.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::budget::{BudgetSpec, UpdateStrategy};
pub use super::name::Name;
use super::name::Names;
pub use super::pod::{pod_addresses, Owner, OwnerKind, PodInfo, PodPhase, PoolPins};

pub const ANNOT_IPV4POOLS: &str = "cni.projectcalico.org/ipv4pools";
pub const ANNOT_IPV6POOLS: &str = "cni.projectcalico.org/ipv6pools";
pub const ANNOT_IPADDRS: &str = "cni.projectcalico.org/ipAddrs";
/// Where Calico's CNI plugin writes every address it assigned to a pod
/// (`10.0.0.5/32,fd00::5/128`).
pub const ANNOT_POD_IPS: &str = "cni.projectcalico.org/podIPs";

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The node label naming its operating system (every kubelet sets it).
pub const LABEL_NODE_OS: &str = "kubernetes.io/os";
pub const OPERATOR_MANAGER: &str = "tigera-operator";

/// Encapsulation mode of a pool (`ipipMode` / `vxlanMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

impl EncapMode {
    pub fn parse(s: Option<&str>) -> EncapMode {
        match s.unwrap_or("") {
            "Always" | "always" => EncapMode::Always,
            "CrossSubnet" | "cross-subnet" => EncapMode::CrossSubnet,
            _ => EncapMode::Never,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EncapMode::Never => "Never",
            EncapMode::Always => "Always",
            EncapMode::CrossSubnet => "CrossSubnet",
        }
    }
    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }
}

/// Who writes a pool: the Tigera operator (through the Installation
/// resource) or anyone else (manifests, calicoctl, this tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    Operator,
    Manifest,
}

/// A Calico IPPool, with the defaults Calico applies on read already filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
    pub disable_bgp_export: bool,
    pub node_selector: String,
    pub namespace_selector: Option<String>,
    pub allowed_uses: Vec<String>,
    pub assignment_mode: Option<String>,
    pub managed_by: ManagedBy,
    /// metadata.deletionTimestamp is set (native v3 mode keeps a finalizer).
    pub terminating: bool,
    /// The GitOps controller that syncs it, and the marker that says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<String>,
}

impl Pool {
    /// A pool with Calico's defaults, for tests and for building new pools.
    pub fn new(name: &str, cidr: IpNet) -> Pool {
        Pool {
            name: name.to_string(),
            cidr,
            block_size: if cidr.addr().is_ipv4() { 26 } else { 122 },
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::Never,
            nat_outgoing: false,
            disabled: false,
            disable_bgp_export: false,
            node_selector: "all()".into(),
            namespace_selector: None,
            allowed_uses: vec!["Workload".into(), "Tunnel".into()],
            assignment_mode: None,
            managed_by: ManagedBy::Manifest,
            terminating: false,
            gitops: None,
        }
    }

    /// The pool hands out addresses to new pods automatically.
    pub fn is_active(&self) -> bool {
        !self.disabled && !self.terminating
    }

    pub fn encap_label(&self) -> String {
        match (self.ipip_mode.enabled(), self.vxlan_mode.enabled()) {
            (true, _) => format!("IPIP/{}", self.ipip_mode.as_str()),
            (_, true) => format!("VXLAN/{}", self.vxlan_mode.as_str()),
            _ => "None".into(),
        }
    }

    /// Addresses in the pool (saturating for IPv6).
    pub fn capacity(&self) -> u128 {
        crate::core::cidr::size(&self.cidr)
    }

    pub fn allows_workloads(&self) -> bool {
        self.allowed_uses.is_empty() || self.allowed_uses.iter().any(|u| u == "Workload")
    }
}

/// A namespace, reduced to its pool annotations and labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub pins: PoolPins,
}

/// A node, reduced to what IP pools care about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Every address in `status.addresses` with its type (`InternalIP`,
    /// `ExternalIP`, either family).
    pub addresses: Vec<NodeAddress>,
    /// Tunnel addresses from calico-node's annotations (IPIP, VXLAN, WireGuard).
    pub tunnel_ips: Vec<IpAddr>,
    pub unschedulable: bool,
}

/// One of a node's `status.addresses` that is an IP address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub ip: IpAddr,
}

impl NodeInfo {
    /// A linux node (label `kubernetes.io/os: linux`): where test pods,
    /// linux pods selecting linux nodes, can run.
    pub fn is_linux(&self) -> bool {
        self.labels.get(LABEL_NODE_OS).is_some_and(|os| os == "linux")
    }
}

/// One allocated address of an IPAMBlock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub ip: IpAddr,
    pub handle: Option<Name>,
    pub namespace: Option<Name>,
    pub pod: Option<String>,
    pub node: Option<Name>,
    /// `ipipTunnelAddress`, `vxlanTunnelAddress`, ... for non-pod allocations.
    pub kind: Option<Name>,
}

impl Allocation {
    pub fn is_tunnel(&self) -> bool {
        self.kind.as_deref().is_some_and(|k| k.contains("Tunnel"))
    }
}

/// A Calico IPAMBlock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub name: String,
    pub cidr: IpNet,
    /// Node from `host:<node>` affinity; None if unaffine.
    pub affinity_node: Option<String>,
    /// The raw affinity (`host:n`, `virtual:load-balancer`).
    pub affinity: Option<String>,
    pub allocations: Vec<Allocation>,
    pub deleted: bool,
    /// Structural problems found while decoding (calicoctl's validateBlock).
    pub problems: Vec<String>,
}

/// A Calico BlockAffinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    pub name: String,
    pub node: String,
    pub cidr: IpNet,
    /// confirmed | pending | pendingDeletion
    pub state: String,
    pub deleted: bool,
}

/// A Calico IPAMHandle: one per pod, so only what the checks read (its
/// object name, usually the same long string again, is not kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handle {
    pub handle_id: Name,
    pub deleted: bool,
}

/// Everything IPAM holds, as read from the datastore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    pub blocks: Vec<Block>,
    pub affinities: Vec<Affinity>,
    pub handles: Vec<Handle>,
}

impl Ipam {
    /// A pod's handle ID is in its block's allocation and in its
    /// IPAMHandle: keep one copy of each (a handle is one per pod).
    pub fn share_handle_ids(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        let mut ids = Names::default();
        for h in self.blocks.iter().flat_map(|b| &b.allocations).filter_map(|a| a.handle.as_ref()) {
            ids.share(h);
        }
        for h in &mut self.handles {
            h.handle_id = ids.share(&h.handle_id);
        }
    }
}

/// A CIDR the cluster is configured with, and where we read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcedCidr {
    pub cidr: IpNet,
    /// e.g. `ConfigMap kube-system/kubeadm-config (networking.podSubnet)`.
    pub source: String,
}

/// The cluster's pod and Service ranges, as far as they can be discovered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworks {
    pub pod_cidrs: Vec<SourcedCidr>,
    pub service_cidrs: Vec<SourcedCidr>,
    /// The ClusterIPs of Service default/kubernetes: each lies in the
    /// Service range, whether or not that range is known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_ips: Vec<IpAddr>,
}

impl ClusterNetworks {
    /// Distinct pod CIDRs (several sources usually agree).
    pub fn pod_nets(&self) -> Vec<IpNet> {
        dedup(self.pod_cidrs.iter().map(|s| s.cidr))
    }
    pub fn service_nets(&self) -> Vec<IpNet> {
        dedup(self.service_cidrs.iter().map(|s| s.cidr))
    }
}

fn dedup(it: impl Iterator<Item = IpNet>) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = Vec::new();
    for n in it {
        if !v.contains(&n) {
            v.push(n);
        }
    }
    v
}

/// A Deployment, StatefulSet or DaemonSet: what the plan needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadInfo {
    pub owner: Owner,
    /// Pool annotations on `spec.template.metadata.annotations`.
    pub template_pins: PoolPins,
    /// `spec.replicas` (DaemonSet: `status.desiredNumberScheduled`).
    pub replicas: i32,
    /// How a rollout restart replaces its pods.
    pub strategy: UpdateStrategy,
    /// A paused Deployment: a rollout restart does nothing until resumed.
    pub paused: bool,
    /// The HorizontalPodAutoscaler that owns `replicas`, if any.
    pub autoscaler: Option<String>,
    /// Why autoscalers could not be listed (then `autoscaler` is unknown).
    pub autoscalers_unread: Option<String>,
}

#[cfg(test)]
impl WorkloadInfo {
    /// A Deployment with the default strategy, for tests.
    pub fn deployment(namespace: &str, name: &str, replicas: i32) -> WorkloadInfo {
        WorkloadInfo {
            owner: Owner {
                kind: OwnerKind::Deployment,
                other_kind: None,
                namespace: namespace.into(),
                name: name.into(),
            },
            template_pins: PoolPins::default(),
            replicas,
            strategy: UpdateStrategy::DEPLOYMENT_DEFAULT,
            paused: false,
            autoscaler: None,
            autoscalers_unread: None,
        }
    }
}

/// A PodDisruptionBudget with the pods it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.minAvailable` / `spec.maxUnavailable`.
    pub spec: BudgetSpec,
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
    /// `namespace/name` of the pods its selector matches.
    pub pods: Vec<String>,
}

/// The CNI config's `ipv4_pools`/`ipv6_pools`, and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct CniPools {
    pub source: String,
    pub pools: Vec<String>,
}

/// A workload's pod template pool annotations (Deployment, StatefulSet, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadTemplate {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub pins: PoolPins,
}

/// The latest `FailedCreatePodSandBox` event of a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxFailure {
    pub namespace: String,
    pub pod: String,
    pub message: String,
    pub count: i32,
}

impl SandboxFailure {
    /// The part of the CNI error that says why (`the given pool (...) does not exist, or is not enabled`).
    pub fn reason(&self) -> &str {
        match self.message.rfind("failed (add): ") {
            Some(i) => &self.message[i + "failed (add): ".len()..],
            None => &self.message,
        }
    }
}

/// What one probe pod got.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOutcome {
    /// `namespace/name` of the probe pod.
    pub pod: String,
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    /// Why it got no address (timeout, Calico's sandbox error).
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_shares_its_id_with_its_allocation() {
        let allocation = Allocation {
            ip: "192.168.0.1".parse().unwrap(),
            handle: Some(Name::from("k8s-pod-network.abc")),
            namespace: None,
            pod: None,
            node: None,
            kind: None,
        };
        let block = Block {
            name: "192-168-0-0-26".into(),
            cidr: "192.168.0.0/26".parse().unwrap(),
            affinity_node: None,
            affinity: None,
            allocations: vec![allocation],
            deleted: false,
            problems: vec![],
        };
        let handle = |id: &str| Handle { handle_id: Name::from(id), deleted: false };
        let mut ipam = Ipam {
            blocks: vec![block],
            affinities: vec![],
            handles: vec![handle("k8s-pod-network.abc"), handle("orphan")],
        };
        ipam.share_handle_ids();
        let kept = ipam.blocks[0].allocations[0].handle.as_ref().unwrap();
        assert!(ipam.handles[0].handle_id.is_same_copy(kept), "one copy of the handle ID");
        assert_eq!(ipam.handles[1].handle_id.as_str(), "orphan");
    }
}
