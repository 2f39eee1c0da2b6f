//! The migration lock: a coordination.k8s.io Lease.
//!
//! Only one `migrate` may run per cluster: the Lease names its holder (a
//! random run ID, the pod it runs in if any, `user@host:pid`) and is
//! renewed every third of its duration. A second run never takes over a
//! lease held by another run unless it has expired, and it judges expiry as
//! client-go's leader election does: by watching the lease here, with this
//! clock, for a whole lease duration without a renewal, never by comparing
//! its clock with the holder's `renewTime`. A holder that cannot renew in
//! time counts its lease as lost (`LeaseGuard::why_lost`): the run starts
//! nothing new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use super::record::STATE_NAMESPACE;
use super::retry::{is_transient, transient_pause};
use super::Cluster;
use crate::error::{Error, KubeResultExt, Result};

pub const LEASE_SECONDS: i64 = 30;

/// The lease duration this run writes: LEASE_SECONDS, or (for tests that
/// need a lease to lapse quickly) `KUBECTL_IPPOOL_LEASE_SECONDS`.
fn lease_seconds() -> i64 {
    static SECONDS: OnceLock<i64> = OnceLock::new();
    *SECONDS.get_or_init(|| {
        std::env::var("KUBECTL_IPPOOL_LEASE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s| *s >= 3)
            .unwrap_or(LEASE_SECONDS)
    })
}

/// How often the holder renews: three times per lease duration.
fn renew_every() -> Duration {
    Duration::from_secs((lease_seconds() / 3).max(1) as u64)
}

/// How long after its last successful renewal the holder may still count
/// on the lease: two thirds of its duration, so that it stops before
/// anyone watching could see it expire.
fn safe_for() -> Duration {
    Duration::from_millis((lease_seconds() * 2000 / 3) as u64)
}
/// The Lease, beside the migration record.
pub const LEASE_NAME: &str = "kubectl-ippool";

/// How the run that held the lease stopped holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStopped {
    /// It deleted the lease (it ended, finished or not).
    Released { holder: String },
    /// It stopped renewing (killed, or cut off from the API server).
    Expired { holder: String },
}

/// Wait until a run holds the lease, then until it stops holding it: the
/// lease deleted or emptied, or not renewed within its duration. Renewals
/// are seen as changes of the object, timed by this clock, so the two
/// hosts' clocks need not agree. Never returns while a run keeps renewing.
pub async fn wait_for_run_to_stop(cluster: &Cluster) -> Result<RunStopped> {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
    let forever = Duration::from_secs(100 * 365 * 24 * 3600);
    let held = |l: &Lease| holder_of(l).is_some();
    let mut seen = super::watch::wait_object(
        api.clone(),
        LEASE_NAME,
        "a migration run to take the lease",
        forever,
        |l: Option<&Lease>| l.is_some_and(held),
    )
    .await?
    .expect("the lease was seen held");
    loop {
        let holder = holder_of(&seen).unwrap_or_default();
        let version = seen.metadata.resource_version.clone();
        let ttl = seen.spec.as_ref().and_then(|s| s.lease_duration_seconds).map_or(LEASE_SECONDS, i64::from);
        let changed = move |l: Option<&Lease>| l.is_none_or(|l| l.metadata.resource_version != version);
        let wait = Duration::from_secs(ttl.max(1) as u64);
        match super::watch::wait_object(api.clone(), LEASE_NAME, "the lease's renewal", wait, changed).await {
            Ok(Some(l)) if held(&l) => seen = l,
            Ok(_) => return Ok(RunStopped::Released { holder }),
            Err(Error::Timeout { .. }) => return Ok(RunStopped::Expired { holder }),
            Err(e) => return Err(e),
        }
    }
}

fn holder_of(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty())
}

/// This run's random ID, the same for the whole process.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("run-{:016x}", rand::random::<u64>()))
}

