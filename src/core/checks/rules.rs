//! Rules and sets that still name a retired pool's range: harmless to the
//! migration, but worth cleaning up once nothing uses that range (a later
//! pool or an outside network reusing it would match them).

use ipnet::IpNet;

use super::defs::RULES_NAME_RETIRED_CIDR;
use super::{targets_and_from, Check, VerifyInput};
use crate::core::findings::{name_some, Severity};
use crate::core::rules;

pub fn rule_check(input: &VerifyInput) -> Check {
    let inv = input.inv;
    let (_, _, from_cidr) = targets_and_from(input);
    let active: Vec<IpNet> = inv.pools.iter().filter(|p| p.is_active()).map(|p| p.cidr).collect();
    let mut retired: Vec<IpNet> = inv.pools.iter().filter(|p| p.disabled).map(|p| p.cidr).collect();
    retired.extend(from_cidr.into_iter().filter(|c| !active.contains(c)));
    retired.sort();
    retired.dedup();
    if retired.is_empty() {
        return Check::not_checked(
            RULES_NAME_RETIRED_CIDR,
            "no pool is disabled, and no retired pool is named (--from, --from-cidr) or recorded",
        );
    }
    let objects: Vec<String> = retired
        .iter()
        .flat_map(|r| rules::hits(input.rules, r, &active, None))
        .map(|h| format!("{} {}: {}", h.object, h.field, h.cidr))
        .collect();
    let ranges = retired.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
    if objects.is_empty() && !input.rules_unreadable.is_empty() {
        return Check::not_checked(
            RULES_NAME_RETIRED_CIDR,
            format!(
                "could not read {}; grant read access to them (deploy/rbac.yaml, ippool-reader) to check for rules naming the retired {ranges}",
                name_some(input.rules_unreadable)
            ),
        );
    }
    Check::from_objects(
        RULES_NAME_RETIRED_CIDR,
        Severity::Warn,
        objects,
        format!("no rule or set names the retired {ranges}"),
        |o| {
            format!(
                "{} rule entr(ies) still name the retired {ranges}: {}; remove them once nothing uses that range",
                o.len(),
                name_some(o)
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::Status;
    use crate::core::rules::{RuleClass, RuleObject};
    use serde_json::json;

    fn set(nets: &[&str]) -> RuleObject {
        RuleObject {
            class: RuleClass::NetworkSet,
            target: crate::core::rules::global_network_set("pods"),
            body: json!({"spec": {"nets": nets}}),
        }
    }

    #[test]
    fn warns_about_entries_naming_a_disabled_or_deleted_pool() {
        let mut w = clean_world();
        w.rules = vec![set(&["192.168.0.0/16", "10.1.0.0/16", "0.0.0.0/0"])];
        let (cs, _) = w.run();
        let c = check(&cs, "rulesNameRetiredCidr");
        assert_eq!(c.status, Status::Warn, "{c:#?}");
        assert_eq!(c.objects, vec!["GlobalNetworkSet pods spec.nets[0]: 192.168.0.0/16"]);
        // Deleted: only the flag names it.
        let mut w = clean_world();
        let kept = w.inv.pools.iter().filter(|p| p.name == "new").cloned().collect();
        w.inv = crate::core::inventory::Inventory::build(kept, w.inv.pods.clone(), w.inv.ipam.clone());
        w.rules = vec![set(&["192.168.4.0/24"])];
        w.expect.from_cidr = Some(net("192.168.0.0/16"));
        assert_eq!(check(&w.run().0, "rulesNameRetiredCidr").status, Status::Warn);
        // Rules that could not be read are not a pass.
        w.rules.clear();
        w.rules_unreadable = vec!["globalnetworkpolicies.crd.projectcalico.org (forbidden)".into()];
        let (cs, _) = w.run();
        let c = check(&cs, "rulesNameRetiredCidr");
        assert_eq!(c.status, Status::NotChecked, "{c:#?}");
        assert!(c.message.contains("globalnetworkpolicies"), "{c:#?}");
        w.rules_unreadable.clear();
        // Nothing retired: not checked.
        w.expect = Default::default();
        assert_eq!(check(&w.run().0, "rulesNameRetiredCidr").status, Status::NotChecked);
        w.rules = vec![set(&["10.1.0.0/16"])];
        w.expect.from_cidr = Some(net("192.168.0.0/16"));
        assert_eq!(check(&w.run().0, "rulesNameRetiredCidr").status, Status::Pass);
    }
}
