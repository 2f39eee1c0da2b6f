//! The canary's connectivity check: agnhost `netexec` servers in the new
//! pool (on the canary node) and in the old pool (on another node, behind
//! a ClusterIP Service), then agnhost `connect` clients for each path of
//! `core::plan::connectivity`. Pods are pinned to a pool by Calico's
//! `cni.projectcalico.org/ipv4pools`/`ipv6pools` annotation, since both
//! pools are enabled while the canary runs. The node path's client runs on
//! the host network, in a namespace of its own (`host_namespace`) whose Pod
//! Security level is `privileged`, so the canary's namespace stays
//! `restricted`. The caller deletes both namespaces (`canary::cleanup`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, Namespace, Pod, Probe, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;

use super::retry::{already_exists, create_once};
use super::testpods::{self, TestPods};
use super::watch::wait_list;
use super::Cluster;
use crate::core::plan::connectivity::{client_result, CanaryPath, ClientView, PathKind, PathResult, CANARY_PORT};
use crate::error::{Error, KubeResultExt, Result};

/// One family's pools: the new one (and the old one the paths reach), by
/// name: the pool each side's pods are pinned to; None pins nothing (the
/// pods of `verify --probe` take what the cluster gives them).
#[derive(Debug, Clone)]
pub struct FamilyPools {
    pub ipv6: bool,
    pub new_name: Option<String>,
    /// What the new-pool pods' addresses must be in (None: not checked).
    pub new_cidr: Option<IpNet>,
    pub old_name: Option<String>,
}

/// The namespace of the node path's hostNetwork client: the canary's (or
/// probe's) own name with `-host`.
pub fn host_namespace(ns: &str) -> String {
    format!("{ns}-host")
}

/// What the check needs.
pub struct PathsInput<'a> {
    pub families: &'a [FamilyPools],
    /// The new-pool side's node (first) and the old-pool server's node.
    pub new_node: &'a str,
    pub old_node: &'a str,
    /// The old pool hands out addresses (else the paths through it are NOT CHECKED).
    pub old_enabled: bool,
    pub timeout: Duration,
    /// The labels of the node path's namespace (the caller's own, so its
    /// leftovers are found as the caller's).
    pub host_labels: &'a BTreeMap<String, String>,
}

/// A path's client: (destination HOST:PORT, node), or why the path cannot
/// be checked.
type ClientPlan = std::result::Result<(String, String), String>;

const ROLE: &str = "ippool.kubectl.io/canary-role";
const SERVICE: &str = "old-server";
/// A client that failed is run again this many times in all: one refused
/// connection while kube-proxy or a route catches up is not a verdict.
const ATTEMPTS: usize = 3;

fn pin(families: &[FamilyPools], new: bool) -> BTreeMap<String, String> {
    families
        .iter()
        .filter_map(|f| {
            let key = if f.ipv6 { "cni.projectcalico.org/ipv6pools" } else { "cni.projectcalico.org/ipv4pools" };
            let name = if new { f.new_name.as_ref() } else { f.old_name.as_ref() }?;
            Some((key.to_string(), serde_json::json!([name]).to_string()))
        })
        .collect()
}

/// A canary pod: the test pod shape (Pod Security `restricted`), pinned to
/// a node and a pool, running agnhost with `args`.
pub(super) fn pod(
    spec: &TestPods,
    name: &str,
    node: &str,
    families: &[FamilyPools],
    new: bool,
    args: Vec<String>,
) -> Pod {
    let mut p = spec.pod(&testpods::Target { name: name.to_string(), node: Some(node.to_string()) });
    let pins = pin(families, new);
    p.metadata.annotations = (!pins.is_empty()).then_some(pins);
    let serves = args.first().is_some_and(|a| a == "netexec");
    if serves {
        p.metadata.labels.get_or_insert_with(BTreeMap::new).insert(ROLE.into(), name.into());
    }
    if let Some(c) = p.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.args = Some(args);
        if serves {
            c.ports = Some(vec![ContainerPort { container_port: CANARY_PORT.into(), ..Default::default() }]);
            c.readiness_probe = Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/healthz".into()),
                    port: IntOrString::Int(CANARY_PORT.into()),
                    ..Default::default()
                }),
                period_seconds: Some(1),
                ..Default::default()
            });
        }
    }
    p
}

