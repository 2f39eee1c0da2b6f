//! `kubectl ippool migrate`: move every pod off one IP pool onto another,
//! without an outage, resumably.
//!
//! The verb reads as four steps: plan (pure, `core::plan`) → preflight
//! (blockers, permissions) → confirm → execute. Execution walks the phases
//! of `core::state::Phase`; after each one the record in ConfigMap
//! kube-system/kubectl-ippool-migration is updated, so a re-run of the same
//! command (after Ctrl-C, a crash or SIGKILL) continues at the recorded
//! phase. Each phase re-checks the cluster rather than trusting the record:
//! creating a pool that exists, disabling a disabled pool or restarting a
//! workload whose pods already moved are no-ops.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use ipnet::IpNet;
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;

use crate::cli::{parse_duration, KubeArgs, OutputFormat};
use crate::cluster::access::{self, Need};
use crate::cluster::calico::{Calico, Kind, GROUP_OPERATOR};
use crate::cluster::lock::{self, EventTarget, LeaseGuard};
use crate::cluster::movers;
use crate::cluster::pools::PoolWriter;
use crate::cluster::snapshot::Snapshot;
use crate::cluster::state::{STATE_CONFIGMAP, STATE_NAMESPACE};
use crate::cluster::{canary, workloads, Cluster};
use crate::core::model::{CniPools, EncapMode, ManagedBy, OwnerKind, PdbInfo, WorkloadInfo};
use crate::core::plan::{
    self, JobsPolicy, Move, MoveKind, Plan, PlanInput, PoolOverrides, PoolStep, Strategy, TargetRequest,
};
use crate::core::state::{MigrationState, Phase};
use crate::error::{Error, Result};
use crate::output::Printer;

const EXAMPLES: &str = "\
Examples:
  # Show the plan and the blockers; write nothing
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --dry-run

  # Do it (asks for confirmation on a terminal)
  kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16

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
    /// The pool to move pods off (name).
    #[arg(long, value_name = "POOL")]
    pub from: String,

    /// Create a new pool with this CIDR and move pods into it.
    #[arg(long, value_name = "CIDR", conflicts_with = "to_pool", required_unless_present_any = ["to_pool", "rollback"])]
    pub to: Option<String>,

    /// Move pods into this existing, enabled pool instead.
    #[arg(long, value_name = "POOL")]
    pub to_pool: Option<String>,

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

    /// How to move pods of Deployments/StatefulSets/DaemonSets.
    #[arg(long, value_enum, default_value_t = Strategy::Rollout)]
    pub strategy: Strategy,

    /// Workloads moved at once. Default 1: each rollout is already limited by
    /// its own strategy and PDBs, but several at once can exhaust spare
    /// capacity or take down services that depend on each other.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: u16,

    /// Only move pods matching this label selector (the old pool is then kept, disabled).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Pods owned by Jobs: wait for them to finish, skip them, or evict them (the Job re-runs them).
    #[arg(long, value_enum, default_value_t = JobsPolicy::Wait)]
    pub jobs: JobsPolicy,

    /// Also evict bare pods (no controller): they are gone for good.
    #[arg(long)]
    pub force: bool,

    /// Give up on any single wait (rollout, eviction, pool change) after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,

    /// Run the canary on every node, not just one.
    #[arg(long)]
    pub canary_per_node: bool,

    /// Print the plan and the blockers; write nothing at all.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Undo an unfinished migration: re-enable the old pool, disable the new one.
    #[arg(long)]
    pub rollback: bool,

    /// Output format of the plan and the summary: json or yaml (default: table).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, hide_default_value = true)]
    pub output: OutputFormat,
}

/// What `--dry-run -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanDocument<'a> {
    kind: &'static str,
    context: String,
    dry_run: bool,
    resume_from_phase: Option<Phase>,
    #[serde(flatten)]
    plan: &'a Plan,
}

/// The final report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    kind: &'static str,
    from: String,
    to: String,
    phase: Phase,
    workloads_moved: usize,
    pods_moved: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
    old_pool_deleted: bool,
    seconds: f64,
    /// API requests this run made (for `make bench`).
    api_requests: u64,
}

/// Everything read from the cluster before planning.
struct Facts {
    snap: Snapshot,
    workloads: Vec<WorkloadInfo>,
    pdbs: Vec<PdbInfo>,
    cni: Option<CniPools>,
    /// Pods selected by `-l` (None: no label filter).
    label_filter: Option<BTreeSet<String>>,
}

impl Facts {
    async fn read(cluster: &Cluster, calico: Calico, args: &MigrateArgs) -> Result<Facts> {
        let (snap, workloads, pdbs, cni, labelled) = tokio::try_join!(
            Snapshot::read(cluster, calico),
            movers::list_workloads(cluster),
            movers::list_pdbs(cluster),
            async { Ok(movers::read_cni_pools(cluster).await) },
            async {
                match &args.selector {
                    Some(sel) => Ok(Some(
                        workloads::list_pods(cluster, Some(sel))
                            .await?
                            .into_iter()
                            .map(|p| p.key())
                            .collect::<BTreeSet<_>>(),
                    )),
                    None => Ok(None),
                }
            },
        )?;
        Ok(Facts { snap, workloads, pdbs, cni, label_filter: labelled })
    }

