//! `kubectl ippool migrate`: move every pod off a pool. (placeholder)

use clap::Args;

use crate::cli::KubeArgs;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The pool to move pods off (name).
    #[arg(long)]
    pub from: String,
}

pub async fn run(_kube: &KubeArgs, _args: &MigrateArgs) -> Result<i32> {
    Err(crate::error::Error::Other("migrate is not implemented yet".into()))
}
