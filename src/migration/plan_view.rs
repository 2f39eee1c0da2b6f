//! The plan as a person reads it (text) and as a program reads it
//! (`--dry-run -o json|yaml`).

use serde::Serialize;

use super::MigrateOptions;
use crate::cluster::Cluster;
use crate::core::plan::{Estimate, Move, MoveKind, Plan, PoolStep};
use crate::core::rules::RulesReport;
use crate::core::state::Phase;
use crate::error::Result;
use crate::output::Printer;

/// What `--dry-run -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlanDocument<'a> {
    pub(crate) kind: &'static str,
    pub(crate) context: String,
    pub(crate) dry_run: bool,
    pub(crate) resume_from_phase: Option<Phase>,
    #[serde(flatten)]
    pub(crate) plan: &'a Plan,
    /// Rules and addresses naming the old CIDR, and the patches `--update-rules` sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rules: Option<&'a RulesReport>,
}

/// What to know before letting the operator apply our pool changes;
/// `helm` says whether a Helm release owns the Installation.
pub(crate) fn operator_warnings(plan: &Plan, helm: bool) -> Vec<String> {
    let mut out = Vec::new();
    if helm {
        out.push(format!(
            "Installation default is managed by Helm: after this migration, put IPPool {} ({}) into the chart's installation.calicoNetwork.ipPools values, or the next helm upgrade brings {} back",
            plan.to.name, plan.to.cidr, plan.from.name
        ));
    }
    if crate::core::cidr::within(&plan.to.cidr, &plan.from.cidr) {
        out.push(format!(
            "the operator deletes {} by releasing every block affinity inside {}, including those of the new pool {}; its blocks lose their node affinity (pods keep working, nodes claim new blocks)",
            plan.from.name, plan.from.cidr, plan.to.cidr
        ));
    }
    out
}

/// Print the plan: a readable list (stdout), or JSON/YAML; warnings and
/// blockers on stderr.
pub(crate) fn show_plan(
    printer: &Printer,
    cluster: &Cluster,
    plan: &Plan,
    rules: &RulesReport,
    opts: &MigrateOptions,
    resume: Option<Phase>,
) -> Result<()> {
    printer.note(format!("Cluster: {}", cluster.describe()));
    if printer.is_machine_readable() {
        // A real run prints one document: the summary at the end.
        if !opts.dry_run {
            return Ok(());
        }
        printer.data(&PlanDocument {
            kind: "IPPoolMigrationPlan",
            context: cluster.context.clone(),
            dry_run: opts.dry_run,
            resume_from_phase: resume,
            plan,
            rules: Some(rules),
        })?;
    } else {
        printer.stdout(&render_plan(plan, resume, printer.wide()))?;
        printer.stdout(&super::rules::render(rules, opts.update_rules, opts.dry_run))?;
    }
    for w in &plan.warnings {
        printer.warn(w);
    }
    Ok(())
}

/// `expected: 25 rounds of pod start-up (...)`.
fn describe_estimate(e: &Estimate) -> String {
    let time = match (e.seconds, e.pod_start_seconds) {
        (Some(total), Some(each)) => format!(
            ", at least {} at {each:.0}s a round",
            humantime::format_duration(std::time::Duration::from_secs(total.round() as u64))
        ),
        _ => String::new(),
    };
    format!(
        "expected: {} round(s) of pod start-up{time}, {} lane(s) {} at a time, at most {} pod(s) down at once; no PodDisruptionBudget goes below what it allows",
        e.rounds, e.lanes, e.parallel, e.max_unavailable
    )
}

