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

use super::testpods::{self, Creation, TestPods, Until, WaitError, TEST_POD_IMAGE};
use super::Cluster;
use super::COMPONENT;
use crate::core::model::LABEL_MANAGED_BY;
use crate::error::{Error, KubeResultExt, Result};

pub const CANARY_LABEL: &str = "ippool.kubectl.io/canary";
pub const CANARY_NAMESPACE_PREFIX: &str = "kubectl-ippool-canary-";

/// The existing namespace the preflight dry-runs the canary pod in.
pub const DRY_RUN_NAMESPACE: &str = "default";

/// The namespace a canary run uses (random suffix: no clash with a leftover).
pub fn canary_namespace() -> String {
    format!("{CANARY_NAMESPACE_PREFIX}{:05x}", rand::random::<u32>() & 0xfffff)
}

/// The canary pods: `canary-0`, `canary-1`, ..., labelled with
/// `CANARY_LABEL` only (the namespace also carries the managed-by label).
fn canary_pods() -> TestPods {
    TestPods {
        prefix: "canary",
        lone_name: "canary-0",
        container: "canary",
        image: TEST_POD_IMAGE.to_string(),
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

/// Start the canary pods in `ns` and wait until each has an IP; each pod
/// must hold an address in every one of `targets` (one new pool per IP
/// family migrated). With `per_node` one pod goes to each of `nodes`,
/// otherwise one pod the scheduler places on one of them (on any node if
/// `nodes` is empty). The caller deletes the namespace afterwards.
pub async fn run(
    cluster: &Cluster,
    ns: &str,
    nodes: &[String],
    per_node: bool,
    targets: &[IpNet],
    timeout: Duration,
) -> Result<Vec<(String, Vec<IpAddr>)>> {
    let spec = TestPods { lone_among: if per_node { vec![] } else { nodes.to_vec() }, ..canary_pods() };
    let pods_wanted = spec.targets(per_node.then_some(nodes));
    let how = Creation { reuse_existing: true, default_service_account: false };
    let pods = testpods::start(cluster, ns, &canary_namespace_labels(), &spec, &pods_wanted, how).await?;
    // One pod after the other, each with its own deadline.
    let mut out = Vec::new();
    for t in &pods_wanted {
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
        let ips = testpods::pod_ips(&pod);
        if ips.is_empty() {
            return Err(Error::Other(format!("canary pod {ns}/{name} has an unreadable IP")));
        }
        let node = testpods::pod_node(&pod).unwrap_or_default();
        if let Some(why) = missed_target(&ips, targets) {
            return Err(Error::Other(format!(
                "canary pod {ns}/{name} on node {node} {why}: another enabled pool or a pin is in the way; no workload was moved"
            )));
        }
        out.push((node, ips));
    }
    Ok(out)
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
pub async fn admission_dry_run(cluster: &Cluster) -> Result<Vec<String>> {
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
    let spec = canary_pods();
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

/// Delete one canary namespace (not waiting for it to go).
pub async fn cleanup(cluster: &Cluster, ns: &str) {
    if let Err(e) = testpods::delete_namespace(cluster, ns, &DeleteParams::default()).await {
        testpods::warn_undeleted("canary", ns, &e);
    }
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
        let ns = canary_namespace();
        let suffix = ns.strip_prefix("kubectl-ippool-canary-").unwrap();
        assert!(suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{ns}");

        let spec = canary_pods();
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
        assert_eq!(ps.containers[0].image.as_deref(), Some("registry.k8s.io/pause:3.10"));
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
        use serde_json::json;
        let spec = canary_pods();
        for (i, node) in [None, Some("n1")].into_iter().enumerate() {
            let mut ps = json!({
                "containers": [{
                    "name": "canary",
                    "image": "registry.k8s.io/pause:3.10",
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
