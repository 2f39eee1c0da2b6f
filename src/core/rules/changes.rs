//! What names the old CIDR, what `--update-rules` adds (as JSON patches
//! guarded by `test` operations, so a concurrent edit is never
//! overwritten), and what a rollback removes.

use ipnet::IpNet;
use serde::Serialize;
use serde_json::{json, Value};

use super::sites::{sites, Addition, Site};
use super::{names, parse_net, text, ObjectRef, RuleChange, RuleClass, RuleHit, RuleObject};
use crate::core::cidr::{overlaps, size, within};
use crate::core::model::PodInfo;

/// The patch for one object: every list it changes, in one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPatch {
    pub target: ObjectRef,
    #[serde(skip)]
    pub class: RuleClass,
    #[serde(skip)]
    pub changes: Vec<RuleChange>,
    /// RFC 6902 operations: `test`s of the current lists, then `add`s.
    pub json_patch: Vec<Value>,
}

/// What happens to one list for old → new.
enum Outcome {
    /// Nothing names the old CIDR, or the list covers the new one already.
    NotNeeded,
    Add(Value),
    /// The text document after the edit.
    Text(&'static str, String),
    Cannot(String),
}

fn outcome(site: &Site, body: &Value, old: &IpNet, new: &IpNet) -> Outcome {
    let named = site.entries.iter().any(|e| parse_net(&e.cidr).is_some_and(|c| names(&c, old, &[*new])));
    if !named || site.covers(new) {
        return Outcome::NotNeeded;
    }
    let cidr = Value::String(new.to_string());
    match &site.addition {
        Addition::Cidr => Outcome::Add(cidr),
        Addition::IpBlockPeer => Outcome::Add(json!({"ipBlock": {"cidr": new.to_string()}})),
        Addition::ExceptOf(Some(block)) if within(new, block) && block != new => Outcome::Add(cidr),
        Addition::ExceptOf(_) => Outcome::NotNeeded,
        Addition::Text(key) => {
            let doc = body.pointer(&site.pointer).and_then(Value::as_str).unwrap_or_default();
            match text::add_to_list(doc, key, &new.to_string()) {
                Some(t) => Outcome::Text(key, t),
                None => Outcome::Cannot(format!("not changed: could not edit {key} in place; add {new} by hand")),
            }
        }
        Addition::Never(why) => Outcome::Cannot((*why).to_string()),
    }
}

/// Every CIDR in `objects` that names `old` (see [`names`]); `new` (the
/// migration's target) says what `--update-rules` does about each, and
/// finds IP reservations inside it.
pub fn hits(objects: &[RuleObject], old: &IpNet, covers: &[IpNet], new: Option<&IpNet>) -> Vec<RuleHit> {
    hits_where(objects, old, covers, new, |_| true)
}

/// Like [`hits`], leaving out lists that already reach one of `active`
/// (an ipBlock's excepts count only when the block reaches one): what is
/// still to be updated while pods move.
pub fn uncovered_hits(objects: &[RuleObject], old: &IpNet, active: &[IpNet]) -> Vec<RuleHit> {
    hits_where(objects, old, active, None, |site| match &site.addition {
        Addition::ExceptOf(block) => {
            block.is_some_and(|b| active.iter().any(|a| within(a, &b) && b != *a && !site.covers(a)))
        }
        _ => !active.iter().any(|a| site.covers(a)),
    })
}

fn hits_where(
    objects: &[RuleObject],
    old: &IpNet,
    covers: &[IpNet],
    new: Option<&IpNet>,
    keep: impl Fn(&Site) -> bool,
) -> Vec<RuleHit> {
    let mut out = Vec::new();
    for o in objects {
        for site in sites(o).into_iter().filter(|s| keep(s)) {
            let action = match new.map(|n| outcome(&site, &o.body, old, n)) {
                Some(Outcome::Add(v)) => {
                    let what = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    format!("--update-rules adds {what} to {}", site.field)
                }
                Some(Outcome::Text(_, _)) => format!("--update-rules adds {} to the list", new.unwrap()),
                Some(Outcome::Cannot(why)) => why,
                Some(Outcome::NotNeeded) if matches!(site.addition, Addition::ExceptOf(_)) => {
                    "no change needed: this ipBlock does not reach the new pool".into()
                }
                Some(Outcome::NotNeeded) => "no change needed: the list covers the new pool already".into(),
                None => "still names a retired pool's range; remove it once nothing uses that range".into(),
            };
            for e in &site.entries {
                let Some(c) = parse_net(&e.cidr) else { continue };
                let in_new = o.class == RuleClass::IpReservation && new.is_some_and(|n| overlaps(&c, n));
                if names(&c, old, covers) {
                    out.push(hit(o, &e.field, &e.cidr, &action));
                } else if in_new {
                    let n = new.unwrap();
                    let lost = if within(&c, n) { size(&c) } else { size(n) };
                    let action = format!("reserves {lost} address(es) of the new pool {n} (counted in its capacity)");
                    out.push(hit(o, &e.field, &e.cidr, &action));
                }
            }
        }
    }
    out
}

fn hit(o: &RuleObject, field: &str, cidr: &str, action: &str) -> RuleHit {
    RuleHit {
        class: o.class,
        object: o.target.display(),
        field: field.to_string(),
        cidr: cidr.to_string(),
        action: action.to_string(),
    }
}

/// The JSON patches that add `new` beside `old` in every list that needs
/// it: per object, a `test` of each list's current value, then the adds
/// (appends, so no index moves under another operation).
pub fn patches(objects: &[RuleObject], old: &IpNet, new: &IpNet) -> Vec<ObjectPatch> {
    let mut out = Vec::new();
    for o in objects {
        let mut tests = Vec::new();
        let mut adds = Vec::new();
        let mut changes = Vec::new();
        for site in sites(o) {
            let current = o.body.pointer(&site.pointer).cloned().unwrap_or(Value::Null);
            let (op, added, text_key) = match outcome(&site, &o.body, old, new) {
                Outcome::Add(v) => (json!({"op": "add", "path": format!("{}/-", site.pointer), "value": v}), v, None),
                Outcome::Text(key, t) => (
                    json!({"op": "replace", "path": site.pointer, "value": t}),
                    Value::String(new.to_string()),
                    Some(key.to_string()),
                ),
                Outcome::NotNeeded | Outcome::Cannot(_) => continue,
            };
            tests.push(json!({"op": "test", "path": site.pointer, "value": current}));
            adds.push(op);
            changes.push(RuleChange {
                target: o.target.clone(),
                field: site.field.clone(),
                pointer: site.pointer.clone(),
                added,
                text_key,
            });
        }
        if !changes.is_empty() {
            tests.extend(adds);
            out.push(ObjectPatch { target: o.target.clone(), class: o.class, changes, json_patch: tests });
        }
    }
    out
}

/// The JSON patch that takes `change` back out of the object `body` as it
/// is now: the last entry equal to what was added, guarded by a `test`.
/// Err says why there is nothing to remove.
pub fn removal_ops(body: &Value, change: &RuleChange) -> Result<Vec<Value>, String> {
    let current = body.pointer(&change.pointer).ok_or_else(|| format!("{} is gone", change.field))?;
    if let Some(key) = &change.text_key {
        let doc = current.as_str().unwrap_or_default();
        let cidr = change.added.as_str().unwrap_or_default();
        let t = text::remove_from_list(doc, key, cidr)
            .ok_or_else(|| format!("{cidr} is no longer in {key} (removed already?)"))?;
        return Ok(vec![
            json!({"op": "test", "path": change.pointer, "value": current}),
            json!({"op": "replace", "path": change.pointer, "value": t}),
        ]);
    }
    let list = current.as_array().ok_or_else(|| format!("{} is not a list any more", change.field))?;
    let idx = list
        .iter()
        .rposition(|v| v == &change.added)
        .ok_or_else(|| format!("{} no longer holds {} (removed already?)", change.field, change.added))?;
    let path = format!("{}/{idx}", change.pointer);
    Ok(vec![json!({"op": "test", "path": path, "value": change.added}), json!({"op": "remove", "path": path})])
}

const FLOATING: &str = "cni.projectcalico.org/floatingIPs";
const NO_IPAM: &str = "cni.projectcalico.org/ipAddrsNoIpam";

fn pod_addresses<'a>(
    pods: &'a [PodInfo],
    old: &'a IpNet,
) -> impl Iterator<Item = (&'a PodInfo, &'static str, &'a String)> {
    pods.iter().filter(|p| !p.is_finished()).flat_map(move |p| {
        let f = p.pins.floating_ips.iter().map(move |a| (p, FLOATING, a));
        let n = p.pins.no_ipam_addrs.iter().map(move |a| (p, NO_IPAM, a));
        f.chain(n).filter(move |(_, _, a)| parse_net(a).is_some_and(|c| overlaps(&c, old)))
    })
}

