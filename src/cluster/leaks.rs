//! Leaked addresses of a pool: finding them (blocks x pods x nodes),
//! reading what calico-kube-controllers will do about them, and releasing
//! them through IPAM the way `calicoctl ipam release` does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams, Preconditions,
};
use kube::runtime::watcher;
use serde_json::Value;

use super::calico::{block_from_object, nth_addr, Calico, Kind};
use super::events::{self, EventTarget};
use super::listing::Freshness;
use super::retry::{is_transient, repeat_transient, transient_pause};
use super::watch::wait_list;
use super::{list_paged, workloads, Cluster};
use crate::core::cidr::within;
use crate::core::leaks::{self, decrement_handle, release_from_block, GcPolicy, HandleChange, Leak};
use crate::core::model::Allocation;
use crate::error::{Error, KubeResultExt, Result};

const CONFLICT_RETRIES: u32 = 8;

/// What still holds addresses of a pool, and which of those are leaked.
pub struct PoolScan {
    /// Every allocation left, and every node tunnel address of the pool, described (`ip (holder)`).
    pub remaining: Vec<String>,
    pub leaks: Vec<Leak>,
}

/// Scan the blocks of `pool` (outside `keep`) against every pod and node.
pub async fn scan_pool(cluster: &Cluster, calico: &Calico, pool: &IpNet, keep: IpNet) -> Result<PoolScan> {
    let mut allocations: Vec<(String, Allocation, Option<String>)> = Vec::new();
    let mut problems = Vec::new();
    list_paged(&calico.api(cluster, Kind::IPAMBlock), ListParams::default(), "ipamblocks", None, |o| {
        match block_from_object(&o) {
            Ok(b) if within(&b.cidr, pool) && !within(&b.cidr, &keep) => {
                let stamps = timestamps(&o, &b.cidr);
                for a in b.allocations {
                    let ts = stamps.get(&a.ip).cloned();
                    allocations.push((b.name.clone(), a, ts));
                }
            }
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    })
    .await?;
    if let Some(p) = problems.first() {
        return Err(Error::Calico(format!("cannot judge leaked addresses: {p}")));
    }
    let nodes = workloads::list_nodes(cluster, Freshness::Consistent).await?;
    // A node whose tunnel address annotation still names an address of the
    // pool uses it, allocated or not: calico-node releases the old address,
    // allocates the new one and only then updates the node.
    let stale_tunnels: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.tunnel_ips.iter().map(move |ip| (n, ip)))
        .filter(|(_, ip)| pool.contains(*ip) && !keep.contains(*ip))
        .filter(|(_, ip)| !allocations.iter().any(|(_, a, _)| a.ip == **ip))
        .map(|(n, ip)| format!("{ip} (tunnel address of node {}, no longer allocated)", n.name))
        .collect();
    if allocations.is_empty() {
        return Ok(PoolScan { remaining: stale_tunnels, leaks: vec![] });
    }
    // Every namespace, whatever `-n` says: a pod anywhere may hold the address.
    let mut everywhere = cluster.clone();
    everywhere.namespace = None;
    let pods = workloads::list_pods_from(&everywhere, None, Freshness::Consistent).await?;
    let mut remaining: Vec<String> = allocations
        .iter()
        .map(|(_, a, _)| {
            let holder = a
                .pod
                .as_ref()
                .map(|p| format!("pod {}/{p}", a.namespace.clone().unwrap_or_default()))
                .or(a.kind.as_deref().map(str::to_string))
                .or(a.handle.as_deref().map(str::to_string));
            format!("{} ({})", a.ip, holder.unwrap_or_default())
        })
        .collect();
    remaining.extend(stale_tunnels);
    Ok(PoolScan { remaining, leaks: leaks::find_leaks(&allocations, &pods, &nodes) })
}

/// The CNI plugin's `timestamp` attribute of each allocated address of a raw block.
fn timestamps(o: &DynamicObject, cidr: &IpNet) -> BTreeMap<IpAddr, String> {
    let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
    let attrs = spec.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default();
    let allocs = spec.get("allocations").and_then(Value::as_array).cloned().unwrap_or_default();
    allocs
        .iter()
        .enumerate()
        .filter_map(|(ordinal, a)| {
            let idx = a.as_u64()? as usize;
            let ts = attrs.get(idx)?.pointer("/secondary/timestamp")?.as_str()?;
            Some((nth_addr(cidr, ordinal as u128), ts.to_string()))
        })
        .collect()
}

