//! `kubectl ippool migrate`: its flags and entry point. The migration
//! itself lives in `crate::migration`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cluster::calico::Calico;
use crate::cluster::Cluster;
use crate::commands::flags::{parse_duration, KubeArgs};
use crate::core::budget::IntOrPercent;
use crate::core::model::EncapMode;
use crate::core::plan::{JobsPolicy, PoolOverrides, Strategy, TargetRequest};
use crate::error::Result;
use crate::migration::{self, MigrateOptions, RollbackOptions};
use crate::output::{OutputFormat, Printer};

const EXAMPLES: &str = "\
Examples:
  # Show the plan and the blockers; write nothing
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --dry-run

  # Do it (asks for confirmation on a terminal)
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16

  # Dual-stack: both families in one run, each pod restarted once (paired by IP family)
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 \\
      --from default-ipv6-ippool --to fd00:10:20::/112

  # Into an existing pool, evicting pod by pod, bare pods included, no prompt
  kubectl ippool migrate --from old --to-pool new --strategy evict --force --yes

  # Interrupted? Run the same command again. Changed your mind (before the old pool is deleted)?
  kubectl ippool migrate --from default-ipv4-ippool --rollback --yes";

fn parse_encap(s: &str) -> std::result::Result<EncapMode, String> {
    match s {
        "Never" | "never" => Ok(EncapMode::Never),
        "Always" | "always" => Ok(EncapMode::Always),
        "CrossSubnet" | "crosssubnet" | "cross-subnet" => Ok(EncapMode::CrossSubnet),
        _ => Err(format!("{s:?}: expected Never, Always or CrossSubnet")),
    }
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES, next_help_heading = "Migration")]
pub struct MigrateArgs {
    /// The pool to move pods off (name). Twice (an IPv4 and an IPv6 pool)
    /// migrates both families in one run, each paired with the target of its family.
    #[arg(long, value_name = "POOL", required = true)]
    pub from: Vec<String>,

    /// Create a new pool with this CIDR and move pods into it (once per --from).
    #[arg(long, value_name = "CIDR", conflicts_with = "to_pool", required_unless_present_any = ["to_pool", "rollback"])]
    pub to: Vec<String>,

    /// Move pods into this existing, enabled pool instead (once per --from).
    #[arg(long, value_name = "POOL")]
    pub to_pool: Vec<String>,

    /// Name of the new pool (default: from the CIDR, e.g. 10.0.0.0-16, like the operator).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// blockSize of the new pool (default: the old pool's).
    #[arg(long, value_name = "N")]
    pub block_size: Option<u8>,

    /// ipipMode of the new pool: Never, Always, CrossSubnet (default: the old pool's).
    #[arg(long, value_name = "MODE", value_parser = parse_encap)]
    pub ipip_mode: Option<EncapMode>,

    /// vxlanMode of the new pool: Never, Always, CrossSubnet (default: the old pool's).
    #[arg(long, value_name = "MODE", value_parser = parse_encap)]
    pub vxlan_mode: Option<EncapMode>,

    /// natOutgoing of the new pool (default: the old pool's).
    #[arg(long, value_name = "BOOL")]
    pub nat_outgoing: Option<bool>,

    /// nodeSelector of the new pool (default: the old pool's).
    #[arg(long, value_name = "SELECTOR")]
    pub node_selector: Option<String>,

    /// Allow a new pool outside the cluster pod CIDR (pod traffic may be NATed).
    #[arg(long)]
    pub allow_outside_cluster_cidr: bool,

    /// How to move pods of Deployments/StatefulSets/DaemonSets, as a
    /// preference: whatever it says, no PodDisruptionBudget is ever taken
    /// below what it allows (a rollout that could break one is replaced by
    /// evictions, paced by the budget).
    #[arg(long, value_enum, default_value_t = StrategyArg::Rollout)]
    pub strategy: StrategyArg,

    /// At most this many lanes at once (default: no cap). A lane is one
    /// workload, or every workload under one PodDisruptionBudget (those move
    /// one after another), or the node drains. Every move stays within its
    /// budgets and --max-unavailable whatever this says.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: Option<u16>,

    /// At most this many of the pods being moved down (evicted and not yet
    /// replaced by a Ready pod) at once across the cluster: a count or a
    /// percentage of the pods to move (at least 1). Each workload also stays
    /// within its own PodDisruptionBudgets; this bounds their sum, so a
    /// cluster without budgets keeps 90% of the moving pods up by default.
    #[arg(long, value_name = "N|P%", default_value = "10%", value_parser = parse_max_unavailable)]
    pub max_unavailable: IntOrPercent,

