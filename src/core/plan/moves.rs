//! What moves how: pods on the old pool grouped into moves, each paced
//! within its PodDisruptionBudgets.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::budgets::Budgets;
use super::estimate::median;
use super::pacing::{decide, zero_ready, Decision, Pace, Prefs};
use super::{Downtime, JobsPolicy, Move, MoveKind, PlanInput, Skipped, Strategy, TargetRequest};
use crate::core::cidr::parse_canonical;
use crate::core::findings::name_some;
use crate::core::model::{Owner, OwnerKind, PodInfo, WorkloadInfo};

/// Pods on the old pools (one per IP family migrated; a pod on both moves
/// once), grouped into moves by owner (by node and owner for `--strategy
/// drain`), each paced within its PodDisruptionBudgets.
/// Returns (moves, skipped, blockers, warnings).
pub fn plan_moves(input: &PlanInput, from_idxs: &[usize]) -> (Vec<Move>, Vec<Skipped>, Vec<String>, Vec<String>) {
    let inv = input.inventory;
    // Pods already inside the target CIDR (a sub-range of the old pool) stay:
    // a pod moves when an address of it is in an old pool and not in that
    // pool's target.
    let target_of = |t: &TargetRequest| match t {
        TargetRequest::Cidr(c) => parse_canonical(c).ok(),
        TargetRequest::Pool(n) => inv.pool_named(n).map(|i| inv.pools[i].cidr),
    };
    let targets: Vec<Option<IpNet>> =
        std::iter::once(target_of(&input.to)).chain(input.also.iter().map(|(_, t)| target_of(t))).collect();
    let olds: Vec<(IpNet, Option<IpNet>)> = from_idxs
        .iter()
        .map(|&i| {
            let cidr = inv.pools[i].cidr;
            let target = targets.iter().flatten().find(|t| t.addr().is_ipv4() == cidr.addr().is_ipv4()).copied();
            (cidr, target)
        })
        .collect();
    let must_move = |p: &PodInfo| {
        !p.key().starts_with(super::connectivity::CANARY_NAMESPACE_PREFIX)
            && p.ips.iter().any(|ip| olds.iter().any(|(old, t)| old.contains(ip) && t.is_none_or(|t| !t.contains(ip))))
    };
    let mut moves = Vec::new();
    let mut skipped = Vec::new();
    let mut blockers = Vec::new();
    let warnings = Vec::new();
    let mut bare = Vec::new();
    let workload_of: BTreeMap<&Owner, &WorkloadInfo> = input.workloads.iter().map(|w| (&w.owner, w)).collect();
    let budgets = Budgets::new(input);
    // Drain steps: node -> pods of each owner on it, paced per owner.
    let mut drained: BTreeMap<String, Vec<DrainStep>> = BTreeMap::new();

    for (owner, pods) in inv.pods_by_owner_in(from_idxs) {
        let pods: Vec<&PodInfo> = pods
            .into_iter()
            .filter(|p| !p.terminating && input.pod_filter.is_none_or(|f| f.contains(&p.key())))
            .filter(|p| must_move(p))
            .collect();
        if pods.is_empty() {
            continue;
        }
        let guards = budgets.guards(&owner).to_vec();
        let lane = budgets.lane(&owner);
        let mk = |kind, note: Option<String>, ps: &[&PodInfo], at_once: usize, waves: usize| Move {
            target: owner.display(),
            kind,
            owner: Some(owner.clone()),
            pods: keys(ps),
            pod_uids: uids(ps),
            note,
            at_once,
            surge: 0,
            waves,
            lane: lane.clone(),
            guards: guards.clone(),
            rollout_surge: 0,
            downtime: None,
        };
        match owner.kind {
            OwnerKind::Static => {
                // Restarting it now would only get it an address of the old
                // pool again: the move must come after the pool is disabled.
                for p in &pods {
                    skipped.push(Skipped {
                        pod: p.key(),
                        reason: format!(
                            "static (mirror) pod from a manifest on node {node}: the API cannot move it. Once this run has disabled the old pool, restart it on {node} (move its manifest out of the kubelet's manifest directory, e.g. /etc/kubernetes/manifests, and back), then run the same command again to delete the pool",
                            node = p.node.as_deref().unwrap_or("?")
                        ),
                    });
                }
            }
            OwnerKind::Job => match input.jobs {
                JobsPolicy::Wait => {
                    moves.push(mk(MoveKind::WaitJob, Some("waits for the Job to finish".into()), &pods, 0, 1))
                }
                JobsPolicy::Skip => {
                    for p in &pods {
                        skipped.push(Skipped {
                            pod: p.key(),
                            reason: format!(
                                "{} left running (--jobs skip); the old pool is kept until it finishes",
                                owner.display()
                            ),
                        });
                    }
                }
                JobsPolicy::Evict => moves.push(mk(
                    MoveKind::Evict,
                    Some("--jobs evict: the Job starts a new pod; counts against its backoffLimit".into()),
                    &pods,
                    1,
                    pods.len(),
                )),
            },
            OwnerKind::Bare => {
                if input.force {
                    moves.push(mk(
                        MoveKind::EvictForGood,
                        Some("bare pod: nothing re-creates it, it is gone for good (--force)".into()),
                        &pods,
                        1,
                        pods.len(),
                    ));
                } else {
                    bare.extend(keys(&pods));
                }
            }
            OwnerKind::Deployment | OwnerKind::StatefulSet | OwnerKind::DaemonSet => {
                let workload = workload_of.get(&owner).copied();
                let prefs = Prefs { strategy: input.strategy, surge: input.surge, allow_downtime: input.allow_downtime };
                match decide(&owner, workload, pods.len(), &guards, prefs) {
                    Decision::Blocked(b) => blockers.push(b),
                    Decision::Move(mut p) if p.kind == MoveKind::Drain => {
                        p.downtime = zero_ready(workload, &p, input.allow_downtime);
                        for (node, on_node) in by_node(&pods) {
                            drained.entry(node).or_default().push((owner.clone(), on_node, p.clone()));
                        }
                    }
                    Decision::Move(p) => {
                        let downtime = downtime(zero_ready(workload, &p, input.allow_downtime), &pods);
                        // What a rollout adds beyond the replica count (its maxSurge).
                        let rollout_surge = match (p.kind, workload) {
                            (MoveKind::Rollout, Some(w)) => w.strategy.max_surge(w.replicas).max(0) as usize,
                            _ => 0,
                        };
                        moves.push(Move {
                            surge: p.surge,
                            rollout_surge,
                            downtime,
                            ..mk(p.kind, p.note, &pods, p.at_once, p.waves)
                        })
                    }
                }
            }
            OwnerKind::Other | OwnerKind::NotController => {
                if input.force {
                    moves.push(mk(
                        MoveKind::EvictForGood,
                        Some(format!(
                            "{}: evicted without waiting for a replacement, which may never come (--force)",
                            unknown_owner(&owner)
                        )),
                        &pods,
                        1,
                        pods.len(),
                    ));
                } else {
                    blockers.push(unknown_owner_blocker(&owner, &keys(&pods)));
                }
            }
            OwnerKind::Rollout => moves.push(mk(
                MoveKind::Rollout,
                Some(
                    "Argo Rollout: restarted through spec.restartAt; its controller evicts the pods, paced by its maxUnavailable and PodDisruptionBudgets"
                        .into(),
                ),
                &pods,
                1,
                pods.len(),
            )),
            OwnerKind::ReplicaSet | OwnerKind::ReplicationController => {
                // No rollout to lean on: evicted within the tightest budget, one at a time without one.
                let at_once = guards.iter().map(|g| g.allowance).min().map_or(1, |a| a.max(0) as usize);
                if at_once == 0 {
                    blockers.push(format!(
                        "PodDisruptionBudget {} allows none of the pods of {} to be down; relax it or scale the workload up first",
                        guards.iter().find(|g| g.allowance == 0).map(|g| g.pdb.as_str()).unwrap_or_default(),
                        owner.display()
                    ));
                    continue;
                }
                let waves = pods.len().div_ceil(at_once);
                if input.strategy == Strategy::Drain {
                    let pace = Pace { kind: MoveKind::Drain, surge: 0, at_once, waves, note: None, downtime: None };
                    for (node, on_node) in by_node(&pods) {
                        drained.entry(node).or_default().push((owner.clone(), on_node, pace.clone()));
                    }
                } else {
                    moves.push(mk(
                        MoveKind::Evict,
                        Some(format!("{} has no rollout; its controller re-creates evicted pods", owner.display())),
                        &pods,
                        at_once,
                        waves,
                    ));
                }
            }
        }
    }
    // Node by node, one node at a time: every drain step shares one lane.
    for (node, owners) in drained {
        for (owner, pods, pace) in owners {
            let guards = budgets.guards(&owner).to_vec();
            let how =
                if pace.at_once == 1 { "one at a time".to_string() } else { format!("{} at a time", pace.at_once) };
            let budget = guards
                .iter()
                .min_by_key(|g| g.allowance)
                .map(|g| format!(" (PodDisruptionBudget {} allows {})", g.pdb, g.allowance))
                .unwrap_or_default();
            moves.push(Move {
                target: format!("Node {node}"),
                kind: MoveKind::Drain,
                owner: Some(owner.clone()),
                pods: keys(&pods),
                pod_uids: uids(&pods),
                note: Some(format!("cordon, evict {}'s pods {how}{budget}, uncordon", owner.display())),
                at_once: pace.at_once,
                surge: 0,
                waves: pods.len().div_ceil(pace.at_once.max(1)),
                lane: DRAIN_LANE.into(),
                guards,
                rollout_surge: 0,
                downtime: downtime(pace.downtime, &pods),
            });
        }
    }
    if !bare.is_empty() {
        blockers.push(format!(
            "bare pod(s) with no controller: {}; moving them deletes them for good (nothing re-creates them). Re-run with --force to evict them anyway, or delete/recreate them yourself",
            name_some(&bare)
        ));
    }
    // Rollouts first (least disruptive, each guarded by its own strategy),
    // then evictions, drains, bare pods, and Jobs last: they may take longest.
    // The sort is stable, so drain steps keep their node order.
    moves.sort_by_key(|m| match m.kind {
        MoveKind::Rollout => 0,
        MoveKind::Evict => 1,
        MoveKind::Drain => 2,
        MoveKind::EvictForGood => 3,
        MoveKind::WaitJob => 4,
    });
    (longest_lanes_first(moves), skipped, blockers, warnings)
}

