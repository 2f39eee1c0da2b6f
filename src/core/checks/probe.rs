//! The probe check: the addresses the probe pods got.

use super::defs::PROBE;
use super::{targets_and_from, Check, VerifyInput};
use crate::core::findings::{name_some, Severity};
use crate::core::model::ProbeOutcome;

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