    /// Test only: give every workload its own lane even where workloads
    /// share a PodDisruptionBudget, so the budget watch of the tests can show
    /// it would catch lanes that ignore sharing. Never use it.
    #[arg(long, hide = true)]
    pub unsafe_split_shared_lanes: bool,

    /// Only move pods matching this label selector (the old pool is then kept, disabled).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Pods owned by Jobs: wait for them to finish, skip them, or evict them (the Job re-runs them).
    #[arg(long, value_enum, default_value_t = JobsArg::Wait)]
    pub jobs: JobsArg,

    /// Also evict bare pods (no controller: they are gone for good) and pods
    /// of controllers this tool does not know (KubeVirt, Tekton, any custom
    /// resource: not waited for); migrate a pool or Installation that Argo CD
    /// or Flux syncs.
    #[arg(long)]
    pub force: bool,

    /// Give up on any single wait (rollout, eviction, pool change) after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,

    /// Where a PodDisruptionBudget allows none of a workload's pods to go (1
    /// replica with minAvailable: 1), add the replicas it needs, evict one
    /// at a time, and scale back (refused where an autoscaler owns the count,
    /// where autoscalers cannot be listed, and for StatefulSets).
    #[arg(long)]
    pub surge: bool,

    /// Let a workload of two or more replicas with no PodDisruptionBudget
    /// lose every Ready pod at once when its own strategy does (Recreate,
    /// maxUnavailable 100%). Without it such a workload is evicted in waves
    /// that keep at least one pod Ready.
    #[arg(long)]
    pub allow_downtime: bool,

    /// Run the canary on every node, not just one.
    #[arg(long)]
    pub canary_per_node: bool,

    /// The canary's image: agnhost (`netexec` serves, `connect HOST:PORT`
    /// checks a path). Set it for clusters that mirror images.
    #[arg(long, value_name = "IMAGE", default_value = crate::core::plan::connectivity::CANARY_IMAGE)]
    pub canary_image: String,

    /// Before any pod moves, add the new pool's CIDR beside the old one in every
    /// NetworkPolicy ipBlock, Calico policy nets/notNets, (Global)NetworkSet and
    /// the ip-masq-agent list that names it (never removes anything; --rollback
    /// takes the additions back out).
    #[arg(long)]
    pub update_rules: bool,

    /// Print the plan and the blockers; write nothing at all.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// When the old pool still holds addresses no pod and no node uses
    /// (leaked, e.g. a failed CNI DEL), release them like `calicoctl ipam
    /// release` once they are older than kube-controllers' leakGracePeriod,
    /// instead of waiting for calico-kube-controllers to.
    #[arg(long)]
    pub release_leaked: bool,

    /// Undo an unfinished migration: re-enable the old pool, disable the new one.
    #[arg(long)]
    pub rollback: bool,

    /// Output format of the plan and the summary: json or yaml (default: table).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, hide_default_value = true)]
    pub output: OutputFormat,
}

/// `--max-unavailable`: a positive count or a percentage from 1 to 100.
fn parse_max_unavailable(s: &str) -> std::result::Result<IntOrPercent, String> {
    match IntOrPercent::parse_str(s) {
        Some(IntOrPercent::Int(n)) if n >= 1 => Ok(IntOrPercent::Int(n)),
        Some(IntOrPercent::Percent(p)) if (1..=100).contains(&p) => Ok(IntOrPercent::Percent(p)),
        _ => Err(format!("{s:?} is neither a count of 1 or more nor a percentage from 1% to 100%")),
    }
}

/// `--strategy`: the CLI's spelling of `core::plan::Strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// `kubectl rollout restart` each workload where its update strategy cannot break a PodDisruptionBudget.
    Rollout,
    /// Evict pod by pod through the Eviction API.
    Evict,
    /// Node by node: cordon, evict the node's pods, uncordon.
    Drain,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Rollout => Strategy::Rollout,
            StrategyArg::Evict => Strategy::Evict,
            StrategyArg::Drain => Strategy::Drain,
        }
    }
}

/// `--jobs`: the CLI's spelling of `core::plan::JobsPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobsArg {
    /// Wait for the Job's pods to finish (up to --timeout).
    Wait,
    /// Leave them on the old pool, which is then kept (disabled) until they finish.
    Skip,
    /// Evict them; the Job starts replacements (counts against its backoffLimit).
    Evict,
}

impl From<JobsArg> for JobsPolicy {
    fn from(j: JobsArg) -> JobsPolicy {
        match j {
            JobsArg::Wait => JobsPolicy::Wait,
            JobsArg::Skip => JobsPolicy::Skip,
            JobsArg::Evict => JobsPolicy::Evict,
        }
    }
}

