//! Rules and addresses that name the old pool's CIDR: the plan's section,
//! the `--update-rules` step (before any pod moves) and its undoing.

use ipnet::IpNet;
use serde_json::Value;

use super::checkpoint::checkpoint;
use super::Ctx;
use crate::cluster::events::{self, EventTarget};
use crate::cluster::rules::{self as cluster_rules, Patched, RuleObjects};
use crate::cluster::Cluster;
use crate::core::model::PodInfo;
use crate::core::plan::Plan;
use crate::core::rules::{self, ObjectPatch, RuleChange, RulesReport};
use crate::core::state::MigrationState;
use crate::error::{Error, Result};
use crate::output::Printer;

/// Tries per object when someone edits it between our read and our patch.
const ATTEMPTS: usize = 3;

/// What the plan shows about rules for `plan` (each pair of pools it
/// moves); ipAddrsNoIpam pods in an old pool become blockers, the rest
/// warnings (the user may mean them).
pub(crate) fn report(read: &RuleObjects, pods: &[PodInfo], plan: &mut Plan, update: bool) -> RulesReport {
    let mut pairs: Vec<(IpNet, IpNet)> = vec![(plan.from.cidr, plan.to.cidr)];
    pairs.extend(plan.also.iter().map(|p| (p.from.cidr, p.to.cidr)));
    let mut reports = pairs.into_iter().map(|(old, new)| report_pair(read, pods, plan, update, old, new));
    let mut first = reports.next().expect("a plan has one pair at least");
    first.also = reports.collect();
    for u in &read.unreadable {
        plan.warnings.push(format!("could not check {u} for rules naming the old pool"));
    }
    first
}

fn report_pair(
    read: &RuleObjects,
    pods: &[PodInfo],
    plan: &mut Plan,
    update: bool,
    old: IpNet,
    new: IpNet,
) -> RulesReport {
    let mut hits = rules::hits(&read.objects, &old, &[new], Some(&new));
    hits.extend(rules::pod_hits(pods, &old, Some(&new)));
    plan.blockers.extend(rules::pod_blockers(pods, &old));
    let patches = rules::patches(&read.objects, &old, &new);
    if !hits.is_empty() {
        let objects: std::collections::BTreeSet<&str> = hits.iter().map(|h| h.object.as_str()).collect();
        plan.warnings.push(if update || patches.is_empty() {
            format!("{} object(s) name {old}; they are listed above", objects.len())
        } else {
            format!(
                "{} object(s) name {old} and will not match moved pods; add --update-rules to add {new} beside it in {} of them (listed above)",
                objects.len(),
                patches.len()
            )
        });
    }
    RulesReport {
        old_cidr: Some(old),
        new_cidr: Some(new),
        hits,
        patches,
        unreadable: read.unreadable.clone(),
        also: vec![],
    }
}

/// The plan's section: every hit with its field, and each patch, for
/// each pair of pools.
pub(crate) fn render(report: &RulesReport, update: bool, dry_run: bool) -> String {
    report.pairs().map(|r| render_pair(r, update, dry_run)).collect()
}

