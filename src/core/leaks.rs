//! Leaked IPAM addresses: allocations of a pool that nothing uses any more
//! (a pod was deleted but its CNI DEL never released the address), and the
//! exact change `calicoctl ipam release` (libcalico-go `ReleaseIPs`) makes
//! to an IPAMBlock and its IPAMHandles to release some of them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use ipnet::IpNet;
use serde_json::{json, Value};

use super::model::{Allocation, NodeInfo, PodInfo};

/// kube-controllers' default `leakGracePeriod` when the configuration leaves it unset.
pub const DEFAULT_LEAK_GRACE: Duration = Duration::from_secs(15 * 60);

/// One allocation nothing uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Leak {
    pub block: String,
    pub allocation: Allocation,
    /// When IPAM allocated it (the CNI plugin's `timestamp` attribute), if known.
    pub allocated_at: Option<DateTime<Utc>>,
}

impl Leak {
    /// `10.0.0.5 (handle h, was pod ns/name)`.
    pub fn describe(&self) -> String {
        let a = &self.allocation;
        let owner = match (&a.namespace, &a.pod) {
            (Some(ns), Some(p)) => format!(", was pod {ns}/{p}"),
            _ => String::new(),
        };
        format!("{} (handle {}{owner})", a.ip, a.handle.as_deref().unwrap_or("none"))
    }

    /// Allocated at least `grace` before `now`; None when the allocation time is unknown.
    pub fn older_than(&self, grace: Duration, now: DateTime<Utc>) -> Option<bool> {
        let at = self.allocated_at?;
        Some(now.signed_duration_since(at).to_std().unwrap_or_default() >= grace)
    }
}

/// The allocations of `blocks` (name, allocation, timestamp attribute) that no
/// pod and no node uses: no pod (finished ones included, their status may
/// still show it) has the address; no node has it as a tunnel address; it is
/// not a tunnel allocation (calico-node moves those itself); it names a pod
/// (allocations without one are of unknown origin and are never ours to
/// judge); and that pod, if it exists, is not still waiting for its address
/// to be reported.
pub fn find_leaks(
    allocations: &[(String, Allocation, Option<String>)],
    pods: &[PodInfo],
    nodes: &[NodeInfo],
) -> Vec<Leak> {
    let used: HashSet<IpAddr> = pods
        .iter()
        .flat_map(|p| p.ips.iter().copied())
        .chain(nodes.iter().flat_map(|n| n.tunnel_ips.iter().copied()))
        .collect();
    let starting: HashSet<(&str, &str)> = pods
        .iter()
        .filter(|p| p.ips.is_empty() && !p.is_finished() && !p.host_network)
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    allocations
        .iter()
        .filter(|(_, a, _)| !used.contains(&a.ip) && !a.is_tunnel())
        .filter(|(_, a, _)| match (&a.namespace, &a.pod) {
            (Some(ns), Some(p)) => !starting.contains(&(ns.as_str(), p.as_str())),
            _ => false,
        })
        .map(|(block, a, ts)| Leak {
            block: block.clone(),
            allocation: a.clone(),
            allocated_at: ts.as_deref().and_then(parse_go_time),
        })
        .collect()
}

/// Parse the CNI plugin's `timestamp` attribute, Go's `time.Time.String()`
/// of a UTC time: `2026-11-30 06:10:31.123456789 +0000 UTC`.
pub fn parse_go_time(s: &str) -> Option<DateTime<Utc>> {
    let mut parts = s.split_whitespace();
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let naive = NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let fixed = DateTime::parse_from_str(
        &format!("{} {offset}", naive.format("%Y-%m-%d %H:%M:%S%.f")),
        "%Y-%m-%d %H:%M:%S%.f %z",
    )
    .ok()?;
    Some(fixed.with_timezone(&Utc))
}