impl MigrateArgs {
    pub fn options(&self) -> MigrateOptions {
        let mut targets: Vec<TargetRequest> = self
            .to
            .iter()
            .map(|c| TargetRequest::Cidr(c.clone()))
            .chain(self.to_pool.iter().map(|p| TargetRequest::Pool(p.clone())))
            .collect();
        if targets.is_empty() {
            targets.push(TargetRequest::Pool(String::new()));
        }
        MigrateOptions {
            from: self.from[0].clone(),
            to: targets[0].clone(),
            also: vec![],
            more_from: self.from[1..].to_vec(),
            more_to: targets[1..].to_vec(),
            overrides: PoolOverrides {
                name: self.name.clone(),
                block_size: self.block_size,
                ipip_mode: self.ipip_mode,
                vxlan_mode: self.vxlan_mode,
                nat_outgoing: self.nat_outgoing,
                node_selector: self.node_selector.clone(),
            },
            strategy: self.strategy.into(),
            max_parallel: self.max_parallel,
            max_unavailable: self.max_unavailable,
            split_shared_lanes: self.unsafe_split_shared_lanes,
            selector: self.selector.clone(),
            jobs: self.jobs.into(),
            force: self.force,
            allow_outside_cluster_cidr: self.allow_outside_cluster_cidr,
            timeout: self.timeout,
            canary_per_node: self.canary_per_node,
            canary_image: self.canary_image.clone(),
            surge: self.surge,
            allow_downtime: self.allow_downtime,
            update_rules: self.update_rules,
            dry_run: self.dry_run,
            yes: self.yes,
            release_leaked: self.release_leaked,
        }
    }
}

pub async fn run(kube: &KubeArgs, args: &MigrateArgs) -> Result<u8> {
    let printer = Printer::new(args.output);
    let cluster = Cluster::connect(&kube.connect_options()).await?;
    let calico = Calico::detect(&cluster).await?;
    if args.rollback {
        let opts =
            RollbackOptions { from: args.from[0].clone(), timeout: args.timeout, dry_run: args.dry_run, yes: args.yes };
        return migration::rollback(&printer, &cluster, &calico, &opts).await.map(|()| 0);
    }
    migration::run(&printer, &cluster, &calico, &args.options()).await.map(|()| 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: MigrateArgs,
    }

    fn args(extra: &[&str]) -> MigrateArgs {
        let mut v = vec!["migrate", "--from", "old"];
        v.extend_from_slice(extra);
        Wrap::try_parse_from(v).unwrap().args
    }

    #[test]
    fn flags_parse_with_safe_defaults() {
        let a = args(&["--to", "10.0.0.0/16"]);
        assert_eq!(a.max_parallel, None, "no cap on lanes: budgets and --max-unavailable bound them");
        assert_eq!(a.max_unavailable, IntOrPercent::Percent(10));
        assert!(!a.unsafe_split_shared_lanes);
        assert_eq!(a.options().strategy, Strategy::Rollout);
        assert_eq!(a.options().jobs, JobsPolicy::Wait);
        assert_eq!(a.timeout, Duration::from_secs(600));
        let a = args(&[
            "--to",
            "10.0.0.0/16",
            "--ipip-mode",
            "CrossSubnet",
            "--nat-outgoing",
            "false",
            "--strategy",
            "drain",
            "--jobs",
            "skip",
        ]);
        assert_eq!(a.ipip_mode, Some(EncapMode::CrossSubnet));
        assert_eq!(a.nat_outgoing, Some(false));
        assert!(Wrap::try_parse_from(["migrate", "--from", "old"]).is_err(), "a target is required");
        assert!(Wrap::try_parse_from(["migrate", "--from", "old", "--to", "a", "--to-pool", "b"]).is_err());
        assert!(Wrap::try_parse_from(["migrate", "--from", "old", "--rollback"]).is_ok());
        let two = args(&["--to", "10.0.0.0/16", "--from", "old6", "--to", "fd00:20::/112"]).options();
        assert_eq!((two.from.as_str(), two.more_from.as_slice()), ("old", &["old6".to_string()][..]));
        assert_eq!(two.more_to, [TargetRequest::Cidr("fd00:20::/112".into())]);
        assert!(Wrap::try_parse_from(["migrate", "--from", "old", "--to", "a", "--max-parallel", "0"]).is_err());
        for bad in ["0", "0%", "101%", "x", "-1"] {
            assert!(parse_max_unavailable(bad).is_err(), "{bad}");
        }
        assert_eq!(args(&["--to", "a", "--max-unavailable", "25"]).max_unavailable, IntOrPercent::Int(25));
    }
}
