//! A failed canary ends the migration with nothing changed: the old pool
//! enabled (again, for a record of an older version that had disabled it),
//! the new pool deleted if this run created it (else left as found), rule
//! entries `--update-rules` added taken back, the record RolledBack.

use super::checkpoint::checkpoint;
use super::Ctx;
use crate::core::plan::Plan;
use crate::core::state::{MigrationState, Phase};
use crate::error::{Error, Result};

pub(crate) async fn abandon(ctx: &Ctx<'_>, plan: &Plan, state: &mut MigrationState, failed: &[String]) -> Result<()> {
    let mut done = Vec::new();
    let records = state.pairs();
    for (from, to, _) in plan.pairs() {
        let rec = records.iter().find(|r| r.from_pool == from.name);
        let was_disabled = rec
            .and_then(|r| r.original_from_pool.pointer("/spec/disabled"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(from.disabled);
        ctx.writer.set_disabled(&from.name, was_disabled).await?;
        done.push(format!(
            "IPPool {} {}",
            from.name,
            if was_disabled { "left disabled, as it was" } else { "stays enabled" }
        ));
        if rec.is_some_and(|r| r.created_target) {
            ctx.writer.delete_safely(to, None).await?;
            done.push(format!("IPPool {} (created by this run) deleted", to.name));
        } else {
            done.push(format!("IPPool {} left as it was", to.name));
        }
    }
    if !state.rule_changes.is_empty() {
        super::rules::undo(ctx.printer, ctx.cluster, state).await?;
        done.push("the rule entries --update-rules added taken out".into());
    }
    checkpoint(ctx, state, Phase::RolledBack).await?;
    let cidrs: Vec<String> = plan.new_cidrs().iter().map(|c| c.to_string()).collect();
    Err(Error::Other(format!(
        "the canary failed, so no pod was moved:\n  - {}\n{}.\nTraffic between the new pool {} and the old pool does not flow: check that every node routes {} (BGP peering or route reflectors, a cloud route table, firewall or security-group rules, the pool's IPIP/VXLAN mode), then run the same command again.",
        failed.join("\n  - "),
        done.join("; "),
        cidrs.join(" and "),
        cidrs.join(" and ")
    )))
}
