//! From Calico objects (v1 CRDs or v3, as served) to `core::model` values:
//! pools with their legacy fields, IPAM blocks with their allocations,
//! affinities and handles.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use kube::api::DynamicObject;
use serde_json::Value;

use crate::cluster::lite::HandleObject;
use crate::core::model::{
    Affinity, Allocation, Block, EncapMode, Handle, ManagedBy, Name, Pool, LABEL_MANAGED_BY, OPERATOR_MANAGER,
};

fn name_of(o: &DynamicObject) -> String {
    o.metadata.name.clone().unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Accepts both `true` and `"true"`: BlockAffinity.spec.deleted is a string
/// in the v1 CRD and a bool in v3.
fn loose_bool(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Decode an IPPool (v1 or v3), filling in the defaults Calico applies on read.
pub fn pool_from_object(o: &DynamicObject) -> Result<Pool, String> {
    let name = name_of(o);
    let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
    let cidr_text = str_at(&spec, "/cidr").ok_or_else(|| format!("IPPool {name} has no spec.cidr"))?;
    let cidr: IpNet = cidr_text.parse().map_err(|_| format!("IPPool {name} has an invalid spec.cidr {cidr_text:?}"))?;
    let cidr = cidr.trunc();
    let mut pool = Pool::new(&name, cidr);
    if let Some(bs) = spec.get("blockSize").and_then(Value::as_u64) {
        pool.block_size = bs as u8;
    }
    pool.ipip_mode = EncapMode::parse(str_at(&spec, "/ipipMode"));
    // Legacy v1 fields (<= 3.31): ipip {enabled, mode}, nat-outgoing.
    if !pool.ipip_mode.enabled() && spec.pointer("/ipip/enabled").and_then(Value::as_bool) == Some(true) {
        pool.ipip_mode = match str_at(&spec, "/ipip/mode") {
            Some("cross-subnet") => EncapMode::CrossSubnet,
            _ => EncapMode::Always,
        };
    }
    pool.vxlan_mode = EncapMode::parse(str_at(&spec, "/vxlanMode"));
    pool.nat_outgoing = spec
        .get("natOutgoing")
        .and_then(Value::as_bool)
        .or_else(|| spec.get("nat-outgoing").and_then(Value::as_bool))
        .unwrap_or(false);
    pool.disabled = spec.get("disabled").and_then(Value::as_bool).unwrap_or(false);
    pool.disable_bgp_export = spec.get("disableBGPExport").and_then(Value::as_bool).unwrap_or(false);
    if let Some(s) = str_at(&spec, "/nodeSelector").filter(|s| !s.is_empty()) {
        pool.node_selector = s.to_string();
    }
    pool.namespace_selector = str_at(&spec, "/namespaceSelector").filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(uses) = spec.get("allowedUses").and_then(Value::as_array) {
        let uses: Vec<String> = uses.iter().filter_map(Value::as_str).map(str::to_string).collect();
        if !uses.is_empty() {
            pool.allowed_uses = uses;
        }
    }
    pool.assignment_mode = str_at(&spec, "/assignmentMode").map(str::to_string);
    let managed = v3_labels(o).get(LABEL_MANAGED_BY).map(String::as_str) == Some(OPERATOR_MANAGER);
    pool.managed_by = if managed { ManagedBy::Operator } else { ManagedBy::Manifest };
    pool.terminating = o.metadata.deletion_timestamp.is_some();
    pool.gitops = gitops_of(o);
    Ok(pool)
}

/// The object's labels as Calico's v3 API sees them. Through the v1 CRDs,
/// libcalico-go keeps v3 labels in the `projectcalico.org/metadata`
/// annotation (JSON) rather than in `metadata.labels`; read both.
pub fn v3_labels(o: &DynamicObject) -> BTreeMap<String, String> {
    let mut labels = o.metadata.labels.clone().unwrap_or_default();
    if let Some(meta) = o.metadata.annotations.as_ref().and_then(|a| a.get("projectcalico.org/metadata")) {
        if let Ok(v) = serde_json::from_str::<Value>(meta) {
            if let Some(m) = v.get("labels").and_then(Value::as_object) {
                for (k, val) in m {
                    if let Some(val) = val.as_str() {
                        labels.entry(k.clone()).or_insert_with(|| val.to_string());
                    }
                }
            }
        }
    }
    labels
}

/// The GitOps controller syncing `o`, from its labels (v3's too),
/// annotations and field managers.
pub fn gitops_of(o: &DynamicObject) -> Option<String> {
    let managers: Vec<String> = o.metadata.managed_fields.iter().flatten().filter_map(|f| f.manager.clone()).collect();
    let annotations = o.metadata.annotations.clone().unwrap_or_default();
    crate::core::gitops::gitops_manager(&v3_labels(o), &annotations, &managers)
}

/// The address at `ordinal` within `net`.
pub fn nth_addr(net: &IpNet, ordinal: u128) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(ordinal as u32)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(ordinal)).into()),
    }
}

