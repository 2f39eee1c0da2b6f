//! The pool checks: target pools, overlaps with the Service CIDR and each
//! other, pools outside the cluster CIDR, the retired pool and the migration
//! record.

use std::net::IpAddr;

use ipnet::IpNet;

use super::defs::*;
use super::{targets_and_from, Check, Status, VerifyInput};
use crate::core::cidr::within;
use crate::core::findings::{self, name_some, Severity};
use crate::core::inventory::Inventory;
use crate::core::model::PoolPins;
use crate::core::state::Phase;

pub fn pool_checks(input: &VerifyInput) -> Vec<Check> {
    let inv = input.inv;
    let (targets, from, _) = targets_and_from(input);
    let mut out = Vec::new();
    let net_findings = findings::pool_network_findings(&inv.pools, input.networks);
    let pod_nets = input.networks.pod_nets();

    // Target pools: exist, enabled, inside the cluster CIDR.
    if targets.is_empty() {
        let active: Vec<String> =
            inv.pools.iter().filter(|p| p.is_active()).map(|p| format!("IPPool {}", p.name)).collect();
        out.push(if active.is_empty() {
            let all = inv.pools.iter().map(|p| format!("IPPool {}", p.name)).collect();
            Check::new(TARGET_POOL, Severity::Fail, "no IP pool is enabled: new pods cannot get an address", all)
        } else {
            // Any enabled pool is no evidence that new pods land where they
            // should: without a target there is nothing to check against.
            Check::not_checked(
                TARGET_POOL,
                format!(
                    "no target named (--to) and no migration recorded; {} enabled pool(s): {}",
                    active.len(),
                    name_some(&active)
                ),
            )
        });
    } else {
        let mut problems = Vec::new();
        let mut objects = Vec::new();
        for t in &targets {
            match inv.pool_named(t) {
                None => {
                    problems.push(format!("IPPool {t} does not exist"));
                    objects.push(format!("IPPool {t}"));
                }
                Some(i) => {
                    let p = &inv.pools[i];
                    let mut bad = false;
                    if p.disabled {
                        problems.push(format!("IPPool {t} is disabled"));
                        bad = true;
                    }
                    if p.terminating {
                        problems.push(format!("IPPool {t} is being deleted"));
                        bad = true;
                    }
                    let fam: Vec<_> =
                        pod_nets.iter().filter(|n| n.addr().is_ipv4() == p.cidr.addr().is_ipv4()).collect();
                    if !fam.is_empty() && !fam.iter().any(|n| within(&p.cidr, n)) {
                        let nets: Vec<String> = fam.iter().map(|n| n.to_string()).collect();
                        problems.push(format!(
                            "IPPool {t} ({}) lies outside the cluster CIDR {}",
                            p.cidr,
                            nets.join(", ")
                        ));
                        bad = true;
                    }
                    if bad {
                        objects.push(format!("IPPool {t}"));
                    }
                }
            }
        }
        out.push(if problems.is_empty() {
            Check::pass(TARGET_POOL, format!("{} exist(s), enabled, inside the cluster CIDR", targets.join(", ")))
        } else {
            Check::new(TARGET_POOL, Severity::Fail, problems.join("; "), objects)
        });
    }

    // Service CIDR overlap and pool overlap reuse the status findings.
    let pick = |code: &str| -> (Vec<String>, Vec<String>) {
        let fs: Vec<_> = net_findings.iter().filter(|f| f.code == code).collect();
        let mut objs: Vec<String> = fs.iter().flat_map(|f| f.objects.iter().cloned()).collect();
        objs.dedup();
        (objs, fs.iter().map(|f| f.message.clone()).collect())
    };
    let (objs, msgs) = pick("poolOverlapsServiceCidr");
    let svc_known = !input.networks.service_cidrs.is_empty();
    out.push(if objs.is_empty() {
        let ok = if svc_known {
            format!(
                "no pool overlaps the Service CIDR ({})",
                input.networks.service_nets().iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
            )
        } else {
            "Service CIDR unknown (not discoverable); overlap not checked".into()
        };
        Check::new(POOL_OVERLAPS_SERVICE_CIDR, if svc_known { Severity::Pass } else { Severity::Warn }, ok, vec![])
    } else {
        Check::new(POOL_OVERLAPS_SERVICE_CIDR, Severity::Fail, msgs.join("; "), objs)
    });
    let (objs, msgs) = pick("poolsOverlap");
    out.push(Check::from_objects(
        POOLS_OVERLAP,
        Severity::Fail,
        objs,
        format!("{} pool(s), none overlap", inv.pools.len()),
        |_| msgs.join("; "),
    ));
    // Other (non-target) active pools outside the cluster CIDR: a warning.
    let outside: Vec<String> = net_findings
        .iter()
        .filter(|f| f.code == "poolOutsideClusterCidr")
        .flat_map(|f| f.objects.iter().cloned())
        .filter(|o| {
            let name = o.trim_start_matches("IPPool ");
            !targets.iter().any(|t| t == name) && inv.pool_named(name).is_some_and(|i| inv.pools[i].is_active())
        })
        .collect();
    let pod_known = !pod_nets.is_empty();
    out.push(if !pod_known {
        Check::new(
            POOL_OUTSIDE_CLUSTER_CIDR,
            Severity::Warn,
            "cluster pod CIDR unknown (not discoverable); not checked",
            vec![],
        )
    } else {
        let nets = pod_nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
        Check::from_objects(
            POOL_OUTSIDE_CLUSTER_CIDR,
            Severity::Warn,
            outside,
            format!("every enabled pool lies inside the cluster CIDR ({nets})"),
            |o| {
                format!(
                    "enabled pool(s) outside the cluster CIDR {nets}: {}; pod traffic may be NATed or dropped",
                    name_some(o)
                )
            },
        )
    });

    // The retired pool: disabled or gone.
    let retired: Vec<Check> = from
        .iter()
        .map(|f| match inv.pool_named(f) {
            None => Check::pass(OLD_POOL_RETIRED, format!("IPPool {f} is deleted")),
            Some(i) if inv.pools[i].is_active() => Check::new(
                OLD_POOL_RETIRED,
                Severity::Fail,
                format!("IPPool {f} is still enabled: new pods can still get addresses from it"),
                vec![format!("IPPool {f}")],
            ),
            Some(i) => {
                let pods = inv.usage[i].pods;
                Check::pass(OLD_POOL_RETIRED, format!("IPPool {f} is disabled ({pods} pod(s) still on it)"))
            }
        })
        .collect();
    out.push(match retired.len() {
        0 => Check::not_checked(OLD_POOL_RETIRED, "no old pool named (--from) and no migration recorded"),
        1 => retired.into_iter().next().expect("one"),
        // Both families: one check, failing when either pool fails.
        _ => {
            let failed: Vec<&Check> = retired.iter().filter(|c| c.status != Status::Pass).collect();
            let details: Vec<String> = retired.iter().map(|c| c.message.clone()).collect();
            let objects: Vec<String> = failed.iter().flat_map(|c| c.objects.clone()).collect();
            if failed.is_empty() {
                Check::pass(OLD_POOL_RETIRED, details.join("; "))
            } else {
                Check::new(OLD_POOL_RETIRED, Severity::Fail, details.join("; "), objects)
            }
        }
    });

    // The migration record.
    out.push(match input.migration {
        None => Check::pass(MIGRATION_COMPLETE, "no migration recorded"),
        Some(m) if m.phase == Phase::Done && m.failed.is_empty() => Check::pass(
            MIGRATION_COMPLETE,
            format!("migration {} -> {} finished ({})", m.from_pool, m.to_pool, m.updated_at),
        ),
        Some(m) if m.phase == Phase::Done => Check::new(
            MIGRATION_COMPLETE,
            Severity::Warn,
            format!(
                "migration {} -> {} finished, but {} object(s) could not be moved: {}",
                m.from_pool,
                m.to_pool,
                m.failed.len(),
                name_some(&m.failed)
            ),
            m.failed.clone(),
        ),
        Some(m) if m.phase == Phase::RolledBack => Check::new(
            MIGRATION_COMPLETE,
            Severity::Warn,
            format!("migration {} -> {} was rolled back ({})", m.from_pool, m.to_pool, m.updated_at),
            vec![],
        ),
        Some(m) => Check::new(
            MIGRATION_COMPLETE,
            Severity::Fail,
            format!(
                "migration {} -> {} is half-done: phase {}, {}/{} moved, {} failed (started {} by {}); run `{}` to finish it",
                m.old_pools(),
                m.new_pools(),
                m.phase.as_str(),
                m.pods_moved,
                m.total,
                m.failed.len(),
                m.started_at,
                m.started_by,
                m.resume_command()
            ),
            m.pairs().iter().flat_map(|p| [format!("IPPool {}", p.from_pool), format!("IPPool {}", p.to_pool)]).collect(),
        ),
    });
    out
}