fn render_pair(r: &RulesReport, update: bool, dry_run: bool) -> String {
    let (Some(old), Some(new)) = (r.old_cidr, r.new_cidr) else { return String::new() };
    if r.hits.is_empty() {
        return String::new();
    }
    let mut out = format!("Rules and addresses that name {old}:\n");
    let rows =
        r.hits.iter().map(|h| vec![h.object.clone(), h.field.clone(), h.cidr.clone(), h.action.clone()]).collect();
    for line in crate::output::render_table(&["object", "field", "cidr", "action"], rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if !r.patches.is_empty() && (update || dry_run) {
        let when = if update { "before any pod moves, these" } else { "with --update-rules, these" };
        out.push_str(&format!(
            "JSON patches ({when} add {new}; each tests the list first so a concurrent edit is never overwritten):\n"
        ));
        for p in &r.patches {
            let ops = serde_json::to_string(&p.json_patch).unwrap_or_default();
            out.push_str(&format!("  {}: {ops}\n", p.target.display()));
        }
    }
    out
}

/// `--update-rules`: add the new CIDR beside the old one in every rule and
/// set that needs it, reading them afresh. Each change is written to the
/// record before its patch goes out, so a crash can never leave an addition
/// the rollback does not know about.
pub(crate) async fn update(ctx: &Ctx<'_>, plan: &Plan, state: &mut MigrationState) -> Result<()> {
    let mut pairs: Vec<(IpNet, IpNet)> = vec![(plan.from.cidr, plan.to.cidr)];
    pairs.extend(plan.also.iter().map(|p| (p.from.cidr, p.to.cidr)));
    // Read afresh per pair: the first pair's patches may have changed an
    // object (a set naming both old pools) the second pair patches too.
    for (old, new) in pairs {
        let read = cluster_rules::read(ctx.cluster, ctx.calico).await?;
        for p in rules::patches(&read.objects, &old, &new) {
            apply_one(ctx, p, state, &old, &new).await?;
        }
    }
    Ok(())
}

async fn apply_one(
    ctx: &Ctx<'_>,
    mut p: ObjectPatch,
    state: &mut MigrationState,
    old: &IpNet,
    new: &IpNet,
) -> Result<()> {
    let phase = state.phase;
    for _ in 0..ATTEMPTS {
        // A change recorded by a run whose patch was lost is not recorded twice.
        for c in &p.changes {
            if !state.rule_changes.contains(c) {
                state.rule_changes.push(c.clone());
            }
        }
        checkpoint(ctx, state, phase).await?;
        match cluster_rules::json_patch(ctx.cluster, &p.target, &p.json_patch).await? {
            Patched::Done => {
                for c in &p.changes {
                    event(
                        ctx.cluster,
                        c,
                        &format!("kubectl-ippool migrate --update-rules: added {new} beside {old} in {}", c.field),
                    )
                    .await;
                    ctx.printer.note(format!("{} (beside {old}).", c.describe()));
                }
                return Ok(());
            }
            Patched::Conflict(why) | Patched::Unknown(why) => {
                tracing::debug!("{} changed under us, or the patch may have landed: {why}", p.target.display());
                // What is there decides: an entry that is in the list stays
                // recorded (a patch that landed before its answer was lost,
                // and whose repeat then failed its `test`, is ours).
                let body = cluster_rules::get(ctx.cluster, &p.target).await?;
                let present = |c: &RuleChange| body.as_ref().is_some_and(|b| rules::removal_ops(b, c).is_ok());
                state.rule_changes.retain(|c| !p.changes.contains(c) || present(c));
                checkpoint(ctx, state, phase).await?;
                let Some(body) = body else { return Ok(()) };
                let fresh = rules::RuleObject { class: p.class, target: p.target.clone(), body };
                match rules::patches(std::slice::from_ref(&fresh), old, new).pop() {
                    Some(next) => p = next,
                    None => return Ok(()),
                }
            }
        }
    }
    Err(Error::Other(format!(
        "{} kept changing while --update-rules patched it; run the same command again (the record keeps what was added)",
        p.target.display()
    )))
}

async fn event(cluster: &Cluster, c: &RuleChange, message: &str) {
    let t = &c.target;
    let target =
        EventTarget { api_version: &t.api_version, kind: &t.kind, namespace: t.namespace.as_deref(), name: &t.name };
    events::record_event(cluster, target, message).await;
}

/// `--rollback`: take out exactly the entries `--update-rules` added (the
/// last equal entry of each list, guarded by a `test`); what someone else
/// added or removed since stays as it is. Removed changes leave the record.
pub(crate) async fn undo(printer: &Printer, cluster: &Cluster, state: &mut MigrationState) -> Result<()> {
    let mut failed = Vec::new();
    for c in std::mem::take(&mut state.rule_changes).into_iter().rev() {
        match undo_one(cluster, &c).await {
            Ok(None) => {
                event(
                    cluster,
                    &c,
                    &format!("kubectl-ippool migrate --rollback: removed {} from {}", added(&c), c.field),
                )
                .await;
                printer.note(format!("{} {}: removed {}.", c.target.display(), c.field, added(&c)));
            }
            Ok(Some(why)) => printer.warn(format!("{} {}: nothing to remove: {why}", c.target.display(), c.field)),
            Err(e) => {
                failed.push(format!("{}: {e}", c.describe()));
                state.rule_changes.insert(0, c);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "could not take back what --update-rules added (kept in the record; run --rollback again):\n  - {}",
            failed.join("\n  - ")
        )))
    }
}

fn added(c: &RuleChange) -> String {
    match &c.added {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Ok(None): removed; Ok(Some(why)): there was nothing to remove.
async fn undo_one(cluster: &Cluster, c: &RuleChange) -> Result<Option<String>> {
    for _ in 0..ATTEMPTS {
        let Some(body) = cluster_rules::get(cluster, &c.target).await? else {
            return Ok(Some("the object is gone".into()));
        };
        let ops = match rules::removal_ops(&body, c) {
            Ok(ops) => ops,
            Err(why) => return Ok(Some(why)),
        };
        // After a conflict, or an answer lost, the next look decides (an
        // entry already gone is "nothing to remove").
        match cluster_rules::json_patch(cluster, &c.target, &ops).await? {
            Patched::Done => return Ok(None),
            Patched::Conflict(why) | Patched::Unknown(why) => {
                tracing::debug!("{} changed under us: {why}", c.target.display())
            }
        }
    }
    Err(Error::Other(format!("{} kept changing", c.target.display())))
}

/// What `--rollback --dry-run` would take back.
pub(crate) fn describe_undo(state: &MigrationState) -> Vec<String> {
    state.rule_changes.iter().map(|c| format!("remove {} from {} {}", added(c), c.target.display(), c.field)).collect()
}
