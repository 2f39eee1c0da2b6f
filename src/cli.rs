//! The top-level command line: kubectl's connection flags, shared by every
//! verb, and the list of verbs. Each verb's own flags live in its module.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::{migrate, status, verify};

const ABOUT: &str =
    "Move the pods of a Kubernetes cluster from one Calico IP pool to another without an outage, and prove it.";

const EXAMPLES: &str = "\
Examples:
  # Pools, usage, pods per pool, a migration in progress, and warnings
  kubectl ippool status

  # Show the plan for moving every pod off the default pool, write nothing
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --dry-run

  # Do it, without prompting
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --yes

  # Is the cluster clean? exit 0 (clean), 1 (drift), 2 (error)
  kubectl ippool verify";

#[derive(Debug, Parser)]
#[command(name = "kubectl ippool", bin_name = "kubectl ippool", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeArgs,

    /// Log verbosity, as in kubectl: 0 quiet, 2 info, 4 debug, 6+ every request.
    #[arg(short = 'v', long = "v", global = true, value_name = "N", default_value_t = 0)]
    pub verbosity: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show pools, their usage, the pods on each, a migration in progress, and warnings.
    Status(status::StatusArgs),
    /// Move every pod off one pool onto another, safely and resumably.
    Migrate(migrate::MigrateArgs),
    /// Check that pod networking is clean: pools, pods and Calico IPAM (exit 0/1/2).
    Verify(verify::VerifyArgs),
}

/// The connection flags kubectl users type after the plugin name.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, which may list several files, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The kubeconfig cluster to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,

    /// The kubeconfig user to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,

    /// Restrict pods to this namespace.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// All namespaces: the default, accepted for kubectl compatibility.
    #[arg(short = 'A', long = "all-namespaces", global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Impersonate this user.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,

    /// Impersonate these groups (repeatable).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,

    /// Give up on a single request after this long (e.g. 30s, 1m; 0 = no limit).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
}

/// Output formats shared by the verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// kubectl-style table
    #[default]
    #[value(hide = true)]
    Table,
    /// table with more columns
    Wide,
    Json,
    Yaml,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration (e.g. 30s, 5m): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_flags_parse_after_the_verb() {
        let cli = Cli::try_parse_from([
            "kubectl-ippool",
            "status",
            "--context",
            "c",
            "-n",
            "ns",
            "--as",
            "bob",
            "--request-timeout",
            "5s",
            "-v=4",
        ])
        .unwrap();
        assert_eq!(cli.kube.context.as_deref(), Some("c"));
        assert_eq!(cli.kube.namespace.as_deref(), Some("ns"));
        assert_eq!(cli.kube.as_user.as_deref(), Some("bob"));
        assert_eq!(cli.kube.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(cli.verbosity, 4);
    }
}
