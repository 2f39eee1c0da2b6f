//! The migration: move every pod off one IP pool onto another, without an
//! outage, resumably.
//!
//! `run` reads as four steps: plan (pure, `core::plan`) → preflight
//! (blockers, permissions, a dry run of the canary through admission) →
//! confirm → execute. Execution (`phases`) walks
//! the phases of `core::state::Phase`; after each one the record in
//! ConfigMap kube-system/kubectl-ippool-migration is updated, so a re-run of
//! the same command (after Ctrl-C, a crash or SIGKILL) continues at the
//! recorded phase. Each phase re-checks the cluster rather than trusting the
//! record: creating a pool that exists, disabling a disabled pool or
//! restarting a workload whose pods already moved are no-ops.

mod canary_failed;
mod checkpoint;
mod facts;
mod leaks;
mod moves;
mod permissions;
mod phases;
mod plan_view;
mod rollback;
mod rules;
mod start;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::calico::Calico;
use crate::cluster::lease::LeaseGuard;
use crate::cluster::pools::PoolWriter;
use crate::cluster::record::{STATE_CONFIGMAP, STATE_NAMESPACE};
use crate::cluster::{access, canary, movers, Cluster};
use crate::core::model::ManagedBy;
use crate::core::plan::{self, JobsPolicy, PoolOverrides, Strategy, TargetRequest};
use crate::core::state::Phase;
use crate::error::{Error, Result};
use crate::output::Printer;
use facts::Facts;
use permissions::permissions_needed;
use plan_view::show_plan;
use start::{new_record, paired, resumable_record};

pub use rollback::{rollback, RollbackOptions};

/// What to migrate and how: the verb's flags as plain data.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub from: String,
    pub to: TargetRequest,
    /// The other IP family's pair, once paired by family.
    pub also: Vec<(String, TargetRequest)>,
    /// Further `--from` and targets as given, not yet paired (`pair`).
    pub more_from: Vec<String>,
    pub more_to: Vec<TargetRequest>,
    pub overrides: PoolOverrides,
    pub strategy: Strategy,
    /// At most this many lanes at once; None: no cap.
    pub max_parallel: Option<u16>,
    /// At most this many moving pods down at once across the cluster.
    pub max_unavailable: crate::core::budget::IntOrPercent,
    /// Test only: a lane per workload even under a shared budget.
    pub split_shared_lanes: bool,
    /// Only pods matching this label selector.
    pub selector: Option<String>,
    pub jobs: JobsPolicy,
    pub force: bool,
    pub allow_outside_cluster_cidr: bool,
    /// Bound on any single wait.
    pub timeout: Duration,
    pub canary_per_node: bool,
    /// The canary's image (agnhost, `--canary-image`).
    pub canary_image: String,
    /// Scale up a workload whose budget allows nothing, for its move.
    pub surge: bool,
    /// Let a workload without a PodDisruptionBudget have every pod down at once.
    pub allow_downtime: bool,
    /// Add the new pool's CIDR beside the old one in rules and sets that name it.
    pub update_rules: bool,
    pub dry_run: bool,
    pub yes: bool,
    /// Release leaked addresses of the old pool (verified unused) instead of
    /// waiting for calico-kube-controllers to.
    pub release_leaked: bool,
}

/// The final report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    kind: &'static str,
    from: String,
    to: String,
    phase: Phase,
    workloads_moved: usize,
    pods_moved: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
    old_pool_deleted: bool,
    /// What `--update-rules` added to rules and sets (kept after the run:
    /// the old CIDR beside it is for the user to remove, `verify` warns).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rule_changes: Vec<String>,
    seconds: f64,
    /// Of those, moving pods (the part the plan's estimate is about).
    moving_seconds: f64,
    /// The plan's estimate of `movingSeconds` (rounds x median pod start-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate_seconds: Option<f64>,
    /// Most lanes that had pods down at the same time.
    max_lanes_moving: usize,
    /// API requests this run made (for `make bench`).
    api_requests: u64,
    /// Of those, writes (creates, patches, evictions, record updates).
    api_writes: u64,
}