/// Decode an IPAMBlock, noting the structural problems calicoctl's
/// `validateBlock` reports.
pub fn block_from_object(o: &DynamicObject) -> Result<Block, String> {
    let name = name_of(o);
    let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
    let cidr_text = str_at(&spec, "/cidr").ok_or_else(|| format!("IPAMBlock {name} has no spec.cidr"))?;
    let cidr: IpNet =
        cidr_text.parse().map_err(|_| format!("IPAMBlock {name} has an invalid spec.cidr {cidr_text:?}"))?;
    let affinity = str_at(&spec, "/affinity").filter(|s| !s.is_empty()).map(str::to_string);
    let affinity_node = affinity.as_deref().and_then(|a| a.strip_prefix("host:")).map(str::to_string);
    let attrs: Vec<Value> = spec.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default();
    let allocs: Vec<Value> = spec.get("allocations").and_then(Value::as_array).cloned().unwrap_or_default();
    let size = crate::core::cidr::size(&cidr);
    let mut problems = Vec::new();
    let mut allocations = Vec::new();
    let mut referenced = vec![false; attrs.len()];
    for (ordinal, a) in allocs.iter().enumerate() {
        let Some(idx) = a.as_u64() else { continue };
        let ip = nth_addr(&cidr, ordinal as u128);
        let attr = attrs.get(idx as usize);
        if attr.is_none() {
            problems.push(format!("allocation {ip} refers to attribute {idx}, which does not exist"));
        } else {
            referenced[idx as usize] = true;
        }
        let sec = attr.and_then(|a| a.get("secondary")).cloned().unwrap_or(Value::Null);
        let get = |k: &str| sec.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        allocations.push(Allocation {
            ip,
            handle: attr.and_then(|a| a.get("handle_id")).and_then(Value::as_str).map(Name::from),
            namespace: get("namespace").map(Name::from),
            pod: get("pod"),
            node: get("node").map(Name::from),
            kind: get("type").map(Name::from),
        });
    }
    if !allocs.is_empty() && allocs.len() as u128 != size {
        problems.push(format!("has {} allocation slots but its CIDR holds {size} addresses", allocs.len()));
    }
    for (i, used) in referenced.iter().enumerate() {
        if !used {
            problems.push(format!("attribute {i} is not referenced by any allocation"));
        }
    }
    let unallocated: Vec<u64> = spec
        .get("unallocated")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for u in &unallocated {
        if !seen.insert(*u) {
            problems.push(format!("ordinal {u} is listed twice in unallocated"));
        }
        if (*u as u128) >= size {
            problems.push(format!("unallocated ordinal {u} is outside the block"));
        }
    }
    if !allocs.is_empty() && (unallocated.len() + allocations.len()) as u128 != size {
        problems.push(format!(
            "{} unallocated + {} allocated != {size} addresses",
            unallocated.len(),
            allocations.len()
        ));
    }
    Ok(Block { name, cidr, affinity_node, affinity, allocations, deleted: loose_bool(spec.get("deleted")), problems })
}

pub fn affinity_from_object(o: &DynamicObject) -> Result<Affinity, String> {
    let name = name_of(o);
    let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
    let cidr_text = str_at(&spec, "/cidr").ok_or_else(|| format!("BlockAffinity {name} has no spec.cidr"))?;
    let cidr: IpNet =
        cidr_text.parse().map_err(|_| format!("BlockAffinity {name} has an invalid spec.cidr {cidr_text:?}"))?;
    Ok(Affinity {
        name,
        node: str_at(&spec, "/node").unwrap_or_default().to_string(),
        cidr,
        state: str_at(&spec, "/state").unwrap_or("confirmed").to_string(),
        deleted: loose_bool(spec.get("deleted")),
    })
}

