//! `verify --probe`: start a throwaway pod (or one per node) in a temporary
//! namespace, wait for its address by watching it, send traffic over the
//! canary's paths between two more pods (`canary_paths`), and clean up on
//! every path, Ctrl-C included. The mechanism is `testpods`; this file
//! holds what the probe records (Calico's sandbox error included) and its
//! wording.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use rand::Rng;

use super::canary_paths::{self, FamilyPools, PathsInput};
use super::testpods::{self, Creation, Target, TestPods, Until, WaitError};
use super::Cluster;
use super::COMPONENT;
use crate::core::model::{ProbeOutcome, LABEL_MANAGED_BY};
use crate::core::plan::connectivity::{canary_paths, CanaryPath, PathResult, ProbeSetup};
use crate::error::{Error, KubeResultExt, Result};

pub const PROBE_NAMESPACE_PREFIX: &str = "kubectl-ippool-probe-";

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub image: String,
    pub timeout: Duration,
    /// One pod per node (pinned by nodeName); None means one pod, scheduler's choice.
    pub nodes: Option<Vec<String>>,
    /// The traffic paths' pools and nodes, and their image (agnhost).
    pub paths: Option<(ProbeSetup, String)>,
}

/// What the probe found: each address pod's outcome, and each path's.
#[derive(Debug, Default)]
pub struct ProbeResults {
    pub addresses: Vec<ProbeOutcome>,
    pub paths: Vec<(CanaryPath, PathResult)>,
}

/// A random namespace name, `kubectl-ippool-probe-x7k2q`.
pub fn probe_namespace_name() -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect();
    format!("{PROBE_NAMESPACE_PREFIX}{suffix}")
}

/// Run the probe and always delete its namespace afterwards. Ctrl-C stops
/// the wait, cleans up, and reports an interruption.
pub async fn run(cluster: &Cluster, opts: &ProbeOptions) -> Result<ProbeResults> {
    let ns = probe_namespace_name();
    let spec = probe_pods(&opts.image);
    let targets = spec.targets(opts.nodes.as_deref());
    let outcome = tokio::select! {
        r = probe_in(cluster, &ns, opts, &spec, &targets) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let cleanup = cleanup(cluster, &ns, &names).await;
    match outcome {
        None => Err(Error::Interrupted(format!(
            "probe stopped; namespace {ns} deleted{}",
            cleanup.err().map(|e| format!(" (cleanup failed: {e})")).unwrap_or_default()
        ))),
        Some(r) => {
            if let Err(e) = cleanup {
                testpods::warn_undeleted("probe", &ns, &e);
            }
            r
        }
    }
}

/// The probe pods: `probe`, or `probe-0`, `probe-1`, ... one per node;
/// they and their namespace carry the managed-by label.
fn probe_pods(image: &str) -> TestPods {
    TestPods {
        prefix: "probe",
        lone_name: "probe",
        container: "pause",
        image: image.to_string(),
        labels: probe_labels(),
        automount_token: Some(false),
        lone_among: vec![],
    }
}

fn probe_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_MANAGED_BY.to_string(), COMPONENT.to_string())])
}

async fn probe_in(
    cluster: &Cluster,
    ns: &str,
    opts: &ProbeOptions,
    spec: &TestPods,
    targets: &[Target],
) -> Result<ProbeResults> {
    let how = Creation { reuse_existing: false, default_service_account: true };
    let pods = testpods::start(cluster, ns, &probe_labels(), spec, targets, how).await?;
    let (addresses, paths) = tokio::try_join!(addresses(cluster, &pods, ns, opts, targets), paths(cluster, ns, opts))?;
    Ok(ProbeResults { addresses, paths })
}

/// The canary's paths between two probe pods of the pools the cluster
/// hands out now (pinned to the target pools when known).
async fn paths(cluster: &Cluster, ns: &str, opts: &ProbeOptions) -> Result<Vec<(CanaryPath, PathResult)>> {
    let Some((setup, image)) = &opts.paths else { return Ok(vec![]) };
    let families: Vec<FamilyPools> = setup
        .families
        .iter()
        .map(|(ipv6, pin)| FamilyPools {
            ipv6: *ipv6,
            new_name: pin.as_ref().map(|p| p.name.clone()),
            new_cidr: pin.as_ref().map(|p| p.cidr),
            old_name: pin.as_ref().map(|p| p.name.clone()),
        })
        .collect();
    let spec = TestPods { container: "probe", image: image.clone(), ..probe_pods("") };
    let labels = probe_labels();
    let input = PathsInput {
        families: &families,
        new_node: &setup.nodes.0,
        old_node: &setup.nodes.1,
        old_enabled: true,
        timeout: opts.timeout,
        host_labels: &labels,
    };
    let list = canary_paths(&setup.families.iter().map(|(v6, _)| *v6).collect::<Vec<_>>());
    Ok(canary_paths::check(cluster, ns, &spec, &input, &list).await?.1)
}

