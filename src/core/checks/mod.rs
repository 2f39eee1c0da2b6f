//! The checks of `verify`: plain data in, a list of PASS/WARN/FAIL results
//! out, each naming the objects at fault.
//!
//! Every check is always present in the result (PASS when clean) so the
//! output has a stable shape for scripts. The IPAM checks classify problems
//! the way `calicoctl ipam check` does, so `IpamFigures::calicoctl_problems`
//! equals calicoctl's "found N problems" on the same cluster.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::cidr::within;
use super::findings::{self, name_some, Severity};
use super::inventory::Inventory;
use super::model::{ClusterNetworks, NamespaceInfo, NodeInfo, PodInfo, PoolPins};
use super::state::{MigrationState, Phase};

/// Which part of the cluster a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Pools,
    Pods,
    Ipam,
    Probe,
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable identifier for scripts, e.g. `leakedAllocations`.
    pub code: &'static str,
    /// Short human title, shown in the CHECK column.
    pub name: &'static str,
    pub category: Category,
    pub status: Severity,
    pub message: String,
    /// Every object at fault (`Pod shop/web-1`, `IPAMBlock 192-168-0-0-26`).
    pub objects: Vec<String>,
}

impl Check {
    fn new(
        code: &'static str,
        name: &'static str,
        category: Category,
        status: Severity,
        message: impl Into<String>,
        objects: Vec<String>,
    ) -> Check {
        Check { code, name, category, status, message: message.into(), objects }
    }

    /// PASS with `ok` when `objects` is empty, else `bad` with `msg(objects)`.
    fn from_objects(
        code: &'static str,
        name: &'static str,
        category: Category,
        bad: Severity,
        objects: Vec<String>,
        ok: impl Into<String>,
        msg: impl FnOnce(&[String]) -> String,
    ) -> Check {
        if objects.is_empty() {
            Check::new(code, name, category, Severity::Pass, ok, objects)
        } else {
            let m = msg(&objects);
            Check::new(code, name, category, bad, m, objects)
        }
    }
}

/// A workload's pod template pool annotations (Deployment, StatefulSet, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadTemplate {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub pins: PoolPins,
}

/// The latest `FailedCreatePodSandBox` event of a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxFailure {
    pub namespace: String,
    pub pod: String,
    pub message: String,
    pub count: i32,
}

impl SandboxFailure {
    /// The part of the CNI error that says why (`the given pool (...) does not exist, or is not enabled`).
    pub fn reason(&self) -> &str {
        match self.message.rfind("failed (add): ") {
            Some(i) => &self.message[i + "failed (add): ".len()..],
            None => &self.message,
        }
    }
}

/// What `verify` was asked about, beyond what the cluster says.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Pools (names) new pods should get addresses from (`--to`).
    pub targets: Vec<String>,
    /// The pool being retired (`--from`), which may already be deleted.
    pub from: Option<String>,
    /// Its CIDR, for when the pool is gone (`--from-cidr` or the record).
    pub from_cidr: Option<IpNet>,
    /// Restrict pod-level checks to this namespace (`-n`).
    pub namespace: Option<String>,
}

/// Everything the checks look at.
pub struct VerifyInput<'a> {
    pub inv: &'a Inventory,
    pub nodes: &'a [NodeInfo],
    pub namespaces: &'a [NamespaceInfo],
    pub networks: &'a ClusterNetworks,
    pub migration: Option<&'a MigrationState>,
    pub templates: &'a [WorkloadTemplate],
    pub sandbox_failures: &'a [SandboxFailure],
    pub expect: &'a Expectations,
}

/// The IPAM figures, in `calicoctl ipam check`'s classes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamFigures {
    pub blocks: usize,
    /// Allocated addresses over all blocks.
    pub allocations: usize,
    /// Addresses in use by pods (workload endpoints) and node tunnels.
    pub in_use_ips: usize,
    /// Allocated but not in use (calicoctl: "allocated in IPAM but not actually in use").
    pub leaked_ips: usize,
    /// In use, not allocated, outside every active pool.
    pub in_use_not_in_active_pool: usize,
    /// In use, not allocated, inside an active pool.
    pub in_use_without_allocation: usize,
    /// IPAMHandles no allocation refers to.
    pub handles_without_ips: usize,
    /// Handles named by allocations that have no IPAMHandle object (calicoctl lists these but does not count them).
    pub missing_handles: usize,
    /// Addresses claimed by more than one pod or node (calicoctl lists these but does not count them).
    pub multiple_owners: usize,
    /// Blocks with structural problems (calicoctl >= 3.32 counts these).
    pub invalid_blocks: usize,
    /// The number `calicoctl ipam check` (3.31) reports as "found N problems".
    pub calicoctl_problems: usize,
}

/// Handle Calico reserves for Windows; its addresses are in use by definition.
const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";

/// The pool names the checks treat as targets and as the retired pool:
/// flags first, then an unfinished-or-done (not rolled back) migration record.
fn targets_and_from(input: &VerifyInput) -> (Vec<String>, Option<String>, Option<IpNet>) {
    let record = input.migration.filter(|m| m.phase != Phase::RolledBack);
    let targets = if !input.expect.targets.is_empty() {
        input.expect.targets.clone()
    } else {
        record.map(|m| vec![m.to_pool.clone()]).unwrap_or_default()
    };
    let from = input.expect.from.clone().or_else(|| record.map(|m| m.from_pool.clone()));
    let from_cidr = input.expect.from_cidr.or_else(|| {
        let from = from.as_deref()?;
        if let Some(i) = input.inv.pool_named(from) {
            return Some(input.inv.pools[i].cidr);
        }
        record.filter(|m| m.from_pool == from).and_then(|m| m.from_cidr.parse::<IpNet>().ok()).map(|n| n.trunc())
    });
    (targets, from, from_cidr)
}

fn in_namespace(expect: &Expectations, ns: &str) -> bool {
    expect.namespace.as_deref().is_none_or(|n| n == ns)
}

/// Run every check (the probe is added by the caller).
pub fn run_checks(input: &VerifyInput) -> (Vec<Check>, IpamFigures) {
    let mut out = pool_checks(input);
    out.extend(pod_checks(input));
    let (ipam, figures) = ipam_checks(input);
    out.extend(ipam);
    (out, figures)
}

