//! The canary: before any real pod moves, a throw-away pod (one, or one per
//! node) in a temporary namespace must get an address from the new pool.
//! The namespace is deleted on every path; leftovers of a killed run are
//! found by label and deleted at the next start. The mechanism is
//! `testpods`; this file holds what the canary checks and its wording.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;

use super::canary_paths::{self, FamilyPools, PathsInput};
use super::testpods::{self, Creation, TestPods, Until, WaitError};
use super::watch::wait_list;
use super::Cluster;
use super::COMPONENT;
use crate::core::model::LABEL_MANAGED_BY;
use crate::core::plan::connectivity::{canary_paths, CanaryPath, PathResult};
use crate::error::{Error, KubeResultExt, Result};

pub const CANARY_LABEL: &str = "ippool.kubectl.io/canary";
pub use crate::core::plan::connectivity::CANARY_NAMESPACE_PREFIX;

/// The existing namespace the preflight dry-runs the canary pod in.
pub const DRY_RUN_NAMESPACE: &str = "default";

/// The namespace a canary run uses (random suffix: no clash with a leftover).
pub fn canary_namespace() -> String {
    format!("{CANARY_NAMESPACE_PREFIX}{:05x}", rand::random::<u32>() & 0xfffff)
}

/// The canary's pods, running `image` (agnhost unless `--canary-image`
/// says otherwise), labelled with `CANARY_LABEL` only (the namespace also
/// carries the managed-by label).
pub(crate) fn canary_pods(image: &str) -> TestPods {
    TestPods {
        prefix: "canary",
        lone_name: "canary-0",
        container: "canary",
        image: image.to_string(),
        labels: BTreeMap::from([(CANARY_LABEL.to_string(), "true".to_string())]),
        automount_token: None,
        lone_among: vec![],
    }
}

fn canary_namespace_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (CANARY_LABEL.to_string(), "true".to_string()),
        (LABEL_MANAGED_BY.to_string(), COMPONENT.to_string()),
    ])
}

/// What the canary found.
#[derive(Debug)]
pub struct CanaryOutcome {
    /// The new-pool pods' nodes and addresses.
    pub addresses: Vec<(String, Vec<IpAddr>)>,
    pub results: Vec<(CanaryPath, PathResult)>,
    /// The nodes the paths ran between (new-pool side, old-pool side).
    pub nodes: (String, String),
}

/// Run the canary in `ns`: a new-pool server on the first of `nodes` (and,
/// with `per_node`, a new-pool pod on each other one, for its address), an
/// old-pool server on another node, and a client per path. Every new-pool
/// pod must hold an address in every new pool. The caller deletes the
/// namespace afterwards.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cluster: &Cluster,
    ns: &str,
    nodes: &[String],
    per_node: bool,
    families: &[FamilyPools],
    old_enabled: bool,
    image: &str,
    timeout: Duration,
) -> Result<CanaryOutcome> {
    let spec = canary_pods(image);
    let new_node = nodes.first().ok_or_else(|| Error::Other("the canary has no node to run on".into()))?;
    let old_node = nodes.iter().find(|n| *n != new_node).unwrap_or(new_node);
    let how = Creation { reuse_existing: true, default_service_account: false };
    let extra = if per_node { spec.targets(Some(&nodes[1..])) } else { vec![] };
    let extra: Vec<_> = extra.into_iter().map(|t| testpods::Target { name: format!("new-{}", t.name), ..t }).collect();
    let pods = testpods::start(cluster, ns, &canary_namespace_labels(), &spec, &[], how).await?;
    for t in &extra {
        let p = canary_paths::pod(
            &spec,
            &t.name,
            t.node.as_deref().unwrap_or_default(),
            families,
            true,
            vec!["pause".into()],
        );
        canary_paths::create(&pods, &p, ns).await?;
    }
    let targets: Vec<IpNet> = families.iter().filter_map(|f| f.new_cidr).collect();
    let paths = canary_paths(&families.iter().map(|f| f.ipv6).collect::<Vec<_>>());
    let host_labels = canary_namespace_labels();
    let input = PathsInput { families, new_node, old_node, old_enabled, timeout, host_labels: &host_labels };
    let (new_ips, results) = canary_paths::check(cluster, ns, &spec, &input, &paths).await?;
    let mut addresses = vec![(new_node.clone(), new_ips)];
    for t in &extra {
        let name = &t.name;
        let pod = match testpods::wait(&pods, name, Until::Address, timeout).await {
            Ok(p) => p,
            Err(WaitError::TimedOut) => {
                return Err(Error::Timeout {
                    what: format!("canary pod {ns}/{name} to get an IP (check `kubectl describe pod -n {ns} {name}`)"),
                    after: timeout,
                })
            }
            Err(WaitError::Watch(e)) => return Err(Error::Other(format!("watching canary pod {ns}/{name}: {e}"))),
        };
        let pod = pod.ok_or_else(|| Error::Other(format!("canary pod {ns}/{name} disappeared")))?;
        addresses.push((testpods::pod_node(&pod).unwrap_or_default(), testpods::pod_ips(&pod)));
    }
    for (node, ips) in &addresses {
        if ips.is_empty() {
            return Err(Error::Other(format!("a canary pod on {node} has an unreadable IP")));
        }
        if let Some(why) = missed_target(ips, &targets) {
            return Err(Error::Other(format!(
                "canary pod on node {node} {why}: another enabled pool or a pin is in the way; no workload was moved"
            )));
        }
    }
    Ok(CanaryOutcome { addresses, results, nodes: (new_node.clone(), old_node.clone()) })
}