/// KubeControllersConfiguration `default` (always a `crd.projectcalico.org/v1` CRD
/// in the modes this tool reads IPAM from) and what it says about garbage collection.
pub async fn read_gc_policy(cluster: &Cluster) -> Result<GcPolicy> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("crd.projectcalico.org", "v1", "KubeControllersConfiguration"),
        "kubecontrollersconfigurations",
    );
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
    let kcc = match api.get_opt("default").await {
        Ok(o) => o,
        // No such resource at all: kube-controllers was never installed.
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e).op("get", "kubecontrollersconfigurations", None),
    };
    Ok(leaks::gc_policy(kcc.map(|o| o.data).as_ref()))
}

/// Release `leaks` (all of pool `pool_name`) through IPAM, block by block,
/// each block write guarded by its resourceVersion, then the handles; an
/// Event on the pool records each address. Returns the addresses released.
pub async fn release(cluster: &Cluster, calico: &Calico, pool_name: &str, leaks: &[Leak]) -> Result<Vec<IpAddr>> {
    let mut by_block: BTreeMap<&str, Vec<&Leak>> = BTreeMap::new();
    for l in leaks {
        by_block.entry(l.block.as_str()).or_default().push(l);
    }
    let blocks = calico.api(cluster, Kind::IPAMBlock);
    let handles = calico.api(cluster, Kind::IPAMHandle);
    let pool_av = calico.resource(Kind::IPPool).api_version;
    let mut out = Vec::new();
    for (name, ls) in by_block {
        let wanted: Vec<(IpAddr, Option<String>)> =
            ls.iter().map(|l| (l.allocation.ip, l.allocation.handle.as_deref().map(str::to_string))).collect();
        let Some((block_cidr, change)) = release_in_block(&blocks, name, &wanted).await? else { continue };
        for (handle, count) in &change.per_handle {
            decrement(&handles, handle, &block_cidr, *count).await?;
        }
        for ip in &change.released {
            let leak = ls.iter().find(|l| l.allocation.ip == *ip).map(|l| l.describe()).unwrap_or(ip.to_string());
            events::record_event(
                cluster,
                EventTarget { api_version: &pool_av, kind: "IPPool", namespace: None, name: pool_name },
                &format!("kubectl-ippool migrate: released leaked address {leak} of IPAMBlock {name}: no pod and no node uses it"),
            )
            .await;
        }
        out.extend(change.released);
    }
    Ok(out)
}

/// One block's release, re-read and redone when someone else wrote it first.
async fn release_in_block(
    api: &Api<DynamicObject>,
    name: &str,
    wanted: &[(IpAddr, Option<String>)],
) -> Result<Option<(String, leaks::BlockRelease)>> {
    // A write whose answer was lost: what it sent (None: a delete), and the release it made.
    let mut unanswered: Option<(Option<Value>, String, leaks::BlockRelease)> = None;
    for attempt in 0..CONFLICT_RETRIES {
        let got = api.get_opt(name).await.op("get", "ipamblocks", None)?;
        if let Some((sent, cidr, change)) = unanswered.take() {
            if leaks::write_landed(sent.as_ref(), got.as_ref().and_then(|b| b.data.get("spec"))) {
                return Ok(Some((cidr, change)));
            }
        }
        let Some(mut block) = got else { return Ok(None) };
        let spec = block.data.get("spec").cloned().unwrap_or(Value::Null);
        let cidr_text = spec.get("cidr").and_then(Value::as_str).unwrap_or_default().to_string();
        let cidr: IpNet =
            cidr_text.parse().map_err(|_| Error::Calico(format!("IPAMBlock {name} has an invalid spec.cidr")))?;
        let change = release_from_block(&spec, &cidr, wanted);
        if change.released.is_empty() {
            return Ok(None);
        }
        let unaffine = spec.get("affinity").is_none_or(|a| a.is_null() || a.as_str() == Some(""));
        // As libcalico-go: an empty block without affinity is deleted, any other is updated.
        let deleting = change.empty && unaffine;
        let result = if deleting {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: None,
                    resource_version: block.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            api.delete(name, &dp).await.map(|_| ())
        } else {
            block.data["spec"] = change.spec.clone();
            api.replace(name, &PostParams::default(), &block).await.map(|_| ())
        };
        match result {
            Ok(()) => return Ok(Some((cidr_text, change))),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) if is_transient(&e) => {
                // It may have landed: the next look decides.
                let sent = (!deleting).then(|| change.spec.clone());
                unanswered = Some((sent, cidr_text, change));
                tokio::time::sleep(transient_pause(attempt)).await
            }
            Err(e) => return Err(e).op("update", "ipamblocks", None),
        }
    }
    Err(Error::Other(format!("IPAMBlock {name} kept changing under us; run the same command again")))
}

