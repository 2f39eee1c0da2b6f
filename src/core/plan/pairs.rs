//! Migrating both IP families in one run: `--from` and `--to`/`--to-pool`
//! given twice are paired by IP family, so each pod restarts once and gets
//! both new addresses.

use ipnet::IpNet;
use serde::Serialize;

use super::TargetRequest;
use crate::core::cidr::parse_canonical;
use crate::core::inventory::Inventory;
use crate::core::model::Pool;

/// One old pool and its new pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolPair {
    pub from: Pool,
    pub to: Pool,
    /// The new pool does not exist yet.
    pub create_target: bool,
}

fn family(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The IP family (true: IPv4) of a target as asked for, when it can be told.
fn target_family(t: &TargetRequest, inv: &Inventory) -> Option<bool> {
    match t {
        TargetRequest::Cidr(c) => parse_canonical(c).ok().map(|n: IpNet| n.addr().is_ipv4()),
        TargetRequest::Pool(p) => inv.pool_named(p).map(|i| inv.pools[i].cidr.addr().is_ipv4()),
    }
}

/// Pair each old pool with the target of its IP family. One `--from` with
/// one target is a pair whatever the families (the planner explains a
/// mismatch); two of each must be one IPv4 and one IPv6 pair. `Err` says
/// what is wrong with the flags.
pub fn pair_by_family(
    froms: &[String],
    targets: &[TargetRequest],
    inv: &Inventory,
) -> Result<Vec<(String, TargetRequest)>, Vec<String>> {
    if froms.len() != targets.len() {
        return Err(vec![format!(
            "{} --from but {} --to/--to-pool: give one new pool per old pool (one of each IP family to migrate both)",
            froms.len(),
            targets.len()
        )]);
    }
    if froms.len() > 2 {
        return Err(vec![format!(
            "{} --from given: at most two (one IPv4 and one IPv6 pool) can be migrated in one run",
            froms.len()
        )]);
    }
    if froms.len() == 1 {
        return Ok(vec![(froms[0].clone(), targets[0].clone())]);
    }
    let mut errors = Vec::new();
    let mut from_fams = Vec::new();
    for f in froms {
        match inv.pool_named(f) {
            Some(i) => from_fams.push(inv.pools[i].cidr.addr().is_ipv4()),
            None => {
                let known: Vec<&str> = inv.pools.iter().map(|p| p.name.as_str()).collect();
                errors.push(format!("IPPool {f:?} not found; pools: {}", known.join(", ")));
            }
        }
    }
    let mut to_fams = Vec::new();
    for t in targets {
        match target_family(t, inv) {
            Some(v4) => to_fams.push(v4),
            None => errors.push(match t {
                TargetRequest::Cidr(c) => format!("--to {c}: not a CIDR"),
                TargetRequest::Pool(p) => {
                    format!("--to-pool {p}: no such IPPool; create it first or pass --to CIDR to have it created")
                }
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if from_fams[0] == from_fams[1] {
        errors.push(format!(
            "--from {} and --from {} are both {} pools: migrate them one after the other (two --from must be one IPv4 and one IPv6 pool)",
            froms[0],
            froms[1],
            family(from_fams[0])
        ));
    }
    if to_fams[0] == to_fams[1] {
        errors.push(format!(
            "both new pools are {}: give one IPv4 and one IPv6 --to/--to-pool, one for each --from",
            family(to_fams[0])
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut pairs = Vec::new();
    for (f, v4) in froms.iter().zip(&from_fams) {
        let j = to_fams.iter().position(|t| t == v4).expect("one target per family");
        pairs.push((f.clone(), targets[j].clone()));
    }
    Ok(pairs)
}

/// Pair the flags as an unfinished migration recorded them, when they name
/// the same old pools and targets: a resumed run whose first old pool is
/// already deleted can no longer tell that pool's family from the cluster.
/// `recorded`: (old pool, new pool name, new pool CIDR) per pair.
pub fn pair_as_recorded(
    froms: &[String],
    targets: &[TargetRequest],
    recorded: &[(String, String, String)],
) -> Option<Vec<(String, TargetRequest)>> {
    if froms.len() != recorded.len() || targets.len() != recorded.len() {
        return None;
    }
    let mut out = Vec::new();
    for (from, to_pool, to_cidr) in recorded {
        if !froms.contains(from) {
            return None;
        }
        let t = targets.iter().find(|t| match t {
            TargetRequest::Cidr(c) => c.trim() == to_cidr,
            TargetRequest::Pool(p) => p == to_pool,
        })?;
        out.push((from.clone(), t.clone()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Ipam;

    fn inv() -> Inventory {
        let pools = vec![
            Pool::new("default-ipv4-ippool", "192.168.0.0/16".parse().unwrap()),
            Pool::new("default-ipv6-ippool", "fd00:10::/64".parse().unwrap()),
            Pool::new("other-v4", "172.16.0.0/16".parse().unwrap()),
            Pool::new("new-v6", "fd00:20::/112".parse().unwrap()),
        ];
        Inventory::build(pools, vec![], Ipam::default())
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn cidr(c: &str) -> TargetRequest {
        TargetRequest::Cidr(c.into())
    }

    #[test]
    fn targets_pair_with_the_old_pool_of_their_family_in_any_order() {
        let froms = s(&["default-ipv4-ippool", "default-ipv6-ippool"]);
        let got = pair_by_family(&froms, &[cidr("fd00:10:20::/112"), cidr("10.0.0.0/16")], &inv()).unwrap();
        assert_eq!(
            got,
            vec![
                ("default-ipv4-ippool".to_string(), cidr("10.0.0.0/16")),
                ("default-ipv6-ippool".to_string(), cidr("fd00:10:20::/112"))
            ]
        );
        let pool = TargetRequest::Pool("new-v6".into());
        let got = pair_by_family(&froms, &[pool.clone(), cidr("10.0.0.0/16")], &inv()).unwrap();
        assert_eq!(got[1], ("default-ipv6-ippool".to_string(), pool));
    }

    /// Both families in one plan: each dual-stack pod moves once, both new
    /// pools are created and both old ones disabled, waited on and deleted.
    #[test]
    fn a_dual_stack_plan_moves_each_pod_once() {
        use crate::core::inventory::tests::dual;
        use crate::core::plan::fixtures::{input, world};
        use crate::core::plan::{make_plan, PoolStep};
        let pools = vec![
            Pool::new("default-ipv4-ippool", "192.168.0.0/16".parse().unwrap()),
            Pool::new("default-ipv6-ippool", "fd00:10::/64".parse().unwrap()),
        ];
        let pods = vec![dual("web-1", "192.168.0.1", "fd00:10::1"), dual("web-2", "192.168.0.2", "fd00:10::2")];
        let w = world(pools, pods);
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.also = vec![("default-ipv6-ippool".into(), cidr("fd00:10:20::/112"))];
        i.allow_outside_cluster_cidr = true;
        let plan = make_plan(&i).unwrap();
        assert_eq!(plan.moves.len(), 1);
        assert_eq!(plan.pod_count(), 2);
        assert_eq!(plan.also.len(), 1);
        assert_eq!(plan.also[0].to.cidr.to_string(), "fd00:10:20::/112");
        assert_eq!(plan.also[0].to.block_size, 122);
        let creates = plan.steps.iter().filter(|s| matches!(s, PoolStep::CreatePool { .. })).count();
        let deletes = plan.steps.iter().filter(|s| matches!(s, PoolStep::DeletePool { .. })).count();
        assert_eq!((creates, deletes), (2, 2));
        assert_eq!(plan.new_cidrs().len(), 2);

        // Migrating only the IPv6 pool moves the same pods, once.
        let mut i = input(&w, cidr("fd00:10:20::/112"));
        i.from = "default-ipv6-ippool";
        i.allow_outside_cluster_cidr = true;
        assert_eq!(make_plan(&i).unwrap().pod_count(), 2);

        // A refused second target is refused in the same run.
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.also = vec![("default-ipv6-ippool".into(), cidr("fd00:10::/64"))];
        i.allow_outside_cluster_cidr = true;
        let e = make_plan(&i).unwrap_err();
        assert!(e.iter().any(|r| r.contains("fd00:10::/64")), "{e:?}");
    }

    #[test]
    fn flags_naming_a_recorded_migration_pair_as_recorded() {
        let recorded = vec![
            ("gone-v4".to_string(), "10.0.0.0-16".to_string(), "10.0.0.0/16".to_string()),
            ("default-ipv6-ippool".to_string(), "fd00.10.20.0.0-112".to_string(), "fd00:10:20::/112".to_string()),
        ];
        let froms = s(&["default-ipv6-ippool", "gone-v4"]);
        let targets = [cidr("fd00:10:20::/112"), cidr("10.0.0.0/16")];
        let got = pair_as_recorded(&froms, &targets, &recorded).unwrap();
        assert_eq!(got[0], ("gone-v4".to_string(), cidr("10.0.0.0/16")));
        assert_eq!(got[1], ("default-ipv6-ippool".to_string(), cidr("fd00:10:20::/112")));
        // Another target: not the recorded migration.
        assert!(pair_as_recorded(&froms, &[cidr("fd00:10:30::/112"), cidr("10.0.0.0/16")], &recorded).is_none());
        assert!(pair_as_recorded(&froms[..1], &targets[..1], &recorded).is_none());
    }

    #[test]
    fn one_pair_is_left_to_the_planner() {
        let got = pair_by_family(&s(&["default-ipv4-ippool"]), &[cidr("fd00:1::/112")], &inv()).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn bad_combinations_are_refused_saying_what_to_give() {
        let e = pair_by_family(&s(&["default-ipv4-ippool", "default-ipv6-ippool"]), &[cidr("10.0.0.0/16")], &inv())
            .unwrap_err();
        assert!(e[0].contains("2 --from but 1 --to"), "{e:?}");
        let e = pair_by_family(
            &s(&["default-ipv4-ippool", "other-v4"]),
            &[cidr("10.0.0.0/16"), cidr("fd00:10:20::/112")],
            &inv(),
        )
        .unwrap_err();
        assert!(e[0].contains("both IPv4 pools"), "{e:?}");
        let e = pair_by_family(
            &s(&["default-ipv4-ippool", "default-ipv6-ippool"]),
            &[cidr("10.0.0.0/16"), cidr("10.1.0.0/16")],
            &inv(),
        )
        .unwrap_err();
        assert!(e[0].contains("both new pools are IPv4"), "{e:?}");
        let e =
            pair_by_family(&s(&["default-ipv4-ippool", "nope"]), &[cidr("10.0.0.0/16"), cidr("not-a-cidr")], &inv())
                .unwrap_err();
        assert!(e[0].contains("\"nope\" not found") && e[1].contains("--to not-a-cidr"), "{e:?}");
        let e = pair_by_family(&s(&["a", "b", "c"]), &[cidr("1"), cidr("2"), cidr("3")], &inv()).unwrap_err();
        assert!(e[0].contains("at most two"), "{e:?}");
    }
}
