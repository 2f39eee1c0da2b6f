//! How a run starts: `--from`/`--to` given twice paired by IP family, an
//! unfinished record resumed (or another migration refused), and the new
//! record.

use kube::api::DynamicObject;
use serde_json::Value;

use crate::cluster::lease::LeaseGuard;
use crate::core::plan::{self, Plan, TargetRequest};
use crate::core::state::{MigrationState, PairRecord, Phase};
use crate::error::{Error, Result};

use super::MigrateOptions;

/// The options with `--from` and targets given twice paired by IP family
/// (as recorded, when they name the unfinished migration in `record`).
pub(super) fn paired(
    opts: &MigrateOptions,
    inv: &crate::core::inventory::Inventory,
    record: Option<&MigrationState>,
) -> Result<MigrateOptions> {
    let froms: Vec<String> = std::iter::once(opts.from.clone()).chain(opts.more_from.iter().cloned()).collect();
    let targets: Vec<TargetRequest> = std::iter::once(opts.to.clone()).chain(opts.more_to.iter().cloned()).collect();
    if let Some(all) = record.and_then(|r| every_recorded_pair(r, &froms, &targets)) {
        // Fewer pairs than the unfinished record holds: resuming only those
        // would close the whole migration with the others half done.
        let mut all = all.into_iter();
        let (from, to) = all.next().expect("a record has one pair at least");
        return Ok(MigrateOptions {
            from,
            to,
            also: all.collect(),
            more_from: vec![],
            more_to: vec![],
            ..opts.clone()
        });
    }
    if opts.more_from.is_empty() && opts.more_to.is_empty() {
        return Ok(opts.clone());
    }
    let recorded: Vec<(String, String, String)> = record
        .filter(|r| !r.phase.is_finished())
        .map(|r| r.pairs().into_iter().map(|p| (p.from_pool, p.to_pool, p.to_cidr)).collect())
        .unwrap_or_default();
    let mut pairs = match plan::pair_as_recorded(&froms, &targets, &recorded) {
        Some(p) => p,
        None => plan::pair_by_family(&froms, &targets, inv).map_err(|reasons| {
            Error::refused(format!("migrate {} (nothing was changed)", froms.join(" and ")), reasons)
        })?,
    };
    if pairs.len() > 1 {
        let o = &opts.overrides;
        let per_pool: Vec<&str> = [
            (o.name.is_some(), "--name"),
            (o.block_size.is_some(), "--block-size"),
            (o.ipip_mode.is_some(), "--ipip-mode"),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect();
        if !per_pool.is_empty() {
            return Err(Error::refused(
                format!("migrate {} (nothing was changed)", froms.join(" and ")),
                vec![format!(
                    "{} cannot apply to both an IPv4 and an IPv6 pool; leave it out (each new pool copies its old pool) or migrate the families one at a time",
                    per_pool.join(", ")
                )],
            ));
        }
    }
    let (from, to) = pairs.remove(0);
    Ok(MigrateOptions { from, to, also: pairs, more_from: vec![], more_to: vec![], ..opts.clone() })
}

/// Every pair of the unfinished `record`, when `--from`/`--to` name only
/// some of them (each given pool with its recorded target).
fn every_recorded_pair(
    record: &MigrationState,
    froms: &[String],
    targets: &[TargetRequest],
) -> Option<Vec<(String, TargetRequest)>> {
    let recorded = record.pairs();
    if record.phase.is_finished() || froms.len() != targets.len() || froms.len() >= recorded.len() {
        return None;
    }
    let named = |from: &String, to: &TargetRequest| {
        recorded.iter().any(|p| {
            &p.from_pool == from
                && match to {
                    TargetRequest::Cidr(c) => c.trim() == p.to_cidr,
                    TargetRequest::Pool(n) => n == &p.to_pool,
                }
        })
    };
    if !froms.iter().zip(targets).all(|(f, t)| named(f, t)) {
        return None;
    }
    Some(recorded_targets(record))
}

/// Each recorded pair with the target that names it again: its CIDR when
/// the run created the pool, else the pool.
fn recorded_targets(record: &MigrationState) -> Vec<(String, TargetRequest)> {
    record
        .pairs()
        .into_iter()
        .map(|p| {
            let to = if p.created_target { TargetRequest::Cidr(p.to_cidr) } else { TargetRequest::Pool(p.to_pool) };
            (p.from_pool, to)
        })
        .collect()
}

/// An unfinished record for the same `--from` is resumed; one for another
/// pool refuses (one migration at a time).
pub(super) fn resumable_record(rec: Option<&MigrationState>, opts: &MigrateOptions) -> Result<Option<MigrationState>> {
    let Some(rec) = rec.filter(|r| !r.phase.is_finished()) else { return Ok(None) };
    let same_target = match &opts.to {
        TargetRequest::Cidr(c) => {
            c.trim() == rec.to_cidr && opts.overrides.name.as_ref().is_none_or(|n| n == &rec.to_pool)
        }
        TargetRequest::Pool(p) => p == &rec.to_pool,
    };
    if rec.from_pool == opts.from && same_target {
        return Ok(Some(rec.clone()));
    }
    Err(Error::refused(
        format!("start a migration from {}", opts.from),
        vec![format!(
            "a migration from {} to {} is recorded in phase {} (started {} by {}); run `{}` to finish it, or `kubectl ippool migrate --from {} --rollback` to undo it",
            rec.old_pools(), rec.new_pools(), rec.phase.as_str(), rec.started_at, rec.started_by, rec.resume_command(), rec.from_pool
        )],
    ))
}

pub(super) fn new_record(plan: &Plan, lease: &LeaseGuard, originals: Vec<Option<DynamicObject>>) -> MigrationState {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let as_value = |o: Option<&Option<DynamicObject>>| {
        o.and_then(|o| o.as_ref()).and_then(|o| serde_json::to_value(o).ok()).unwrap_or(Value::Null)
    };
    let also = plan
        .also
        .iter()
        .enumerate()
        .map(|(i, p)| PairRecord {
            from_pool: p.from.name.clone(),
            from_cidr: p.from.cidr.to_string(),
            to_pool: p.to.name.clone(),
            to_cidr: p.to.cidr.to_string(),
            created_target: p.create_target,
            original_from_pool: as_value(originals.get(i + 1)),
        })
        .collect();
    MigrationState {
        from_pool: plan.from.name.clone(),
        from_cidr: plan.from.cidr.to_string(),
        to_pool: plan.to.name.clone(),
        to_cidr: plan.to.cidr.to_string(),
        created_target: plan.create_target,
        phase: Phase::Started,
        started_at: now.clone(),
        updated_at: now,
        started_by: lease.identity().to_string(),
        original_from_pool: as_value(originals.first()),
        total: plan.pod_count(),
        pods_moved: 0,
        done: vec![],
        failed: vec![],
        rule_changes: vec![],
        also,
    }
}
