//! `kubectl ippool status`: pools, their usage, the pods on each, a
//! migration in progress, and warnings.

use clap::Args;
use serde::Serialize;

use crate::cluster::calico::Calico;
use crate::cluster::lease::{self, RunStopped};
use crate::cluster::listing::Freshness;
use crate::cluster::record;
use crate::cluster::snapshot::Snapshot;
use crate::cluster::Cluster;
use crate::commands::flags::KubeArgs;
use crate::core::findings::{self, Finding};
use crate::core::inventory::{Inventory, NodeBlocks};
use crate::core::model::{ClusterNetworks, ManagedBy, Owner, Pool};
use crate::core::rules::RuleObject;
use crate::core::state::{Follow, FollowStep, MigrationState, Phase};
use crate::error::{Error, Result};
use crate::heap;
use crate::output::OutputFormat;
use crate::output::{used_of, Printer};
use ipnet::IpNet;

const EXAMPLES: &str = "\
Examples:
  kubectl ippool status
  kubectl ippool status -o wide
  kubectl ippool status --pool default-ipv4-ippool      # its pods, by owner
  kubectl ippool status --nodes                         # block usage per node
  kubectl ippool status --watch                         # follow a migration run elsewhere until it ends
  kubectl ippool status -o json | jq '.pools[] | {name, pods}'";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct StatusArgs {
    /// Output format: wide, json or yaml (default: table).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, hide_default_value = true)]
    pub output: OutputFormat,

    /// Print tables without their header line.
    #[arg(long)]
    pub no_headers: bool,

    /// Show one pool and list its pods by owner.
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,

    /// Show IPAM block usage per node.
    #[arg(long)]
    pub nodes: bool,

    /// Follow the migration in progress (or the next one to start) from its
    /// record in the cluster: phase, pods moved, failures, until it ends.
    /// Exit 0 when it is Done, 1 when it was rolled back.
    #[arg(short = 'w', long, conflicts_with_all = ["pool", "nodes"])]
    pub watch: bool,
}

