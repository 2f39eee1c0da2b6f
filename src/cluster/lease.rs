//! The migration lock: a coordination.k8s.io Lease.
//!
//! Only one `migrate` may run per cluster: the Lease names its holder
//! (`user@host:pid`) and is renewed every RENEW_EVERY. A second run refuses
//! with `Error::Locked` unless the lease has expired, or the holder is a dead
//! process on this same host (a Ctrl-C'd or killed run being resumed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use super::record::STATE_NAMESPACE;
use super::retry::{is_transient, transient_pause};
use super::Cluster;
use crate::error::{Error, KubeResultExt, Result};

pub const LEASE_SECONDS: i64 = 30;
const RENEW_EVERY: Duration = Duration::from_secs(10);
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

/// `user@host:pid`, the identity written into the Lease and the record.
pub fn holder_identity() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// A holder on this host whose process no longer exists (Linux: /proc).
fn is_dead_local_holder(holder: &str) -> bool {
    let Some((user_host, pid)) = holder.rsplit_once(':') else { return false };
    let same_host = user_host.rsplit_once('@').is_some_and(|(_, h)| h == hostname());
    let Ok(pid) = pid.parse::<u32>() else { return false };
    same_host && std::path::Path::new("/proc").exists() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn micro_now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A held lease; renewed in the background until `release`.
pub struct LeaseGuard {
    cluster: Cluster,
    identity: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    /// Take the lease, or refuse naming the live holder.
    pub async fn acquire(cluster: &Cluster) -> Result<LeaseGuard> {
        let api: Api<Lease> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
        let identity = holder_identity();
        for attempt in 0..8u32 {
            let now = micro_now();
            let Some(existing) =
                api.get_opt(LEASE_NAME).await.op("get", "leases.coordination.k8s.io", Some(STATE_NAMESPACE))?
            else {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": LEASE_NAME, "namespace": STATE_NAMESPACE},
                    "spec": {"holderIdentity": identity, "leaseDurationSeconds": LEASE_SECONDS, "acquireTime": now, "renewTime": now}
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
            let ttl = spec.lease_duration_seconds.map(i64::from).unwrap_or(LEASE_SECONDS);
            let renewed = serde_json::to_value(&existing)
                .ok()
                .and_then(|v| v.pointer("/spec/renewTime").and_then(|t| t.as_str()).map(str::to_string));
            let age = renewed
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| Utc::now().signed_duration_since(t));
            let expired = holder.is_empty() || age.is_none_or(|a| a.num_seconds() > ttl);
            if !(expired || holder == identity || is_dead_local_holder(&holder)) {
                let age = age.map(|a| format!("{}s", a.num_seconds().max(0))).unwrap_or_else(|| "?".into());
                return Err(Error::Locked { lease: format!("{STATE_NAMESPACE}/{LEASE_NAME}"), holder, age, ttl });
            }
            let mut taken = existing.clone();
            let mut v = serde_json::to_value(&taken).map_err(|e| Error::Other(format!("lease: {e}")))?;
            v["spec"] = json!({"holderIdentity": identity, "leaseDurationSeconds": LEASE_SECONDS, "acquireTime": now, "renewTime": now,
                "leaseTransitions": spec.lease_transitions.unwrap_or(0) + 1});
            taken = serde_json::from_value(v).map_err(|e| Error::Other(format!("lease: {e}")))?;
            // resourceVersion is kept: if someone else took it meanwhile we get 409 and look again.
            match api.replace(LEASE_NAME, &PostParams::default(), &taken).await {
                Ok(_) => return Ok(Self::start(cluster, identity)),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) if is_transient(&e) => tokio::time::sleep(transient_pause(attempt)).await,
                Err(e) => return Err(e).op("update", "leases.coordination.k8s.io", Some(STATE_NAMESPACE)),
            }
        }
        Err(Error::Other(format!("could not take lease {STATE_NAMESPACE}/{LEASE_NAME}: it kept changing under us")))
    }

    fn start(cluster: &Cluster, identity: String) -> LeaseGuard {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew_loop(cluster.clone(), identity.clone(), lost.clone()));
        LeaseGuard { cluster: cluster.clone(), identity, lost, renewer }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Another process took the lease (we could not renew in time).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
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

async fn renew_loop(cluster: Cluster, identity: String, lost: Arc<AtomicBool>) {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Ok(Some(l)) = api.get_opt(LEASE_NAME).await else { continue };
        if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(identity.as_str()) {
            tracing::error!("lease {STATE_NAMESPACE}/{LEASE_NAME} was taken over by another process");
            lost.store(true, Ordering::Relaxed);
            return;
        }
        let Ok(mut v) = serde_json::to_value(&l) else { continue };
        v["spec"]["renewTime"] = json!(micro_now());
        if let Ok(l) = serde_json::from_value::<Lease>(v) {
            if let Err(e) = api.replace(LEASE_NAME, &PostParams::default(), &l).await {
                tracing::warn!("renewing lease {STATE_NAMESPACE}/{LEASE_NAME}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_user_host_and_pid() {
        let id = holder_identity();
        assert!(id.contains('@') && id.ends_with(&format!(":{}", std::process::id())), "{id}");
        assert!(!is_dead_local_holder(&id), "we are alive");
        let dead = format!("{}:{}", id.rsplit_once(':').unwrap().0, u32::MAX - 1);
        assert!(is_dead_local_holder(&dead));
        assert!(!is_dead_local_holder("bob@elsewhere.example:1"));
    }
}
