//! Undoing and closing: `--rollback`, and closing a record whose old pool
//! is already gone.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::checkpoint::save;
use crate::cluster::calico::{Calico, Kind};
use crate::cluster::events::{self, EventTarget};
use crate::cluster::lease::LeaseGuard;
use crate::cluster::listing::Freshness;
use crate::cluster::pools::PoolWriter;
use crate::cluster::{canary, movers, record, workloads, Cluster};
use crate::core::rules::RuleChange;
use crate::core::state::{MigrationState, PairRecord, Phase};
use crate::error::{Error, Result};
use crate::output::Printer;

/// What `--rollback` needs to know.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub from: String,
    pub timeout: Duration,
    pub dry_run: bool,
    pub yes: bool,
}

/// The old pool no longer exists but the record was not closed (killed
/// right after the delete, or someone deleted the pool): close it, but only
/// once no pod still holds one of its addresses. A dry run, and a run not
/// yet confirmed, only say so: no lease, no record change.
pub(crate) async fn finish_without_pool(
    printer: &Printer,
    cluster: &Cluster,
    state: MigrationState,
    dry_run: bool,
    yes: bool,
) -> Result<()> {
    let pairs: Vec<(Option<IpNet>, Option<IpNet>)> =
        state.pairs().iter().map(|p| (p.from_cidr.parse().ok(), p.to_cidr.parse().ok())).collect();
    let on_old = |ip: &IpAddr| {
        pairs.iter().any(|(old, new)| old.is_some_and(|o| o.contains(ip)) && !new.is_some_and(|n| n.contains(ip)))
    };
    let left: Vec<String> = workloads::list_pods(cluster, None)
        .await?
        .iter()
        .filter(|p| p.holds_pool_ip() && p.ips.iter().any(on_old))
        .map(|p| format!("{} ({})", p.key(), p.owner.display()))
        .collect();
    if !left.is_empty() {
        return Err(Error::refused(
            format!("close the migration from {}", state.from_pool),
            vec![format!(
                "IPPool {} is gone, but {} pod(s) still hold addresses of {}: {}; give them new ones (kubectl rollout restart their workloads, or evict the pods), then run the same command again",
                state.from_pool,
                left.len(),
                state.from_cidr,
                crate::core::findings::name_some(&left)
            )],
        ));
    }
    if dry_run {
        printer.note(format!(
            "IPPool {} is already deleted and no pod holds its addresses: a run closes the migration record.",
            state.from_pool
        ));
        printer.note("Dry run: nothing was changed.");
        return Ok(());
    }
    printer.confirm(
        &format!(
            "IPPool {} is already deleted; close the migration record in {}?",
            state.from_pool,
            cluster.describe()
        ),
        yes,
    )?;
    let lease = LeaseGuard::acquire(cluster).await?;
    let r = async {
        let action = format!("close the migration from {}", state.from_pool);
        let mut state = super::checkpoint::reread_planned(cluster, &state, &action).await?;
        printer.note(format!("IPPool {} is already deleted; closing the migration record.", state.from_pool));
        save(cluster, &mut state, Phase::Done).await
    }
    .await;
    lease.release().await;
    r?;
    printer.stdout(&format!("Migration from {} to {} is done.\n", state.from_pool, state.to_pool))?;
    Ok(())
}

