//! The drain: wait until nothing holds an address of the old pool. An
//! address no pod and no node uses (leaked: its pod is gone but CNI DEL
//! never released it) is named; then either calico-kube-controllers
//! releases it after its leakGracePeriod (we wait, showing when), or with
//! `--release-leaked` we release it ourselves once it is verified unused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::cluster::leaks;
use crate::core::findings::name_some;
use crate::core::leaks::Leak;
use crate::core::model::Pool;
use crate::error::{Error, Result};

/// How long an address must be seen leaked before it is treated as such
/// (a pod deleted a moment ago may still be in our pod list's past).
const SETTLE: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_secs(2);
const RECHECK: Duration = Duration::from_secs(10);
const RECHECK_GC: Duration = Duration::from_secs(60);
/// How long node tunnel addresses may stay put, alone in the old pool,
/// before we say that calico-node seems to have missed the change.
const TUNNEL_STALL: Duration = Duration::from_secs(45);

/// Whether everything left is a node tunnel address (as `scan_pool` describes them).
fn only_tunnels(remaining: &[String]) -> bool {
    remaining.iter().all(|r| r.contains("TunnelAddress)") || r.contains("(tunnel address of node "))
}

pub(crate) async fn drain(ctx: &Ctx<'_>, from: &Pool, to: &Pool) -> Result<()> {
    let deadline = Instant::now() + ctx.opts.timeout;
    let mut first_seen: HashMap<IpAddr, Instant> = HashMap::new();
    let mut announced: Vec<IpAddr> = Vec::new();
    let mut waiting_noted: Vec<IpAddr> = Vec::new();
    let mut tunnels_since: Option<(Vec<String>, Instant)> = None;
    let mut stall_warned = false;
    loop {
        let scan = leaks::scan_pool(ctx.cluster, ctx.calico, &from.cidr, to.cidr).await?;
        if scan.remaining.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if !only_tunnels(&scan.remaining) {
            tunnels_since = None;
        } else if tunnels_since.as_ref().is_none_or(|(left, _)| *left != scan.remaining) {
            tunnels_since = Some((scan.remaining.clone(), now));
        } else if let Some((_, since)) = &tunnels_since {
            if !stall_warned && now.duration_since(*since) >= TUNNEL_STALL {
                stall_warned = true;
                ctx.printer.warn(format!(
                    "only node tunnel addresses are left in {}, unchanged for {}: {}. calico-node moves a tunnel address when an IP pool changes or when it restarts, and can miss a change that arrives while it handles another; restart calico-node on those nodes (delete its pod there) if they do not move.",
                    from.name,
                    humantime::format_duration(TUNNEL_STALL),
                    name_some(&scan.remaining)
                ));
            }
        }
        first_seen.retain(|ip, _| scan.leaks.iter().any(|l| l.allocation.ip == *ip));
        for l in &scan.leaks {
            first_seen.entry(l.allocation.ip).or_insert(now);
        }
        let settled: Vec<&Leak> =
            scan.leaks.iter().filter(|l| now.duration_since(first_seen[&l.allocation.ip]) >= SETTLE).collect();
        let mut ips: Vec<IpAddr> = settled.iter().map(|l| l.allocation.ip).collect();
        ips.sort();
        if !settled.is_empty() && ips != announced {
            let names: Vec<String> = settled.iter().map(|l| l.describe()).collect();
            ctx.printer.warn(format!(
                "{} address(es) of {} are still allocated but no pod and no node uses them (leaked, e.g. a failed CNI DEL): {}",
                settled.len(),
                from.name,
                name_some(&names)
            ));
            announced = ips.clone();
            handle_leaks_announced(ctx, from, &settled, deadline).await?;
        }
        let mut young = None;
        if ctx.opts.release_leaked && !settled.is_empty() {
            young = release_old_enough(ctx, from, &settled, &mut waiting_noted).await?;
        }
        if Instant::now() >= deadline {
            let hint = if scan.leaks.is_empty() {
                String::new()
            } else if let Some((n, grace)) = young {
                format!(
                    " {n} leaked address(es) are younger than leakGracePeriod {}: --release-leaked releases an address only once it is older, so run the same command again after that.",
                    humantime::format_duration(grace)
                )
            } else {
                " Leaked addresses can be released with --release-leaked or `calicoctl ipam release --ip=<ip>`.".into()
            };
            return Err(Error::Timeout {
                what: format!(
                    "the addresses of {} to be released; still allocated: {} (check `calicoctl ipam show --ip=<ip>`; the old pool stays disabled and is not deleted, re-run to continue).{hint}",
                    from.name,
                    name_some(&scan.remaining)
                ),
                after: ctx.opts.timeout,
            });
        }
        // Look again when a block of the old pool changes; at most every
        // POLL, and at least every RECHECK (leak ages and grace periods are
        // clocks; a wait for kube-controllers only ends with a block change).
        tokio::time::sleep(POLL).await;
        let only_leaks_left = scan.remaining.len() == settled.len() && !ctx.opts.release_leaked;
        let recheck = if only_leaks_left { RECHECK_GC } else { RECHECK };
        leaks::wait_block_change(
            ctx.cluster,
            ctx.calico,
            &from.cidr,
            recheck.min(deadline.saturating_duration_since(Instant::now())),
        )
        .await?;
    }
}