pub fn pool_checks(input: &VerifyInput) -> Vec<Check> {
    let inv = input.inv;
    let (targets, from, _) = targets_and_from(input);
    let mut out = Vec::new();
    let net_findings = findings::pool_network_findings(&inv.pools, input.networks);
    let pod_nets = input.networks.pod_nets();

    // Target pools: exist, enabled, inside the cluster CIDR.
    if targets.is_empty() {
        let active: Vec<String> =
            inv.pools.iter().filter(|p| p.is_active()).map(|p| format!("IPPool {}", p.name)).collect();
        out.push(if active.is_empty() {
            let all = inv.pools.iter().map(|p| format!("IPPool {}", p.name)).collect();
            Check::new(
                "targetPool",
                "Target pool",
                Category::Pools,
                Severity::Fail,
                "no IP pool is enabled: new pods cannot get an address",
                all,
            )
        } else {
            Check::new(
                "targetPool",
                "Target pool",
                Category::Pools,
                Severity::Pass,
                format!("no target named (--to); {} enabled pool(s): {}", active.len(), name_some(&active)),
                vec![],
            )
        });
    } else {
        let mut problems = Vec::new();
        let mut objects = Vec::new();
        for t in &targets {
            match inv.pool_named(t) {
                None => {
                    problems.push(format!("IPPool {t} does not exist"));
                    objects.push(format!("IPPool {t}"));
                }
                Some(i) => {
                    let p = &inv.pools[i];
                    let mut bad = false;
                    if p.disabled {
                        problems.push(format!("IPPool {t} is disabled"));
                        bad = true;
                    }
                    if p.terminating {
                        problems.push(format!("IPPool {t} is being deleted"));
                        bad = true;
                    }
                    let fam: Vec<_> =
                        pod_nets.iter().filter(|n| n.addr().is_ipv4() == p.cidr.addr().is_ipv4()).collect();
                    if !fam.is_empty() && !fam.iter().any(|n| within(&p.cidr, n)) {
                        let nets: Vec<String> = fam.iter().map(|n| n.to_string()).collect();
                        problems.push(format!(
                            "IPPool {t} ({}) lies outside the cluster CIDR {}",
                            p.cidr,
                            nets.join(", ")
                        ));
                        bad = true;
                    }
                    if bad {
                        objects.push(format!("IPPool {t}"));
                    }
                }
            }
        }
        out.push(if problems.is_empty() {
            Check::new(
                "targetPool",
                "Target pool",
                Category::Pools,
                Severity::Pass,
                format!("{} exist(s), enabled, inside the cluster CIDR", targets.join(", ")),
                vec![],
            )
        } else {
            Check::new("targetPool", "Target pool", Category::Pools, Severity::Fail, problems.join("; "), objects)
        });
    }

    // Service CIDR overlap and pool overlap reuse the status findings.
    let pick = |code: &str| -> (Vec<String>, Vec<String>) {
        let fs: Vec<_> = net_findings.iter().filter(|f| f.code == code).collect();
        let mut objs: Vec<String> = fs.iter().flat_map(|f| f.objects.iter().cloned()).collect();
        objs.dedup();
        (objs, fs.iter().map(|f| f.message.clone()).collect())
    };
    let (objs, msgs) = pick("poolOverlapsServiceCidr");
    let svc_known = !input.networks.service_cidrs.is_empty();
    out.push(if objs.is_empty() {
        let ok = if svc_known {
            format!(
                "no pool overlaps the Service CIDR ({})",
                input.networks.service_nets().iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
            )
        } else {
            "Service CIDR unknown (not discoverable); overlap not checked".into()
        };
        Check::new(
            "poolOverlapsServiceCidr",
            "Pools vs Service CIDR",
            Category::Pools,
            if svc_known { Severity::Pass } else { Severity::Warn },
            ok,
            vec![],
        )
    } else {
        Check::new(
            "poolOverlapsServiceCidr",
            "Pools vs Service CIDR",
            Category::Pools,
            Severity::Fail,
            msgs.join("; "),
            objs,
        )
    });
    let (objs, msgs) = pick("poolsOverlap");
    out.push(Check::from_objects(
        "poolsOverlap",
        "Pool overlap",
        Category::Pools,
        Severity::Fail,
        objs,
        format!("{} pool(s), none overlap", inv.pools.len()),
        |_| msgs.join("; "),
    ));
    // Other (non-target) active pools outside the cluster CIDR: a warning.
    let outside: Vec<String> = net_findings
        .iter()
        .filter(|f| f.code == "poolOutsideClusterCidr")
        .flat_map(|f| f.objects.iter().cloned())
        .filter(|o| {
            let name = o.trim_start_matches("IPPool ");
            !targets.iter().any(|t| t == name) && inv.pool_named(name).is_some_and(|i| inv.pools[i].is_active())
        })
        .collect();
    let pod_known = !pod_nets.is_empty();
    out.push(if !pod_known {
        Check::new(
            "poolOutsideClusterCidr",
            "Pools vs cluster CIDR",
            Category::Pools,
            Severity::Warn,
            "cluster pod CIDR unknown (not discoverable); not checked",
            vec![],
        )
    } else {
        let nets = pod_nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
        Check::from_objects(
            "poolOutsideClusterCidr",
            "Pools vs cluster CIDR",
            Category::Pools,
            Severity::Warn,
            outside,
            format!("every enabled pool lies inside the cluster CIDR ({nets})"),
            |o| {
                format!(
                    "enabled pool(s) outside the cluster CIDR {nets}: {}; pod traffic may be NATed or dropped",
                    name_some(o)
                )
            },
        )
    });

    // The retired pool: disabled or gone.
    out.push(match from.as_deref() {
        None => Check::new(
            "oldPoolRetired",
            "Old pool retired",
            Category::Pools,
            Severity::Pass,
            "no old pool named (--from) and no migration recorded",
            vec![],
        ),
        Some(f) => match inv.pool_named(f) {
            None => Check::new(
                "oldPoolRetired",
                "Old pool retired",
                Category::Pools,
                Severity::Pass,
                format!("IPPool {f} is deleted"),
                vec![],
            ),
            Some(i) if inv.pools[i].is_active() => Check::new(
                "oldPoolRetired",
                "Old pool retired",
                Category::Pools,
                Severity::Fail,
                format!("IPPool {f} is still enabled: new pods can still get addresses from it"),
                vec![format!("IPPool {f}")],
            ),
            Some(i) => {
                let pods = inv.usage[i].pods;
                Check::new(
                    "oldPoolRetired",
                    "Old pool retired",
                    Category::Pools,
                    Severity::Pass,
                    format!("IPPool {f} is disabled ({pods} pod(s) still on it)"),
                    vec![],
                )
            }
        },
    });

    // The migration record.
    out.push(match input.migration {
        None => Check::new("migrationComplete", "Migration record", Category::Pools, Severity::Pass, "no migration recorded", vec![]),
        Some(m) if m.phase == Phase::Done && m.failed.is_empty() => Check::new(
            "migrationComplete",
            "Migration record",
            Category::Pools,
            Severity::Pass,
            format!("migration {} -> {} finished ({})", m.from_pool, m.to_pool, m.updated_at),
            vec![],
        ),
        Some(m) if m.phase == Phase::Done => Check::new(
            "migrationComplete",
            "Migration record",
            Category::Pools,
            Severity::Warn,
            format!("migration {} -> {} finished, but {} object(s) could not be moved: {}", m.from_pool, m.to_pool, m.failed.len(), name_some(&m.failed)),
            m.failed.clone(),
        ),
        Some(m) if m.phase == Phase::RolledBack => Check::new(
            "migrationComplete",
            "Migration record",
            Category::Pools,
            Severity::Warn,
            format!("migration {} -> {} was rolled back ({})", m.from_pool, m.to_pool, m.updated_at),
            vec![],
        ),
        Some(m) => Check::new(
            "migrationComplete",
            "Migration record",
            Category::Pools,
            Severity::Fail,
            format!(
                "migration {} -> {} is half-done: phase {}, {}/{} moved, {} failed (started {} by {}); re-run the same migrate command to finish it",
                m.from_pool,
                m.to_pool,
                m.phase.as_str(),
                m.done.len(),
                m.total,
                m.failed.len(),
                m.started_at,
                m.started_by
            ),
            vec![format!("IPPool {}", m.from_pool), format!("IPPool {}", m.to_pool)],
        ),
    });
    out
}