/// The node path's client: on the host network of `node`, in the host
/// namespace, pinned to no pool (it takes the node's addresses).
fn host_client(spec: &TestPods, name: &str, node: &str, args: Vec<String>) -> Pod {
    let mut p = spec.pod(&testpods::Target { name: name.to_string(), node: Some(node.to_string()) });
    if let Some(s) = p.spec.as_mut() {
        s.host_network = Some(true);
        if let Some(c) = s.containers.first_mut() {
            c.args = Some(args);
        }
    }
    p
}

/// Create the node path's namespace; Err says why the path cannot be
/// checked (admission or a policy refusing a `privileged` namespace).
async fn open_host_namespace(
    cluster: &Cluster,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let (pp, object) = (PostParams::default(), testpods::host_network_namespace(ns, labels));
    match create_once(|| api.create(&pp, &object)).await {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(format!("namespace {ns} for the hostNetwork client could not be created: {e}")),
    }
}

fn server_args() -> Vec<String> {
    vec!["netexec".into(), format!("--http-port={CANARY_PORT}")]
}

fn target(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{CANARY_PORT}"),
        IpAddr::V6(a) => format!("[{a}]:{CANARY_PORT}"),
    }
}

pub(super) async fn create(api: &Api<Pod>, p: &Pod, ns: &str) -> Result<()> {
    let pp = PostParams::default();
    match create_once(|| api.create(&pp, p)).await {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(e).op("create", "pods", Some(ns)),
    }
}

/// A server's state once it settled: its addresses when Ready, or why it
/// cannot serve.
async fn wait_server(api: &Api<Pod>, name: &str, timeout: Duration) -> std::result::Result<Vec<IpAddr>, String> {
    let settled = |p: Option<&Pod>| {
        let Some(p) = p else { return true };
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        ready || client_result(&view(p, false)).is_some()
    };
    let got = tokio::time::timeout(timeout, await_condition(api.clone(), name, settled)).await;
    match got {
        Err(_) => Err(format!("server pod {name} was not Ready after {}", humantime::format_duration(timeout))),
        Ok(Err(e)) => Err(format!("watching server pod {name}: {e}")),
        Ok(Ok(None)) => Err(format!("server pod {name} disappeared")),
        Ok(Ok(Some(p))) => match client_result(&view(&p, false)) {
            Some(PathResult::NotChecked(why)) => Err(format!("server pod {name}: {why}")),
            Some(_) => Err(format!("server pod {name} ended")),
            None => Ok(testpods::pod_ips(&p)),
        },
    }
}

fn view(p: &Pod, timed_out: bool) -> ClientView {
    let status = p.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()));
    ClientView { phase: status.and_then(|s| s.phase.clone()), waiting, timed_out }
}

/// Run one client to its end (or the deadline): the path's result. A
/// client the API server refuses (admission, a policy) cannot check its
/// path.
async fn run_client(api: &Api<Pod>, ns: &str, p: Pod, timeout: Duration) -> Result<PathResult> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let pp = PostParams::default();
    match create_once(|| api.create(&pp, &p)).await {
        Ok(_) => {}
        Err(e) if already_exists(&e) => {}
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            return Ok(PathResult::NotChecked(format!(
                "the API server refused the client pod {ns}/{name}: {}",
                s.message
            )))
        }
        Err(e) => return Err(e).op("create", "pods", Some(ns)),
    }
    let done = |p: Option<&Pod>| p.is_none_or(|p| client_result(&view(p, false)).is_some());
    let got = tokio::time::timeout(timeout, await_condition(api.clone(), &name, done)).await;
    Ok(match got {
        Err(_) => {
            let now = api.get_opt(&name).await.ok().flatten();
            now.map(|p| client_result(&view(&p, true)))
                .unwrap_or(None)
                .unwrap_or_else(|| PathResult::NotChecked("the client pod disappeared".into()))
        }
        Ok(Err(e)) => return Err(Error::Other(format!("watching canary client {ns}/{name}: {e}"))),
        Ok(Ok(None)) => PathResult::NotChecked("the client pod disappeared".into()),
        Ok(Ok(Some(p))) => client_result(&view(&p, false))
            .unwrap_or_else(|| PathResult::NotChecked("the client pod did not end".into())),
    })
}