/// Why `pins` cannot be satisfied now (pool missing or disabled, address in
/// no enabled pool, annotation unparsable); empty when fine.
pub fn bad_pins(pins: &PoolPins, inv: &Inventory) -> Vec<String> {
    let mut out = Vec::new();
    for p in &pins.pools {
        // Pins name a pool or its exact CIDR (Calico's ResolvePools).
        let by_cidr = p.parse::<IpNet>().ok().map(|n| n.trunc());
        match inv.pools.iter().find(|x| &x.name == p || Some(x.cidr) == by_cidr) {
            None => out.push(format!("pool {p} does not exist")),
            Some(x) if !x.is_active() => out.push(format!("pool {p} is disabled")),
            Some(_) => {}
        }
    }
    for a in &pins.ip_addrs {
        match a.parse::<IpAddr>() {
            Err(_) => out.push(format!("address {a} is not an IP")),
            Ok(ip) => match inv.pool_of(ip) {
                None => out.push(format!("address {a} is in no pool")),
                Some(x) if !x.is_active() => out.push(format!("address {a} is in disabled pool {}", x.name)),
                Some(_) => {}
            },
        }
    }
    if let Some(u) = &pins.unparsable {
        out.push(format!("unparsable annotation {u}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::checks::fixtures::*;
    use crate::core::checks::Expectations;
    use crate::core::checks::Status;
    use crate::core::model::*;
    use crate::core::state::MigrationState;

    #[test]
    fn target_pool_missing_disabled_or_outside_cluster_cidr_fails() {
        let mut w = clean_world();
        w.expect.targets = vec!["nope".into(), "old".into()];
        let (cs, _) = w.run();
        let c = check(&cs, "targetPool");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.objects, vec!["IPPool nope", "IPPool old"]);
        assert!(
            c.message.contains("does not exist")
                && c.message.contains("disabled")
                && c.message.contains("outside the cluster CIDR"),
            "{}",
            c.message
        );
    }

    #[test]
    fn no_enabled_pool_fails_without_target() {
        let mut w = clean_world();
        w.expect.targets.clear();
        w.inv.pools[0].disabled = true;
        let (cs, _) = w.run();
        assert_eq!(check(&cs, "targetPool").status, Status::Fail);
    }

    #[test]
    fn service_overlap_and_pool_overlap_fail() {
        let mut w = clean_world();
        let pools = vec![
            Pool::new("new", net("10.1.0.0/16")),
            Pool::new("kops", net("10.96.0.0/11")),
            Pool::new("dup", net("10.1.128.0/17")),
        ];
        w.inv = Inventory::build(pools, w.inv.pods.clone(), w.inv.ipam.clone());
        w.expect = Expectations::default();
        let (cs, _) = w.run();
        let s = check(&cs, "poolOverlapsServiceCidr");
        assert_eq!((s.status, s.objects.clone()), (Status::Fail, vec!["IPPool kops".to_string()]));
        let o = check(&cs, "poolsOverlap");
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.objects, vec!["IPPool new", "IPPool dup"]);
    }

    #[test]
    fn enabled_old_pool_and_half_done_migration_fail() {
        let mut w = clean_world();
        w.inv.pools[1].disabled = false;
        w.migration = Some(MigrationState {
            from_pool: "old".into(),
            from_cidr: "192.168.0.0/16".into(),
            to_pool: "new".into(),
            to_cidr: "10.1.0.0/16".into(),
            created_target: true,
            phase: Phase::MovingPods,
            started_at: "t0".into(),
            updated_at: "t1".into(),
            started_by: "me@host".into(),
            original_from_pool: serde_json::Value::Null,
            total: 4,
            pods_moved: 1,
            done: vec!["Deployment shop/web".into()],
            failed: vec![],
            rule_changes: vec![],
            also: vec![],
        });
        let (cs, _) = w.run();
        assert_eq!(check(&cs, "oldPoolRetired").status, Status::Fail);
        assert_eq!(check(&cs, "oldPoolRetired").objects, vec!["IPPool old"]);
        let m = check(&cs, "migrationComplete");
        assert_eq!(m.status, Status::Fail);
        assert!(m.message.contains("MovingPods") && m.message.contains("1/4"), "{}", m.message);
    }
}