async fn addresses(
    cluster: &Cluster,
    pods: &Api<Pod>,
    ns: &str,
    opts: &ProbeOptions,
    targets: &[Target],
) -> Result<Vec<ProbeOutcome>> {
    // All pods at once, each with the same deadline; one without an
    // address by then is an outcome, not an error.
    let waits = targets.iter().map(|t| async move {
        let name = &t.name;
        let pod = match testpods::wait(pods, name, Until::AddressOrEnd, opts.timeout).await {
            Ok(p) => p,
            Err(WaitError::Watch(e)) => return Err(Error::Other(format!("watching probe pod {ns}/{name}: {e}"))),
            Err(WaitError::TimedOut) => None,
        };
        let ip = pod.as_ref().and_then(testpods::pod_ip);
        let node = pod.as_ref().and_then(testpods::pod_node).or(t.node.clone());
        Ok((name.clone(), node, ip))
    });
    let results = futures::future::try_join_all(waits).await?;

    // For pods without an address, Calico's reason is in the sandbox events.
    let mut out = Vec::new();
    for (name, node, ip) in results {
        let error = match ip {
            Some(_) => None,
            None => Some(
                sandbox_error(cluster, ns, &name)
                    .await
                    .unwrap_or_else(|| format!("no address after {}", humantime::format_duration(opts.timeout))),
            ),
        };
        out.push(ProbeOutcome { pod: format!("{ns}/{name}"), node, ip, error });
    }
    Ok(out)
}

async fn sandbox_error(cluster: &Cluster, ns: &str, pod: &str) -> Option<String> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let lp = ListParams::default()
        .fields(&format!("involvedObject.name={pod},reason={}", super::events::SANDBOX_FAILURE_REASON));
    let list = events.list(&lp).await.ok()?;
    let msg = list.items.last()?.message.clone()?;
    let reason = match msg.rfind("failed (add): ") {
        Some(i) => msg[i + "failed (add): ".len()..].to_string(),
        None => msg,
    };
    Some(reason)
}

/// Delete the probe pods at once (so their addresses are released before
/// we exit: the address pods by name, the paths' pods as listed) and the
/// namespaces; objects already gone are fine.
async fn cleanup(cluster: &Cluster, ns: &str, pod_names: &[String]) -> Result<()> {
    let mut names = pod_names.to_vec();
    let listed: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    if let Ok(l) = listed.list(&ListParams::default()).await {
        names.extend(l.items.iter().filter_map(|p| p.metadata.name.clone()).filter(|n| !pod_names.contains(n)));
    }
    testpods::delete_pods_now(cluster, ns, &names).await;
    let host = canary_paths::host_namespace(ns);
    let host_gone = testpods::delete_namespace(cluster, &host, &DeleteParams::background()).await;
    testpods::delete_namespace(cluster, ns, &DeleteParams::background()).await.op("delete", "namespaces", None)?;
    host_gone.op("delete", "namespaces", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_and_pod_shape() {
        let ns = probe_namespace_name();
        assert!(ns.starts_with(PROBE_NAMESPACE_PREFIX) && ns.len() == PROBE_NAMESPACE_PREFIX.len() + 5, "{ns}");
        let spec = probe_pods(testpods::TEST_POD_IMAGE);
        let nodes = vec!["node-0".to_string(), "node-1".to_string()];
        let targets = spec.targets(Some(&nodes));
        assert_eq!(targets[1], Target { name: "probe-1".into(), node: Some("node-1".into()) });
        let pod = spec.pod(&targets[1]);
        assert_eq!(pod.metadata.labels, Some(probe_labels()));
        let ps = pod.spec.unwrap();
        assert_eq!(ps.node_name.as_deref(), Some("node-1"));
        assert_eq!(ps.termination_grace_period_seconds, Some(0));
        assert_eq!(ps.automount_service_account_token, Some(false));
        assert_eq!(ps.containers[0].name, "pause");
        assert_eq!(ps.containers[0].image.as_deref(), Some("registry.k8s.io/pause:3.10"));

        let lone = spec.targets(None);
        assert_eq!(lone, vec![Target { name: "probe".into(), node: None }]);
        assert!(probe_pods("x").pod(&lone[0]).spec.unwrap().node_name.is_none());
        assert_eq!(probe_pods("x").pod(&lone[0]).spec.unwrap().containers[0].image.as_deref(), Some("x"));
        assert_eq!(
            probe_labels(),
            BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "kubectl-ippool".to_string())])
        );
    }

    /// The pod is the object the hand-written JSON of the probe built
    /// before `testpods` existed, plus what Pod Security `restricted` asks
    /// (securityContext) and the linux nodeSelector.
    #[test]
    fn same_pod_as_before() {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::ObjectMeta;
        for node in [None, Some("node-1")] {
            let ps = serde_json::json!({
                "containers": [{
                    "name": "pause",
                    "image": "img",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                }],
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": 65535, "runAsGroup": 65535,
                    "seccompProfile": {"type": "RuntimeDefault"}
                },
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "nodeName": node,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "tolerations": [{"operator": "Exists"}],
            });
            let old = Pod {
                metadata: ObjectMeta {
                    name: Some("probe-0".to_string()),
                    labels: Some(probe_labels()),
                    ..Default::default()
                },
                spec: Some(serde_json::from_value(ps).unwrap()),
                ..Default::default()
            };
            let t = Target { name: "probe-0".into(), node: node.map(str::to_string) };
            assert_eq!(probe_pods("img").pod(&t), old);
        }
    }
}