/// Lanes start in list order as slots free up: starting the lanes with the
/// most rounds first finishes soonest (longest-processing-time first).
/// Moves keep their order within a lane.
fn longest_lanes_first(moves: Vec<Move>) -> Vec<Move> {
    let mut lanes: Vec<(String, usize, Vec<Move>)> = Vec::new();
    for m in moves {
        match lanes.iter_mut().find(|(l, _, _)| *l == m.lane) {
            Some((_, rounds, ms)) => {
                *rounds += m.waves;
                ms.push(m);
            }
            None => lanes.push((m.lane.clone(), m.waves, vec![m])),
        }
    }
    lanes.sort_by_key(|(_, rounds, _)| std::cmp::Reverse(*rounds));
    lanes.into_iter().flat_map(|(_, _, ms)| ms).collect()
}

/// Pods of one owner on one node, and how fast they may go.
type DrainStep<'a> = (Owner, Vec<&'a PodInfo>, Pace);

/// The lane every drain step shares: nodes are drained one at a time.
pub const DRAIN_LANE: &str = "drain";

/// What owns a pod the tool cannot count on to re-create it.
fn unknown_owner(owner: &Owner) -> String {
    match owner.kind {
        OwnerKind::NotController => {
            format!("owner reference to {} is not a controller, so nothing re-creates the pod", owner.display())
        }
        _ => format!("owned by {}, a controller this tool does not know", owner.display()),
    }
}