/// Wait until the Service has a ready endpoint (kube-proxy follows its
/// EndpointSlices), watching them; Err says why not (the deadline, a
/// watch the role forbids).
async fn wait_endpoints(cluster: &Cluster, ns: &str, timeout: Duration) -> std::result::Result<(), String> {
    let api: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={SERVICE}"));
    let ready = |slices: &[&EndpointSlice]| {
        slices.iter().any(|s| s.endpoints.iter().any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false)))
    };
    wait_list(api, config, "the canary Service's endpoints", timeout, ready).await.map_err(|e| e.to_string())
}

/// The new-pool server's addresses (to check against the new pools) and
/// every path's result.
pub async fn check(
    cluster: &Cluster,
    ns: &str,
    spec: &TestPods,
    input: &PathsInput<'_>,
    paths: &[CanaryPath],
) -> Result<(Vec<IpAddr>, Vec<(CanaryPath, PathResult)>)> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let fams = input.families;
    create(&api, &pod(spec, "new-server", input.new_node, fams, true, server_args()), ns).await?;
    if input.old_enabled {
        create(&api, &pod(spec, "old-server", input.old_node, fams, false, server_args()), ns).await?;
    }
    // The new-pool server must get its address (the migration is pointless
    // otherwise): waiting for it is an error at the deadline, as before.
    let new_ips = match testpods::wait(&api, "new-server", testpods::Until::Address, input.timeout).await {
        Ok(Some(p)) => testpods::pod_ips(&p),
        Ok(None) => return Err(Error::Other(format!("canary pod {ns}/new-server disappeared"))),
        Err(testpods::WaitError::TimedOut) => {
            return Err(Error::Timeout {
                what: format!(
                    "canary pod {ns}/new-server on {} to get an IP (check `kubectl describe pod -n {ns} new-server`)",
                    input.new_node
                ),
                after: input.timeout,
            })
        }
        Err(testpods::WaitError::Watch(e)) => return Err(Error::Other(format!("watching canary pod: {e}"))),
    };
    let new_ready = wait_server(&api, "new-server", input.timeout).await;
    let old_ready = if input.old_enabled {
        wait_server(&api, "old-server", input.timeout).await
    } else {
        Err("the old pool is already disabled, so no old-pool pod can be started".to_string())
    };
    let mut cluster_ips: Vec<IpAddr> = vec![];
    let mut svc_problem: Option<String> = None;
    if old_ready.is_ok() {
        let services: Api<Service> = Api::namespaced(cluster.client.clone(), ns);
        let svc = Service {
            metadata: ObjectMeta { name: Some(SERVICE.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([(ROLE.to_string(), "old-server".to_string())])),
                ports: Some(vec![ServicePort {
                    port: CANARY_PORT.into(),
                    target_port: Some(IntOrString::Int(CANARY_PORT.into())),
                    ..Default::default()
                }]),
                ip_family_policy: Some(if fams.len() > 1 { "RequireDualStack" } else { "SingleStack" }.into()),
                ip_families: Some(fams.iter().map(|f| if f.ipv6 { "IPv6" } else { "IPv4" }.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match services.create(&PostParams::default(), &svc).await {
            Ok(s) => {
                cluster_ips = s
                    .spec
                    .and_then(|s| s.cluster_ips)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|i| i.parse().ok())
                    .collect();
                if let Err(e) = wait_endpoints(cluster, ns, input.timeout).await {
                    svc_problem = Some(format!("the Service got no ready endpoint: {e}"));
                }
            }
            Err(e) => svc_problem = Some(format!("the Service could not be created: {e}")),
        }
    }
    let old_ips = old_ready.clone().unwrap_or_default();
    let host_ns = host_namespace(ns);
    let host_ready = if paths.iter().any(|p| p.kind.client_on_host_network()) && new_ready.is_ok() {
        open_host_namespace(cluster, &host_ns, input.host_labels).await
    } else {
        Err("not needed".to_string())
    };
    let same_family = |ips: &[IpAddr], v6: bool| ips.iter().copied().find(|i| i.is_ipv6() == v6);
    // Each path: its client's pod, or why it cannot be checked.
    let mut plans: Vec<(CanaryPath, ClientPlan)> = vec![];
    for p in paths {
        let planned = match p.kind {
            PathKind::NewToOld => old_ready.clone().and_then(|_| {
                same_family(&old_ips, p.ipv6).ok_or_else(|| "the old-pool server has no address of this family".into())
            }),
            PathKind::OldToNew => match (&old_ready, &new_ready) {
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                _ => same_family(&new_ips, p.ipv6)
                    .ok_or_else(|| "the new-pool server has no address of this family".into()),
            },
            PathKind::NewToService => match (&old_ready, &svc_problem) {
                (Err(e), _) => Err(e.clone()),
                (_, Some(e)) => Err(e.clone()),
                _ => same_family(&cluster_ips, p.ipv6)
                    .ok_or_else(|| "the Service has no ClusterIP of this family".into()),
            },
            PathKind::NodeToNew => match (&new_ready, &host_ready) {
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                _ => same_family(&new_ips, p.ipv6)
                    .ok_or_else(|| "the new-pool server has no address of this family".into()),
            },
        };
        let node = if p.kind.client_in_new_pool() { input.new_node } else { input.old_node };
        plans.push((*p, planned.map(|ip| (target(ip), node.to_string()))));
    }
    let host_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &host_ns);
    let per_client = input.timeout.min(Duration::from_secs(60));
    let runs = plans.into_iter().map(|(p, planned)| {
        let host = p.kind.client_on_host_network();
        let (api, client_ns) = if host { (host_api.clone(), host_ns.as_str()) } else { (api.clone(), ns) };
        async move {
            let (dest, node) = match planned {
                Err(why) => return Ok((p, PathResult::NotChecked(why))),
                Ok(x) => x,
            };
            let mut last = PathResult::NotChecked("not run".into());
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let name = format!("{}-{attempt}", p.client_pod());
                let args = vec!["connect".to_string(), "--timeout=5s".to_string(), dest.clone()];
                let client = if host {
                    host_client(spec, &name, &node, args)
                } else {
                    pod(spec, &name, &node, fams, p.kind.client_in_new_pool(), args)
                };
                last = run_client(&api, client_ns, client, per_client).await?;
                if !matches!(last, PathResult::Failed(_)) {
                    break;
                }
            }
            if let PathResult::Failed(why) = &last {
                last = PathResult::Failed(format!("{why} to {dest} from node {node} ({ATTEMPTS} attempts)"));
            }
            Ok::<_, Error>((p, last))
        }
    });
    let results = futures::future::try_join_all(runs).await?;
    Ok((new_ips, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fams() -> Vec<FamilyPools> {
        vec![
            FamilyPools {
                ipv6: false,
                new_name: Some("new4".into()),
                new_cidr: "10.0.0.0/16".parse().ok(),
                old_name: Some("old4".into()),
            },
            FamilyPools {
                ipv6: true,
                new_name: Some("new6".into()),
                new_cidr: "fd00:20::/112".parse().ok(),
                old_name: Some("old6".into()),
            },
        ]
    }

    /// Pinned to the pool by Calico's annotations, one per family, and
    /// still Pod Security `restricted`.
    #[test]
    fn pods_are_pinned_to_a_pool_and_restricted() {
        let spec = super::super::canary::canary_pods("img:1");
        let p = pod(&spec, "new-server", "n1", &fams(), true, server_args());
        let a = p.metadata.annotations.clone().unwrap();
        assert_eq!(a["cni.projectcalico.org/ipv4pools"], r#"["new4"]"#);
        assert_eq!(a["cni.projectcalico.org/ipv6pools"], r#"["new6"]"#);
        assert_eq!(p.metadata.labels.as_ref().unwrap()[ROLE], "new-server");
        let s = p.spec.unwrap();
        assert_eq!(s.node_name.as_deref(), Some("n1"));
        let c = &s.containers[0];
        assert_eq!(c.args.as_deref(), Some(&["netexec".to_string(), "--http-port=8080".to_string()][..]));
        assert_eq!(c.image.as_deref(), Some("img:1"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(s.security_context.unwrap().run_as_non_root, Some(true));
        let old = pod(&spec, "to-old-v4-0", "n2", &fams()[..1], false, vec!["connect".into(), "x:1".into()]);
        let a = old.metadata.annotations.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a["cni.projectcalico.org/ipv4pools"], r#"["old4"]"#);
        assert!(!old.metadata.labels.unwrap().contains_key(ROLE), "a client is no Service endpoint");
        assert_eq!(target("fd00::1".parse().unwrap()), "[fd00::1]:8080");
    }
}