/// The JSON/YAML document of `status` (schema documented in the README).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub kind: &'static str,
    pub context: String,
    pub calico: Calico,
    pub cluster_networks: ClusterNetworks,
    pub pools: Vec<PoolRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeRow>>,
    pub migration: Option<MigrationState>,
    pub warnings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRow {
    pub name: String,
    pub cidr: String,
    pub block_size: u8,
    pub disabled: bool,
    pub encapsulation: String,
    pub nat_outgoing: bool,
    pub pods: usize,
    pub blocks: usize,
    pub allocated: u64,
    pub tunnel_allocations: u64,
    pub capacity: String,
    pub managed_by: ManagedBy,
    pub node_selector: String,
    pub allowed_uses: Vec<String>,
    pub nodes_with_blocks: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDetail {
    pub name: String,
    pub owners: Vec<OwnerPods>,
    pub namespaces: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerPods {
    pub owner: Owner,
    pub pods: Vec<PodRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRow {
    pub namespace: String,
    pub name: String,
    pub ip: String,
    pub node: Option<String>,
    pub ready: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    #[serde(flatten)]
    pub usage: NodeBlocks,
}

pub async fn run(kube: &KubeArgs, args: &StatusArgs) -> Result<u8> {
    let printer = Printer::new(args.output).no_headers(args.no_headers);
    let cluster = Cluster::connect(&kube.connect_options()).await?;
    if args.watch {
        return watch(&cluster, &printer).await;
    }
    // A display: the watch cache's view is as good as a consistent read.
    let (snap, rule_objects) = Snapshot::detect_and_read(&cluster, false, Freshness::Cached).await?;
    if let Some(line) = heap::report("reading the cluster") {
        printer.note(line);
    }
    let mut report = build_report(&cluster.context, snap, &rule_objects.objects, args)?;
    report.warnings.extend(findings::unreadable_rules_finding(&rule_objects.unreadable));
    if printer.is_machine_readable() {
        printer.data(&report)?;
    } else {
        render(&printer, &report)?;
    }
    Ok(0)
}

/// `status --watch`: one line (or document) per change of the migration
/// record, new failures as warnings, until the migration ends, or until
/// the run doing it stops holding the migration lease without finishing
/// (it failed, was killed, or lost the API server): then it says so and
/// how to go on, and exits 1.
async fn watch(cluster: &Cluster, printer: &Printer) -> Result<u8> {
    let mut follow = Follow::default();
    let mut outcome = Ok(());
    let mut rolled_back = false;
    let followed = record::follow_state(cluster, |state| {
        let step = follow.observe(state.as_ref());
        let (first, new_failures, ended) = match step {
            FollowStep::Nothing => return false,
            FollowStep::Waiting => {
                printer.note("No migration in progress; waiting for one to start (Ctrl-C to stop).");
                return false;
            }
            FollowStep::Progress { first, new_failures } => (first, new_failures, false),
            FollowStep::Ended { first, new_failures } => (first, new_failures, true),
        };
        let Some(m) = state else { return false };
        if first {
            printer.note(format!(
                "Migration {} -> {}, started {} by {}:",
                m.from_pool, m.to_pool, m.started_at, m.started_by
            ));
        }
        outcome = watch_line(printer, &m, first);
        for f in &new_failures {
            printer.warn(format!("could not move {f}"));
        }
        rolled_back = m.phase == Phase::RolledBack;
        ended || outcome.is_err()
    });
    let stopped = lease::wait_for_run_to_stop(cluster);
    let stopped = tokio::select! {
        // A run that finishes writes the record before it lets go of the lease.
        biased;
        r = followed => {
            r?;
            None
        }
        s = stopped => Some(s?),
    };
    outcome?;
    if let Some(how) = stopped {
        match record::read_state(cluster).await? {
            Some(m) if !m.phase.is_finished() => {
                let (holder, why) = match &how {
                    RunStopped::Released { holder } => (holder, "released the migration lease"),
                    RunStopped::Expired { holder } => {
                        (holder, "stopped renewing the migration lease (killed, or cut off)")
                    }
                };
                printer.warn(format!(
                    "the run {holder} {why} in phase {} with {}/{} pod(s) moved, without finishing; run `{}` to resume it, or add --rollback to undo it",
                    m.phase.as_str(),
                    m.pods_moved,
                    m.total,
                    m.resume_command()
                ));
                return Ok(1);
            }
            Some(m) => {
                watch_line(printer, &m, false)?;
                rolled_back = m.phase == Phase::RolledBack;
            }
            None => {}
        }
    }
    Ok(if rolled_back { 1 } else { 0 })
}

fn watch_line(printer: &Printer, m: &MigrationState, first: bool) -> Result<()> {
    match printer.format {
        OutputFormat::Json => printer.data(m),
        OutputFormat::Yaml => printer.stdout("---\n").and_then(|()| printer.data(m)),
        OutputFormat::Table | OutputFormat::Wide => {
            let mut text = String::new();
            if first && printer.headers {
                text += &watch_row("PHASE", "MOVED", "FAILED", "UPDATED");
            }
            text += &watch_row(
                m.phase.as_str(),
                &format!("{}/{}", m.pods_moved, m.total),
                &m.failed.len().to_string(),
                &m.updated_at,
            );
            printer.stdout(&text)
        }
    }
}

/// Fixed columns: the rows arrive one by one, so widths cannot follow them.
fn watch_row(phase: &str, moved: &str, failed: &str, updated: &str) -> String {
    format!("{phase:<16}{moved:<11}{failed:<9}{updated}\n")
}

/// Everything `status` shows, computed from a snapshot (pure).
pub fn build_report(context: &str, snap: Snapshot, rules: &[RuleObject], args: &StatusArgs) -> Result<StatusReport> {
    let inv = &snap.inventory;
    let pools = pool_rows(inv);
    let pool = match &args.pool {
        Some(name) => {
            let idx = inv.pool_named(name).ok_or_else(|| {
                let known: Vec<&str> = inv.pools.iter().map(|p| p.name.as_str()).collect();
                Error::Usage(format!("IPPool {name:?} not found; pools: {}", known.join(", ")))
            })?;
            Some(pool_detail(inv, idx))
        }
        None => None,
    };
    let nodes = args.nodes.then(|| {
        let idx = args.pool.as_deref().and_then(|n| inv.pool_named(n));
        inv.blocks_by_node(idx).into_iter().map(|(node, usage)| NodeRow { node, usage }).collect()
    });
    let mut warnings = findings::pool_network_findings(&inv.pools, &snap.networks);
    warnings.extend(findings::usage_findings(inv));
    warnings.extend(findings::pin_findings(inv, &snap.namespaces));
    let migrating = snap.migration.as_ref().filter(|m| !m.phase.is_finished()).map(|m| m.from_pool.as_str());
    let retiring: Vec<&Pool> = inv.pools.iter().filter(|p| p.disabled || Some(p.name.as_str()) == migrating).collect();
    let active: Vec<IpNet> =
        inv.pools.iter().filter(|p| p.is_active() && !retiring.contains(p)).map(|p| p.cidr).collect();
    warnings.extend(findings::rule_findings(rules, &inv.pods, &retiring, &active));
    if let Some(m) = snap.migration.as_ref().filter(|m| !m.phase.is_finished()) {
        warnings.push(Finding::new(
            "migrationInProgress",
            findings::Severity::Warn,
            format!(
                "a migration from {} to {} is in progress: phase {}, {}/{} moved, {} failed (started {} by {}); run `{}` to finish it",
                m.old_pools(), m.new_pools(), m.phase.as_str(), m.pods_moved, m.total, m.failed.len(), m.started_at, m.started_by, m.resume_command()
            ),
            m.pairs().iter().flat_map(|p| [format!("IPPool {}", p.from_pool), format!("IPPool {}", p.to_pool)]).collect(),
        ));
    }
    Ok(StatusReport {
        kind: "IPPoolStatus",
        context: context.to_string(),
        calico: snap.calico,
        cluster_networks: snap.networks,
        pools,
        pool,
        nodes,
        migration: snap.migration,
        warnings,
    })
}

fn pool_rows(inv: &Inventory) -> Vec<PoolRow> {
    inv.pools
        .iter()
        .zip(&inv.usage)
        .map(|(p, u)| PoolRow {
            name: p.name.clone(),
            cidr: p.cidr.to_string(),
            block_size: p.block_size,
            disabled: p.disabled,
            encapsulation: p.encap_label(),
            nat_outgoing: p.nat_outgoing,
            pods: u.pods,
            blocks: u.blocks,
            allocated: u.allocated,
            tunnel_allocations: u.tunnel_allocations,
            capacity: p.capacity().to_string(),
            managed_by: p.managed_by,
            node_selector: p.node_selector.clone(),
            allowed_uses: p.allowed_uses.clone(),
            nodes_with_blocks: u.nodes_with_blocks.iter().cloned().collect(),
        })
        .collect()
}

fn pool_detail(inv: &Inventory, idx: usize) -> PoolDetail {
    let owners = inv
        .pods_by_owner(idx)
        .into_iter()
        .map(|(owner, pods)| OwnerPods {
            owner,
            pods: pods
                .into_iter()
                .map(|p| PodRow {
                    namespace: p.namespace.to_string(),
                    name: p.name.clone(),
                    ip: p
                        .ips
                        .iter()
                        .find(|ip| inv.pools[idx].cidr.contains(*ip))
                        .map(|i| i.to_string())
                        .unwrap_or_default(),
                    node: p.node.as_deref().map(str::to_string),
                    ready: p.ready,
                })
                .collect(),
        })
        .collect();
    PoolDetail { name: inv.pools[idx].name.clone(), owners, namespaces: inv.pods_by_namespace(idx) }
}

fn yes_no(b: bool) -> String {
    if b {
        "true".into()
    } else {
        "false".into()
    }
}

/// The human view: pool table on stdout, warnings on stderr.
pub fn render(printer: &Printer, r: &StatusReport) -> Result<()> {
    let wide = printer.wide();
    let mut headers =
        vec!["NAME", "CIDR", "BLOCK", "DISABLED", "ENCAP", "NAT", "PODS", "BLOCKS", "USED/CAPACITY", "MANAGED-BY"];
    if wide {
        headers.extend(["NODE-SELECTOR", "ALLOWED-USES", "NODES"]);
    }
    let rows = r
        .pools
        .iter()
        .map(|p| {
            let cap: u128 = p.capacity.parse().unwrap_or(0);
            let mut row = vec![
                p.name.clone(),
                p.cidr.clone(),
                format!("/{}", p.block_size),
                yes_no(p.disabled),
                p.encapsulation.clone(),
                yes_no(p.nat_outgoing),
                p.pods.to_string(),
                p.blocks.to_string(),
                used_of(p.allocated, cap),
                match p.managed_by {
                    ManagedBy::Operator => "operator".into(),
                    ManagedBy::Manifest => "manifest".into(),
                },
            ];
            if wide {
                row.push(p.node_selector.clone());
                row.push(p.allowed_uses.join(","));
                row.push(if p.nodes_with_blocks.is_empty() { "<none>".into() } else { p.nodes_with_blocks.join(",") });
            }
            row
        })
        .collect();
    if r.pools.is_empty() {
        printer.note("No IP pools found.");
    } else {
        printer.table(&headers, rows)?;
    }

    if let Some(d) = &r.pool {
        printer.stdout(&format!("\nPods in pool {}:\n", d.name))?;
        let rows: Vec<Vec<String>> = d
            .owners
            .iter()
            .flat_map(|o| {
                let owner = o.owner.display();
                o.pods.iter().map(move |p| {
                    vec![
                        owner.clone(),
                        p.name.clone(),
                        p.ip.clone(),
                        p.node.clone().unwrap_or_default(),
                        yes_no(p.ready),
                    ]
                })
            })
            .collect();
        if rows.is_empty() {
            printer.stdout("  (none)\n")?;
        } else {
            printer.table(&["OWNER", "POD", "IP", "NODE", "READY"], rows)?;
        }
    }

    if let Some(nodes) = &r.nodes {
        printer.stdout("\n")?;
        let rows = nodes
            .iter()
            .map(|n| {
                vec![
                    n.node.clone(),
                    n.usage.blocks.to_string(),
                    n.usage.pods.to_string(),
                    used_of(n.usage.allocated, n.usage.capacity as u128),
                ]
            })
            .collect();
        printer.table(&["NODE", "BLOCKS", "PODS", "USED/CAPACITY"], rows)?;
    }

    if let Some(m) = &r.migration {
        if !m.phase.is_finished() {
            printer.note(format!(
                "\nMigration {} -> {}: phase {}, {}/{} moved, {} failed",
                m.old_pools(),
                m.new_pools(),
                m.phase.as_str(),
                m.pods_moved,
                m.total,
                m.failed.len()
            ));
        }
    }
    for w in &r.warnings {
        printer.warn(&w.message);
    }
    Ok(())
}