pub fn handle_from_object(o: &HandleObject) -> Result<Handle, String> {
    Ok(Handle {
        handle_id: Name::from(o.spec.handle_id.as_deref().unwrap_or(&o.metadata.name)),
        deleted: loose_bool(o.spec.deleted.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn v1_pool_with_legacy_fields_decodes() {
        let o = obj(json!({"apiVersion":"crd.projectcalico.org/v1","kind":"IPPool","metadata":{"name":"old"},
            "spec":{"cidr":"100.64.0.0/10","ipip":{"enabled":true,"mode":"cross-subnet"},"nat-outgoing":true}}));
        let p = pool_from_object(&o).unwrap();
        assert_eq!(p.ipip_mode, EncapMode::CrossSubnet);
        assert!(p.nat_outgoing);
        assert_eq!(p.block_size, 26);
        assert_eq!(p.node_selector, "all()");
        assert_eq!(p.managed_by, ManagedBy::Manifest);
    }

    #[test]
    fn operator_label_marks_pool() {
        let o = obj(
            json!({"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p","labels":{"app.kubernetes.io/managed-by":"tigera-operator"}},
            "spec":{"cidr":"10.0.0.0/16","vxlanMode":"Always","blockSize":24,"disabled":true}}),
        );
        let p = pool_from_object(&o).unwrap();
        assert_eq!(p.managed_by, ManagedBy::Operator);
        assert_eq!(p.vxlan_mode, EncapMode::Always);
        assert_eq!(p.block_size, 24);
        assert!(p.disabled);
    }

    #[test]
    fn operator_label_in_v1_metadata_annotation() {
        let o = obj(json!({"apiVersion":"crd.projectcalico.org/v1","kind":"IPPool","metadata":{"name":"p",
            "annotations":{"projectcalico.org/metadata":"{\"labels\":{\"app.kubernetes.io/managed-by\":\"tigera-operator\"}}"}},
            "spec":{"cidr":"10.0.0.0/16"}}));
        assert_eq!(pool_from_object(&o).unwrap().managed_by, ManagedBy::Operator);
    }

    #[test]
    fn block_decodes_allocations_and_flags_bad_structure() {
        let mut allocations = vec![Value::Null; 64];
        allocations[0] = json!(0);
        allocations[1] = json!(1);
        allocations[5] = json!(7); // no attribute 7
        let unallocated: Vec<u64> = (2..64).filter(|i| *i != 5).collect();
        let o = obj(
            json!({"apiVersion":"crd.projectcalico.org/v1","kind":"IPAMBlock","metadata":{"name":"192-168-0-0-26"},
            "spec":{"cidr":"192.168.0.0/26","affinity":"host:n1","allocations":allocations,"unallocated":unallocated,
              "attributes":[{"handle_id":"ipip-tunnel-addr-n1","secondary":{"node":"n1","type":"ipipTunnelAddress"}},
                            {"handle_id":"k8s-pod-network.abc","secondary":{"namespace":"shop","pod":"web-1","node":"n1"}}],
              "strictAffinity":false}}),
        );
        let b = block_from_object(&o).unwrap();
        assert_eq!(b.affinity_node.as_deref(), Some("n1"));
        assert_eq!(b.allocations.len(), 3);
        assert!(b.allocations[0].is_tunnel());
        assert_eq!(b.allocations[1].pod.as_deref(), Some("web-1"));
        assert_eq!(b.allocations[2].ip.to_string(), "192.168.0.5");
        assert_eq!(b.problems.len(), 1, "{:?}", b.problems);
    }

    #[test]
    fn affinity_deleted_string_or_bool() {
        let a = obj(
            json!({"apiVersion":"crd.projectcalico.org/v1","kind":"BlockAffinity","metadata":{"name":"n1-192-168-0-0-26"},
            "spec":{"cidr":"192.168.0.0/26","node":"n1","state":"confirmed","deleted":"true"}}),
        );
        assert!(affinity_from_object(&a).unwrap().deleted);
        let b = obj(json!({"apiVersion":"projectcalico.org/v3","kind":"BlockAffinity","metadata":{"name":"x"},
            "spec":{"cidr":"192.168.0.0/26","node":"n1","state":"confirmed","deleted":false}}));
        assert!(!affinity_from_object(&b).unwrap().deleted);
    }
}
