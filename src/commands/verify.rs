//! `kubectl ippool verify`: is every pod where it should be, and is
//! Calico's IPAM consistent? Meant for CI and cron: the checks, their codes,
//! the JSON/YAML document and the exit code (0 clean, 1 a check failed,
//! 2 error) are stable.

use clap::Args;
use serde::Serialize;

use crate::cluster::listing::Freshness;
use crate::cluster::probe::{self, ProbeOptions};
use crate::cluster::snapshot::Snapshot;
use crate::cluster::testpods::TEST_POD_IMAGE;
use crate::cluster::{events, templates, Cluster};
use crate::commands::flags::{parse_duration, KubeArgs};
use crate::core::checks::{self, Check, Expectations, IpamFigures, Status, Summary, VerifyInput};
use crate::core::cidr::parse_canonical;
use crate::core::findings::Severity;
use crate::core::model::ProbeOutcome;
use crate::core::plan::connectivity::{probe_setup, PathResult, CANARY_IMAGE};
use crate::error::{Error, Result, EXIT_DRIFT};
use crate::heap;
use crate::output::OutputFormat;
use crate::output::Printer;

const EXAMPLES: &str = "\
Examples:
  # Every check; exit 0 (clean), 1 (a check failed), 2 (error)
  kubectl ippool verify

  # After a migration: new pods land in 'new-pool', none is left on the old one
  kubectl ippool verify --to new-pool --from default-ipv4-ippool

  # The old pool is already deleted: name its range
  kubectl ippool verify --to new-pool --from default-ipv4-ippool --from-cidr 192.168.0.0/16

  # Also start a test pod on every node and check the address it gets, and
  # send traffic between two test pods, through a Service and from a node
  kubectl ippool verify --probe --probe-per-node

  # For CI: warnings fail too, machine-readable result
  kubectl ippool verify --strict -o json | jq '.checks[] | select(.status != \"PASS\")'";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    /// Output format: wide (lists every object at fault), json or yaml (default: table).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, hide_default_value = true)]
    pub output: OutputFormat,

    /// Print tables without their header line.
    #[arg(long)]
    pub no_headers: bool,

    /// The pool(s) new pods should get addresses from (repeatable; default: the migration record's target).
    #[arg(long = "to", value_name = "POOL")]
    pub to: Vec<String>,

    /// The pool being retired (default: the migration record's source); it may already be deleted.
    #[arg(long, value_name = "POOL")]
    pub from: Option<String>,

    /// The retired pool's CIDR, for when it is deleted and no migration record has it.
    #[arg(long, value_name = "CIDR")]
    pub from_cidr: Option<String>,

    /// Treat warnings as failures (exit 1).
    #[arg(long)]
    pub strict: bool,

    /// Start test pods in a temporary namespace: check the pool their addresses come from, and that TCP
    /// connections flow pod to pod across nodes, to a ClusterIP Service and from another node (writes; cleaned up).
    #[arg(long)]
    pub probe: bool,

    /// With --probe: one test pod per node.
    #[arg(long, requires = "probe")]
    pub probe_per_node: bool,

    /// With --probe: how long to wait for an address.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s", requires = "probe")]
    pub probe_timeout: std::time::Duration,

    /// With --probe: the image of the test pod (never needs to run, only to get an address).
    #[arg(long, value_name = "IMAGE", default_value = TEST_POD_IMAGE, requires = "probe")]
    pub probe_image: String,

    /// With --probe: the image of the traffic pods (agnhost: `netexec` serves, `connect` is the client).
    #[arg(long, value_name = "IMAGE", default_value = CANARY_IMAGE, requires = "probe")]
    pub probe_traffic_image: String,
}

/// One traffic path of the probe and what became of it.
#[derive(Debug, Serialize)]
pub struct ProbePath {
    pub path: String,
    #[serde(flatten)]
    pub result: PathResult,
}