/// Lower an IPAMHandle's count for the block; delete it when it holds nothing.
async fn decrement(api: &Api<DynamicObject>, handle: &str, block_cidr: &str, count: u64) -> Result<()> {
    let name = handle.to_lowercase();
    // An update whose answer was lost, and the spec it sent.
    let mut unanswered: Option<Value> = None;
    for attempt in 0..CONFLICT_RETRIES {
        let got = api.get_opt(&name).await.op("get", "ipamhandles", None)?;
        if let Some(sent) = unanswered.take() {
            if leaks::write_landed(Some(&sent), got.as_ref().and_then(|h| h.data.get("spec"))) {
                return Ok(());
            }
        }
        let Some(mut h) = got else { return Ok(()) };
        let spec = h.data.get("spec").cloned().unwrap_or(Value::Null);
        let change = decrement_handle(&spec, block_cidr, count);
        let sent = match &change {
            HandleChange::Update(new) => Some(new.clone()),
            HandleChange::Delete => None,
        };
        let result = match change {
            HandleChange::Delete => {
                let rv = h.metadata.resource_version.clone();
                let dp = DeleteParams {
                    preconditions: Some(Preconditions { uid: None, resource_version: rv }),
                    ..Default::default()
                };
                repeat_transient(|| api.delete(&name, &dp)).await.map(|_| ())
            }
            HandleChange::Update(new) => {
                h.data["spec"] = new;
                api.replace(&name, &PostParams::default(), &h).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) if is_transient(&e) => {
                // It may have landed: the next look decides, never a second decrement.
                unanswered = sent;
                tokio::time::sleep(transient_pause(attempt)).await
            }
            Err(e) => return Err(e).op("update", "ipamhandles", None),
        }
    }
    Err(Error::Other(format!("IPAMHandle {name} kept changing under us; run the same command again")))
}

/// Wait until an IPAMBlock inside `cidr` changes (an address was released
/// or allocated), or `max` passes: the drain looks again when something
/// happened, through a watch, rather than re-listing every pod on a clock.
pub async fn wait_block_change(cluster: &Cluster, calico: &Calico, cidr: &IpNet, max: Duration) -> Result<()> {
    let api = calico.api(cluster, Kind::IPAMBlock);
    let cidr = *cidr;
    let mut first: Option<Vec<(String, String)>> = None;
    let fingerprint = move |blocks: &[&DynamicObject]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = blocks
            .iter()
            .filter(|b| {
                b.data
                    .pointer("/spec/cidr")
                    .and_then(Value::as_str)
                    .and_then(|c| c.parse::<IpNet>().ok())
                    .is_some_and(|c| within(&c, &cidr))
            })
            .map(|b| {
                (b.metadata.name.clone().unwrap_or_default(), b.metadata.resource_version.clone().unwrap_or_default())
            })
            .collect();
        v.sort();
        v
    };
    let waited = wait_list(api, watcher::Config::default(), "ipamblocks", max, |blocks| {
        let now = fingerprint(blocks);
        match &first {
            None => {
                first = Some(now);
                false
            }
            Some(f) => *f != now,
        }
    })
    .await;
    match waited {
        Err(Error::Timeout { .. }) => Ok(()),
        r => r,
    }
}
