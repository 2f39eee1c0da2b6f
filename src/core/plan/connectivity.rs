//! What the canary proves: paths between a pod of the new pool and pods
//! of the old pool (and a Service in front of one, and a node), per IP
//! family, each checked by a client pod that opens a TCP connection
//! (agnhost `connect`) and ends Succeeded or Failed. A path whose client
//! could not run is NOT CHECKED: never passed, never failed. `verify
//! --probe` checks the same paths between two pods of the pools the
//! cluster hands out now (`probe_setup`).

use serde::Serialize;

use super::canary::canary_nodes;
use crate::core::model::{NodeInfo, Pool};

/// The canary's image by default: agnhost, pinned, as Kubernetes' own e2e
/// tests use it (`netexec` serves, `connect HOST:PORT` exits 0 or 1).
pub const CANARY_IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
/// The canary's namespaces are `{prefix}{5 hex}`. Their pods are never
/// moved: the canary's old-pool server holds an old-pool address by
/// design, and a run killed during the canary leaves it behind until the
/// next run deletes the namespace.
pub const CANARY_NAMESPACE_PREFIX: &str = "kubectl-ippool-canary-";
/// The port the canary's servers listen on (`netexec --http-port`).
pub const CANARY_PORT: u16 = 8080;

/// One direction of traffic the canary checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathKind {
    /// A new-pool pod connects to an old-pool pod on another node.
    NewToOld,
    /// An old-pool pod on another node connects to a new-pool pod.
    OldToNew,
    /// A new-pool pod connects to a ClusterIP Service whose endpoint is an old-pool pod.
    NewToService,
    /// Another node (a hostNetwork pod: the path of hostNetwork clients,
    /// and of kubelet probes once they cross nodes) connects to a new-pool pod.
    NodeToNew,
}

impl PathKind {
    pub const ALL: [PathKind; 4] =
        [PathKind::NewToOld, PathKind::OldToNew, PathKind::NewToService, PathKind::NodeToNew];

    fn describe(self) -> &'static str {
        match self {
            PathKind::NewToOld => "new-pool pod -> old-pool pod on another node",
            PathKind::OldToNew => "old-pool pod on another node -> new-pool pod",
            PathKind::NewToService => "new-pool pod -> ClusterIP Service with an old-pool endpoint",
            PathKind::NodeToNew => "another node (hostNetwork pod) -> new-pool pod",
        }
    }

    /// The client pod's name stem (`to-old-v4`, ...).
    pub fn client_stem(self) -> &'static str {
        match self {
            PathKind::NewToOld => "to-old",
            PathKind::OldToNew => "from-old",
            PathKind::NewToService => "to-svc",
            PathKind::NodeToNew => "from-node",
        }
    }

    /// Whether the client runs in the new pool (else in the old pool, or
    /// on the host network).
    pub fn client_in_new_pool(self) -> bool {
        matches!(self, PathKind::NewToOld | PathKind::NewToService)
    }

    /// Whether the client runs on the host network of the old-pool side's node.
    pub fn client_on_host_network(self) -> bool {
        self == PathKind::NodeToNew
    }
}

/// A path in one IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryPath {
    pub kind: PathKind,
    pub ipv6: bool,
}

impl CanaryPath {
    /// `new-pool pod -> old-pool pod on another node (IPv4)`.
    pub fn name(&self) -> String {
        format!("{} ({})", self.kind.describe(), if self.ipv6 { "IPv6" } else { "IPv4" })
    }

    /// The client pod's name: `to-old-v4`.
    pub fn client_pod(&self) -> String {
        format!("{}-{}", self.kind.client_stem(), if self.ipv6 { "v6" } else { "v4" })
    }

    /// The path as `verify --probe` names it, where both sides are pods of
    /// the pools the cluster hands out now: `pod on a -> pod on b (IPv4)`.
    /// `a` holds the server the other paths reach, `b` the other side.
    pub fn probe_name(&self, a: &str, b: &str) -> String {
        let path = match self.kind {
            PathKind::NewToOld => format!("pod on {a} -> pod on {b}"),
            PathKind::OldToNew => format!("pod on {b} -> pod on {a}"),
            PathKind::NewToService => format!("pod on {a} -> ClusterIP Service with its endpoint on {b}"),
            PathKind::NodeToNew => format!("node {b} (hostNetwork pod) -> pod on {a}"),
        };
        format!("{path} ({})", if self.ipv6 { "IPv6" } else { "IPv4" })
    }
}

/// What `verify --probe` runs its paths with: per family (IPv4 first), the
/// pool its pods are pinned to (a target pool of that family when one is
/// known; else none: pods take what the cluster gives them), and the two
/// nodes the paths run between (the same node twice when only one can).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSetup {
    pub families: Vec<(bool, Option<Pool>)>,
    pub nodes: (String, String),
}