/// The run's shared context.
pub(crate) struct Ctx<'a> {
    printer: &'a Printer,
    cluster: &'a Cluster,
    calico: &'a Calico,
    /// How pools are written (directly or through the operator's Installation), decided once.
    writer: &'a PoolWriter<'a>,
    opts: &'a MigrateOptions,
    /// The canary namespace in use, for cleanup on Ctrl-C.
    canary_ns: Arc<Mutex<Option<String>>>,
    lease: &'a LeaseGuard,
    /// Nodes this run cordoned and workloads it surged, not yet undone:
    /// all the exit clean-up may touch.
    touched: Mutex<Touched>,
}

/// What this run changed that must be undone when it stops.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub(crate) cordoned: Vec<String>,
    pub(crate) surged: Vec<crate::core::model::Owner>,
}

/// Plan, check, confirm and carry out a migration.
pub async fn run(printer: &Printer, cluster: &Cluster, calico: &Calico, opts: &MigrateOptions) -> Result<()> {
    // 1. Plan (no writes).
    let (mut facts, rule_objects) =
        tokio::try_join!(Facts::read(cluster, calico.clone(), opts), crate::cluster::rules::read(cluster, calico))?;
    facts.reservations = crate::core::rules::reserved_cidrs(&rule_objects.objects);
    let given = 1 + opts.more_from.len();
    let opts = &paired(opts, &facts.snap.inventory, facts.snap.migration.as_ref())?;
    if 1 + opts.also.len() > given {
        let all: Vec<String> = std::iter::once(&opts.from).chain(opts.also.iter().map(|(f, _)| f)).cloned().collect();
        printer.note(format!(
            "The unfinished migration on record moves {}: resuming every one of them.",
            all.join(" and ")
        ));
    }
    let record = resumable_record(facts.snap.migration.as_ref(), opts)?;
    // Killed between deleting the two old pools of a dual-stack run: the
    // pairs whose old pool is gone are done; finish the others.
    let inv = &facts.snap.inventory;
    let mut left: Vec<(String, TargetRequest)> = std::iter::once((opts.from.clone(), opts.to.clone()))
        .chain(opts.also.iter().cloned())
        .filter(|(f, _)| inv.pool_named(f).is_some())
        .collect();
    let reduced;
    let opts = if record.is_some() && !left.is_empty() && left.len() < 1 + opts.also.len() {
        let (from, to) = left.remove(0);
        reduced = MigrateOptions { from, to, also: left, ..opts.clone() };
        &reduced
    } else {
        opts
    };
    let from_managed_by_operator = facts
        .snap
        .inventory
        .pool_named(&opts.from)
        .is_some_and(|i| facts.snap.inventory.pools[i].managed_by == ManagedBy::Operator);
    let writer = PoolWriter::for_migration(cluster, calico, &opts.from, from_managed_by_operator, opts.timeout).await?;
    let operator = writer.via_operator;
    if facts.snap.inventory.pool_named(&opts.from).is_none() {
        if let Some(state) = record {
            // The old pool is gone: only the record is left to close.
            return rollback::finish_without_pool(printer, cluster, state, opts.dry_run, opts.yes).await;
        }
    }
    let mut plan = plan::make_plan(&facts.plan_input(opts, operator))
        .map_err(|reasons| Error::refused(format!("migrate {} (nothing was changed)", opts.from), reasons))?;
    if operator {
        plan.warnings.extend(plan_view::operator_warnings(
            &plan,
            crate::cluster::calico::installation_is_helm_managed(cluster).await,
        ));
    }
    let rules_report = rules::report(&rule_objects, &facts.snap.inventory.pods, &mut plan, opts.update_rules);
    show_plan(printer, cluster, &plan, &rules_report, opts, record.as_ref().map(|r| r.phase))?;

    // 2. Preflight: blockers, then permissions, then admission of the canary.
    if !plan.blockers.is_empty() {
        return Err(Error::refused(
            format!("migrate {} until these are fixed (nothing was changed)", opts.from),
            plan.blockers.clone(),
        ));
    }
    if opts.dry_run {
        printer.note("Dry run: nothing was changed.");
        return Ok(());
    }
    access::check(cluster, &permissions_needed(calico, &plan, &rules_report, opts)).await?;
    // Admission must let the canary run: found out now, not after the old
    // pool is disabled (a run resumed past the canary does not start one).
    if record.as_ref().is_none_or(|r| r.phase.canary_due()) {
        let refusals = canary::admission_dry_run(cluster, &opts.canary_image).await?;
        if !refusals.is_empty() {
            return Err(Error::refused(
                format!("migrate {}: the canary could not run (nothing was changed)", opts.from),
                refusals,
            ));
        }
    }

    // 3. Confirm.
    let pairs = plan.pairs();
    let froms: Vec<&str> = pairs.iter().map(|p| p.0.name.as_str()).collect();
    let tos: Vec<&str> = pairs.iter().map(|p| p.1.name.as_str()).collect();
    let question = format!(
        "Migrate {} pod(s) from {} to {} in {}?",
        plan.pod_count(),
        froms.join(" and "),
        tos.join(" and "),
        cluster.describe()
    );
    printer.confirm(&question, opts.yes)?;

    // 4. Execute, holding the lease.
    let lease = LeaseGuard::acquire(cluster).await?;
    // Another run may have started (or ended this one) while we waited.
    let record = match checkpoint::reread(cluster, record.as_ref(), &format!("migrate {}", opts.from)).await {
        Ok(r) => r,
        Err(e) => {
            lease.release().await;
            return Err(e);
        }
    };
    let mut originals = Vec::new();
    for (from, _, _) in plan.pairs() {
        originals.push(writer.get(&from.name).await?);
    }
    let state = record.unwrap_or_else(|| new_record(&plan, &lease, originals));
    let resume = state.resume_command();
    let ctx = Ctx {
        printer,
        cluster,
        calico,
        writer: &writer,
        opts,
        canary_ns: Arc::new(Mutex::new(None)),
        lease: &lease,
        touched: Mutex::new(Touched::default()),
    };
    let outcome = tokio::select! {
        r = phases::execute(&ctx, &plan, state, &facts) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted(format!(
            "the migration record in ConfigMap {STATE_NAMESPACE}/{STATE_CONFIGMAP} keeps the progress; run `{resume}` to continue, or add --rollback to undo"))),
    };
    // Clean up on every path: the canary namespace (this run's own), and
    // the nodes this run cordoned and workloads it scaled up, only while
    // the lease is surely ours (a run that took it over owns them now).
    if let Some(ns) = ctx.canary_ns.lock().ok().and_then(|mut g| g.take()) {
        canary::cleanup(cluster, &ns).await;
    }
    let touched = std::mem::take(&mut *ctx.touched.lock().unwrap_or_else(|e| e.into_inner()));
    match lease.why_lost() {
        None => {
            for n in touched.cordoned {
                if movers::cordon(cluster, &n, false).await.is_ok() {
                    printer.note(format!("node/{n} uncordoned"));
                }
            }
            for o in touched.surged {
                if let Ok(Some(n)) = movers::unsurge(cluster, &o).await {
                    printer.note(format!("{}: back to {n} replica(s)", o.display()));
                }
            }
        }
        Some(why) => {
            let mut left: Vec<String> = touched.cordoned.iter().map(|n| format!("node/{n} (cordoned)")).collect();
            left.extend(touched.surged.iter().map(|o| format!("{} (scaled up)", o.display())));
            if !left.is_empty() {
                printer.warn(format!(
                    "{why}: not undoing {} (the run holding the lease, or the same command run again, undoes them first)",
                    left.join(", ")
                ));
            }
        }
    }
    lease.release().await;
    let mut summary = outcome?;
    summary.api_requests = crate::cluster::requests_made();
    summary.api_writes = crate::cluster::writes_made();
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
        ))?;
        for change in &summary.rule_changes {
            printer.stdout(&format!("Rule updated: {change}\n"))?;
        }
        let per_pod = |n: u64| n as f64 / summary.pods_moved.max(1) as f64;
        if let Some(e) = summary.estimate_seconds {
            printer.note(format!(
                "Moving pods took {:.0}s (the plan estimated {e:.0}s); at most {} lane(s) had pods down at once",
                summary.moving_seconds, summary.max_lanes_moving
            ));
        }
        printer.note(format!(
            "API requests: {} ({:.1} per pod moved), of which writes: {} ({:.1} per pod moved)",
            summary.api_requests,
            per_pod(summary.api_requests),
            summary.api_writes,
            per_pod(summary.api_writes)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plan_view::{render_plan, PlanDocument};
    use super::*;
    use crate::core::model::OwnerKind;
    use crate::core::plan::{Move, MoveKind, Plan};
    use crate::core::state::MigrationState;
    use serde_json::Value;

    /// The options `migrate --from old` plus `extra` flags (`--to C` or `--to-pool P`) give.
    fn args(extra: &[&str]) -> MigrateOptions {
        let to = match extra {
            ["--to", c] => TargetRequest::Cidr(c.to_string()),
            ["--to-pool", p] => TargetRequest::Pool(p.to_string()),
            _ => panic!("unexpected flags {extra:?}"),
        };
        MigrateOptions {
            from: "old".into(),
            to,
            also: vec![],
            more_from: vec![],
            more_to: vec![],
            overrides: PoolOverrides::default(),
            strategy: Strategy::Rollout,
            max_parallel: Some(1),
            max_unavailable: crate::core::budget::IntOrPercent::Percent(10),
            split_shared_lanes: false,
            selector: None,
            jobs: JobsPolicy::Wait,
            force: false,
            allow_outside_cluster_cidr: false,
            timeout: Duration::from_secs(600),
            canary_per_node: false,
            canary_image: crate::core::plan::connectivity::CANARY_IMAGE.into(),
            surge: false,
            allow_downtime: false,
            update_rules: false,
            dry_run: false,
            release_leaked: false,
            yes: false,
        }
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
            pods_moved: 0,
            done: vec![],
            failed: vec![],
            rule_changes: vec![],
            also: vec![],
        }
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
            also: vec![],
            via_operator: false,
            steps: vec![],
            moves: vec![
                Move {
                    owner: Some(owner.clone()),
                    pods: vec!["shop/web-1".into()],
                    pod_uids: vec!["u".into()],
                    ..Move::in_lane(&owner.display(), MoveKind::Rollout, "l", 1)
                },
                Move {
                    pods: vec!["shop/debug".into()],
                    pod_uids: vec!["u".into()],
                    ..Move::in_lane("Bare shop/debug", MoveKind::EvictForGood, "l", 1)
                },
            ],
            skipped: vec![],
            blockers: vec![],
            warnings: vec![],
            estimate: crate::core::plan::Estimate {
                rounds: 2,
                lanes: 2,
                parallel: 1,
                max_unavailable: 1,
                pod_start_seconds: None,
                seconds: None,
            },
        };
        let mut opts = args(&["--to", "10.0.0.0/16"]);
        let rules = crate::core::rules::RulesReport {
            patches: vec![crate::core::rules::ObjectPatch {
                target: crate::core::rules::ObjectRef {
                    api_version: "crd.projectcalico.org/v1".into(),
                    kind: "GlobalNetworkSet".into(),
                    plural: "globalnetworksets".into(),
                    namespace: None,
                    name: "pods".into(),
                },
                class: crate::core::rules::RuleClass::NetworkSet,
                changes: vec![],
                json_patch: vec![],
            }],
            ..Default::default()
        };
        let without: Vec<String> =
            permissions_needed(&calico, &plan, &rules, &opts).iter().map(|n| n.can_i_args()).collect();
        assert!(!without.iter().any(|n| n.contains("globalnetworksets")), "{without:?}");
        opts.update_rules = true;
        let needs: Vec<String> =
            permissions_needed(&calico, &plan, &rules, &opts).iter().map(|n| n.can_i_args()).collect();
        for want in [
            "create ippools.crd.projectcalico.org",
            "delete blockaffinities.crd.projectcalico.org",
            "patch deployments.apps -n shop",
            "create pods --subresource=eviction -n shop",
            "create namespaces",
            "create services",
            "list endpointslices.discovery.k8s.io",
            "watch endpointslices.discovery.k8s.io",
            "update leases.coordination.k8s.io -n kube-system",
            "update configmaps -n kube-system",
            "patch globalnetworksets.crd.projectcalico.org",
        ] {
            assert!(needs.iter().any(|n| n == want), "{want} missing from {needs:?}");
        }
        let doc = PlanDocument {
            kind: "IPPoolMigrationPlan",
            context: "c".into(),
            dry_run: true,
            resume_from_phase: None,
            plan: &plan,
            rules: None,
        };
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        assert!(yaml.contains("kind: IPPoolMigrationPlan") && yaml.contains("kind: evictForGood"), "{yaml}");
        let text = render_plan(&plan, Some(Phase::MovingPods), true);
        assert!(text.starts_with("Resuming at phase MovingPods."), "{text}");
    }
}
