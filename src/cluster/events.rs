//! The audit trail: core/v1 Events on the objects a migration changed.

use chrono::Utc;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::lease::{holder_identity, COMPONENT};
use super::Cluster;

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
        "reportingInstance": holder_identity(),
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