/// The JSON/YAML document of `verify`.
///
/// ```text
/// kind: IPPoolVerify
/// context: string                 kubeconfig context checked
/// result: PASS | WARN | FAIL      worst status (FAIL if --strict and any WARN)
/// strict: bool
/// checks: [ { code, name, category (pools|pods|rules|ipam|probe),
///             status (PASS|WARN|FAIL|NOT_CHECKED), message, objects: [string] } ]
/// summary: { total, passed, warnings, failed, notChecked }
/// ipam: { blocks, allocations, inUseIps, leakedIps, inUseNotInActivePool,
///         inUseWithoutAllocation, handlesWithoutIps, missingHandles,
///         multipleOwners, invalidBlocks, calicoctlProblems }
/// probe: [ { pod, node, ip, error } ]   only with --probe
/// probePaths: [ { path, result (passed|failed|notChecked), why } ]   only with --probe
/// ```
/// Every check is always present (PASS when clean), in a fixed order.
/// NOT_CHECKED (targetPool and oldPoolRetired when no pool is named and no
/// migration is recorded) is neither a pass nor a failure: it does not
/// change `result` or the exit code.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub kind: &'static str,
    pub context: String,
    pub result: Severity,
    pub strict: bool,
    pub checks: Vec<Check>,
    pub summary: Summary,
    pub ipam: IpamFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Vec<ProbeOutcome>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_paths: Option<Vec<ProbePath>>,
}

pub async fn run(kube: &KubeArgs, args: &VerifyArgs) -> Result<u8> {
    let printer = Printer::new(args.output).no_headers(args.no_headers);
    let from_cidr = args
        .from_cidr
        .as_deref()
        .map(parse_canonical)
        .transpose()
        .map_err(|e| Error::Usage(format!("--from-cidr: {e}")))?;
    let cluster = Cluster::connect(&kube.connect_options()).await?;

    // IPAM is cluster-wide: read every pod; `-n` narrows only the pod checks.
    let mut everywhere = cluster.clone();
    everywhere.namespace = None;
    let ((snap, rule_objects), templates, failures) = tokio::try_join!(
        // A check of the present state, not a plan: the watch cache will do.
        Snapshot::detect_and_read(&everywhere, true, Freshness::Cached),
        templates::list_pinned_templates(&cluster),
        events::list_sandbox_failures(&cluster),
    )?;
    if let Some(line) = heap::report("reading the cluster") {
        printer.note(line);
    }

    let expect = Expectations {
        targets: args.to.clone(),
        from: args.from.clone(),
        from_cidr,
        namespace: cluster.namespace.clone(),
    };
    let input = VerifyInput {
        inv: &snap.inventory,
        nodes: &snap.nodes,
        namespaces: &snap.namespaces,
        networks: &snap.networks,
        migration: snap.migration.as_ref(),
        templates: &templates,
        sandbox_failures: &failures,
        rules: &rule_objects.objects,
        rules_unreadable: &rule_objects.unreadable,
        expect: &expect,
    };
    let (mut checks, ipam) = checks::run_checks(&input);

    let mut probe_outcomes = None;
    let mut probe_paths = None;
    if args.probe {
        // Probe pods select linux nodes (a pod pinned elsewhere would be refused by the kubelet).
        let nodes =
            args.probe_per_node.then(|| snap.nodes.iter().filter(|n| n.is_linux()).map(|n| n.name.clone()).collect());
        let setup = probe_setup(&snap.inventory.pools, &snap.nodes, &checks::target_pools(&input));
        let paths = setup.clone().ok().map(|s| (s, args.probe_traffic_image.clone()));
        let opts = ProbeOptions { image: args.probe_image.clone(), timeout: args.probe_timeout, nodes, paths };
        if !printer.is_machine_readable() {
            printer.note("Starting probe pod(s)...");
        }
        let got = probe::run(&cluster, &opts).await?;
        checks.push(checks::probe_check(&input, &got.addresses));
        checks.push(checks::probe_paths_check(&setup, &got.paths));
        probe_outcomes = Some(got.addresses);
        let (a, b) = setup.as_ref().map(|s| s.nodes.clone()).unwrap_or_default();
        probe_paths =
            Some(got.paths.into_iter().map(|(p, result)| ProbePath { path: p.probe_name(&a, &b), result }).collect());
    }

    let report = VerifyReport {
        kind: "IPPoolVerify",
        context: cluster.context.clone(),
        result: checks::overall(&checks, args.strict),
        strict: args.strict,
        summary: checks::summarize(&checks),
        checks,
        ipam,
        probe: probe_outcomes,
        probe_paths,
    };
    if printer.is_machine_readable() {
        printer.data(&report)?;
    } else {
        render(&printer, &report)?;
    }
    printer.note(summary_line(&report));
    Ok(if report.result == Severity::Fail { EXIT_DRIFT } else { 0 })
}

fn status_label(s: Severity) -> &'static str {
    match s {
        Severity::Pass => "PASS",
        Severity::Warn => "WARN",
        Severity::Fail => "FAIL",
    }
}