    fn plan_input<'a>(&'a self, args: &'a MigrateArgs, operator: bool) -> PlanInput<'a> {
        PlanInput {
            from: &args.from,
            to: match (&args.to, &args.to_pool) {
                (Some(c), _) => TargetRequest::Cidr(c.clone()),
                (None, Some(p)) => TargetRequest::Pool(p.clone()),
                (None, None) => TargetRequest::Pool(String::new()),
            },
            overrides: PoolOverrides {
                name: args.name.clone(),
                block_size: args.block_size,
                ipip_mode: args.ipip_mode,
                vxlan_mode: args.vxlan_mode,
                nat_outgoing: args.nat_outgoing,
                node_selector: args.node_selector.clone(),
            },
            strategy: args.strategy,
            jobs: args.jobs,
            force: args.force,
            allow_outside_cluster_cidr: args.allow_outside_cluster_cidr,
            operator,
            inventory: &self.snap.inventory,
            nodes: &self.snap.nodes,
            namespaces: &self.snap.namespaces,
            networks: &self.snap.networks,
            workloads: &self.workloads,
            pdbs: &self.pdbs,
            cni_pools: self.cni.clone(),
            pod_filter: self.label_filter.as_ref(),
            canary_per_node: args.canary_per_node,
        }
    }
}

/// The run's shared context.
struct Ctx<'a> {
    printer: &'a Printer,
    cluster: &'a Cluster,
    calico: &'a Calico,
    args: &'a MigrateArgs,
    /// The canary namespace in use, for cleanup on Ctrl-C.
    canary_ns: Arc<Mutex<Option<String>>>,
    lease: &'a LeaseGuard,
}

pub async fn run(kube: &KubeArgs, args: &MigrateArgs) -> Result<i32> {
    let printer = Printer::new(args.output);
    let cluster = Cluster::connect(kube).await?;
    let calico = Calico::detect(&cluster).await?;
    if args.rollback {
        return rollback(&printer, &cluster, &calico, args).await;
    }

    // 1. Plan (no writes).
    let facts = Facts::read(&cluster, calico.clone(), args).await?;
    let record = resumable_record(facts.snap.migration.as_ref(), args)?;
    // The operator owns the old pool if the Installation lists it: then every
    // pool change goes through the Installation, never behind its back.
    let probe = PoolWriter { cluster: &cluster, calico: &calico, via_operator: true, timeout: args.timeout };
    let operator = calico.operator
        && (probe.in_installation(&args.from).await?
            || facts
                .snap
                .inventory
                .pool_named(&args.from)
                .is_some_and(|i| facts.snap.inventory.pools[i].managed_by == ManagedBy::Operator));
    if facts.snap.inventory.pool_named(&args.from).is_none() {
        if let Some(state) = record {
            // The old pool is gone: only the record is left to close.
            return finish_without_pool(&printer, &cluster, state).await;
        }
    }
    let mut plan = plan::make_plan(&facts.plan_input(args, operator))
        .map_err(|reasons| Error::refused(format!("migrate {} (nothing was changed)", args.from), reasons))?;
    if operator {
        plan.warnings.extend(operator_warnings(&cluster, &plan).await);
    }
    show_plan(&printer, &cluster, &plan, args, record.as_ref().map(|r| r.phase))?;

    // 2. Preflight: blockers, then permissions.
    if !plan.blockers.is_empty() {
        return Err(Error::refused(
            format!("migrate {} until these are fixed (nothing was changed)", args.from),
            plan.blockers.clone(),
        ));
    }
    if args.dry_run {
        printer.note("Dry run: nothing was changed.");
        return Ok(0);
    }
    access::check(&cluster, &permissions_needed(&calico, &plan, args)).await?;

    // 3. Confirm.
    let question = format!(
        "Migrate {} pod(s) from {} to {} in {}?",
        plan.pod_count(),
        plan.from.name,
        plan.to.name,
        cluster.describe()
    );
    printer.confirm(&question, args.yes)?;

    // 4. Execute, holding the lease.
    let lease = LeaseGuard::acquire(&cluster).await?;
    let original = PoolWriter { cluster: &cluster, calico: &calico, via_operator: operator, timeout: args.timeout }
        .get(&plan.from.name)
        .await?;
    let state = record.unwrap_or_else(|| new_record(&plan, &lease, original));
    let ctx = Ctx {
        printer: &printer,
        cluster: &cluster,
        calico: &calico,
        args,
        canary_ns: Arc::new(Mutex::new(None)),
        lease: &lease,
    };
    let outcome = tokio::select! {
        r = execute(&ctx, &plan, state, &facts) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted(format!(
            "the migration record in ConfigMap {STATE_NAMESPACE}/{STATE_CONFIGMAP} keeps the progress; run the same command again to continue, or add --rollback to undo"))),
    };
    // Clean up on every path (the canary namespace, nodes we cordoned).
    if let Some(ns) = ctx.canary_ns.lock().ok().and_then(|mut g| g.take()) {
        canary::cleanup(&cluster, &ns).await;
    }
    if let Ok(nodes) = movers::uncordon_ours(&cluster).await {
        for n in nodes {
            printer.note(format!("node/{n} uncordoned"));
        }
    }
    lease.release().await;
    let mut summary = outcome?;
    summary.api_requests = crate::cluster::requests_made();
    if printer.is_machine_readable() {
        printer.data(&summary)?;
    } else {
        printer.stdout(&format!(
            "Migrated {} pod(s) of {} workload(s) from {} to {} in {:.0}s; {}.\n",
            summary.pods_moved,
            summary.workloads_moved,
            summary.from,
            summary.to,
            summary.seconds,
            if summary.old_pool_deleted {
                format!("IPPool {} deleted", summary.from)
            } else {
                format!("IPPool {} kept (disabled)", summary.from)
            }
        ));
        printer.note(format!(
            "API requests: {} ({:.1} per pod moved)",
            summary.api_requests,
            summary.api_requests as f64 / summary.pods_moved.max(1) as f64
        ));
    }
    Ok(0)
}

