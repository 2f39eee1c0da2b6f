//! Saving the migration record after each step.

use super::Ctx;
use crate::cluster::{pause, record, Cluster};
use crate::core::state::{MigrationState, Phase};
use crate::error::{Error, Result};

/// Save progress, stopping if another process took our lease.
pub(crate) async fn checkpoint(ctx: &Ctx<'_>, state: &mut MigrationState, phase: Phase) -> Result<()> {
    if ctx.lease.lost() {
        return Err(Error::Other(
            "another process took over the migration lease; stopping (the record is left for it)".into(),
        ));
    }
    save(ctx.cluster, state, phase).await
}

pub(crate) async fn save(cluster: &Cluster, state: &mut MigrationState, phase: Phase) -> Result<()> {
    state.phase = phase;
    state.updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    record::write_state(cluster, state).await?;
    pause::point(&format!("checkpoint:{}", phase.as_str())).await;
    Ok(())
}