/// One line for a person, on stderr: the verdict and the counts.
pub fn summary_line(r: &VerifyReport) -> String {
    let s = &r.summary;
    let strict = if r.strict && s.warnings > 0 { " (--strict: warnings fail)" } else { "" };
    format!(
        "verify {}: {} checks, {} passed, {} warning(s), {} failed, {} not checked{strict}; IPAM: {} allocations, {} problem(s) in calicoctl's terms",
        status_label(r.result),
        s.total,
        s.passed,
        s.warnings,
        s.failed,
        s.not_checked,
        r.ipam.allocations,
        r.ipam.calicoctl_problems
    )
}

/// The table: CHECK, STATUS, DETAILS; `-o wide` adds CODE and then lists
/// every object at fault, one per line.
pub fn render(printer: &Printer, r: &VerifyReport) -> Result<()> {
    printer.stdout(&render_text(r, printer.wide(), printer.headers))?;
    Ok(())
}

pub fn render_text(r: &VerifyReport, wide: bool, headers_on: bool) -> String {
    let mut headers = vec!["CHECK", "STATUS", "DETAILS"];
    if wide {
        headers.insert(1, "CODE");
    }
    let rows = r
        .checks
        .iter()
        .map(|c| {
            let mut row = vec![c.name.to_string(), c.status.label().to_string(), c.message.clone()];
            if wide {
                row.insert(1, c.code.to_string());
            }
            row
        })
        .collect();
    let mut out = crate::output::render_rows(&headers, rows, headers_on);
    if wide {
        let rows: Vec<Vec<String>> = r
            .checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .flat_map(|c| {
                c.objects.iter().map(move |o| vec![c.code.to_string(), c.status.label().to_string(), o.clone()])
            })
            .collect();
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(&crate::output::render_rows(&["CODE", "STATUS", "OBJECT"], rows, headers_on));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::checks::Category;

    fn report() -> VerifyReport {
        let checks = vec![
            Check {
                code: "targetPool",
                name: "Target pool",
                category: Category::Pools,
                status: Status::Pass,
                message: "new exists".into(),
                objects: vec![],
            },
            Check {
                code: "oldPoolRetired",
                name: "Old pool retired",
                category: Category::Pools,
                status: Status::NotChecked,
                message: "no old pool named (--from) and no migration recorded".into(),
                objects: vec![],
            },
            Check {
                code: "pinnedToRetiredPool",
                name: "Pool pins",
                category: Category::Pods,
                status: Status::Fail,
                message: "1 object(s) are pinned".into(),
                objects: vec!["Namespace legacy".into()],
            },
        ];
        VerifyReport {
            kind: "IPPoolVerify",
            context: "kubesim".into(),
            result: checks::overall(&checks, false),
            strict: false,
            summary: checks::summarize(&checks),
            checks,
            ipam: IpamFigures::default(),
            probe: None,
            probe_paths: None,
        }
    }

    #[test]
    fn table_and_wide_table() {
        let r = report();
        insta::assert_snapshot!(render_text(&r, false, true), @r"
        CHECK              STATUS        DETAILS
        Target pool        PASS          new exists
        Old pool retired   NOT CHECKED   no old pool named (--from) and no migration recorded
        Pool pins          FAIL          1 object(s) are pinned
        ");
        insta::assert_snapshot!(render_text(&r, true, true), @r"
        CHECK              CODE                  STATUS        DETAILS
        Target pool        targetPool            PASS          new exists
        Old pool retired   oldPoolRetired        NOT CHECKED   no old pool named (--from) and no migration recorded
        Pool pins          pinnedToRetiredPool   FAIL          1 object(s) are pinned

        CODE                  STATUS   OBJECT
        pinnedToRetiredPool   FAIL     Namespace legacy
        ");
    }

    #[test]
    fn json_schema_is_stable() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["kind"], "IPPoolVerify");
        assert_eq!(v["result"], "FAIL");
        assert_eq!(v["summary"]["failed"], 1);
        assert_eq!(v["summary"]["notChecked"], 1);
        assert_eq!(v["checks"][1]["status"], "NOT_CHECKED");
        assert_eq!(v["checks"][2]["code"], "pinnedToRetiredPool");
        assert_eq!(v["checks"][2]["status"], "FAIL");
        assert_eq!(v["checks"][2]["category"], "pods");
        assert_eq!(v["checks"][2]["objects"][0], "Namespace legacy");
        assert_eq!(v["ipam"]["calicoctlProblems"], 0);
        assert!(v.get("probe").is_none());
        assert!(
            summary_line(&report())
                .starts_with("verify FAIL: 3 checks, 1 passed, 0 warning(s), 1 failed, 1 not checked;"),
            "{}",
            summary_line(&report())
        );
    }
}