/// The blocker for pods of an unknown owner: who owns them and what to do.
fn unknown_owner_blocker(owner: &Owner, pods: &[String]) -> String {
    let kind = owner.other_kind.as_deref().unwrap_or_default();
    let fix = match kind {
        "VirtualMachineInstance" | "VirtualMachine" => format!(
            "live-migrate the VM (virtctl migrate -n {ns} {name}) or restart it (virtctl restart -n {ns} {name}) once this run has disabled the old pool",
            ns = owner.namespace,
            name = owner.name
        ),
        _ if owner.kind == OwnerKind::NotController => {
            "delete and re-create it yourself once this run has disabled the old pool".to_string()
        }
        _ => format!("restart it through its {kind} once this run has disabled the old pool"),
    };
    format!(
        "pod(s) {}: {}; an evicted pod may never come back. Move them out of this run (-n/-l) and {fix}, or re-run with --force to evict them anyway",
        name_some(pods),
        unknown_owner(owner)
    )
}

/// The expected gap of a move that leaves its workload with no Ready pod:
/// about as long as its pods took to become Ready.
fn downtime(why: Option<String>, pods: &[&PodInfo]) -> Option<Downtime> {
    let gap_seconds = median(pods.iter().filter_map(|p| p.ready_after.map(f64::from)).collect());
    why.map(|why| Downtime { why, gap_seconds })
}