/// The plan as text; `wide` names every pod, otherwise pods are counted.
pub fn render_plan(plan: &Plan, resume: Option<Phase>, wide: bool) -> String {
    let mut out = String::new();
    let to = &plan.to;
    if let Some(phase) = resume {
        out.push_str(&format!("Resuming at phase {}.\n", phase.as_str()));
    }
    let pairs: Vec<String> = plan
        .pairs()
        .iter()
        .map(|(f, t, _)| format!("IPPool {} ({}) to IPPool {} ({})", f.name, f.cidr, t.name, t.cidr))
        .collect();
    out.push_str(&format!("Plan: move pods from {}\n", pairs.join(", and from ")));
    for (i, s) in plan.steps.iter().enumerate() {
        let line = match s {
            PoolStep::CreatePool { name, cidr, via } => {
                let to = plan.pairs().into_iter().map(|(_, t, _)| t).find(|t| &t.name == name).unwrap_or(to);
                format!(
                    "create IPPool {name} ({cidr}, blockSize {}, {}, natOutgoing {}, nodeSelector {}) via {via}",
                    to.block_size,
                    to.encap_label(),
                    to.nat_outgoing,
                    to.node_selector
                )
            }
            PoolStep::UseExistingPool { name, cidr } => format!("use the existing IPPool {name} ({cidr})"),
            PoolStep::DisablePool { name, via } => {
                format!("disable IPPool {name} (existing pods keep working) via {via}")
            }
            PoolStep::Canary { pods, nodes, image, paths } => {
                let mut t = format!(
                    "canary, while the old pool still serves ({image}, in a temporary namespace): pods pinned to {} must get its addresses ({}) and these paths must carry a TCP connection:",
                    plan.new_cidrs().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" and "),
                    canary_where(*pods, nodes)
                );
                for p in paths {
                    t.push_str(&format!("\n       - {p}"));
                }
                t.push_str("\n     A path whose pods cannot run is NOT CHECKED (a warning, never passed); a failed path stops the run with nothing moved.");
                t
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
                    let workload = if m.kind == MoveKind::Drain { m.label() } else { m.target.clone() };
                    let at_once = at_once_cell(m);
                    let mut row = vec![format!("{}", j + 1), workload, kind.into(), pods, at_once];
                    if wide {
                        row.push(m.lane.clone());
                    }
                    row.push(m.note.clone().unwrap_or_default());
                    row
                })
                .collect();
            if rows.is_empty() {
                out.push_str("       (no pods to move)\n");
            } else {
                let headers: &[&str] = if wide {
                    &["#", "workload", "strategy", "pods", "at once", "lane", "why"]
                } else {
                    &["#", "workload", "strategy", "pods", "at once", "why"]
                };
                for line in crate::output::render_table(headers, rows).lines() {
                    out.push_str(&format!("       {line}\n"));
                }
                out.push_str(&format!("       {}\n", describe_estimate(&plan.estimate)));
            }
        }
    }
    let downtime: Vec<String> = plan
        .downtime()
        .map(|(m, d)| {
            let gap = d.gap_seconds.map_or("until a replacement is Ready".to_string(), |s| {
                format!("about {s:.0}s (its pods took that long to become Ready)")
            });
            format!("  - {}: {}; no pod Ready for {gap}\n", m.label(), d.why)
        })
        .collect();
    if !downtime.is_empty() {
        out.push_str("Expected to go to zero Ready pods (its Services have no endpoint meanwhile):\n");
        out.extend(downtime);
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

/// The AT ONCE cell: pods down at once, and the pods added first when the
/// move surges (`+1 surge` for a rollout with maxSurge 1, maxUnavailable 0).
fn at_once_cell(m: &Move) -> String {
    if m.kind == MoveKind::WaitJob {
        return "-".to_string();
    }
    match (m.at_once, m.surge + m.rollout_surge) {
        (down, 0) => down.to_string(),
        (0, extra) => format!("+{extra} surge"),
        (down, extra) => format!("{down}, +{extra} surge"),
    }
}

/// The nodes a canary step runs on, as the plan shows them.
fn canary_where(pods: usize, nodes: &[String]) -> String {
    match nodes {
        [] => "no node to run on".to_string(),
        [one] => format!("node {one}"),
        _ if pods > 1 => format!("nodes {}", nodes.join(", ")),
        _ => format!("one of nodes {}", nodes.join(", ")),
    }
}