/// Whether calico-kube-controllers will release leaked addresses, and after how long.
#[derive(Debug, Clone, PartialEq)]
pub struct GcPolicy {
    pub grace: Duration,
    /// Where `grace` was read, e.g. `status.runningConfig` or `default (unset)`.
    pub grace_source: String,
    /// None when the controller releases leaks; otherwise why it never will.
    pub never_because: Option<String>,
}

/// Read KubeControllersConfiguration `default` (its data, None when it does
/// not exist): the running configuration kube-controllers writes to
/// `status.runningConfig` wins over the spec; no running configuration means
/// kube-controllers has not run; a missing node controller or a zero
/// `leakGracePeriod` means garbage collection is off.
pub fn gc_policy(kcc: Option<&Value>) -> GcPolicy {
    let Some(kcc) = kcc else {
        return GcPolicy {
            grace: DEFAULT_LEAK_GRACE,
            grace_source: "default (no KubeControllersConfiguration default)".into(),
            never_because: Some(
                "KubeControllersConfiguration default does not exist: calico-kube-controllers is not installed or has never run"
                    .into(),
            ),
        };
    };
    // The status is a struct, not a pointer, in Calico's Go types: a
    // configuration no kube-controllers ever ran still has an (empty)
    // runningConfig. A running one always records its log level there.
    let running = kcc
        .pointer("/status/runningConfig")
        .filter(|r| r.get("logSeverityScreen").and_then(Value::as_str).is_some_and(|l| !l.is_empty()));
    let (config, source) = match running {
        Some(r) => (r, "status.runningConfig"),
        None => (kcc.get("spec").unwrap_or(&Value::Null), "spec"),
    };
    let node = config.pointer("/controllers/node").filter(|n| !n.is_null());
    let grace_text = node.and_then(|n| n.get("leakGracePeriod")).and_then(Value::as_str);
    let (grace, grace_source) = match grace_text.and_then(parse_go_duration) {
        Some(g) => (g, format!("{source}.controllers.node.leakGracePeriod")),
        None => (DEFAULT_LEAK_GRACE, "default (leakGracePeriod unset)".into()),
    };
    let never_because = if running.is_none() {
        Some("KubeControllersConfiguration default has no status.runningConfig written by calico-kube-controllers: it does not appear to be running".into())
    } else if node.is_none() {
        Some("the node controller of calico-kube-controllers is disabled (no controllers.node in its running configuration)".into())
    } else if grace.is_zero() {
        Some("leakGracePeriod is 0, which turns IPAM garbage collection off".into())
    } else {
        None
    };
    GcPolicy { grace, grace_source, never_because }
}

/// Parse a Go `time.Duration` string as Kubernetes serialises it: `15m0s`, `20s`, `1h0m0s`, `500ms`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// What releasing some addresses does to one IPAMBlock's spec.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRelease {
    pub spec: Value,
    /// Addresses released per handle, for the IPAMHandles.
    pub per_handle: BTreeMap<String, u64>,
    pub released: Vec<IpAddr>,
    /// The block holds no allocation any more.
    pub empty: bool,
}

