//! The probe checks: the addresses the probe pods got, and the traffic
//! between them (the canary's paths).

use super::defs::{PROBE, PROBE_PATHS};
use super::{targets_and_from, Check, VerifyInput};
use crate::core::findings::{name_some, Severity};
use crate::core::model::ProbeOutcome;
use crate::core::plan::connectivity::{CanaryPath, PathResult, ProbeSetup};

/// The probe's paths: FAIL when one failed; PASS only when every path
/// passed; NOT_CHECKED when none could run; WARN when some passed and the
/// others could not run (never counted as passed).
pub fn probe_paths_check(setup: &Result<ProbeSetup, String>, results: &[(CanaryPath, PathResult)]) -> Check {
    let setup = match setup {
        Err(why) => return Check::not_checked(PROBE_PATHS, format!("no path could run: {why}")),
        Ok(s) => s,
    };
    let (a, b) = (&setup.nodes.0, &setup.nodes.1);
    let mut failed = Vec::new();
    let mut unchecked = Vec::new();
    let mut passed = 0;
    for (p, r) in results {
        match r {
            PathResult::Passed => passed += 1,
            PathResult::Failed(why) => failed.push(format!("{}: {why}", p.probe_name(a, b))),
            PathResult::NotChecked(why) => unchecked.push(format!("{}: {why}", p.probe_name(a, b))),
        }
    }
    let not_run = || format!("NOT CHECKED: {}", name_some(&unchecked));
    if !failed.is_empty() {
        let mut msg = format!("{} of {} path(s) failed: {}", failed.len(), results.len(), name_some(&failed));
        if !unchecked.is_empty() {
            msg.push_str(&format!("; {}", not_run()));
        }
        Check::new(PROBE_PATHS, Severity::Fail, msg, vec![])
    } else if results.is_empty() || passed == 0 {
        Check::not_checked(PROBE_PATHS, if unchecked.is_empty() { "no path to check".into() } else { not_run() })
    } else if unchecked.is_empty() {
        Check::pass(PROBE_PATHS, format!("{passed} path(s) carried a TCP connection between {a} and {b}"))
    } else {
        let msg = format!("{passed} of {} path(s) passed; {}", results.len(), not_run());
        Check::new(PROBE_PATHS, Severity::Warn, msg, vec![])
    }
}

/// The probe: every probe pod got an address from an enabled pool, and
/// from a target pool when targets are known.
pub fn probe_check(input: &VerifyInput, outcomes: &[ProbeOutcome]) -> Check {
    let (targets, _, _) = targets_and_from(input);
    let mut bad = Vec::new();
    let mut why = Vec::new();
    let mut good = Vec::new();
    for o in outcomes {
        let on = o.node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default();
        let problem = match (o.ip, o.error.as_deref()) {
            (None, err) => Some(format!("got no address{on}: {}", err.unwrap_or("unknown reason"))),
            (Some(ip), _) => match input.inv.pool_of(ip) {
                None => Some(format!("got {ip}{on}, which is in no IP pool")),
                Some(p) if !p.is_active() => Some(format!("got {ip}{on} from disabled IPPool {}", p.name)),
                Some(p) if !targets.is_empty() && !targets.contains(&p.name) => {
                    Some(format!("got {ip}{on} from IPPool {}, not from {}", p.name, targets.join(", ")))
                }
                Some(p) => {
                    good.push(format!("{ip}{on} from IPPool {}", p.name));
                    None
                }
            },
        };
        if let Some(p) = problem {
            bad.push(format!("Pod {}", o.pod));
            why.push(format!("Pod {} {p}", o.pod));
        }
    }
    if outcomes.is_empty() {
        Check::new(PROBE, Severity::Fail, "no probe pod was started", vec![])
    } else if bad.is_empty() {
        Check::pass(PROBE, format!("{} probe pod(s) got addresses: {}", outcomes.len(), name_some(&good)))
    } else {
        Check::new(
            PROBE,
            Severity::Fail,
            format!("{} of {} probe pod(s) failed: {}", bad.len(), outcomes.len(), name_some(&why)),
            bad,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::checks::fixtures::*;
    use crate::core::checks::Status;
    use crate::core::plan::connectivity::canary_paths;

    /// A failed path fails the check; one that could not run is never a pass.
    #[test]
    fn probe_paths_pass_only_when_every_path_passed() {
        let setup = Ok(ProbeSetup { families: vec![(false, None)], nodes: ("n0".into(), "n1".into()) });
        let p = canary_paths(&[false]);
        let all = |r: PathResult| p.iter().map(|x| (*x, r.clone())).collect::<Vec<_>>();
        assert_eq!(probe_paths_check(&setup, &all(PathResult::Passed)).status, Status::Pass);
        let none = probe_paths_check(&setup, &all(PathResult::NotChecked("no dataplane".into())));
        assert_eq!(none.status, Status::NotChecked);
        assert!(none.message.contains("no dataplane"), "{}", none.message);
        let mut mixed = all(PathResult::Passed);
        mixed[3].1 = PathResult::NotChecked("refused".into());
        let c = probe_paths_check(&setup, &mixed);
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("node n1 (hostNetwork pod) -> pod on n0 (IPv4): refused"), "{}", c.message);
        mixed[0].1 = PathResult::Failed("timed out".into());
        let c = probe_paths_check(&setup, &mixed);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.message.starts_with("1 of 4 path(s) failed: pod on n0 -> pod on n1 (IPv4): timed out"),
            "{}",
            c.message
        );
        let err = probe_paths_check(&Err("no IP pool is enabled".into()), &[]);
        assert_eq!(
            (err.status, err.message.as_str()),
            (Status::NotChecked, "no path could run: no IP pool is enabled")
        );
    }

    #[test]
    fn probe_must_land_in_an_enabled_target_pool() {
        let w = clean_world();
        let nets = nets();
        let input = VerifyInput {
            inv: &w.inv,
            nodes: &w.nodes,
            namespaces: &w.namespaces,
            networks: &nets,
            migration: None,
            templates: &[],
            sandbox_failures: &[],
            rules: &[],
            rules_unreadable: &[],
            expect: &w.expect,
        };
        let ok = ProbeOutcome {
            pod: "p/probe".into(),
            node: Some("node-0".into()),
            ip: Some("10.1.0.9".parse().unwrap()),
            error: None,
        };
        assert_eq!(probe_check(&input, std::slice::from_ref(&ok)).status, Status::Pass);
        let old = ProbeOutcome { ip: Some("192.168.0.9".parse().unwrap()), ..ok.clone() };
        let c = probe_check(&input, &[ok.clone(), old]);
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("disabled IPPool old"), "{}", c.message);
        let none = ProbeOutcome { ip: None, error: Some("timed out after 60s".into()), ..ok };
        let c = probe_check(&input, &[none]);
        assert_eq!(c.objects, vec!["Pod p/probe"]);
        assert!(c.message.contains("timed out"));
    }
}