/// The probe's families and nodes, from the enabled pools and the target
/// pools' names; Err says why no path can run.
pub fn probe_setup(pools: &[Pool], nodes: &[NodeInfo], targets: &[String]) -> Result<ProbeSetup, String> {
    let enabled: Vec<&Pool> = pools.iter().filter(|p| p.is_active()).collect();
    let mut fams: Vec<bool> = enabled.iter().map(|p| p.cidr.addr().is_ipv6()).collect();
    fams.sort();
    fams.dedup();
    if fams.is_empty() {
        return Err("no IP pool is enabled".into());
    }
    let families: Vec<(bool, Option<Pool>)> = fams
        .iter()
        .map(|&v6| {
            let pin = enabled.iter().find(|p| p.cidr.addr().is_ipv6() == v6 && targets.contains(&p.name));
            (v6, pin.map(|p| (*p).clone()))
        })
        .collect();
    // Nodes every pinned pool selects (`canary_nodes` with the pool on both
    // sides); any schedulable linux node when nothing is pinned.
    let mut chosen: Option<Vec<String>> = None;
    for pool in families.iter().filter_map(|(_, p)| p.as_ref()) {
        let got = canary_nodes(nodes, pool, pool)?.nodes;
        chosen = Some(match chosen {
            None => got,
            Some(prev) => prev.into_iter().filter(|n| got.contains(n)).collect(),
        });
    }
    let mut chosen = chosen
        .unwrap_or_else(|| nodes.iter().filter(|n| !n.unschedulable && n.is_linux()).map(|n| n.name.clone()).collect());
    chosen.sort();
    let a = chosen.first().ok_or("no schedulable linux node is selected by every target pool")?.clone();
    let b = chosen.get(1).unwrap_or(&a).clone();
    Ok(ProbeSetup { families, nodes: (a, b) })
}

/// Every path of a run migrating these families (`true`: IPv6), in the
/// order they are shown.
pub fn canary_paths(families: &[bool]) -> Vec<CanaryPath> {
    let mut fams: Vec<bool> = families.to_vec();
    fams.sort();
    fams.dedup();
    fams.iter().flat_map(|&ipv6| PathKind::ALL.iter().map(move |&kind| CanaryPath { kind, ipv6 })).collect()
}

/// What became of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result", content = "why")]
pub enum PathResult {
    Passed,
    Failed(String),
    NotChecked(String),
}

/// Container waiting reasons that mean the client will not run: the path
/// cannot be checked (the image cannot be pulled, the runtime cannot create
/// it). `ErrImagePull` is left out: the kubelet retries it.
const WONT_RUN: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// The client pod as the canary sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientView {
    pub phase: Option<String>,
    /// The first container's waiting reason and message, if it waits.
    pub waiting: Option<(String, String)>,
    /// The deadline passed.
    pub timed_out: bool,
}

/// The path's result from its client pod, or None while it is still to
/// come. A client that ended Failed failed the path; one that cannot run,
/// or did not end by the deadline, leaves it NOT CHECKED.
pub fn client_result(v: &ClientView) -> Option<PathResult> {
    match v.phase.as_deref() {
        Some("Succeeded") => return Some(PathResult::Passed),
        Some("Failed") => return Some(PathResult::Failed("the connection was not established".into())),
        _ => {}
    }
    if let Some((reason, message)) = &v.waiting {
        if WONT_RUN.contains(&reason.as_str()) {
            return Some(PathResult::NotChecked(format!("the client container cannot run: {reason}: {message}")));
        }
    }
    v.timed_out.then(|| PathResult::NotChecked("the client did not finish before the deadline".into()))
}

