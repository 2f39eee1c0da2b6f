//! Whether an aggregated API (Calico's API server behind APIService
//! `v3.projectcalico.org`) is answering. Discovery still lists the group of
//! an APIService that is down, and every request to it then waits for the
//! aggregator's 503; one GET of the APIService says so at once and why.

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::Cluster;
use crate::error::{Error, Result};

/// The APIService serving `projectcalico.org/v3` on API-server installs.
pub const CALICO_APISERVICE: &str = "v3.projectcalico.org";

/// Refuse clearly when APIService `name` exists and is not Available. A
/// user who may not read APIServices (or a cluster without it) gets no
/// check: the requests themselves will tell.
pub async fn require_available(cluster: &Cluster, name: &str) -> Result<()> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
        "apiservices",
    );
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
    match api.get_opt(name).await {
        Ok(Some(svc)) => match unavailable_because(&svc) {
            Some(why) => Err(Error::Calico(format!(
                "Calico's API server is not available (APIService {name}: {why}), so projectcalico.org/v3 can be neither read nor written; nothing was changed. Check `kubectl get apiservice {name}` and the calico-apiserver pods, then run again"
            ))),
            None => Ok(()),
        },
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::debug!("cannot read APIService {name}: {e}");
            Ok(())
        }
    }
}

/// `Some(reason: message)` when the object's `Available` condition is not
/// True (a missing condition counts as not yet available).
pub fn unavailable_because(svc: &DynamicObject) -> Option<String> {
    let conditions = svc.data.pointer("/status/conditions").and_then(Value::as_array);
    let available = conditions.and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
    let Some(c) = available else { return Some("no Available condition yet".into()) };
    if c["status"] == "True" {
        return None;
    }
    let field = |k: &str| c[k].as_str().unwrap_or("").to_string();
    Some(format!("{}: {}", field("reason"), field("message")).trim_matches([':', ' ']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(status: Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion":"apiregistration.k8s.io/v1","kind":"APIService",
            "metadata":{"name":"v3.projectcalico.org"},"spec":{},"status":status}))
        .unwrap()
    }

    #[test]
    fn available_true_passes() {
        let s = svc(json!({"conditions":[{"type":"Available","status":"True","reason":"Passed"}]}));
        assert_eq!(unavailable_because(&s), None);
    }

    #[test]
    fn failed_discovery_names_reason_and_message() {
        let s = svc(json!({"conditions":[{"type":"Available","status":"False","reason":"FailedDiscoveryCheck",
            "message":"failing or missing response from https://10.0.0.1:443/apis/projectcalico.org/v3"}]}));
        assert_eq!(
            unavailable_because(&s).unwrap(),
            "FailedDiscoveryCheck: failing or missing response from https://10.0.0.1:443/apis/projectcalico.org/v3"
        );
    }

    #[test]
    fn no_condition_yet_is_unavailable() {
        assert_eq!(unavailable_because(&svc(json!({}))).unwrap(), "no Available condition yet");
    }
}