fn keys(ps: &[&PodInfo]) -> Vec<String> {
    ps.iter().map(|p| p.key()).collect()
}

fn uids(ps: &[&PodInfo]) -> Vec<String> {
    ps.iter().map(|p| p.uid.clone()).collect()
}

fn by_node<'a>(pods: &[&'a PodInfo]) -> BTreeMap<String, Vec<&'a PodInfo>> {
    let mut m: BTreeMap<String, Vec<&PodInfo>> = BTreeMap::new();
    for p in pods {
        m.entry(p.node.as_deref().unwrap_or_default().to_string()).or_default().push(p);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::{BudgetSpec, IntOrPercent, UpdateStrategy};
    use crate::core::inventory::tests::pod;
    use crate::core::model::{PdbInfo, WorkloadInfo};
    use crate::core::plan::fixtures::*;
    use crate::core::plan::make_plan;

    #[test]
    fn bare_pods_need_force() {
        let w = world(seed_pools(), seed_pods());
        let plan = make_plan(&input(&w, cidr("10.0.0.0/16"))).unwrap();
        assert_eq!(plan.blockers.len(), 1);
        assert!(
            plan.blockers[0].contains("shop/debug") && plan.blockers[0].contains("--force"),
            "{}",
            plan.blockers[0]
        );
    }

    /// Pins to an IPv6 pool are fixed through `ipv6pools`, not `ipv4pools`.
    #[test]
    fn a_budget_that_allows_nothing_blocks_every_strategy() {
        let mut w = world(seed_pools(), seed_pods());
        w.workloads = vec![WorkloadInfo::deployment("shop", "web", 1)];
        w.pdbs = vec![PdbInfo {
            namespace: "shop".into(),
            name: "web".into(),
            spec: BudgetSpec { min_available: Some(IntOrPercent::Int(1)), max_unavailable: None },
            disruptions_allowed: 0,
            current_healthy: 1,
            desired_healthy: 1,
            expected_pods: 1,
            pods: vec!["shop/web-1".into()],
        }];
        // A rollout is limited by the Deployment's strategy only, so it would
        // break the budget as surely as an eviction would.
        for strategy in [Strategy::Rollout, Strategy::Evict, Strategy::Drain] {
            let mut i = input(&w, cidr("10.0.0.0/16"));
            i.force = true;
            i.strategy = strategy;
            let b = make_plan(&i).unwrap().blockers;
            assert!(
                b.iter().any(|b| b.contains("PodDisruptionBudget shop/web (minAvailable 1) allows none")),
                "{strategy:?}: {b:?}"
            );
        }
        // A budget at zero only because a pod is unhealthy is transient: it
        // allows one once that pod is Ready again.
        w.workloads[0].replicas = 2;
        w.pdbs[0].pods.push("shop/web-2".into());
        w.pdbs[0].current_healthy = 1;
        w.pdbs[0].expected_pods = 2;
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        i.strategy = Strategy::Evict;
        let plan = make_plan(&i).unwrap();
        assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
        let web = plan.moves.iter().find(|m| m.target == "Deployment shop/web").unwrap();
        assert_eq!((web.kind, web.at_once), (MoveKind::Evict, 1));
        assert_eq!(web.guards[0].pdb, "shop/web");
    }

    #[test]
    fn strategies_evict_drain_on_delete_and_jobs() {
        let mut w = world(seed_pools(), seed_pods());
        let mut db = WorkloadInfo::deployment("shop", "db", 1);
        db.owner.kind = OwnerKind::StatefulSet;
        db.strategy = UpdateStrategy::OnDelete;
        w.workloads = vec![db];
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let plan = make_plan(&i).unwrap();
        let db = plan.moves.iter().find(|m| m.target == "StatefulSet shop/db").unwrap();
        assert_eq!(db.kind, MoveKind::Evict);
        assert!(db.note.as_deref().unwrap().contains("OnDelete"));

        i.strategy = Strategy::Drain;
        i.jobs = JobsPolicy::Skip;
        let plan = make_plan(&i).unwrap();
        let kinds: Vec<(String, MoveKind)> = plan.moves.iter().map(|m| (m.label(), m.kind)).collect();
        assert_eq!(
            kinds,
            // The drain lane takes the most rounds, so it starts first.
            vec![
                ("Node node-0 (Deployment kube-system/coredns)".into(), MoveKind::Drain),
                ("Node node-0 (Deployment shop/web)".into(), MoveKind::Drain),
                ("Node node-0 (StatefulSet shop/db)".into(), MoveKind::Drain),
                ("DaemonSet shop/agent".into(), MoveKind::Rollout),
                ("Bare shop/debug".into(), MoveKind::EvictForGood)
            ]
        );
        let drained: usize = plan.moves.iter().filter(|m| m.kind == MoveKind::Drain).map(|m| m.pods.len()).sum();
        assert_eq!(drained, 3);
        assert!(plan.moves.iter().filter(|m| m.kind == MoveKind::Drain).all(|m| m.lane == DRAIN_LANE));
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.skipped[0].reason.contains("--jobs skip"));

        i.strategy = Strategy::Evict;
        i.jobs = JobsPolicy::Evict;
        let plan = make_plan(&i).unwrap();
        assert!(plan.moves.iter().filter(|m| m.kind == MoveKind::Evict).count() == 4, "{:?}", plan.moves);
    }

    /// Pods of a controller the tool does not know, or with no controller
    /// reference, block like bare pods (naming kind, owner and the fix)
    /// unless --force; an Argo Rollout is restarted.
    #[test]
    fn unknown_controllers_block_unless_forced_and_rollouts_restart() {
        let mut pods = seed_pods();
        let mut vm = pod("shop", "virt-launcher-vm1-x", "192.168.0.30", OwnerKind::Other, "vm1");
        vm.owner.other_kind = Some("VirtualMachineInstance".into());
        let mut dependent = pod("shop", "helper", "192.168.0.31", OwnerKind::NotController, "cfg");
        dependent.owner.other_kind = Some("ConfigMap".into());
        pods.extend([vm, dependent, pod("shop", "canary-6f-a", "192.168.0.32", OwnerKind::Rollout, "canary")]);
        let w = world(seed_pools(), pods);
        let plan = make_plan(&input(&w, cidr("10.0.0.0/16"))).unwrap();
        let vm = plan.blockers.iter().find(|b| b.contains("virt-launcher-vm1-x")).expect("the VM pod blocks");
        assert!(vm.contains("VirtualMachineInstance shop/vm1") && vm.contains("virtctl migrate"), "{vm}");
        assert!(vm.contains("--force"), "{vm}");
        let dep = plan.blockers.iter().find(|b| b.contains("shop/helper")).expect("the dependent pod blocks");
        assert!(dep.contains("ConfigMap shop/cfg is not a controller"), "{dep}");
        assert!(!plan.moves.iter().any(|m| m.pods.iter().any(|p| p.contains("vm1") || p.contains("helper"))));
        let canary = plan.moves.iter().find(|m| m.target == "Rollout shop/canary").expect("the Rollout moves");
        assert_eq!(canary.kind, MoveKind::Rollout);
        assert!(canary.note.as_deref().unwrap().contains("spec.restartAt"));

        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let plan = make_plan(&i).unwrap();
        assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
        let vm = plan.moves.iter().find(|m| m.target == "VirtualMachineInstance shop/vm1").unwrap();
        assert_eq!(vm.kind, MoveKind::EvictForGood);
    }

    #[test]
    fn static_pods_are_reported_and_filters_apply() {
        let mut pods = seed_pods();
        pods.push(pod("kube-system", "etcd-node-0", "192.168.0.20", OwnerKind::Static, "etcd-node-0"));
        let w = world(seed_pools(), pods);
        let mut i = input(&w, cidr("10.0.0.0/16"));
        i.force = true;
        let plan = make_plan(&i).unwrap();
        assert!(plan.skipped.iter().any(|s| s.pod == "kube-system/etcd-node-0" && s.reason.contains("static")));
        let only: std::collections::BTreeSet<String> = ["shop/web-1".to_string()].into();
        i.pod_filter = Some(&only);
        let plan = make_plan(&i).unwrap();
        assert_eq!(plan.pod_count(), 1);
    }
}