/// Why the addresses `got` miss a new pool, if one of `targets` holds none
/// of them.
fn missed_target(got: &[IpAddr], targets: &[IpNet]) -> Option<String> {
    let missed = targets.iter().find(|t| !got.iter().any(|ip| t.contains(ip)))?;
    let shown: Vec<String> = got.iter().map(IpAddr::to_string).collect();
    Some(format!("got {}, none of which is in the new pool {missed}", shown.join(", ")))
}

/// Would admission let the canary run? Asked before anything is written,
/// with server-side dry runs (every admission plugin and webhook runs,
/// nothing is stored): create the canary namespace as the canary will (its
/// labels, Pod Security `restricted` included), and create the canary pod in
/// namespace `default`, because the dry-run namespace is not stored and so
/// cannot hold a dry-run pod. What the pod's dry run covers: admission that
/// judges the pod itself (Pod Security at `default`'s level, the cluster
/// default when `default` has no label; validating webhooks and admission
/// policies that match `default`; ServiceAccount, LimitRange). Not covered:
/// a policy that matches only the canary namespace and not `default`. The
/// canary namespace enforces `restricted`, which the pod passes by
/// construction (see `testpods`).
///
/// Returns the refusals (empty: admitted). A `default` namespace that does
/// not exist leaves the pod unchecked, with a warning.
pub async fn admission_dry_run(cluster: &Cluster, image: &str) -> Result<Vec<String>> {
    let dry = PostParams { dry_run: true, ..Default::default() };
    let mut refusals = Vec::new();
    let ns = canary_namespace();
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    match namespaces.create(&dry, &testpods::namespace(&ns, &canary_namespace_labels())).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if refusal(s.code) => refusals.push(format!(
            "the API server refuses the canary namespace (server-side dry run of namespace {ns}): {}",
            s.message
        )),
        Err(e) => return Err(e).op("create (dry run)", "namespaces", None),
    }
    let spec = canary_pods(image);
    let mut pod = spec.pod(&spec.targets(None)[0]);
    pod.metadata.name = None;
    pod.metadata.generate_name = Some(CANARY_NAMESPACE_PREFIX.to_string());
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), DRY_RUN_NAMESPACE);
    match pods.create(&dry, &pod).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 && s.message.contains("namespaces") => tracing::warn!(
            "namespace {DRY_RUN_NAMESPACE} does not exist: whether admission lets the canary pod run is not checked before the old pool is disabled"
        ),
        Err(kube::Error::Api(s)) if refusal(s.code) => refusals.push(format!(
            "the API server refuses the canary pod (server-side dry run in namespace {DRY_RUN_NAMESPACE}): {}",
            s.message
        )),
        Err(e) => return Err(e).op("create (dry run)", "pods", Some(DRY_RUN_NAMESPACE)),
    }
    Ok(refusals)
}

/// Whether an API error answering a dry run is a refusal (admission,
/// validation, a failing webhook, permissions) rather than a server that
/// could not answer now (401, and 429/503/504 left after the retries).
fn refusal(code: u16) -> bool {
    !matches!(code, 401 | 429 | 503 | 504)
}

/// Delete one canary's namespaces, its own and the node path's (not
/// waiting for them to go). The node path's namespace may never have been
/// made: NotFound is fine.
pub async fn cleanup(cluster: &Cluster, ns: &str) {
    for ns in [ns.to_string(), canary_paths::host_namespace(ns)] {
        if let Err(e) = testpods::delete_namespace(cluster, &ns, &DeleteParams::default()).await {
            testpods::warn_undeleted("canary", &ns, &e);
        }
    }
}

