//! Saving the migration record after each step.

use super::Ctx;
use crate::cluster::{pause, record, Cluster};
use crate::core::state::{MigrationState, Phase};
use crate::error::{Error, Result};

/// Save progress, stopping if another process took our lease.
pub(crate) async fn checkpoint(ctx: &Ctx<'_>, state: &mut MigrationState, phase: Phase) -> Result<()> {
    stop_if_lease_lost(ctx)?;
    save(ctx.cluster, state, phase).await
}

/// An error once the lease is no longer surely ours: nothing new may start.
pub(crate) fn stop_if_lease_lost(ctx: &Ctx<'_>) -> Result<()> {
    match ctx.lease.why_lost() {
        Some(why) => Err(Error::Other(format!(
            "{why}; stopping: nothing new is started (the record is left for the run that holds the lease, or for the same command run again)"
        ))),
        None => Ok(()),
    }
}

pub(crate) async fn save(cluster: &Cluster, state: &mut MigrationState, phase: Phase) -> Result<()> {
    state.phase = phase;
    state.updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    record::write_state(cluster, state).await?;
    pause::point(&format!("checkpoint:{}", phase.as_str())).await;
    Ok(())
}

/// The record read again once the lease is held: the one to carry on
/// with, or a refusal when another run started, ended or replaced the
/// migration while this one waited (at its prompt, say). Nothing is
/// written either way.
pub(crate) async fn reread(
    cluster: &Cluster,
    planned: Option<&MigrationState>,
    action: &str,
) -> Result<Option<MigrationState>> {
    let fresh = record::read_state(cluster).await?;
    crate::core::state::recheck_record(planned, fresh.as_ref())
        .map_err(|why| Error::refused(format!("{action} (nothing was changed)"), vec![why]))
}

/// `reread` for a run that planned with a record (a resume, a rollback).
pub(crate) async fn reread_planned(
    cluster: &Cluster,
    planned: &MigrationState,
    action: &str,
) -> Result<MigrationState> {
    reread(cluster, Some(planned), action)
        .await?
        .ok_or_else(|| Error::Other(format!("{action}: the migration record is gone")))
}