/// The canary's verdict: `Ok(warnings)` (one per path NOT CHECKED), or
/// `Err(failed paths)` when any path failed.
pub fn verdict(results: &[(CanaryPath, PathResult)]) -> Result<Vec<String>, Vec<String>> {
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(p, r)| match r {
            PathResult::Failed(why) => Some(format!("{}: {why}", p.name())),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Err(failed);
    }
    Ok(results
        .iter()
        .filter_map(|(p, r)| match r {
            PathResult::NotChecked(why) => Some(format!("canary path NOT CHECKED: {}: {why}", p.name())),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: &str, waiting: Option<(&str, &str)>, timed_out: bool) -> ClientView {
        ClientView {
            phase: Some(phase.into()),
            waiting: waiting.map(|(a, b)| (a.to_string(), b.to_string())),
            timed_out,
        }
    }

    #[test]
    fn paths_per_family_with_names() {
        let one = canary_paths(&[false]);
        assert_eq!(one.len(), 4);
        assert_eq!(one[0].name(), "new-pool pod -> old-pool pod on another node (IPv4)");
        assert_eq!(one[1].client_pod(), "from-old-v4");
        assert_eq!(one[3].client_pod(), "from-node-v4");
        assert_eq!(one[3].name(), "another node (hostNetwork pod) -> new-pool pod (IPv4)");
        let dual = canary_paths(&[true, false]);
        assert_eq!(dual.len(), 8);
        assert!(dual[4].ipv6 && dual[4].name().ends_with("(IPv6)"));
        assert!(!PathKind::OldToNew.client_in_new_pool() && PathKind::NewToService.client_in_new_pool());
        assert!(!PathKind::NodeToNew.client_in_new_pool() && PathKind::NodeToNew.client_on_host_network());
        assert!(!PathKind::OldToNew.client_on_host_network());
        assert_eq!(one[1].probe_name("n0", "n1"), "pod on n1 -> pod on n0 (IPv4)");
        assert_eq!(dual[7].probe_name("n0", "n1"), "node n1 (hostNetwork pod) -> pod on n0 (IPv6)");
    }

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("kubernetes.io/os".to_string(), "linux".to_string()), ("zone".to_string(), zone.to_string())]
                .into(),
            addresses: vec![],
            tunnel_ips: vec![],
            unschedulable: false,
        }
    }

    /// The probe pins each family to its target pool and runs on nodes that
    /// pool selects; without a target it pins nothing.
    #[test]
    fn probe_setup_pins_targets_and_picks_their_nodes() {
        let mut a = Pool::new("a", "10.0.0.0/16".parse().unwrap());
        a.node_selector = "zone == 'z2'".into();
        let b = Pool::new("b", "10.1.0.0/16".parse().unwrap());
        let mut off = Pool::new("off", "10.2.0.0/16".parse().unwrap());
        off.disabled = true;
        let v6 = Pool::new("v6", "fd00::/64".parse().unwrap());
        let nodes = vec![node("n3", "z2"), node("n1", "z1"), node("n2", "z2")];
        let pools = vec![a.clone(), b, off.clone(), v6];

        let s = probe_setup(&pools, &nodes, &["a".into()]).unwrap();
        assert_eq!(s.families, vec![(false, Some(a)), (true, None)]);
        assert_eq!(s.nodes, ("n2".to_string(), "n3".to_string()));

        let s = probe_setup(&pools, &nodes, &[]).unwrap();
        assert_eq!(s.families, vec![(false, None), (true, None)]);
        assert_eq!(s.nodes, ("n1".to_string(), "n2".to_string()));

        let one = probe_setup(&pools, &nodes[..1], &[]).unwrap();
        assert_eq!(one.nodes, ("n3".to_string(), "n3".to_string()));
        assert_eq!(probe_setup(&[off], &nodes, &[]), Err("no IP pool is enabled".to_string()));
    }

    /// Only Succeeded passes; a client that cannot run or never ends is NOT
    /// CHECKED, never passed.
    #[test]
    fn client_outcomes() {
        assert_eq!(client_result(&view("Succeeded", None, false)), Some(PathResult::Passed));
        assert!(matches!(client_result(&view("Failed", None, false)), Some(PathResult::Failed(_))));
        assert_eq!(client_result(&view("Running", None, false)), None);
        assert_eq!(client_result(&view("Pending", Some(("ErrImagePull", "x")), false)), None, "retried");
        let r = client_result(&view("Pending", Some(("ImagePullBackOff", "no such image")), false));
        assert!(matches!(&r, Some(PathResult::NotChecked(w)) if w.contains("no such image")), "{r:?}");
        let r = client_result(&view("Pending", Some(("CreateContainerError", "no dataplane")), false));
        assert!(matches!(r, Some(PathResult::NotChecked(_))));
        let r = client_result(&view("Running", None, true));
        assert!(matches!(r, Some(PathResult::NotChecked(w)) if w.contains("deadline")));
        assert_eq!(client_result(&view("Succeeded", None, true)), Some(PathResult::Passed));
    }

    #[test]
    fn a_failed_path_fails_the_canary_and_not_checked_only_warns() {
        let p = canary_paths(&[false]);
        let ok = vec![(p[0], PathResult::Passed), (p[1], PathResult::NotChecked("no image".into()))];
        let w = verdict(&ok).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("NOT CHECKED") && w[0].contains(&p[1].name()), "{w:?}");
        let bad = vec![(p[0], PathResult::Failed("refused".into())), (p[1], PathResult::Passed)];
        let e = verdict(&bad).unwrap_err();
        assert_eq!(e, vec![format!("{}: refused", p[0].name())]);
        assert_eq!(verdict(&[]), Ok(vec![]));
    }
}