/// What to know before letting the operator apply our pool changes.
async fn operator_warnings(cluster: &Cluster, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(inst)) = crate::cluster::calico::installation_api(cluster).get_opt("default").await {
        let helm = inst
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .is_some_and(|v| v == "Helm")
            || inst.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("meta.helm.sh/release-name"));
        if helm {
            out.push(format!(
                "Installation default is managed by Helm: after this migration, put IPPool {} ({}) into the chart's installation.calicoNetwork.ipPools values, or the next helm upgrade brings {} back",
                plan.to.name, plan.to.cidr, plan.from.name
            ));
        }
    }
    if crate::core::cidr::within(&plan.to.cidr, &plan.from.cidr) {
        out.push(format!(
            "the operator deletes {} by releasing every block affinity inside {}, including those of the new pool {}; its blocks lose their node affinity (pods keep working, nodes claim new blocks)",
            plan.from.name, plan.from.cidr, plan.to.cidr
        ));
    }
    out
}

/// An unfinished record for the same `--from` is resumed; one for another
/// pool refuses (one migration at a time).
fn resumable_record(rec: Option<&MigrationState>, args: &MigrateArgs) -> Result<Option<MigrationState>> {
    let Some(rec) = rec.filter(|r| !r.phase.is_finished()) else { return Ok(None) };
    let same_target = match (&args.to, &args.to_pool) {
        (Some(c), _) => c.trim() == rec.to_cidr && args.name.as_ref().is_none_or(|n| n == &rec.to_pool),
        (None, Some(p)) => p == &rec.to_pool,
        _ => false,
    };
    if rec.from_pool == args.from && same_target {
        return Ok(Some(rec.clone()));
    }
    Err(Error::refused(
        format!("start a migration from {}", args.from),
        vec![format!(
            "a migration from {} to {} ({}) is recorded in phase {} (started {} by {}); run `kubectl ippool migrate --from {} --to {}` to finish it, or add --rollback to undo it",
            rec.from_pool, rec.to_pool, rec.to_cidr, rec.phase.as_str(), rec.started_at, rec.started_by, rec.from_pool, rec.to_cidr
        )],
    ))
}

fn new_record(plan: &Plan, lease: &LeaseGuard, original: Option<DynamicObject>) -> MigrationState {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
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
        original_from_pool: original.and_then(|o| serde_json::to_value(o).ok()).unwrap_or(Value::Null),
        total: plan.pod_count(),
        done: vec![],
        failed: vec![],
    }
}

/// Save progress, stopping if another process took our lease.
async fn checkpoint(ctx: &Ctx<'_>, state: &mut MigrationState, phase: Phase) -> Result<()> {
    if ctx.lease.lost() {
        return Err(Error::Other(
            "another process took over the migration lease; stopping (the record is left for it)".into(),
        ));
    }
    save(ctx.cluster, state, phase).await
}

async fn save(cluster: &Cluster, state: &mut MigrationState, phase: Phase) -> Result<()> {
    state.phase = phase;
    state.updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    lock::write_state(cluster, state).await
}

