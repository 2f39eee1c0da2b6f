//! Events: the audit trail a migration writes on the objects it changed,
//! and the sandbox failures kubelet reports when Calico IPAM fails.

use std::collections::HashMap;

use chrono::Utc;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::lease::holder_identity;
use super::COMPONENT;
use super::{list_paged, Cluster};
use crate::core::model::SandboxFailure;
use crate::error::Result;

/// The event reason kubelet uses when CNI ADD (and so Calico IPAM) fails.
pub const SANDBOX_FAILURE_REASON: &str = "FailedCreatePodSandBox";

/// What an Event is about.
pub struct EventTarget<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    /// None for cluster-scoped objects (the Event then goes to `default`).
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// Record an audit Event (reason `IPPoolMigration`). Best effort: a
/// missing permission to create Events never stops a migration.
pub async fn record_event(cluster: &Cluster, target: EventTarget<'_>, message: &str) {
    let ns = target.namespace.unwrap_or("default");
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let suffix: u32 = rand::random();
    let ev = json!({
        "metadata": {"name": format!("{}.{:x}", target.name.to_lowercase().replace(['/', ':'], "-"), suffix), "namespace": ns},
        "involvedObject": {"apiVersion": target.api_version, "kind": target.kind, "name": target.name, "namespace": target.namespace},
        "reason": "IPPoolMigration",
        "message": message,
        "type": "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        // The API server takes at most 128 characters here.
        "reportingInstance": holder_identity().chars().take(128).collect::<String>(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1
    });
    match serde_json::from_value::<Event>(ev) {
        Ok(ev) => {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!("could not record event: {e}");
            }
        }
        Err(e) => tracing::debug!("could not build event: {e}"),
    }
}

/// The latest `FailedCreatePodSandBox` event per pod (field selector on the
/// reason, so only those events travel).
pub async fn list_sandbox_failures(cluster: &Cluster) -> Result<Vec<SandboxFailure>> {
    let lp = ListParams::default().fields(&format!("reason={SANDBOX_FAILURE_REASON},involvedObject.kind=Pod"));
    // Per pod: (time of the latest event, the failure).
    let mut latest: HashMap<(String, String), (Option<k8s_openapi::jiff::Timestamp>, SandboxFailure)> = HashMap::new();
    list_paged(&cluster.scoped::<Event>(), lp, "events", cluster.namespace.as_deref(), |e| {
        let ns = e.involved_object.namespace.clone().or_else(|| e.namespace()).unwrap_or_default();
        let pod = e.involved_object.name.clone().unwrap_or_default();
        let when = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let failure = SandboxFailure {
            namespace: ns.clone(),
            pod: pod.clone(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
        };
        let entry = latest.entry((ns, pod)).or_insert_with(|| (when, failure.clone()));
        if when > entry.0 {
            *entry = (when, failure);
        }
    })
    .await?;
    let mut out: Vec<SandboxFailure> = latest.into_values().map(|(_, f)| f).collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(out)
}