/// Delete the canary's pods at once and its namespace, and wait (up to
/// `timeout`) until no pod is left in it: their addresses are released
/// then, so the new pool may be deleted.
pub async fn cleanup_and_wait(cluster: &Cluster, ns: &str, timeout: Duration) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let names: Vec<String> = match pods.list(&Default::default()).await {
        Ok(l) => l.items.iter().filter_map(|p| p.metadata.name.clone()).collect(),
        Err(_) => vec![],
    };
    testpods::delete_pods_now(cluster, ns, &names).await;
    cleanup(cluster, ns).await;
    let _ =
        wait_list(pods, watcher::Config::default(), "the canary's pods to go", timeout, |left| left.is_empty()).await;
}

/// Delete canary namespaces left behind by a killed run.
pub async fn cleanup_leftovers(cluster: &Cluster) {
    for ns in testpods::leftover_namespaces(cluster, &format!("{CANARY_LABEL}=true")).await {
        cleanup(cluster, &ns).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every migrated family's new pool must hold one of the canary's
    /// addresses: a dual-stack canary with only its IPv4 address in the new
    /// pool fails.
    #[test]
    fn every_new_pool_must_hold_an_address() {
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00:10::5".parse().unwrap()];
        let v4: IpNet = "10.0.0.0/16".parse().unwrap();
        let v6_new: IpNet = "fd00:20::/112".parse().unwrap();
        let v6_old: IpNet = "fd00:10::/64".parse().unwrap();
        assert_eq!(missed_target(&ips, &[v4]), None);
        assert_eq!(missed_target(&ips, &[v4, v6_old]), None);
        let why = missed_target(&ips, &[v4, v6_new]).unwrap();
        assert_eq!(why, "got 10.0.0.5, fd00:10::5, none of which is in the new pool fd00:20::/112");
    }

    #[test]
    fn canary_names_labels_and_image() {
        use crate::core::plan::connectivity::CANARY_IMAGE;
        let ns = canary_namespace();
        let suffix = ns.strip_prefix("kubectl-ippool-canary-").unwrap();
        assert!(suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{ns}");

        let spec = canary_pods(CANARY_IMAGE);
        let one = spec.targets(None);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].name.as_str(), one[0].node.as_deref()), ("canary-0", None));
        let nodes = vec!["a".to_string(), "b".to_string()];
        let names: Vec<String> = spec.targets(Some(&nodes)).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["canary-0", "canary-1"]);

        let pod = spec.pod(&spec.targets(Some(&nodes))[1]);
        assert_eq!(pod.metadata.labels, Some(BTreeMap::from([(CANARY_LABEL.to_string(), "true".to_string())])));
        let ps = pod.spec.unwrap();
        assert_eq!(ps.node_name.as_deref(), Some("b"));
        assert_eq!(ps.containers[0].name, "canary");
        assert_eq!(ps.containers[0].image.as_deref(), Some("registry.k8s.io/e2e-test-images/agnhost:2.53"));
        assert!(ps.automount_service_account_token.is_none());

        let labels = canary_namespace_labels();
        assert_eq!(labels.get(CANARY_LABEL).map(String::as_str), Some("true"));
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("kubectl-ippool"));
        assert_eq!(labels.len(), 2);
    }

    /// The pod and namespace are the objects the hand-written JSON of the
    /// canary built before `testpods` existed, plus what Pod Security
    /// `restricted` asks (securityContext, the namespace's enforce label)
    /// and the linux nodeSelector.
    #[test]
    fn same_objects_as_before() {
        use crate::core::plan::connectivity::CANARY_IMAGE;
        use serde_json::json;
        let spec = canary_pods(CANARY_IMAGE);
        for (i, node) in [None, Some("n1")].into_iter().enumerate() {
            let mut ps = json!({
                "containers": [{
                    "name": "canary",
                    "image": CANARY_IMAGE,
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                }],
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": 65535, "runAsGroup": 65535,
                    "seccompProfile": {"type": "RuntimeDefault"}
                },
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "terminationGracePeriodSeconds": 0,
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}]
            });
            if let Some(n) = node {
                ps["nodeName"] = json!(n);
            }
            let name = format!("canary-{i}");
            let old: Pod = serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {CANARY_LABEL: "true"}}, "spec": ps}),
            )
            .unwrap();
            let t = testpods::Target { name, node: node.map(str::to_string) };
            assert_eq!(spec.pod(&t), old);
        }
        let old: Namespace = serde_json::from_value(json!({"metadata": {"name": "ns", "labels": {
            CANARY_LABEL: "true",
            "app.kubernetes.io/managed-by": COMPONENT,
            "pod-security.kubernetes.io/enforce": "restricted"
        }}}))
        .unwrap();
        assert_eq!(testpods::namespace("ns", &canary_namespace_labels()), old);
    }
}