/// The identity written into the Lease and the record: the run ID, the
/// pod (from the downward API: POD_NAMESPACE, POD_NAME, POD_UID, as
/// deploy/job.yaml sets them) when there is one, and `user@host:pid`. Two
/// runs never share it, even on one host network with PID 1 each.
pub fn holder_identity() -> String {
    identity_from(run_id(), |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn identity_from(run: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let user = env("USER").or_else(|| env("USERNAME")).unwrap_or_else(|| "unknown".into());
    let pod = match (env("POD_NAMESPACE"), env("POD_NAME"), env("POD_UID")) {
        (ns, Some(name), uid) => format!(
            " pod {}{name}{}",
            ns.map(|n| format!("{n}/")).unwrap_or_default(),
            uid.map(|u| format!(" uid {u}")).unwrap_or_default()
        ),
        _ => String::new(),
    };
    format!("{run}{pod} {user}@{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn micro_now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// What a run waiting for the lease saw of it.
enum Seen {
    /// Gone or emptied: free to take.
    Free,
    /// Changed (renewed, or taken by yet another run): its holder now.
    Changed(String),
    /// Not renewed for a whole lease duration, watched here.
    Expired,
}

/// Watch `seen` (held by another run) for up to its lease duration, timed
/// by this clock.
async fn watch_holder(api: &Api<Lease>, seen: &Lease) -> Result<Seen> {
    let version = seen.metadata.resource_version.clone();
    let ttl = seen.spec.as_ref().and_then(|s| s.lease_duration_seconds).map_or(LEASE_SECONDS, i64::from);
    let changed = move |l: Option<&Lease>| l.is_none_or(|l| l.metadata.resource_version != version);
    let wait = Duration::from_secs(ttl.max(1) as u64);
    match super::watch::wait_object(api.clone(), LEASE_NAME, "the lease's renewal", wait, changed).await {
        Ok(Some(l)) => Ok(holder_of(&l).map_or(Seen::Free, Seen::Changed)),
        Ok(_) => Ok(Seen::Free),
        Err(Error::Timeout { .. }) => Ok(Seen::Expired),
        Err(e) => Err(e),
    }
}

/// A held lease; renewed in the background until `release`.
pub struct LeaseGuard {
    cluster: Cluster,
    identity: String,
    state: Arc<Held>,
    renewer: tokio::task::JoinHandle<()>,
}

/// What the renewer knows, shared with the run.
struct Held {
    /// Another run holds the lease now.
    taken_over: AtomicBool,
    /// When the lease was last written by us (taken or renewed), by this clock.
    renewed_at: Mutex<Instant>,
}

impl LeaseGuard {
    /// Take the lease, or refuse naming the live holder. A lease held by
    /// another run is watched: renewed within its duration, the holder is
    /// alive (refused); not renewed for a whole duration, it is taken over.
    pub async fn acquire(cluster: &Cluster) -> Result<LeaseGuard> {
        let api: Api<Lease> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
        let identity = holder_identity();
        let ttl = lease_seconds();
        // The version of the other run's lease watched for a whole duration without a change.
        let mut expired_version: Option<String> = None;
        for attempt in 0..12u32 {
            let now = micro_now();
            let Some(existing) =
                api.get_opt(LEASE_NAME).await.op("get", "leases.coordination.k8s.io", Some(STATE_NAMESPACE))?
            else {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": LEASE_NAME, "namespace": STATE_NAMESPACE},
                    "spec": {"holderIdentity": identity, "leaseDurationSeconds": ttl, "acquireTime": now, "renewTime": now}
                }))
                .map_err(|e| Error::Other(format!("lease: {e}")))?;
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => return Ok(Self::start(cluster, identity)),
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    // Landed or not, the next look tells: our own identity is taken as ours.
                    Err(e) if is_transient(&e) => {
                        tokio::time::sleep(transient_pause(attempt)).await;
                        continue;
                    }
                    Err(e) => return Err(e).op("create", "leases.coordination.k8s.io", Some(STATE_NAMESPACE)),
                }
            };
            let spec = existing.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let free = holder.is_empty()
                || holder == identity
                || expired_version.is_some() && expired_version == existing.metadata.resource_version;
            if !free {
                match watch_holder(&api, &existing).await? {
                    Seen::Free => continue,
                    Seen::Expired => {
                        expired_version = existing.metadata.resource_version.clone();
                        continue;
                    }
                    Seen::Changed(now) if now == holder => {
                        let ttl = spec.lease_duration_seconds.map(i64::from).unwrap_or(LEASE_SECONDS);
                        return Err(Error::Locked {
                            lease: format!("{STATE_NAMESPACE}/{LEASE_NAME}"),
                            holder,
                            age: "it renewed the lease while this run watched".into(),
                            ttl,
                        });
                    }
                    Seen::Changed(_) => continue,
                }
            }
            let mut v = serde_json::to_value(&existing).map_err(|e| Error::Other(format!("lease: {e}")))?;
            v["spec"] = json!({"holderIdentity": identity, "leaseDurationSeconds": ttl, "acquireTime": now, "renewTime": now,
                "leaseTransitions": spec.lease_transitions.unwrap_or(0) + 1});
            let taken: Lease = serde_json::from_value(v).map_err(|e| Error::Other(format!("lease: {e}")))?;
            // resourceVersion is kept: if someone else took it meanwhile we get 409 and look again.
            match api.replace(LEASE_NAME, &PostParams::default(), &taken).await {
                Ok(_) => return Ok(Self::start(cluster, identity)),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) if is_transient(&e) => tokio::time::sleep(transient_pause(attempt)).await,
                Err(e) => return Err(e).op("update", "leases.coordination.k8s.io", Some(STATE_NAMESPACE)),
            }
        }
        Err(Error::Other(format!("could not take lease {STATE_NAMESPACE}/{LEASE_NAME}: it kept changing under us")))
    }

    fn start(cluster: &Cluster, identity: String) -> LeaseGuard {
        let state = Arc::new(Held { taken_over: AtomicBool::new(false), renewed_at: Mutex::new(Instant::now()) });
        let renewer = tokio::spawn(renew_loop(cluster.clone(), identity.clone(), state.clone()));
        LeaseGuard { cluster: cluster.clone(), identity, state, renewer }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Why the lease is no longer surely ours, if it is not: another run
    /// took it, or it was not renewed for long enough that another run may
    /// see it expire.
    pub fn why_lost(&self) -> Option<String> {
        if self.state.taken_over.load(Ordering::Relaxed) {
            return Some("another run took over the migration lease".into());
        }
        let since = self.state.renewed_at.lock().map(|t| t.elapsed()).unwrap_or_default();
        (since > safe_for()).then(|| {
            format!(
                "the migration lease could not be renewed for {}s (it lapses after {}s)",
                since.as_secs(),
                lease_seconds()
            )
        })
    }

    /// Stop renewing and delete the lease if it is still ours (looking
    /// again after a conflict or a transient failure).
    pub async fn release(self) {
        self.renewer.abort();
        let api: Api<Lease> = Api::namespaced(self.cluster.client.clone(), STATE_NAMESPACE);
        for attempt in 0..5u32 {
            let Ok(Some(l)) = api.get_opt(LEASE_NAME).await else { return };
            if l.spec.and_then(|s| s.holder_identity).as_deref() != Some(self.identity.as_str()) {
                return;
            }
            let dp = DeleteParams {
                preconditions: l
                    .metadata
                    .resource_version
                    .map(|rv| kube::api::Preconditions { resource_version: Some(rv), uid: None }),
                ..Default::default()
            };
            match api.delete(LEASE_NAME, &dp).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) if is_transient(&e) => {}
                _ => return,
            }
            tokio::time::sleep(transient_pause(attempt)).await;
        }
    }
}

