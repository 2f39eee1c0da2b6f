//! `kubectl ippool verify`: is pod networking clean? (placeholder)

use clap::Args;

use crate::cli::{KubeArgs, OutputFormat};
use crate::error::Result;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Output format: wide, json or yaml (default: table).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, hide_default_value = true)]
    pub output: OutputFormat,
}

pub async fn run(_kube: &KubeArgs, _args: &VerifyArgs) -> Result<i32> {
    Err(crate::error::Error::Other("verify is not implemented yet".into()))
}