/// Say what happens to newly found leaks: who releases them, and when. Stops
/// the run when nobody ever will.
async fn handle_leaks_announced(ctx: &Ctx<'_>, from: &Pool, settled: &[&Leak], deadline: Instant) -> Result<()> {
    let policy = leaks::read_gc_policy(ctx.cluster).await?;
    if ctx.opts.release_leaked {
        ctx.printer.note(format!(
            "--release-leaked: releasing them once allocated longer than leakGracePeriod {} ({}), as calicoctl ipam release would",
            humantime::format_duration(policy.grace),
            policy.grace_source
        ));
        return Ok(());
    }
    if let Some(why) = policy.never_because {
        let ips: Vec<String> = settled.iter().map(|l| l.allocation.ip.to_string()).collect();
        return Err(Error::Other(format!(
            "the leaked addresses of {} will never be released by calico-kube-controllers: {why}. Release them with `kubectl ippool migrate ... --release-leaked` (or `calicoctl ipam release --ip={}` each) and run the same command again; {} stays disabled and is not deleted while it holds allocations.",
            from.name,
            ips.first().cloned().unwrap_or_default(),
            from.name
        )));
    }
    // kube-controllers confirms a leak after leakGracePeriod and releases it on
    // its next sync, which runs every leakGracePeriod / 2.
    let expected = policy.grace + policy.grace / 2;
    let by = chrono::Utc::now() + chrono::Duration::from_std(expected).unwrap_or_default();
    ctx.printer.note(format!(
        "Waiting for calico-kube-controllers to release them: leakGracePeriod {} ({}), so by about {} (leakGracePeriod after it noticed each leak, plus up to half of it for its next sync).",
        humantime::format_duration(policy.grace),
        policy.grace_source,
        by.format("%H:%M:%S UTC")
    ));
    if Instant::now() + expected > deadline {
        ctx.printer.warn(format!(
            "that is after this run's --timeout {}: raise --timeout, or use --release-leaked to release them now",
            humantime::format_duration(ctx.opts.timeout)
        ));
    }
    Ok(())
}

/// `--release-leaked`: release the settled leaks allocated longer ago than
/// the grace period (or of unknown age: then only "no pod, no node uses it"
/// was verified, and we say so); note once when one is still too young.
/// Returns how many are still too young, and the grace period, if any are.
async fn release_old_enough(
    ctx: &Ctx<'_>,
    from: &Pool,
    settled: &[&Leak],
    noted: &mut Vec<IpAddr>,
) -> Result<Option<(usize, Duration)>> {
    let policy = leaks::read_gc_policy(ctx.cluster).await?;
    let now = chrono::Utc::now();
    let mut ready: Vec<Leak> = Vec::new();
    let mut too_young = 0;
    for l in settled {
        match l.older_than(policy.grace, now) {
            Some(true) => ready.push((*l).clone()),
            None => {
                ctx.printer.warn(format!(
                    "{}: its allocation time is unknown (no timestamp attribute); verified only that no pod and no node uses it",
                    l.describe()
                ));
                ready.push((*l).clone());
            }
            Some(false) => {
                too_young += 1;
                if !noted.contains(&l.allocation.ip) {
                    let at =
                        l.allocated_at.unwrap_or(now) + chrono::Duration::from_std(policy.grace).unwrap_or_default();
                    ctx.printer.note(format!(
                        "{} was allocated less than leakGracePeriod ago; releasing it at {}",
                        l.describe(),
                        at.format("%H:%M:%S UTC")
                    ));
                    noted.push(l.allocation.ip);
                }
            }
        }
    }
    let young = (too_young > 0).then_some((too_young, policy.grace));
    if ready.is_empty() {
        return Ok(young);
    }
    let released = leaks::release(ctx.cluster, ctx.calico, &from.name, &ready).await?;
    for ip in released {
        ctx.printer.note(format!("released leaked address {ip} of {} (recorded as an Event)", from.name));
    }
    Ok(young)
}

#[cfg(test)]
mod tests {
    use super::only_tunnels;

    #[test]
    fn only_tunnels_tells_tunnel_addresses_from_pods_and_leaks() {
        assert!(only_tunnels(&[
            "192.168.116.1 (ipipTunnelAddress)".into(),
            "192.168.19.65 (vxlanTunnelAddress)".into(),
            "192.168.7.1 (tunnel address of node n1, no longer allocated)".into(),
        ]));
        assert!(!only_tunnels(&["192.168.116.1 (ipipTunnelAddress)".into(), "192.168.1.5 (pod shop/web-1)".into()]));
        assert!(!only_tunnels(&["192.168.1.6 (k8s-pod-network.0123)".into()]));
    }
}