/// Why `pins` cannot be satisfied now (pool missing or disabled, address in
/// no enabled pool, annotation unparsable); empty when fine.
pub fn bad_pins(pins: &PoolPins, inv: &Inventory) -> Vec<String> {
    let mut out = Vec::new();
    for p in &pins.pools {
        // Pins name a pool or its exact CIDR (Calico's ResolvePools).
        let by_cidr = p.parse::<IpNet>().ok().map(|n| n.trunc());
        match inv.pools.iter().find(|x| &x.name == p || Some(x.cidr) == by_cidr) {
            None => out.push(format!("pool {p} does not exist")),
            Some(x) if !x.is_active() => out.push(format!("pool {p} is disabled")),
            Some(_) => {}
        }
    }
    for a in &pins.ip_addrs {
        match a.parse::<IpAddr>() {
            Err(_) => out.push(format!("address {a} is not an IP")),
            Ok(ip) => match inv.pool_of(ip) {
                None => out.push(format!("address {a} is in no pool")),
                Some(x) if !x.is_active() => out.push(format!("address {a} is in disabled pool {}", x.name)),
                Some(_) => {}
            },
        }
    }
    if let Some(u) = &pins.unparsable {
        out.push(format!("unparsable annotation {u}"));
    }
    out
}

pub fn pod_checks(input: &VerifyInput) -> Vec<Check> {
    let inv = input.inv;
    let expect = input.expect;
    let (_, _, from_cidr) = targets_and_from(input);
    let mut out = Vec::new();

    // Pods on a disabled pool, or in the retired CIDR once its pool is gone;
    // pods in no pool at all.
    let mut retired = Vec::new();
    let mut stray = Vec::new();
    for (pod, pool) in inv.pods.iter().zip(&inv.pod_pool) {
        if !pod.holds_pool_ip() || !in_namespace(expect, &pod.namespace) {
            continue;
        }
        let ip = |pred: &dyn Fn(&IpAddr) -> bool| {
            pod.ips.iter().find(|i| pred(i)).or(pod.ips.first()).map(|i| i.to_string()).unwrap_or_default()
        };
        match pool {
            Some(i) if !inv.pools[*i].is_active() => {
                let p = &inv.pools[*i];
                retired.push(format!(
                    "Pod {} ({} in disabled IPPool {})",
                    pod.key(),
                    ip(&|a| p.cidr.contains(a)),
                    p.name
                ));
            }
            Some(_) => {}
            None => match from_cidr.filter(|c| pod.ips.iter().any(|a| c.contains(a))) {
                Some(c) => retired.push(format!("Pod {} ({} in deleted pool {c})", pod.key(), ip(&|a| c.contains(a)))),
                None => stray.push(format!("Pod {} ({})", pod.key(), ip(&|_| true))),
            },
        }
    }
    out.push(Check::from_objects(
        "podsOnRetiredPools",
        "Pods on retired pools",
        Category::Pods,
        Severity::Fail,
        retired,
        "no running pod holds an address of a disabled or deleted pool",
        |o| format!("{} pod(s) still hold an address of a disabled or deleted pool: {}", o.len(), name_some(o)),
    ));
    out.push(Check::from_objects(
        "podsOutsidePools",
        "Pods outside pools",
        Category::Pods,
        Severity::Fail,
        stray,
        "every running pod's address lies in an IP pool",
        |o| format!("{} pod(s) hold an address that is in no IP pool: {}", o.len(), name_some(o)),
    ));

    // Pins to disabled or missing pools, on namespaces, pods and templates.
    let mut pinned = Vec::new();
    let mut reasons = Vec::new();
    let mut note = |object: String, pins: &PoolPins| {
        let bad = bad_pins(pins, inv);
        if !bad.is_empty() {
            reasons.push(format!("{object}: {}", bad.join(", ")));
            pinned.push(object);
        }
    };
    for ns in input.namespaces.iter().filter(|n| !n.pins.is_empty() && in_namespace(expect, &n.name)) {
        note(format!("Namespace {}", ns.name), &ns.pins);
    }
    for t in input.templates.iter().filter(|t| !t.pins.is_empty() && in_namespace(expect, &t.namespace)) {
        note(format!("{} {}/{}", t.kind, t.namespace, t.name), &t.pins);
    }
    for p in inv.pods.iter().filter(|p| !p.pins.is_empty() && !p.is_finished() && in_namespace(expect, &p.namespace)) {
        note(format!("Pod {}", p.key()), &p.pins);
    }
    out.push(Check::from_objects(
        "pinnedToRetiredPool",
        "Pool pins",
        Category::Pods,
        Severity::Fail,
        pinned,
        "no namespace, workload template or pod is pinned to a disabled or missing pool",
        |objs| {
            format!(
                "{} object(s) are pinned to a disabled or missing pool; their new pods will not start: {}",
                objs.len(),
                name_some(&reasons)
            )
        },
    ));

    // Pods stuck Pending with a sandbox (CNI/IPAM) failure.
    let failures: HashMap<(&str, &str), &SandboxFailure> =
        input.sandbox_failures.iter().map(|f| ((f.namespace.as_str(), f.pod.as_str()), f)).collect();
    let mut stuck = Vec::new();
    let mut why = Vec::new();
    for p in inv.pods.iter().filter(|p| {
        p.phase == "Pending"
            && p.ips.is_empty()
            && !p.host_network
            && !p.terminating
            && in_namespace(expect, &p.namespace)
    }) {
        if let Some(f) = failures.get(&(p.namespace.as_str(), p.name.as_str())) {
            stuck.push(format!("Pod {}", p.key()));
            why.push(format!("Pod {}: {}", p.key(), f.reason()));
        }
    }
    out.push(Check::from_objects(
        "podsPendingOnIpam",
        "Pods pending on IPAM",
        Category::Pods,
        Severity::Fail,
        stuck,
        "no pod is stuck Pending on a network (sandbox) failure",
        |objs| format!("{} pod(s) stuck Pending (FailedCreatePodSandBox): {}", objs.len(), name_some(&why)),
    ));
    out
}