async fn renew_loop(cluster: Cluster, identity: String, held: Arc<Held>) {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
    let mut pause = renew_every();
    loop {
        tokio::time::sleep(pause).await;
        // After a failure, try again soon: the lease must not lapse.
        pause = Duration::from_secs(1).min(renew_every());
        let l = match api.get_opt(LEASE_NAME).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::error!("lease {STATE_NAMESPACE}/{LEASE_NAME} was deleted under this run");
                held.taken_over.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!("renewing lease {STATE_NAMESPACE}/{LEASE_NAME}: {e}");
                continue;
            }
        };
        if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(identity.as_str()) {
            tracing::error!("lease {STATE_NAMESPACE}/{LEASE_NAME} was taken over by another run");
            held.taken_over.store(true, Ordering::Relaxed);
            return;
        }
        let Ok(mut v) = serde_json::to_value(&l) else { continue };
        v["spec"]["renewTime"] = json!(micro_now());
        let Ok(l) = serde_json::from_value::<Lease>(v) else { continue };
        let sent = Instant::now();
        match api.replace(LEASE_NAME, &PostParams::default(), &l).await {
            Ok(_) => {
                // Counted from when the renewal was sent: a watcher may have
                // seen it any time after that.
                if let Ok(mut t) = held.renewed_at.lock() {
                    *t = sent;
                }
                pause = renew_every();
            }
            Err(e) => tracing::warn!("renewing lease {STATE_NAMESPACE}/{LEASE_NAME}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_the_run_the_pod_and_user_host_pid() {
        let id = holder_identity();
        assert!(id.starts_with("run-") && id.ends_with(&format!(":{}", std::process::id())), "{id}");
        assert_eq!(holder_identity(), id, "one ID per run");
        let env = |k: &str| match k {
            "USER" => Some("root".to_string()),
            "POD_NAMESPACE" => Some("kube-system".into()),
            "POD_NAME" => Some("kubectl-ippool-migrate-x7k2p".into()),
            "POD_UID" => Some("8c9f".into()),
            _ => None,
        };
        let a = identity_from("run-1", env);
        assert!(a.starts_with("run-1 pod kube-system/kubectl-ippool-migrate-x7k2p uid 8c9f root@"), "{a}");
        // Two runs on one host network, each PID 1 in its container, still differ.
        assert_ne!(identity_from("run-1", env), identity_from("run-2", env));
        assert_ne!(run_id(), format!("run-{:016x}", rand::random::<u64>()));
    }
}