/// Release `ips` (each expected to be held by the given handle) from a block
/// spec the way libcalico-go does: the ordinal's allocation becomes null and
/// goes to the end of `unallocated`, its sequence number is dropped, and an
/// attribute no allocation refers to any more is removed (the indexes of the
/// allocations after it shift down). An address already free, or held by
/// another handle than expected, is left alone (someone else changed it).
pub fn release_from_block(spec: &Value, cidr: &IpNet, ips: &[(IpAddr, Option<String>)]) -> BlockRelease {
    let mut spec = spec.clone();
    let mut allocations: Vec<Option<u64>> = spec
        .get("allocations")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut attributes: Vec<Value> = spec.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut unallocated: Vec<Value> = spec.get("unallocated").and_then(Value::as_array).cloned().unwrap_or_default();
    let handle_of = |attrs: &[Value], idx: u64| {
        attrs.get(idx as usize).and_then(|a| a.get("handle_id")).and_then(Value::as_str).map(str::to_string)
    };
    let mut per_handle = BTreeMap::new();
    let mut released = Vec::new();
    let mut ordinals = BTreeSet::new();
    let mut touched = BTreeSet::new();
    for (ip, expected) in ips {
        let Some(ordinal) = ordinal_of(cidr, ip) else { continue };
        let Some(Some(idx)) = allocations.get(ordinal) else { continue };
        let handle = handle_of(&attributes, *idx);
        if (expected.is_some() && &handle != expected) || !ordinals.insert(ordinal) {
            continue;
        }
        touched.insert(*idx);
        if let Some(h) = handle {
            *per_handle.entry(h).or_insert(0) += 1;
        }
        released.push(*ip);
    }
    for o in &ordinals {
        allocations[*o] = None;
        unallocated.push(json!(o));
        if let Some(seq) = spec.get_mut("sequenceNumberForAllocation").and_then(Value::as_object_mut) {
            seq.remove(&o.to_string());
        }
    }
    // Drop the attributes whose last references were released, renumbering the rest.
    let referenced: BTreeSet<u64> = allocations.iter().flatten().copied().collect();
    let mut new_index = BTreeMap::new();
    let mut kept = Vec::new();
    for (i, attr) in attributes.drain(..).enumerate() {
        let i = i as u64;
        if referenced.contains(&i) || !touched.contains(&i) {
            new_index.insert(i, kept.len() as u64);
            kept.push(attr);
        }
    }
    let empty = referenced.is_empty();
    spec["allocations"] = Value::Array(
        allocations.iter().map(|a| a.and_then(|i| new_index.get(&i)).map_or(Value::Null, |n| json!(n))).collect(),
    );
    spec["attributes"] = Value::Array(kept);
    spec["unallocated"] = Value::Array(unallocated);
    BlockRelease { spec, per_handle, released, empty }
}

fn ordinal_of(cidr: &IpNet, ip: &IpAddr) -> Option<usize> {
    if !cidr.contains(ip) {
        return None;
    }
    let offset = match (cidr.network(), ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => u128::from(u32::from(*i) - u32::from(n)),
        (IpAddr::V6(n), IpAddr::V6(i)) => u128::from(*i) - u128::from(n),
        _ => return None,
    };
    usize::try_from(offset).ok()
}

/// What to do with an IPAMHandle after `count` of its addresses in `block_cidr` were released.
/// Whether a write whose answer was lost (a 500, 502 or 504, a dropped
/// connection) took effect, from what is there now: the spec it wrote, or
/// (`sent` None: a delete) nothing. Anything else counts as not written, so
/// the write is worked out again from what is there: an IPAM block release
/// that landed is never missed (its handles would keep their counts), and
/// a handle decrement that landed is never made twice.
pub fn write_landed(sent: Option<&Value>, now: Option<&Value>) -> bool {
    match (sent, now) {
        (None, None) => true,
        (Some(sent), Some(now)) => sent == now,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HandleChange {
    /// The handle holds nothing else: delete it.
    Delete,
    Update(Value),
}

/// libcalico-go's `decrementBlock`: lower the handle's count for the block,
/// drop the block when it reaches zero, delete the handle when it holds no block.
pub fn decrement_handle(spec: &Value, block_cidr: &str, count: u64) -> HandleChange {
    let mut spec = spec.clone();
    if let Some(blocks) = spec.get_mut("block").and_then(Value::as_object_mut) {
        let left = blocks.get(block_cidr).and_then(Value::as_u64).unwrap_or(0).saturating_sub(count);
        if left == 0 {
            blocks.remove(block_cidr);
        } else {
            blocks.insert(block_cidr.to_string(), json!(left));
        }
        if blocks.is_empty() {
            return HandleChange::Delete;
        }
        return HandleChange::Update(spec);
    }
    HandleChange::Delete
}

#[cfg(test)]
#[path = "leaks_tests.rs"]
mod tests;
