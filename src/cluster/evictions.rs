//! Evicting pods the way `kubectl drain` does: through the Eviction API,
//! never forced, retried while a PodDisruptionBudget says no, and looked at
//! again when the answer is unclear; then a watch until the pod is gone.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use super::progress::{Progress, ProgressEvent};
use super::retry::is_transient;
use super::Cluster;
use crate::error::{Error, KubeResultExt, Result};

/// Pause before repeating an eviction that hit a write conflict.
const CONFLICT_RETRY: Duration = Duration::from_millis(500);
/// kubectl drain's delay between eviction attempts refused by a PDB.
const EVICT_RETRY: Duration = Duration::from_secs(5);

/// What an eviction request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// The pod is being deleted (it is terminating, or already gone).
    Terminating,
    /// No such pod (any more): nothing to wait for.
    AlreadyGone,
}

/// Ask the Eviction API to evict the pod, retrying visibly while a
/// PodDisruptionBudget says no (429) and on write conflicts; never forced.
pub async fn request_eviction(
    cluster: &Cluster,
    progress: &dyn Progress,
    namespace: &str,
    name: &str,
    uid: &str,
    timeout: Duration,
) -> Result<Evicted> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let eviction = Eviction {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        delete_options: Some(DeleteOptions {
            preconditions: (!uid.is_empty()).then(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        }),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = EVICT_RETRY;
    loop {
        let r: std::result::Result<serde_json::Value, _> =
            api.create_subresource("eviction", name, &PostParams::default(), &eviction).await;
        match r {
            Ok(_) => return Ok(Evicted::Terminating),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Evicted::AlreadyGone),
            // 409 is either the UID precondition (a replacement took the name:
            // ours is gone) or a conflict writing the PDB's status (ours is
            // still there): look, and try again in the second case.
            // The same look after a server error or a lost connection: the
            // eviction may have landed (the pod is terminating) or not.
            Err(e) if is_transient(&e) => {
                let current = api.get_opt(name).await.op("get", "pods", Some(namespace))?;
                match current {
                    Some(p) if !uid.is_empty() && p.uid().as_deref() != Some(uid) => return Ok(Evicted::AlreadyGone),
                    None => return Ok(Evicted::AlreadyGone),
                    Some(p) if p.metadata.deletion_timestamp.is_some() => return Ok(Evicted::Terminating),
                    Some(_) => {}
                }
                if tokio::time::Instant::now() + CONFLICT_RETRY > deadline {
                    return Err(e).op("create", "pods/eviction", Some(namespace));
                }
                tracing::debug!("evicting pod {namespace}/{name}: {e}; trying again");
                tokio::time::sleep(CONFLICT_RETRY).await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let current = api.get_opt(name).await.op("get", "pods", Some(namespace))?;
                if current.is_none_or(|p| uid.is_empty() || p.uid().as_deref() != Some(uid)) {
                    return Ok(Evicted::AlreadyGone);
                }
                if tokio::time::Instant::now() + CONFLICT_RETRY > deadline {
                    return Err(Error::Timeout {
                        what: format!("evicting pod {namespace}/{name} ({})", s.message),
                        after: timeout,
                    });
                }
                tracing::debug!("evicting pod {namespace}/{name}: {}; trying again", s.message);
                tokio::time::sleep(CONFLICT_RETRY).await;
            }
            Err(kube::Error::Api(s)) if s.code == 429 => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(Error::Timeout {
                        what: format!("a PodDisruptionBudget to allow evicting pod {namespace}/{name} ({})", s.message),
                        after: timeout,
                    });
                }
                progress.report(ProgressEvent::EvictionRefused {
                    namespace,
                    name,
                    retry_in: delay,
                    message: &s.message,
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e).op("create", "pods/eviction", Some(namespace)),
        }
    }
}
