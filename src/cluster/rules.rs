//! Reading the objects that may name a pool's CIDR (policies, network sets,
//! IP reservations, the ip-masq-agent ConfigMap, the kube-proxy DaemonSet)
//! and writing JSON patches to them. Rules are cluster-wide: `-n` does not
//! narrow them. A kind the cluster does not serve is simply absent; a kind
//! the user may not read is reported, not fatal.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Resource;
use serde_json::Value;

use super::calico::Calico;
use super::{Cluster, PAGE_SIZE};
use crate::core::rules::{ObjectRef, RuleClass, RuleObject};
use crate::error::{from_kube, Error, Result};

/// What was read.
#[derive(Debug, Clone, Default)]
pub struct RuleObjects {
    pub objects: Vec<RuleObject>,
    /// Kinds the user may not list (`GlobalNetworkPolicy (forbidden)`).
    pub unreadable: Vec<String>,
}

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The Calico kinds that hold rules, and their shape.
const CALICO_KINDS: &[(&str, &str, RuleClass)] = &[
    ("NetworkPolicy", "networkpolicies", RuleClass::CalicoPolicy),
    ("GlobalNetworkPolicy", "globalnetworkpolicies", RuleClass::CalicoPolicy),
    ("StagedNetworkPolicy", "stagednetworkpolicies", RuleClass::CalicoPolicy),
    ("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies", RuleClass::CalicoPolicy),
    ("StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies", RuleClass::KubernetesPolicy),
    ("NetworkSet", "networksets", RuleClass::NetworkSet),
    ("GlobalNetworkSet", "globalnetworksets", RuleClass::NetworkSet),
    ("IPReservation", "ipreservations", RuleClass::IpReservation),
];

fn object(class: RuleClass, ar: &ApiResource, o: DynamicObject) -> RuleObject {
    let target = ObjectRef {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        plural: ar.plural.clone(),
        namespace: o.metadata.namespace.clone(),
        name: o.metadata.name.clone().unwrap_or_default(),
    };
    RuleObject { class, target, body: serde_json::to_value(&o).unwrap_or(Value::Null) }
}

/// LIST every object of `ar` in every namespace. Ok(None): not served here.
async fn list_all(cluster: &Cluster, ar: &ApiResource) -> Result<Option<Vec<DynamicObject>>> {
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), ar);
    let mut lp = ListParams::default().limit(PAGE_SIZE);
    let mut out = Vec::new();
    loop {
        match api.list(&lp).await {
            Ok(page) => {
                let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
                out.extend(page.items);
                match next {
                    Some(t) => lp = lp.continue_token(&t),
                    None => return Ok(Some(out)),
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(from_kube(e, "list", &format!("{}.{}", ar.plural, ar.group), None)),
        }
    }
}

/// Every object that may name a CIDR, read concurrently.
pub async fn read(cluster: &Cluster, calico: &Calico) -> Result<RuleObjects> {
    let calico_av = calico.rules_api_version();
    let mut kinds: Vec<(RuleClass, ApiResource)> =
        vec![(RuleClass::KubernetesPolicy, ApiResource::erase::<NetworkPolicy>(&()))];
    for (kind, plural, class) in CALICO_KINDS {
        kinds.push((*class, resource(calico_av, kind, plural)));
    }
    let lists = futures::future::join_all(kinds.iter().map(|(_, ar)| list_all(cluster, ar))).await;
    let mut out = RuleObjects::default();
    for ((class, ar), list) in kinds.iter().zip(lists) {
        match list {
            Ok(Some(items)) => out.objects.extend(items.into_iter().map(|o| object(*class, ar, o))),
            Ok(None) => {}
            Err(Error::Forbidden { .. }) => out.unreadable.push(format!("{}.{} (forbidden)", ar.plural, ar.group)),
            Err(e) => return Err(e),
        }
    }
    for (class, ar, name) in [
        (RuleClass::IpMasqAgent, ApiResource::erase::<ConfigMap>(&()), "ip-masq-agent"),
        (RuleClass::KubeProxy, ApiResource::erase::<DaemonSet>(&()), "kube-proxy"),
    ] {
        let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), "kube-system", &ar);
        match api.get_opt(name).await {
            Ok(Some(o)) => out.objects.push(object(class, &ar, o)),
            Ok(None) => {}
            Err(kube::Error::Api(s)) if s.code == 403 => {
                out.unreadable.push(format!("{} kube-system/{name} (forbidden)", ar.kind));
            }
            Err(e) => return Err(from_kube(e, "get", &ar.plural, Some("kube-system"))),
        }
    }
    Ok(out)
}

/// The object as it is now; None when it is gone.
pub async fn get(cluster: &Cluster, target: &ObjectRef) -> Result<Option<Value>> {
    let ar = resource(&target.api_version, &target.kind, &target.plural);
    let api: Api<DynamicObject> = match &target.namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
        None => Api::all_with(cluster.client.clone(), &ar),
    };
    let o = api
        .get_opt(&target.name)
        .await
        .map_err(|e| from_kube(e, "get", &target.plural, target.namespace.as_deref()))?;
    Ok(o.map(|o| serde_json::to_value(&o).unwrap_or(Value::Null)))
}

/// How a patch went.
pub enum Patched {
    Done,
    /// A `test` failed or the object changed under us: read it again.
    Conflict(String),
    /// No answer that says (a 500, 502 or 504, a lost connection): it may
    /// have taken effect. Read it again and decide from what is there.
    Unknown(String),
}

/// Send an RFC 6902 JSON patch (kube's typed patch needs a crate we do not
/// pull in for this one request).
pub async fn json_patch(cluster: &Cluster, target: &ObjectRef, ops: &[Value]) -> Result<Patched> {
    let ar = resource(&target.api_version, &target.kind, &target.plural);
    let url = format!("{}/{}", DynamicObject::url_path(&ar, target.namespace.as_deref()), target.name);
    let body = serde_json::to_vec(ops).map_err(|e| Error::Other(format!("encode a JSON patch: {e}")))?;
    let req = http::Request::builder()
        .method(http::Method::PATCH)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(body)
        .map_err(|e| Error::Other(format!("build a JSON patch request: {e}")))?;
    match cluster.client.request::<DynamicObject>(req).await {
        Ok(_) => Ok(Patched::Done),
        // A failed `test` is 422 (Invalid); 409 is a write conflict.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => Ok(Patched::Conflict(s.message)),
        Err(e) if super::retry::is_transient(&e) => Ok(Patched::Unknown(e.to_string())),
        Err(e) => Err(from_kube(e, "patch", &target.plural, target.namespace.as_deref())),
    }
}
