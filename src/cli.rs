//! The top-level command line: the list of verbs, with kubectl's connection
//! flags (`commands::flags`) shared by every verb. Each verb's own flags live
//! in its module.

use clap::{Parser, Subcommand};

use crate::commands::flags::KubeArgs;
use crate::commands::{completion, migrate, status, verify};

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
    /// Print the shell completion helper for `kubectl ippool`, or a script for bash, zsh or fish.
    Completion(completion::CompletionArgs),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