/// Pods whose floating IPs or IPAM-less addresses lie in `old`.
pub fn pod_hits(pods: &[PodInfo], old: &IpNet, new: Option<&IpNet>) -> Vec<RuleHit> {
    let to = new.map(|n| format!(" from {n}")).unwrap_or_default();
    pod_addresses(pods, old)
        .map(|(p, key, a)| RuleHit {
            class: RuleClass::Pod,
            object: format!("Pod {}", p.key()),
            field: format!("metadata.annotations[{key}]"),
            cidr: a.clone(),
            action: if key == NO_IPAM {
                "blocks the migration: IPAM does not know this address".into()
            } else {
                format!("not changed: a floating IP must belong to an IP pool; give the pod one{to}")
            },
        })
        .collect()
}

/// An `ipAddrsNoIpam` address in the old pool has no allocation: the drain
/// check would pass and the pool be deleted under the pod.
pub fn pod_blockers(pods: &[PodInfo], old: &IpNet) -> Vec<String> {
    pod_addresses(pods, old)
        .filter(|(_, key, _)| *key == NO_IPAM)
        .map(|(p, _, a)| {
            format!(
                "Pod {} has {NO_IPAM} {a}, inside {old}: that address bypasses Calico IPAM, so nothing would stop {old} being deleted under it; give the pod an address outside {old} (or delete the pod), then run again",
                p.key()
            )
        })
        .collect()
}

/// Every CIDR of every IP reservation.
pub fn reserved_cidrs(objects: &[RuleObject]) -> Vec<IpNet> {
    objects
        .iter()
        .filter(|o| o.class == RuleClass::IpReservation)
        .flat_map(sites)
        .flat_map(|s| s.entries)
        .filter_map(|e| parse_net(&e.cidr))
        .collect()
}

#[cfg(test)]
mod tests;