/// The phases, in order; each one is skipped when the record says it is
/// done and reality agrees.
async fn execute(ctx: &Ctx<'_>, plan: &Plan, mut state: MigrationState, facts: &Facts) -> Result<Summary> {
    let started = Instant::now();
    let p = ctx.printer;
    let writer = PoolWriter {
        cluster: ctx.cluster,
        calico: ctx.calico,
        via_operator: plan.via_operator,
        timeout: ctx.args.timeout,
    };
    if state.phase > Phase::Started {
        p.note(format!(
            "Resuming the migration from {} to {} at phase {}.",
            state.from_pool,
            state.to_pool,
            state.phase.as_str()
        ));
    }
    let phase = state.phase;
    checkpoint(ctx, &mut state, phase).await?;
    canary::cleanup_leftovers(ctx.cluster).await;
    movers::uncordon_ours(ctx.cluster).await?;

    phase_target_ready(ctx, &writer, plan, &mut state).await?;
    phase_source_disabled(ctx, &writer, plan, &mut state).await?;
    if state.phase < Phase::CanaryPassed {
        phase_canary(ctx, plan, facts, &mut state).await?;
    }
    let (workloads_moved, pods_moved, skipped) = phase_move_pods(ctx, plan, &mut state).await?;
    let filtered = ctx.cluster.namespace.is_some() || ctx.args.selector.is_some();
    let mut summary = Summary {
        kind: "IPPoolMigration",
        from: state.from_pool.clone(),
        to: state.to_pool.clone(),
        phase: state.phase,
        workloads_moved,
        pods_moved,
        failed: state.failed.clone(),
        skipped: skipped.clone(),
        old_pool_deleted: false,
        seconds: 0.0,
        api_requests: 0,
    };
    if filtered || !skipped.is_empty() {
        let why =
            if filtered { "only pods matching -n/-l were moved" } else { "some pods were skipped (listed above)" };
        p.warn(format!(
            "IPPool {} is kept, disabled: {why}. Run again without filters (or once they are gone) to finish.",
            plan.from.name
        ));
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    phase_drain(ctx, plan, &mut state).await?;
    phase_delete_source(ctx, &writer, plan, &mut state).await?;
    checkpoint(ctx, &mut state, Phase::Done).await?;
    summary.phase = Phase::Done;
    summary.old_pool_deleted = true;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn pool_event<'a>(name: &'a str, api_version: &'a str) -> EventTarget<'a> {
    EventTarget { api_version, kind: "IPPool", namespace: None, name }
}

async fn phase_target_ready(
    ctx: &Ctx<'_>,
    writer: &PoolWriter<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    // Re-checked even when recorded: someone may have deleted it since.
    writer.ensure_created(&plan.to).await?;
    if state.phase < Phase::TargetReady {
        let av = ctx.calico.resource(Kind::IPPool).api_version;
        lock::record_event(
            ctx.cluster,
            pool_event(&plan.to.name, &av),
            &format!("kubectl-ippool migrate: target pool for moving pods off {}", plan.from.name),
        )
        .await;
        ctx.printer.note(format!("IPPool {} ({}) ready.", plan.to.name, plan.to.cidr));
        checkpoint(ctx, state, Phase::TargetReady).await?;
    }
    Ok(())
}

async fn phase_source_disabled(
    ctx: &Ctx<'_>,
    writer: &PoolWriter<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    writer.set_disabled(&plan.from.name, true).await?;
    if state.phase < Phase::SourceDisabled {
        let av = ctx.calico.resource(Kind::IPPool).api_version;
        lock::record_event(
            ctx.cluster,
            pool_event(&plan.from.name, &av),
            &format!("kubectl-ippool migrate: disabled; pods move to {}", plan.to.name),
        )
        .await;
        ctx.printer.note(format!("IPPool {} disabled: new pods get addresses from {}.", plan.from.name, plan.to.name));
        checkpoint(ctx, state, Phase::SourceDisabled).await?;
    }
    Ok(())
}

async fn phase_canary(ctx: &Ctx<'_>, plan: &Plan, facts: &Facts, state: &mut MigrationState) -> Result<()> {
    let ns = canary::canary_namespace();
    if let Ok(mut g) = ctx.canary_ns.lock() {
        *g = Some(ns.clone());
    }
    let nodes: Vec<String> = if ctx.args.canary_per_node {
        facts.snap.nodes.iter().filter(|n| !n.unschedulable).map(|n| n.name.clone()).collect()
    } else {
        vec![]
    };
    let result =
        canary::run(ctx.cluster, &ns, &nodes, &plan.to.cidr, ctx.args.timeout.min(Duration::from_secs(300))).await;
    canary::cleanup(ctx.cluster, &ns).await;
    if let Ok(mut g) = ctx.canary_ns.lock() {
        *g = None;
    }
    let got = result?;
    let shown: Vec<String> = got.iter().map(|(n, ip)| format!("{ip} on {n}")).collect();
    ctx.printer.note(format!("Canary passed: {}.", shown.join(", ")));
    checkpoint(ctx, state, Phase::CanaryPassed).await
}

/// Move pods, re-scanning after each round: pods created while the old
/// pool was still enabled, or re-created by a controller, are moved too.
async fn phase_move_pods(
    ctx: &Ctx<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<(usize, usize, Vec<String>)> {
    if state.phase >= Phase::Draining {
        return Ok((0, 0, vec![]));
    }
    let args = ctx.args;
    let mut workloads_moved = 0;
    let mut pods_moved = 0;
    let mut skipped = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let operator = plan.via_operator;
    for round in 0..3 {
        let facts = Facts::read(ctx.cluster, ctx.calico.clone(), args).await?;
        let Some(from_idx) = facts.snap.inventory.pool_named(&plan.from.name) else { break };
        let input = facts.plan_input(args, operator);
        let (moves, skip, blockers) = plan::plan_moves(&input, from_idx);
        if !blockers.is_empty() {
            return Err(Error::refused("move the remaining pods", blockers));
        }
        skipped = skip.iter().map(|s| format!("{}: {}", s.pod, s.reason)).collect();
        for s in &skipped {
            ctx.printer.warn(format!("not moved: {s}"));
        }
        if round == 0 {
            state.total = state.done.len() + moves.iter().map(|m| m.pods.len()).sum::<usize>();
            state.failed.clear();
            checkpoint(ctx, state, Phase::MovingPods).await?;
        }
        if moves.is_empty() {
            break;
        }
        if round > 0 {
            ctx.printer.note(format!(
                "{} more pod(s) appeared on {}; moving them too.",
                moves.iter().map(|m| m.pods.len()).sum::<usize>(),
                plan.from.name
            ));
        }
        let bar_w = ctx.printer.progress(moves.len() as u64, "workloads");
        let bar_p = ctx.printer.progress(moves.iter().map(|m| m.pods.len() as u64).sum(), "pods");
        let cidr = plan.from.cidr;
        let target = plan.to.name.clone();
        let mut results = futures::stream::iter(moves.into_iter().map(|m| {
            let target = target.clone();
            async move {
                let r = run_move(ctx, &m, &cidr, &target).await;
                (m, r)
            }
        }))
        .buffer_unordered(args.max_parallel as usize);
        while let Some((m, r)) = results.next().await {
            bar_w.inc(1);
            bar_p.inc(m.pods.len() as u64);
            match r {
                Ok(()) => {
                    workloads_moved += 1;
                    pods_moved += m.pods.len();
                    bar_w.set_message(m.target.clone());
                    if !state.done.contains(&m.target) {
                        state.done.push(m.target.clone());
                    }
                    if !bar_w.is_hidden() {
                        bar_w.println(format!("moved {} ({} pod(s))", m.target, m.pods.len()));
                    } else {
                        ctx.printer.note(format!("moved {} ({} pod(s))", m.target, m.pods.len()));
                    }
                }
                Err(e) => {
                    ctx.printer.warn(format!("could not move {}: {e}", m.target));
                    failures.push(format!("{}: {e}", m.target));
                    state.failed.push(format!("{}: {e}", m.target));
                }
            }
            checkpoint(ctx, state, Phase::MovingPods).await?;
        }
        bar_w.finish_and_clear();
        bar_p.finish_and_clear();
        if !failures.is_empty() {
            return Err(Error::Other(format!(
                "{} workload(s) could not be moved (nothing else was rolled back; the old pool stays disabled):\n  - {}\nFix the cause and run the same command again to continue.",
                failures.len(),
                failures.join("\n  - ")
            )));
        }
    }
    Ok((workloads_moved, pods_moved, skipped))
}

/// One entry of the move list.
async fn run_move(ctx: &Ctx<'_>, m: &Move, old: &IpNet, target: &str) -> Result<()> {
    let t = ctx.args.timeout;
    let evict_all = |keys: Vec<(String, String)>| async move {
        for (key, uid) in keys {
            let (ns, name) = key.split_once('/').unwrap_or(("", &key));
            movers::evict(ctx.cluster, ctx.printer, ns, name, &uid, t).await?;
        }
        Ok::<(), Error>(())
    };
    let pairs = || m.pods.iter().cloned().zip(m.pod_uids.iter().cloned()).collect::<Vec<_>>();
    match m.kind {
        MoveKind::Rollout => {
            let owner = m.owner.as_ref().ok_or_else(|| Error::Other("rollout without an owner".into()))?;
            movers::restart(ctx.cluster, owner, &format!("kubectl-ippool: moved off {old} to {target}")).await?;
            lock::record_event(
                ctx.cluster,
                EventTarget {
                    api_version: "apps/v1",
                    kind: owner.kind.as_str(),
                    namespace: Some(&owner.namespace),
                    name: &owner.name,
                },
                &format!("kubectl-ippool migrate: restarted to move pods off {old} to IPPool {target}"),
            )
            .await;
            movers::wait_rollout(ctx.cluster, owner, t).await?;
            // A rollout can finish with old pods left (e.g. a paused or
            // partitioned one): evict those, the controller replaces them.
            let left = movers::owner_pods_in(ctx.cluster, owner, old).await?;
            let keys: Vec<(String, String)> = left
                .iter()
                .map(|p| {
                    (
                        format!(
                            "{}/{}",
                            p.metadata.namespace.clone().unwrap_or_default(),
                            p.metadata.name.clone().unwrap_or_default()
                        ),
                        p.metadata.uid.clone().unwrap_or_default(),
                    )
                })
                .collect();
            if !keys.is_empty() {
                ctx.printer.note(format!(
                    "{}: {} pod(s) still on {old} after the rollout; evicting them",
                    owner.display(),
                    keys.len()
                ));
                evict_all(keys).await?;
            }
            Ok(())
        }
        MoveKind::Evict | MoveKind::EvictForGood => evict_all(pairs()).await,
        MoveKind::Drain => {
            let node = m.target.strip_prefix("Node ").unwrap_or(&m.target).to_string();
            movers::cordon(ctx.cluster, &node, true).await?;
            ctx.printer.note(format!("node/{node} cordoned"));
            let r = evict_all(pairs()).await;
            movers::cordon(ctx.cluster, &node, false).await?;
            ctx.printer.note(format!("node/{node} uncordoned"));
            r
        }
        MoveKind::WaitJob => {
            let owner = m.owner.as_ref().ok_or_else(|| Error::Other("job without an owner".into()))?;
            ctx.printer.note(format!(
                "waiting for {} to finish (up to {})",
                owner.display(),
                humantime::format_duration(t)
            ));
            movers::wait_job(ctx.cluster, owner, old, t).await
        }
    }
}

/// Wait until nothing (pods, node tunnel addresses) holds an address of
/// the old pool: calico-node moves tunnel addresses by itself once the old
/// pool is disabled and the new one allows Tunnel use.
async fn phase_drain(ctx: &Ctx<'_>, plan: &Plan, state: &mut MigrationState) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    checkpoint(ctx, state, Phase::Draining).await?;
    let (old, new) = (plan.from.cidr, plan.to.cidr);
    let api = ctx.calico.api(ctx.cluster, Kind::IPAMBlock);
    ctx.printer.note(format!(
        "Waiting for every address of {} (pods and node tunnel addresses) to be released...",
        plan.from.name
    ));
    let mut remaining: Vec<String> = Vec::new();
    let r = movers::wait_list(
        api,
        Default::default(),
        &format!("the addresses of {} to be released", plan.from.name),
        ctx.args.timeout,
        |blocks: &[&DynamicObject]| {
            remaining = blocks
                .iter()
                .filter_map(|b| crate::cluster::calico::block_from_object(b).ok())
                .filter(|b| crate::core::cidr::within(&b.cidr, &old) && !crate::core::cidr::within(&b.cidr, &new))
                .flat_map(|b| b.allocations.into_iter())
                .map(|a| {
                    format!(
                        "{} ({})",
                        a.ip,
                        a.pod
                            .map(|p| format!("pod {}/{p}", a.namespace.unwrap_or_default()))
                            .or(a.kind)
                            .or(a.handle)
                            .unwrap_or_default()
                    )
                })
                .collect();
            remaining.is_empty()
        },
    )
    .await;
    if let Err(Error::Timeout { after, .. }) = r {
        return Err(Error::Timeout {
            what: format!(
                "the addresses of {} to be released; still allocated: {} (check `calicoctl ipam show --ip=<ip>`; the old pool stays disabled, re-run to continue)",
                plan.from.name,
                crate::core::findings::name_some(&remaining)
            ),
            after,
        });
    }
    r
}

async fn phase_delete_source(
    ctx: &Ctx<'_>,
    writer: &PoolWriter<'_>,
    plan: &Plan,
    state: &mut MigrationState,
) -> Result<()> {
    if state.phase >= Phase::SourceDeleted {
        return Ok(());
    }
    let from_writer = PoolWriter {
        via_operator: writer.via_operator || plan.from.managed_by == ManagedBy::Operator && ctx.calico.operator,
        ..*writer
    };
    from_writer.delete_safely(&plan.from, Some(plan.to.cidr)).await?;
    let av = ctx.calico.resource(Kind::IPPool).api_version;
    lock::record_event(
        ctx.cluster,
        pool_event(&plan.from.name, &av),
        &format!("kubectl-ippool migrate: deleted after every pod moved to {}", plan.to.name),
    )
    .await;
    ctx.printer.note(format!("IPPool {} deleted.", plan.from.name));
    checkpoint(ctx, state, Phase::SourceDeleted).await?;
    let ipam = ctx.calico.read_ipam(ctx.cluster).await?;
    let old_only =
        |c: &IpNet| crate::core::cidr::within(c, &plan.from.cidr) && !crate::core::cidr::within(c, &plan.to.cidr);
    let left: Vec<String> = ipam
        .blocks
        .iter()
        .filter(|b| old_only(&b.cidr))
        .map(|b| format!("IPAMBlock {}", b.name))
        .chain(ipam.affinities.iter().filter(|a| old_only(&a.cidr)).map(|a| format!("BlockAffinity {}", a.name)))
        .collect();
    if !left.is_empty() {
        ctx.printer.warn(format!(
            "IPAM objects of {} remain: {}; `kubectl ippool verify` shows them",
            plan.from.cidr,
            crate::core::findings::name_some(&left)
        ));
    }
    Ok(())
}

/// The old pool no longer exists but the record was not closed (killed
/// right after the delete): close it.
async fn finish_without_pool(printer: &Printer, cluster: &Cluster, mut state: MigrationState) -> Result<i32> {
    let lease = LeaseGuard::acquire(cluster).await?;
    printer.note(format!("IPPool {} is already deleted; closing the migration record.", state.from_pool));
    let r = save(cluster, &mut state, Phase::Done).await;
    lease.release().await;
    r?;
    printer.stdout(&format!("Migration from {} to {} is done.\n", state.from_pool, state.to_pool));
    Ok(0)
}

/// `--rollback`: before the old pool is deleted, re-enable it and disable
/// the new one. Pods already moved keep their addresses (a disabled pool
/// only stops new allocations).
async fn rollback(printer: &Printer, cluster: &Cluster, calico: &Calico, args: &MigrateArgs) -> Result<i32> {
    let rec = crate::cluster::state::read_state(cluster).await?;
    let Some(mut state) = rec.filter(|r| r.from_pool == args.from && !r.phase.is_finished()) else {
        return Err(Error::refused(
            format!("roll back a migration from {}", args.from),
            vec![format!("no unfinished migration from {} is recorded", args.from)],
        ));
    };
    if state.phase >= Phase::SourceDeleted {
        return Err(Error::refused(
            format!("roll back the migration from {}", args.from),
            vec![format!(
                "IPPool {} was already deleted (phase {}); re-create it by hand if needed",
                state.from_pool,
                state.phase.as_str()
            )],
        ));
    }
    printer.note(format!(
        "Rollback in {}: re-enable IPPool {}, disable IPPool {} (pods already moved keep their addresses).",
        cluster.describe(),
        state.from_pool,
        state.to_pool
    ));
    if args.dry_run {
        printer.note("Dry run: nothing was changed.");
        return Ok(0);
    }
    printer.confirm("Roll back?", args.yes)?;
    let lease = LeaseGuard::acquire(cluster).await?;
    let r = async {
        let pools = calico.list_pools(cluster).await?;
        // set_disabled goes through the Installation for pools it lists.
        let w = |_: &str| PoolWriter { cluster, calico, via_operator: calico.operator, timeout: args.timeout };
        w(&state.from_pool).set_disabled(&state.from_pool, false).await?;
        if pools.iter().any(|p| p.name == state.to_pool) {
            w(&state.to_pool).set_disabled(&state.to_pool, true).await?;
        }
        let av = calico.resource(Kind::IPPool).api_version;
        lock::record_event(
            cluster,
            EventTarget { api_version: &av, kind: "IPPool", namespace: None, name: &state.from_pool },
            "kubectl-ippool migrate --rollback: re-enabled",
        )
        .await;
        canary::cleanup_leftovers(cluster).await;
        movers::uncordon_ours(cluster).await?;
        save(cluster, &mut state, Phase::RolledBack).await
    }
    .await;
    lease.release().await;
    r?;
    printer.stdout(&format!("Rolled back: IPPool {} enabled, IPPool {} disabled.\n", state.from_pool, state.to_pool));
    Ok(0)
}

/// Every permission the run will use, asked up front.
fn permissions_needed(calico: &Calico, plan: &Plan, args: &MigrateArgs) -> Vec<Need> {
    let ks = Some(STATE_NAMESPACE);
    let mut needs = Vec::new();
    let pool = calico.resource(Kind::IPPool);
    if plan.via_operator {
        needs.push(Need::new("get", GROUP_OPERATOR, "installations", None));
        needs.push(Need::new("update", GROUP_OPERATOR, "installations", None));
    } else {
        for verb in ["create", "update", "delete"] {
            needs.push(Need::new(verb, &pool.group, "ippools", None));
        }
        for kind in [Kind::BlockAffinity, Kind::IPAMBlock] {
            let r = calico.resource(kind);
            needs.push(Need::new("update", &r.group, &r.plural, None));
            needs.push(Need::new("delete", &r.group, &r.plural, None));
        }
    }
    let mut seen = BTreeSet::new();
    for m in &plan.moves {
        let ns = m.owner.as_ref().map(|o| o.namespace.clone());
        match (m.kind, &m.owner) {
            (MoveKind::Rollout, Some(o)) => {
                let res = match o.kind {
                    OwnerKind::Deployment => "deployments",
                    OwnerKind::StatefulSet => "statefulsets",
                    _ => "daemonsets",
                };
                if seen.insert(("patch", res, ns.clone())) {
                    needs.push(Need::new("patch", "apps", res, ns.as_deref()));
                }
            }
            (MoveKind::Evict | MoveKind::EvictForGood, _) | (MoveKind::Drain, _) => {
                let namespaces: BTreeSet<String> =
                    m.pods.iter().filter_map(|k| k.split_once('/').map(|(n, _)| n.to_string())).collect();
                for n in namespaces {
                    if seen.insert(("create", "pods/eviction", Some(n.clone()))) {
                        needs.push(Need::new("create", "", "pods", Some(&n)).sub("eviction"));
                    }
                }
            }
            _ => {}
        }
    }
    if args.strategy == Strategy::Drain {
        needs.push(Need::new("patch", "", "nodes", None));
    }
    needs.push(Need::new("create", "", "namespaces", None));
    needs.push(Need::new("delete", "", "namespaces", None));
    needs.push(Need::new("create", "", "pods", None));
    for verb in ["get", "create", "update"] {
        needs.push(Need::new(verb, "", "configmaps", ks));
        needs.push(Need::new(verb, "coordination.k8s.io", "leases", ks));
    }
    needs
}

/// Print the plan: a readable list (stdout), or JSON/YAML; warnings and
/// blockers on stderr.
fn show_plan(
    printer: &Printer,
    cluster: &Cluster,
    plan: &Plan,
    args: &MigrateArgs,
    resume: Option<Phase>,
) -> Result<()> {
    printer.note(format!("Cluster: {}", cluster.describe()));
    if printer.is_machine_readable() {
        // A real run prints one document: the summary at the end.
        if !args.dry_run {
            return Ok(());
        }
        printer.data(&PlanDocument {
            kind: "IPPoolMigrationPlan",
            context: cluster.context.clone(),
            dry_run: args.dry_run,
            resume_from_phase: resume,
            plan,
        })?;
    } else {
        printer.stdout(&render_plan(plan, resume, printer.wide()));
    }
    for w in &plan.warnings {
        printer.warn(w);
    }
    Ok(())
}

/// The plan as text; `wide` names every pod, otherwise pods are counted.
pub fn render_plan(plan: &Plan, resume: Option<Phase>, wide: bool) -> String {
    let mut out = String::new();
    let to = &plan.to;
    if let Some(phase) = resume {
        out.push_str(&format!("Resuming at phase {}.\n", phase.as_str()));
    }
    out.push_str(&format!(
        "Plan: move pods from IPPool {} ({}) to IPPool {} ({})\n",
        plan.from.name, plan.from.cidr, to.name, to.cidr
    ));
    for (i, s) in plan.steps.iter().enumerate() {
        let line = match s {
            PoolStep::CreatePool { name, cidr, via } => format!(
                "create IPPool {name} ({cidr}, blockSize {}, {}, natOutgoing {}, nodeSelector {}) via {via}",
                to.block_size,
                to.encap_label(),
                to.nat_outgoing,
                to.node_selector
            ),
            PoolStep::UseExistingPool { name, cidr } => format!("use the existing IPPool {name} ({cidr})"),
            PoolStep::DisablePool { name, via } => {
                format!("disable IPPool {name} (existing pods keep working) via {via}")
            }
            PoolStep::Canary { pods } => {
                format!("canary: {pods} test pod(s) in a temporary namespace must get an address from {}", to.cidr)
            }
            PoolStep::MovePods { workloads, pods } => {
                format!("move {pods} pod(s) of {workloads} workload(s), in this order:")
            }
            PoolStep::WaitForTunnelAddresses { pool } => {
                format!("wait until nothing holds an address of {pool} (pods, node tunnel addresses)")
            }
            PoolStep::DeletePool { name, .. } => {
                format!("delete IPPool {name}: release its block affinities, then delete it")
            }
        };
        out.push_str(&format!("  {}. {line}\n", i + 1));
        if matches!(s, PoolStep::MovePods { .. }) {
            let rows: Vec<Vec<String>> = plan
                .moves
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    let kind = match m.kind {
                        MoveKind::Rollout => "rollout restart",
                        MoveKind::Evict => "evict",
                        MoveKind::EvictForGood => "evict (gone for good)",
                        MoveKind::Drain => "drain node",
                        MoveKind::WaitJob => "wait to finish",
                    };
                    let pods = if wide { m.pods.join(",") } else { m.pods.len().to_string() };
                    vec![format!("{}", j + 1), m.target.clone(), kind.into(), pods, m.note.clone().unwrap_or_default()]
                })
                .collect();
            if rows.is_empty() {
                out.push_str("       (no pods to move)\n");
            } else {
                for line in crate::output::render_table(&["#", "workload", "strategy", "pods", "note"], rows).lines() {
                    out.push_str(&format!("       {line}\n"));
                }
            }
        }
    }
    for s in &plan.skipped {
        out.push_str(&format!("Not moved: {}: {}\n", s.pod, s.reason));
    }
    if !plan.blockers.is_empty() {
        out.push_str("Blockers (fix these first; nothing will change until then):\n");
        for b in &plan.blockers {
            out.push_str(&format!("  - {b}\n"));
        }
    }
    out
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

    fn record(phase: Phase) -> MigrationState {
        MigrationState {
            from_pool: "old".into(),
            from_cidr: "192.168.0.0/16".into(),
            to_pool: "10.0.0.0-16".into(),
            to_cidr: "10.0.0.0/16".into(),
            created_target: true,
            phase,
            started_at: "t".into(),
            updated_at: "t".into(),
            started_by: "me@host:1".into(),
            original_from_pool: Value::Null,
            total: 3,
            done: vec![],
            failed: vec![],
        }
    }

    #[test]
    fn flags_parse_with_safe_defaults() {
        let a = args(&["--to", "10.0.0.0/16"]);
        assert_eq!(a.max_parallel, 1);
        assert_eq!(a.strategy, Strategy::Rollout);
        assert_eq!(a.jobs, JobsPolicy::Wait);
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
        assert!(Wrap::try_parse_from(["migrate", "--from", "old", "--to", "a", "--max-parallel", "0"]).is_err());
    }

    #[test]
    fn unfinished_record_for_the_same_migration_is_resumed() {
        let r = record(Phase::MovingPods);
        assert!(resumable_record(Some(&r), &args(&["--to", "10.0.0.0/16"])).unwrap().is_some());
        assert!(resumable_record(Some(&r), &args(&["--to-pool", "10.0.0.0-16"])).unwrap().is_some());
        assert!(resumable_record(Some(&record(Phase::Done)), &args(&["--to", "10.0.0.0/16"])).unwrap().is_none());
        let e = resumable_record(Some(&r), &args(&["--to", "10.1.0.0/16"])).unwrap_err().to_string();
        assert!(e.contains("is recorded in phase MovingPods") && e.contains("--rollback"), "{e}");
    }

    #[test]
    fn permissions_cover_pools_moves_and_bookkeeping() {
        use crate::core::model::{Owner, Pool};
        let calico = Calico {
            mode: crate::cluster::calico::ApiMode::CrdV1,
            operator: false,
            calico_version: None,
            cluster_type: None,
        };
        let owner =
            Owner { kind: OwnerKind::Deployment, other_kind: None, namespace: "shop".into(), name: "web".into() };
        let plan = Plan {
            from: Pool::new("old", "192.168.0.0/16".parse().unwrap()),
            to: Pool::new("new", "10.0.0.0/16".parse().unwrap()),
            create_target: true,
            via_operator: false,
            steps: vec![],
            moves: vec![
                Move {
                    target: owner.display(),
                    kind: MoveKind::Rollout,
                    owner: Some(owner.clone()),
                    pods: vec!["shop/web-1".into()],
                    pod_uids: vec!["u".into()],
                    note: None,
                },
                Move {
                    target: "Bare shop/debug".into(),
                    kind: MoveKind::EvictForGood,
                    owner: None,
                    pods: vec!["shop/debug".into()],
                    pod_uids: vec!["u".into()],
                    note: None,
                },
            ],
            skipped: vec![],
            blockers: vec![],
            warnings: vec![],
        };
        let needs: Vec<String> = permissions_needed(&calico, &plan, &args(&["--to", "10.0.0.0/16"]))
            .iter()
            .map(|n| n.can_i_args())
            .collect();
        for want in [
            "create ippools.crd.projectcalico.org",
            "delete blockaffinities.crd.projectcalico.org",
            "patch deployments.apps -n shop",
            "create pods --subresource=eviction -n shop",
            "create namespaces",
            "update leases.coordination.k8s.io -n kube-system",
            "update configmaps -n kube-system",
        ] {
            assert!(needs.iter().any(|n| n == want), "{want} missing from {needs:?}");
        }
        let doc = PlanDocument {
            kind: "IPPoolMigrationPlan",
            context: "c".into(),
            dry_run: true,
            resume_from_phase: None,
            plan: &plan,
        };
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        assert!(yaml.contains("kind: IPPoolMigrationPlan") && yaml.contains("kind: evictForGood"), "{yaml}");
        let text = render_plan(&plan, Some(Phase::MovingPods), true);
        assert!(text.starts_with("Resuming at phase MovingPods."), "{text}");
    }
}
