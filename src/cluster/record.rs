//! The migration record: ConfigMap `kube-system/kubectl-ippool-migration`,
//! key `state.json`, guarded by Lease `kube-system/kubectl-ippool`.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::{Cluster, COMPONENT};
use crate::core::state::MigrationState;
use crate::error::{Error, KubeResultExt, Result};

pub const STATE_NAMESPACE: &str = "kube-system";
pub const STATE_CONFIGMAP: &str = "kubectl-ippool-migration";
pub const STATE_KEY: &str = "state.json";

/// The recorded migration, if any. A user who may not read kube-system
/// ConfigMaps gets `None` and a debug log, not an error: `status` must
/// work read-only with little access.
pub async fn read_state(cluster: &Cluster) -> Result<Option<MigrationState>> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
    let cm = match api.get_opt(STATE_CONFIGMAP).await {
        Ok(cm) => cm,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::debug!("cannot read ConfigMap {STATE_NAMESPACE}/{STATE_CONFIGMAP}: {}", s.message);
            return Ok(None);
        }
        Err(e) => return Err(e).op("get", "configmaps", Some(STATE_NAMESPACE)),
    };
    parse(cm.as_ref())
}

fn parse(cm: Option<&ConfigMap>) -> Result<Option<MigrationState>> {
    let Some(text) = cm.and_then(|c| c.data.as_ref()).and_then(|d| d.get(STATE_KEY)) else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::Other(format!("ConfigMap {STATE_NAMESPACE}/{STATE_CONFIGMAP} holds an unreadable migration record ({e}); inspect it with kubectl get cm -n {STATE_NAMESPACE} {STATE_CONFIGMAP} -o yaml")))
}

/// Follow the migration record with a watch (never polling): `on_change`
/// sees the record as it is when the watch starts and after every change
/// (None: there is none), and returns true to stop.
pub async fn follow_state(cluster: &Cluster, mut on_change: impl FnMut(Option<MigrationState>) -> bool) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={STATE_CONFIGMAP}"));
    // Until the migration ends or the user stops it.
    let forever = Duration::from_secs(100 * 365 * 24 * 3600);
    let mut unreadable = None;
    super::watch::wait_list(api, config, "the migration record", forever, |objs| match parse(objs.first().copied()) {
        Ok(state) => on_change(state),
        Err(e) => {
            unreadable = Some(e);
            true
        }
    })
    .await?;
    unreadable.map_or(Ok(()), Err)
}

/// Write the migration record (create or replace, re-reading on conflict).
pub async fn write_state(cluster: &Cluster, state: &MigrationState) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), STATE_NAMESPACE);
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::Other(format!("migration record: {e}")))?;
    // The whole record is written each time, guarded by its resourceVersion,
    // so a write that may or may not have landed can simply be made again.
    let mut last_transient = None;
    for attempt in 0..8u32 {
        if attempt > 0 && last_transient.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
        }
        match api.get_opt(STATE_CONFIGMAP).await.op("get", "configmaps", Some(STATE_NAMESPACE))? {
            None => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": STATE_CONFIGMAP, "namespace": STATE_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": COMPONENT}},
                    "data": {STATE_KEY: text}
                }))
                .map_err(|e| Error::Other(e.to_string()))?;
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) if super::retry::is_transient(&e) => last_transient = Some(("create", e)),
                    Err(e) => return Err(e).op("create", "configmaps", Some(STATE_NAMESPACE)),
                }
            }
            Some(mut cm) => {
                cm.data.get_or_insert_with(Default::default).insert(STATE_KEY.into(), text.clone());
                match api.replace(STATE_CONFIGMAP, &PostParams::default(), &cm).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) if super::retry::is_transient(&e) => last_transient = Some(("update", e)),
                    Err(e) => return Err(e).op("update", "configmaps", Some(STATE_NAMESPACE)),
                }
            }
        }
    }
    if let Some((verb, e)) = last_transient {
        return Err(e).op(verb, "configmaps", Some(STATE_NAMESPACE));
    }
    Err(Error::Other(format!(
        "ConfigMap {STATE_NAMESPACE}/{STATE_CONFIGMAP} kept changing; could not save the migration record"
    )))
}