fn alloc_label(
    ip: IpAddr,
    handle: Option<&str>,
    ns: Option<&str>,
    pod: Option<&str>,
    node: Option<&str>,
    kind: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if let Some(h) = handle {
        parts.push(format!("handle {h}"));
    }
    if let (Some(ns), Some(p)) = (ns, pod) {
        parts.push(format!("pod {ns}/{p}"));
    }
    if let Some(k) = kind {
        parts.push(k.to_string());
    }
    if let Some(n) = node {
        parts.push(format!("node {n}"));
    }
    format!("IP {ip} ({})", parts.join(", "))
}

/// IPAM consistency, in `calicoctl ipam check`'s classes plus the affinity
/// and block checks kube-controllers' GC cares about. Lookups go through
/// hash maps, so this is linear in pods + allocations + handles.
pub fn ipam_checks(input: &VerifyInput) -> (Vec<Check>, IpamFigures) {
    let inv = input.inv;
    let ipam = &inv.ipam;
    let mut fig = IpamFigures { blocks: ipam.blocks.len(), ..Default::default() };

    // Addresses in use: workload endpoints (scheduled, not host-network,
    // not finished pods) and node tunnel addresses.
    let mut in_use: HashMap<IpAddr, Vec<String>> = HashMap::new();
    for p in &inv.pods {
        if p.host_network || p.node.is_none() || p.is_finished() {
            continue;
        }
        for ip in &p.ips {
            in_use.entry(*ip).or_default().push(format!("Pod {}", p.key()));
        }
    }
    for n in input.nodes {
        for ip in &n.tunnel_ips {
            in_use.entry(*ip).or_default().push(format!("Node {}", n.name));
        }
    }
    fig.in_use_ips = in_use.len();

    // Allocations, by address; handles referenced by allocations.
    let mut allocated: HashMap<IpAddr, Vec<(usize, usize)>> = HashMap::new();
    let mut referenced: HashSet<&str> = HashSet::new();
    for (bi, b) in ipam.blocks.iter().enumerate() {
        for (ai, a) in b.allocations.iter().enumerate() {
            allocated.entry(a.ip).or_default().push((bi, ai));
            if let Some(h) = a.handle.as_deref() {
                if h == WINDOWS_RESERVED_HANDLE {
                    in_use.entry(a.ip).or_default().push("Reserved for Windows".into());
                } else {
                    referenced.insert(h);
                }
            }
            fig.allocations += 1;
        }
    }
    let pods_by_key: HashMap<(&str, &str), &PodInfo> =
        inv.pods.iter().map(|p| ((p.namespace.as_str(), p.name.as_str()), p)).collect();

    // 1. Leaks: allocated, not in use. Also allocations whose pod attribute
    //    names a pod that does not hold the address although someone else
    //    uses it (kube-controllers would GC these; calicoctl does not count them).
    let mut leaked = Vec::new();
    let mut mismatched = Vec::new();
    let mut leaked_ips: Vec<IpAddr> = Vec::new();
    for (ip, slots) in &allocated {
        for &(bi, ai) in slots {
            let a = &ipam.blocks[bi].allocations[ai];
            let label = || {
                alloc_label(
                    *ip,
                    a.handle.as_deref(),
                    a.namespace.as_deref(),
                    a.pod.as_deref(),
                    a.node.as_deref(),
                    a.kind.as_deref(),
                )
            };
            match in_use.get(ip) {
                None => leaked.push((*ip, format!("{} in IPAMBlock {}", label(), ipam.blocks[bi].name))),
                Some(_) => {
                    if let (Some(ns), Some(pod)) = (a.namespace.as_deref(), a.pod.as_deref()) {
                        let holds = pods_by_key.get(&(ns, pod)).is_some_and(|p| p.ips.contains(ip) && !p.is_finished());
                        if !holds {
                            mismatched.push(format!("{} in IPAMBlock {}", label(), ipam.blocks[bi].name));
                        }
                    }
                }
            }
        }
        if !in_use.contains_key(ip) {
            leaked_ips.push(*ip);
        }
    }
    fig.leaked_ips = leaked_ips.len();
    leaked.sort();
    let leaked: Vec<String> = leaked.into_iter().map(|(_, s)| s).collect();
    mismatched.sort();

    // 2. In use without an allocation, split by active pool.
    let active_pools: Vec<IpNet> = inv.pools.iter().filter(|p| !p.disabled).map(|p| p.cidr).collect();
    let active_index = super::cidr::PrefixIndex::new(active_pools.iter().map(|n| (*n, ())));
    let mut outside_active = Vec::new();
    let mut unallocated = Vec::new();
    let mut multi = Vec::new();
    for (ip, owners) in &in_use {
        if owners.len() > 1 {
            multi.push(format!("IP {ip} ({})", owners.join(", ")));
        }
        if allocated.contains_key(ip) {
            continue;
        }
        let who = owners.join(", ");
        if active_index.lookup(*ip).is_some() {
            unallocated.push(format!("{who} ({ip})"));
        } else {
            outside_active.push(format!("{who} ({ip})"));
        }
    }
    outside_active.sort();
    unallocated.sort();
    multi.sort();
    fig.in_use_not_in_active_pool = outside_active.len();
    fig.in_use_without_allocation = unallocated.len();
    fig.multiple_owners = multi.len();

    // 3. Handles no allocation refers to; 4. referenced handles with no object.
    let handle_ids: HashSet<&str> = ipam.handles.iter().map(|h| h.handle_id.as_str()).collect();
    let mut orphan_handles: Vec<String> = ipam
        .handles
        .iter()
        .filter(|h| !referenced.contains(h.handle_id.as_str()))
        .map(|h| format!("IPAMHandle {}", h.handle_id))
        .collect();
    orphan_handles.sort();
    let mut missing_handles: Vec<String> =
        referenced.iter().filter(|h| !handle_ids.contains(*h)).map(|h| format!("IPAMHandle {h}")).collect();
    missing_handles.sort();
    fig.handles_without_ips = orphan_handles.len();
    fig.missing_handles = missing_handles.len();

    // 5. Invalid block structure.
    let invalid: Vec<String> = ipam
        .blocks
        .iter()
        .filter(|b| !b.problems.is_empty())
        .map(|b| format!("IPAMBlock {}: {}", b.name, b.problems.join("; ")))
        .collect();
    fig.invalid_blocks = invalid.len();
    fig.calicoctl_problems =
        fig.leaked_ips + fig.in_use_not_in_active_pool + fig.in_use_without_allocation + fig.handles_without_ips;

    // Affinities: missing node, deleted pool, pending deletion.
    let node_names: HashSet<&str> = input.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut missing_node: BTreeSet<String> = BTreeSet::new();
    for b in &ipam.blocks {
        if let Some(n) = b.affinity_node.as_deref().filter(|n| !node_names.contains(n)) {
            missing_node.insert(format!("IPAMBlock {} (affine to missing Node {n})", b.name));
        }
    }
    let mut for_deleted_pool = Vec::new();
    let mut pending_deletion = Vec::new();
    for a in &ipam.affinities {
        if !a.node.is_empty() && !node_names.contains(a.node.as_str()) {
            missing_node.insert(format!("BlockAffinity {} (missing Node {})", a.name, a.node));
        }
        if inv.pool_index.lookup(a.cidr.network()).is_none() {
            for_deleted_pool.push(format!("BlockAffinity {} ({} on {})", a.name, a.cidr, a.node));
        }
        if a.state == "pendingDeletion" {
            pending_deletion.push(format!("BlockAffinity {} ({} on {})", a.name, a.cidr, a.node));
        }
    }
    let missing_node: Vec<String> = missing_node.into_iter().collect();
    let orphan_blocks: Vec<String> = inv
        .orphan_blocks()
        .map(|b| format!("IPAMBlock {} ({}, {} allocation(s))", b.name, b.cidr, b.allocations.len()))
        .collect();

    let c = Category::Ipam;
    let out = vec![
        Check::from_objects(
            "leakedAllocations",
            "Leaked allocations",
            c,
            Severity::Fail,
            leaked,
            "every allocated address is used by a pod or a node tunnel",
            |o| format!("{} address(es) allocated in IPAM but used by no pod or node: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "allocationOwnerMismatch",
            "Allocation owners",
            c,
            Severity::Warn,
            mismatched,
            "every pod allocation names the pod that uses the address",
            |o| {
                format!(
                    "{} allocation(s) name a pod that does not hold the address (it is used by another): {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            "ipsOutsideActivePools",
            "In-use IPs outside active pools",
            c,
            Severity::Fail,
            outside_active,
            "every in-use address is allocated or lies in an active pool",
            |o| {
                format!(
                    "{} in-use address(es) have no IPAM allocation and lie in no active pool: {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            "ipsWithoutAllocation",
            "In-use IPs without allocation",
            c,
            Severity::Fail,
            unallocated,
            "every in-use address in an active pool is allocated in IPAM",
            |o| {
                format!("{} in-use address(es) in an active pool have no IPAM allocation (they can be handed out twice): {}", o.len(), name_some(o))
            },
        ),
        Check::from_objects(
            "duplicateIps",
            "Duplicate IPs",
            c,
            Severity::Fail,
            multi,
            "no address is used by more than one pod or node",
            |o| format!("{} address(es) are used by more than one pod or node: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "handlesWithoutIps",
            "Orphan handles",
            c,
            Severity::Fail,
            orphan_handles,
            "every IPAMHandle has allocations",
            |o| format!("{} IPAMHandle(s) have no allocated address: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "missingHandles",
            "Missing handles",
            c,
            Severity::Warn,
            missing_handles,
            "every handle used by an allocation has an IPAMHandle object",
            |o| format!("{} handle(s) used by allocations have no IPAMHandle object: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "affinityForMissingNode",
            "Affinities of missing nodes",
            c,
            Severity::Fail,
            missing_node,
            "every block affinity names an existing node",
            |o| {
                format!(
                    "{} block(s)/affinit(ies) are affine to a node that no longer exists: {}",
                    o.len(),
                    name_some(o)
                )
            },
        ),
        Check::from_objects(
            "affinityForDeletedPool",
            "Affinities of deleted pools",
            c,
            Severity::Warn,
            for_deleted_pool,
            "every BlockAffinity lies in an IP pool",
            |o| format!("{} BlockAffinit(ies) lie in no IP pool (left from a deleted pool): {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "affinityPendingDeletion",
            "Affinities pending deletion",
            c,
            Severity::Warn,
            pending_deletion,
            "no BlockAffinity is stuck in pendingDeletion",
            |o| format!("{} BlockAffinit(ies) are in state pendingDeletion: {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "blocksOutsidePools",
            "Blocks outside pools",
            c,
            Severity::Warn,
            orphan_blocks,
            "every IPAM block lies in an IP pool",
            |o| format!("{} IPAM block(s) lie in no IP pool (left from a deleted pool): {}", o.len(), name_some(o)),
        ),
        Check::from_objects(
            "invalidBlocks",
            "Block structure",
            c,
            Severity::Fail,
            invalid,
            "every IPAM block is structurally valid",
            |o| format!("{} IPAM block(s) are corrupt: {}", o.len(), name_some(o)),
        ),
    ];
    (out, fig)
}

/// What one probe pod got.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOutcome {
    /// `namespace/name` of the probe pod.
    pub pod: String,
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    /// Why it got no address (timeout, Calico's sandbox error).
    pub error: Option<String>,
}

/// The probe: every probe pod got an address from an enabled pool, and
/// from a target pool when targets are known.
pub fn probe_check(input: &VerifyInput, outcomes: &[ProbeOutcome]) -> Check {
    let (targets, _, _) = targets_and_from(input);
    let mut bad = Vec::new();
    let mut why = Vec::new();
    let mut good = Vec::new();
    for o in outcomes {
        let on = o.node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default();
        let problem = match (o.ip, o.error.as_deref()) {
            (None, err) => Some(format!("got no address{on}: {}", err.unwrap_or("unknown reason"))),
            (Some(ip), _) => match input.inv.pool_of(ip) {
                None => Some(format!("got {ip}{on}, which is in no IP pool")),
                Some(p) if !p.is_active() => Some(format!("got {ip}{on} from disabled IPPool {}", p.name)),
                Some(p) if !targets.is_empty() && !targets.contains(&p.name) => {
                    Some(format!("got {ip}{on} from IPPool {}, not from {}", p.name, targets.join(", ")))
                }
                Some(p) => {
                    good.push(format!("{ip}{on} from IPPool {}", p.name));
                    None
                }
            },
        };
        if let Some(p) = problem {
            bad.push(format!("Pod {}", o.pod));
            why.push(format!("Pod {} {p}", o.pod));
        }
    }
    if outcomes.is_empty() {
        Check::new("probe", "Probe pod", Category::Probe, Severity::Fail, "no probe pod was started", vec![])
    } else if bad.is_empty() {
        Check::new(
            "probe",
            "Probe pod",
            Category::Probe,
            Severity::Pass,
            format!("{} probe pod(s) got addresses: {}", outcomes.len(), name_some(&good)),
            vec![],
        )
    } else {
        Check::new(
            "probe",
            "Probe pod",
            Category::Probe,
            Severity::Fail,
            format!("{} of {} probe pod(s) failed: {}", bad.len(), outcomes.len(), name_some(&why)),
            bad,
        )
    }
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub warnings: usize,
    pub failed: usize,
}

pub fn summarize(checks: &[Check]) -> Summary {
    let mut s = Summary { total: checks.len(), ..Default::default() };
    for c in checks {
        match c.status {
            Severity::Pass => s.passed += 1,
            Severity::Warn => s.warnings += 1,
            Severity::Fail => s.failed += 1,
        }
    }
    s
}

/// The overall result; `--strict` counts warnings as failures.
pub fn overall(checks: &[Check], strict: bool) -> Severity {
    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Severity::Pass);
    if strict && worst == Severity::Warn {
        Severity::Fail
    } else {
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inventory::tests::{block, pod};
    use crate::core::model::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn nets() -> ClusterNetworks {
        ClusterNetworks {
            pod_cidrs: vec![SourcedCidr { cidr: net("10.0.0.0/8"), source: "kubeadm-config".into() }],
            service_cidrs: vec![SourcedCidr { cidr: net("10.96.0.0/12"), source: "ServiceCIDR kubernetes".into() }],
        }
    }

    fn node(name: &str, tunnel: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            tunnel_ips: tunnel.iter().map(|t| t.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn handle(id: &str) -> Handle {
        Handle { name: id.to_lowercase(), handle_id: id.into(), blocks: Default::default(), deleted: false }
    }

    /// A pod with its allocation and handle, consistent.
    fn pod_alloc(b: &mut Block, handles: &mut Vec<Handle>, ns: &str, name: &str, ip: &str) -> PodInfo {
        let p = pod(ns, name, ip, OwnerKind::Deployment, "web");
        let h = format!("k8s-pod-network.cid-{name}");
        b.allocations.push(Allocation {
            ip: ip.parse().unwrap(),
            handle: Some(h.clone()),
            namespace: Some(ns.into()),
            pod: Some(name.into()),
            node: Some("node-0".into()),
            kind: None,
        });
        handles.push(handle(&h));
        p
    }

    struct World {
        inv: Inventory,
        nodes: Vec<NodeInfo>,
        namespaces: Vec<NamespaceInfo>,
        templates: Vec<WorkloadTemplate>,
        failures: Vec<SandboxFailure>,
        migration: Option<MigrationState>,
        expect: Expectations,
    }

    impl World {
        fn run(&self) -> (Vec<Check>, IpamFigures) {
            let nets = nets();
            let input = VerifyInput {
                inv: &self.inv,
                nodes: &self.nodes,
                namespaces: &self.namespaces,
                networks: &nets,
                migration: self.migration.as_ref(),
                templates: &self.templates,
                sandbox_failures: &self.failures,
                expect: &self.expect,
            };
            run_checks(&input)
        }
    }

    fn check<'a>(cs: &'a [Check], code: &str) -> &'a Check {
        cs.iter().find(|c| c.code == code).unwrap_or_else(|| panic!("no check {code}"))
    }

    /// A migrated, clean cluster: old pool disabled and empty, pods on the new pool.
    fn clean_world() -> World {
        let mut old = Pool::new("old", net("192.168.0.0/16"));
        old.disabled = true;
        let new = Pool::new("new", net("10.1.0.0/16"));
        let mut b = block("10.1.0.0/26", "node-0", &[]);
        let mut handles = vec![handle("ipip-tunnel-addr-node-0")];
        b.allocations.push(Allocation {
            ip: "10.1.0.0".parse().unwrap(),
            handle: Some("ipip-tunnel-addr-node-0".into()),
            namespace: None,
            pod: None,
            node: Some("node-0".into()),
            kind: Some("ipipTunnelAddress".into()),
        });
        let pods = vec![
            pod_alloc(&mut b, &mut handles, "shop", "web-1", "10.1.0.1"),
            pod_alloc(&mut b, &mut handles, "shop", "web-2", "10.1.0.2"),
        ];
        let affinities = vec![Affinity {
            name: "node-0-10-1-0-0-26".into(),
            node: "node-0".into(),
            cidr: net("10.1.0.0/26"),
            state: "confirmed".into(),
            deleted: false,
        }];
        let ipam = Ipam { blocks: vec![b], affinities, handles };
        World {
            inv: Inventory::build(vec![new, old], pods, ipam),
            nodes: vec![node("node-0", &["10.1.0.0"])],
            namespaces: vec![NamespaceInfo { name: "shop".into(), ..Default::default() }],
            templates: vec![],
            failures: vec![],
            migration: None,
            expect: Expectations { targets: vec!["new".into()], from: Some("old".into()), ..Default::default() },
        }
    }

    #[test]
    fn clean_cluster_passes_everything() {
        let (cs, fig) = clean_world().run();
        let bad: Vec<_> = cs.iter().filter(|c| c.status != Severity::Pass).collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(fig.calicoctl_problems, 0);
        assert_eq!(fig.allocations, 3);
        assert_eq!(fig.in_use_ips, 3);
        assert_eq!(overall(&cs, true), Severity::Pass);
    }

    #[test]
    fn target_pool_missing_disabled_or_outside_cluster_cidr_fails() {
        let mut w = clean_world();
        w.expect.targets = vec!["nope".into(), "old".into()];
        let (cs, _) = w.run();
        let c = check(&cs, "targetPool");
        assert_eq!(c.status, Severity::Fail);
        assert_eq!(c.objects, vec!["IPPool nope", "IPPool old"]);
        assert!(
            c.message.contains("does not exist")
                && c.message.contains("disabled")
                && c.message.contains("outside the cluster CIDR"),
            "{}",
            c.message
        );
    }

    #[test]
    fn no_enabled_pool_fails_without_target() {
        let mut w = clean_world();
        w.expect.targets.clear();
        w.inv.pools[0].disabled = true;
        let (cs, _) = w.run();
        assert_eq!(check(&cs, "targetPool").status, Severity::Fail);
    }

    #[test]
    fn service_overlap_and_pool_overlap_fail() {
        let mut w = clean_world();
        let pools = vec![
            Pool::new("new", net("10.1.0.0/16")),
            Pool::new("kops", net("10.96.0.0/11")),
            Pool::new("dup", net("10.1.128.0/17")),
        ];
        w.inv = Inventory::build(pools, w.inv.pods.clone(), w.inv.ipam.clone());
        w.expect = Expectations::default();
        let (cs, _) = w.run();
        let s = check(&cs, "poolOverlapsServiceCidr");
        assert_eq!((s.status, s.objects.clone()), (Severity::Fail, vec!["IPPool kops".to_string()]));
        let o = check(&cs, "poolsOverlap");
        assert_eq!(o.status, Severity::Fail);
        assert_eq!(o.objects, vec!["IPPool new", "IPPool dup"]);
    }

    #[test]
    fn enabled_old_pool_and_half_done_migration_fail() {
        let mut w = clean_world();
        w.inv.pools[1].disabled = false;
        w.migration = Some(MigrationState {
            from_pool: "old".into(),
            from_cidr: "192.168.0.0/16".into(),
            to_pool: "new".into(),
            to_cidr: "10.1.0.0/16".into(),
            created_target: true,
            phase: Phase::MovingPods,
            started_at: "t0".into(),
            updated_at: "t1".into(),
            started_by: "me@host".into(),
            original_from_pool: serde_json::Value::Null,
            total: 4,
            done: vec!["Deployment shop/web".into()],
            failed: vec![],
        });
        let (cs, _) = w.run();
        assert_eq!(check(&cs, "oldPoolRetired").status, Severity::Fail);
        assert_eq!(check(&cs, "oldPoolRetired").objects, vec!["IPPool old"]);
        let m = check(&cs, "migrationComplete");
        assert_eq!(m.status, Severity::Fail);
        assert!(m.message.contains("MovingPods") && m.message.contains("1/4"), "{}", m.message);
    }

    #[test]
    fn pods_on_disabled_or_deleted_pool_and_outside_pools_fail() {
        let mut w = clean_world();
        let mut pods = w.inv.pods.clone();
        pods.push(pod("shop", "db-0", "192.168.1.5", OwnerKind::StatefulSet, "db"));
        pods.push(pod("shop", "stray", "172.16.0.1", OwnerKind::Bare, "stray"));
        w.inv = Inventory::build(w.inv.pools.clone(), pods.clone(), w.inv.ipam.clone());
        let (cs, _) = w.run();
        assert_eq!(
            check(&cs, "podsOnRetiredPools").objects,
            vec!["Pod shop/db-0 (192.168.1.5 in disabled IPPool old)"]
        );
        assert_eq!(check(&cs, "podsOutsidePools").objects, vec!["Pod shop/stray (172.16.0.1)"]);

        // The old pool deleted: its CIDR comes from --from-cidr.
        w.inv = Inventory::build(vec![w.inv.pools[0].clone()], pods, w.inv.ipam.clone());
        w.expect.from_cidr = Some(net("192.168.0.0/16"));
        let (cs, _) = w.run();
        assert_eq!(
            check(&cs, "podsOnRetiredPools").objects,
            vec!["Pod shop/db-0 (192.168.1.5 in deleted pool 192.168.0.0/16)"]
        );
        assert_eq!(check(&cs, "oldPoolRetired").status, Severity::Pass);
        // -n elsewhere hides them.
        w.expect.namespace = Some("other".into());
        let (cs, _) = w.run();
        assert_eq!(check(&cs, "podsOnRetiredPools").status, Severity::Pass);
    }

    #[test]
    fn pins_to_disabled_or_missing_pools_fail_naming_the_object() {
        let mut w = clean_world();
        w.namespaces.push(NamespaceInfo {
            name: "legacy".into(),
            labels: Default::default(),
            pins: PoolPins { pools: vec!["old".into()], ..Default::default() },
        });
        w.namespaces.push(NamespaceInfo {
            name: "good".into(),
            labels: Default::default(),
            pins: PoolPins { pools: vec!["10.1.0.0/16".into()], ..Default::default() },
        });
        w.templates.push(WorkloadTemplate {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "api".into(),
            pins: PoolPins { pools: vec!["gone".into()], ..Default::default() },
        });
        let mut pinned = pod("shop", "fixed", "10.1.0.9", OwnerKind::Bare, "fixed");
        pinned.pins.ip_addrs = vec!["192.168.0.7".into()];
        let mut pods = w.inv.pods.clone();
        pods.push(pinned);
        w.inv = Inventory::build(w.inv.pools.clone(), pods, w.inv.ipam.clone());
        let (cs, _) = w.run();
        let c = check(&cs, "pinnedToRetiredPool");
        assert_eq!(c.status, Severity::Fail);
        assert_eq!(c.objects, vec!["Namespace legacy", "Deployment shop/api", "Pod shop/fixed"]);
        assert!(c.message.contains("pool old is disabled"), "{}", c.message);
        assert!(c.message.contains("pool gone does not exist"), "{}", c.message);
    }

    #[test]
    fn pending_pods_report_calicos_reason() {
        let mut w = clean_world();
        let mut pods = w.inv.pods.clone();
        pods.push(pod("legacy", "old-app-1", "", OwnerKind::Deployment, "old-app"));
        pods.push(pod("legacy", "old-app-2", "", OwnerKind::Deployment, "old-app"));
        w.inv = Inventory::build(w.inv.pools.clone(), pods, w.inv.ipam.clone());
        w.failures.push(SandboxFailure {
            namespace: "legacy".into(),
            pod: "old-app-1".into(),
            message: "Failed to create pod sandbox: rpc error: plugin type=\"calico\" failed (add): the given pool (192.168.0.0/16) does not exist, or is not enabled".into(),
            count: 3,
        });
        let (cs, _) = w.run();
        let c = check(&cs, "podsPendingOnIpam");
        assert_eq!(c.objects, vec!["Pod legacy/old-app-1"]);
        assert!(
            c.message.contains("the given pool (192.168.0.0/16) does not exist, or is not enabled"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("rpc error"));
    }

    #[test]
    fn leaks_unallocated_and_handles_match_calicoctl_classes() {
        let mut w = clean_world();
        let ipam = &mut w.inv.ipam;
        // 1. a leak: an allocation for a pod that is gone.
        ipam.blocks[0].allocations.push(Allocation {
            ip: "10.1.0.7".parse().unwrap(),
            handle: Some("k8s-pod-network.gone".into()),
            namespace: Some("shop".into()),
            pod: Some("gone".into()),
            node: Some("node-0".into()),
            kind: None,
        });
        // 3. an orphan handle; 4. the leak's handle has no object (missing).
        ipam.handles.push(handle("k8s-pod-network.orphan"));
        let mut pods = w.inv.pods.clone();
        // 2a. pod IP in no active pool, no allocation; 2b. in active pool, no allocation.
        pods.push(pod("shop", "outside", "172.16.0.1", OwnerKind::Bare, "outside"));
        pods.push(pod("shop", "unalloc", "10.1.0.40", OwnerKind::Bare, "unalloc"));
        // A duplicate: two pods claim 10.1.0.1.
        pods.push(pod("shop", "twin", "10.1.0.1", OwnerKind::Bare, "twin"));
        w.inv = Inventory::build(w.inv.pools.clone(), pods, w.inv.ipam.clone());
        let (cs, fig) = w.run();
        assert_eq!(
            check(&cs, "leakedAllocations").objects,
            vec!["IP 10.1.0.7 (handle k8s-pod-network.gone, pod shop/gone, node node-0) in IPAMBlock 10-1-0-0-26"]
        );
        assert_eq!(check(&cs, "ipsOutsideActivePools").objects, vec!["Pod shop/outside (172.16.0.1)"]);
        assert_eq!(check(&cs, "ipsWithoutAllocation").objects, vec!["Pod shop/unalloc (10.1.0.40)"]);
        assert_eq!(check(&cs, "handlesWithoutIps").objects, vec!["IPAMHandle k8s-pod-network.orphan"]);
        assert_eq!(check(&cs, "missingHandles").objects, vec!["IPAMHandle k8s-pod-network.gone"]);
        assert_eq!(check(&cs, "duplicateIps").status, Severity::Fail);
        assert_eq!(fig.leaked_ips, 1);
        assert_eq!(fig.in_use_not_in_active_pool, 1);
        assert_eq!(fig.in_use_without_allocation, 1);
        assert_eq!(fig.handles_without_ips, 1);
        assert_eq!(fig.missing_handles, 1);
        assert_eq!(fig.calicoctl_problems, 4);
    }

    #[test]
    fn tunnel_allocation_without_node_annotation_is_a_leak() {
        let mut w = clean_world();
        w.nodes[0].tunnel_ips.clear();
        let (cs, fig) = w.run();
        assert_eq!(fig.leaked_ips, 1);
        assert!(check(&cs, "leakedAllocations").objects[0]
            .starts_with("IP 10.1.0.0 (handle ipip-tunnel-addr-node-0, ipipTunnelAddress"));
    }

    #[test]
    fn allocation_naming_another_pod_is_a_mismatch_not_a_calicoctl_leak() {
        let mut w = clean_world();
        w.inv.ipam.blocks[0].allocations[1].pod = Some("someone-else".into());
        let (cs, fig) = w.run();
        assert_eq!(fig.leaked_ips, 0);
        let c = check(&cs, "allocationOwnerMismatch");
        assert_eq!(c.status, Severity::Warn);
        assert!(c.objects[0].contains("pod shop/someone-else"));
        assert_eq!(overall(&cs, false), Severity::Warn);
        assert_eq!(overall(&cs, true), Severity::Fail);
    }

    #[test]
    fn affinities_of_missing_nodes_deleted_pools_and_pending_deletion() {
        let mut w = clean_world();
        w.inv.ipam.blocks.push(block("10.1.0.64/26", "node-9", &[]));
        w.inv.ipam.affinities.push(Affinity {
            name: "node-9-10-1-0-64-26".into(),
            node: "node-9".into(),
            cidr: net("10.1.0.64/26"),
            state: "confirmed".into(),
            deleted: false,
        });
        w.inv.ipam.affinities.push(Affinity {
            name: "node-0-172-30-0-0-26".into(),
            node: "node-0".into(),
            cidr: net("172.30.0.0/26"),
            state: "pendingDeletion".into(),
            deleted: false,
        });
        w.inv = Inventory::build(w.inv.pools.clone(), w.inv.pods.clone(), w.inv.ipam.clone());
        let (cs, _) = w.run();
        let c = check(&cs, "affinityForMissingNode");
        assert_eq!(c.status, Severity::Fail);
        assert_eq!(
            c.objects,
            vec![
                "BlockAffinity node-9-10-1-0-64-26 (missing Node node-9)",
                "IPAMBlock 10-1-0-64-26 (affine to missing Node node-9)"
            ]
        );
        assert_eq!(
            check(&cs, "affinityForDeletedPool").objects,
            vec!["BlockAffinity node-0-172-30-0-0-26 (172.30.0.0/26 on node-0)"]
        );
        assert_eq!(check(&cs, "affinityPendingDeletion").status, Severity::Warn);
    }

    #[test]
    fn blocks_outside_pools_and_invalid_blocks() {
        let mut w = clean_world();
        let mut bad = block("172.30.0.0/26", "node-0", &[]);
        bad.problems.push("ordinal 3 is listed twice in unallocated".into());
        w.inv.ipam.blocks.push(bad);
        w.inv = Inventory::build(w.inv.pools.clone(), w.inv.pods.clone(), w.inv.ipam.clone());
        let (cs, fig) = w.run();
        assert_eq!(
            check(&cs, "blocksOutsidePools").objects,
            vec!["IPAMBlock 172-30-0-0-26 (172.30.0.0/26, 0 allocation(s))"]
        );
        assert_eq!(check(&cs, "invalidBlocks").status, Severity::Fail);
        assert_eq!(fig.invalid_blocks, 1);
    }

    #[test]
    fn every_check_is_always_present_in_a_stable_order() {
        let (cs, _) = clean_world().run();
        let codes: Vec<_> = cs.iter().map(|c| c.code).collect();
        assert_eq!(
            codes,
            vec![
                "targetPool",
                "poolOverlapsServiceCidr",
                "poolsOverlap",
                "poolOutsideClusterCidr",
                "oldPoolRetired",
                "migrationComplete",
                "podsOnRetiredPools",
                "podsOutsidePools",
                "pinnedToRetiredPool",
                "podsPendingOnIpam",
                "leakedAllocations",
                "allocationOwnerMismatch",
                "ipsOutsideActivePools",
                "ipsWithoutAllocation",
                "duplicateIps",
                "handlesWithoutIps",
                "missingHandles",
                "affinityForMissingNode",
                "affinityForDeletedPool",
                "affinityPendingDeletion",
                "blocksOutsidePools",
                "invalidBlocks",
            ]
        );
    }

    #[test]
    fn probe_must_land_in_an_enabled_target_pool() {
        let w = clean_world();
        let nets = nets();
        let input = VerifyInput {
            inv: &w.inv,
            nodes: &w.nodes,
            namespaces: &w.namespaces,
            networks: &nets,
            migration: None,
            templates: &[],
            sandbox_failures: &[],
            expect: &w.expect,
        };
        let ok = ProbeOutcome {
            pod: "p/probe".into(),
            node: Some("node-0".into()),
            ip: Some("10.1.0.9".parse().unwrap()),
            error: None,
        };
        assert_eq!(probe_check(&input, std::slice::from_ref(&ok)).status, Severity::Pass);
        let old = ProbeOutcome { ip: Some("192.168.0.9".parse().unwrap()), ..ok.clone() };
        let c = probe_check(&input, &[ok.clone(), old]);
        assert_eq!(c.status, Severity::Fail);
        assert!(c.message.contains("disabled IPPool old"), "{}", c.message);
        let none = ProbeOutcome { ip: None, error: Some("timed out after 60s".into()), ..ok };
        let c = probe_check(&input, &[none]);
        assert_eq!(c.objects, vec!["Pod p/probe"]);
        assert!(c.message.contains("timed out"));
    }
}