/// `--rollback`: before the old pool is deleted, re-enable it and disable
/// the new one. Pods already moved keep their addresses (a disabled pool
/// only stops new allocations).
pub async fn rollback(printer: &Printer, cluster: &Cluster, calico: &Calico, opts: &RollbackOptions) -> Result<()> {
    let rec = record::read_state(cluster).await?;
    let Some(mut state) = rec.filter(|r| r.pairs().iter().any(|p| p.from_pool == opts.from) && !r.phase.is_finished())
    else {
        return Err(Error::refused(
            format!("roll back a migration from {}", opts.from),
            vec![format!("no unfinished migration from {} is recorded", opts.from)],
        ));
    };
    if state.phase >= Phase::SourceDeleted {
        return Err(Error::refused(
            format!("roll back the migration from {}", opts.from),
            vec![format!(
                "IPPool {} was already deleted (phase {}); re-create it by hand if needed",
                state.from_pool,
                state.phase.as_str()
            )],
        ));
    }
    // Undo exactly what this migration changed: each old pool goes back to
    // how the record found it; a new pool is disabled only if this
    // migration created it (a pool that existed before is left as it is).
    let pairs = state.pairs();
    let was_disabled = |p: &PairRecord| {
        p.original_from_pool.pointer("/spec/disabled").and_then(serde_json::Value::as_bool).unwrap_or(false)
    };
    for p in &pairs {
        let from_after = if was_disabled(p) { "leave IPPool {} disabled, as it was" } else { "re-enable IPPool {}" }
            .replace("{}", &p.from_pool);
        let to_after = if p.created_target {
            format!("disable IPPool {}, which this migration created", p.to_pool)
        } else {
            format!("leave IPPool {} as it was (it existed before)", p.to_pool)
        };
        printer.note(format!(
            "Rollback in {}: {from_after}, {to_after} (pods already moved keep their addresses).",
            cluster.describe()
        ));
    }
    for line in super::rules::describe_undo(&state) {
        printer.note(format!("  {line} (added by --update-rules)"));
    }
    if opts.dry_run {
        printer.note("Dry run: nothing was changed.");
        return Ok(());
    }
    printer.confirm("Roll back?", opts.yes)?;
    let lease = LeaseGuard::acquire(cluster).await?;
    let r = async {
        let action = format!("roll back the migration from {}", opts.from);
        // What another run added since (rule entries) is undone too.
        state = super::checkpoint::reread_planned(cluster, &state, &action).await?;
        let pools = calico.list_pools(cluster).await?;
        let w = PoolWriter::where_listed(cluster, calico, opts.timeout);
        let av = calico.resource(Kind::IPPool).api_version;
        for p in &pairs {
            w.set_disabled(&p.from_pool, was_disabled(p)).await?;
            if p.created_target && pools.iter().any(|x| x.name == p.to_pool) {
                // calico-node's tunnel allocator drops a pool change that
                // arrives while it handles the last one: its tunnel address
                // would stay in the disabled new pool.
                tokio::time::sleep(super::phases::TUNNEL_ALLOCATOR_SETTLE).await;
                w.set_disabled(&p.to_pool, true).await?;
            }
            events::record_event(
                cluster,
                EventTarget { api_version: &av, kind: "IPPool", namespace: None, name: &p.from_pool },
                "kubectl-ippool migrate --rollback: re-enabled",
            )
            .await;
        }
        canary::cleanup_leftovers(cluster).await;
        movers::uncordon_ours(cluster).await?;
        movers::unsurge_ours(cluster).await?;
        let needed = keep_rules_still_needed(printer, cluster, &pairs, &mut state, opts.timeout).await?;
        let undone = super::rules::undo(printer, cluster, &mut state).await;
        state.rule_changes.extend(needed);
        if undone.is_err() || !state.rule_changes.is_empty() {
            // Keep the record open with what is left to take back.
            let phase = state.phase;
            save(cluster, &mut state, phase).await?;
            return undone;
        }
        save(cluster, &mut state, Phase::RolledBack).await
    }
    .await;
    lease.release().await;
    r?;
    for p in &pairs {
        let from_done = if was_disabled(p) { "left disabled" } else { "enabled" };
        let to_done = if p.created_target { "disabled" } else { "left as it was" };
        printer
            .stdout(&format!("Rolled back: IPPool {} {from_done}, IPPool {} {to_done}.\n", p.from_pool, p.to_pool))?;
    }
    Ok(())
}

/// How long a rollback waits for node tunnel addresses to move back to the
/// re-enabled old pool before it keeps their rule entries.
const TUNNEL_RETURN: Duration = Duration::from_secs(60);

/// Takes out of `state` the rule entries something still needs: a pod or a
/// node tunnel holding an address of the new pool they added (its allow
/// rules must go on matching, its traffic must not be masqueraded), and
/// says so. They stay in the record for a later `--rollback` (or the
/// migration's completion) to deal with.
async fn keep_rules_still_needed(
    printer: &Printer,
    cluster: &Cluster,
    pairs: &[PairRecord],
    state: &mut MigrationState,
    timeout: Duration,
) -> Result<Vec<RuleChange>> {
    if state.rule_changes.is_empty() {
        return Ok(vec![]);
    }
    let new_cidrs: Vec<IpNet> = pairs.iter().filter_map(|p| p.to_cidr.parse().ok()).collect();
    // Rules are cluster-wide: so are the pods that need them, whatever -n says.
    let everywhere = Cluster { namespace: None, ..cluster.clone() };
    let mut held = holders_of(&everywhere, &new_cidrs).await?;
    if !held.is_empty() && held.iter().all(|h| h.name.starts_with("node ")) {
        // calico-node moves tunnel addresses back to the re-enabled pool by itself.
        printer.note("Waiting for node tunnel addresses to move back to the old pool...");
        workloads::wait_tunnels_leave(&everywhere, &new_cidrs, timeout.min(TUNNEL_RETURN)).await?;
        held = holders_of(&everywhere, &new_cidrs).await?;
    }
    let (needed, free) = crate::core::rules::split_needed(std::mem::take(&mut state.rule_changes), &held);
    state.rule_changes = free;
    if !needed.is_empty() {
        let names: Vec<String> = held.iter().map(|h| format!("{} ({})", h.name, h.ip)).collect();
        let cidrs: Vec<String> = new_cidrs.iter().map(|c| c.to_string()).collect();
        printer.warn(format!(
            "kept the {} entr(ies) --update-rules added: {} address(es) of {} are still held ({}); their rules must go on matching them. Once nothing does (restart those pods: they get addresses of the old pool again; calico-node moves node tunnel addresses back by itself), run `kubectl ippool migrate --from {} --rollback` again to take the entries out; the migration record stays open until then.",
            needed.len(),
            held.len(),
            cidrs.join(" and "),
            crate::core::findings::name_some(&names),
            state.from_pool
        ));
    }
    Ok(needed)
}

async fn holders_of(cluster: &Cluster, cidrs: &[IpNet]) -> Result<Vec<crate::core::rules::Holder>> {
    let (mut pods, nodes) =
        tokio::try_join!(workloads::list_pods(cluster, None), workloads::list_nodes(cluster, Freshness::Consistent))?;
    // This tool's own test pods (their namespaces are being deleted) need no rule.
    let ours = [canary::CANARY_NAMESPACE_PREFIX, crate::cluster::probe::PROBE_NAMESPACE_PREFIX];
    pods.retain(|p| !ours.iter().any(|prefix| p.key().starts_with(prefix)));
    Ok(crate::core::rules::holders(&pods, &nodes, cidrs))
}
