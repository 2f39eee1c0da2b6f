//! Every permission a run will use, asked up front (SelfSubjectAccessReview)
//! so a missing one refuses before anything is written.

use std::collections::BTreeSet;

use super::MigrateOptions;
use crate::cluster::access::Need;
use crate::cluster::calico::{ApiMode, Calico, Kind, GROUP_OPERATOR, GROUP_V3};
use crate::cluster::record::STATE_NAMESPACE;
use crate::core::model::OwnerKind;
use crate::core::plan::{MoveKind, Plan, Strategy};
use crate::core::rules::RulesReport;

/// Every permission the run will use, asked up front.
pub(crate) fn permissions_needed(
    calico: &Calico,
    plan: &Plan,
    rules: &RulesReport,
    opts: &MigrateOptions,
) -> Vec<Need> {
    let ks = Some(STATE_NAMESPACE);
    let mut needs = Vec::new();
    if opts.update_rules {
        let mut seen = BTreeSet::new();
        let mut tiered = false;
        for p in rules.pairs().flat_map(|r| &r.patches) {
            let t = &p.target;
            if seen.insert((t.group().to_string(), t.plural.clone(), t.namespace.clone())) {
                needs.push(Need::new("patch", t.group(), &t.plural, t.namespace.as_deref()));
                // Calico's API server authorizes a policy also by its tier: `get` on the tier
                // and the verb on tier.<kind>.
                if calico.mode == ApiMode::ApiServer && t.group() == GROUP_V3 && TIERED.contains(&t.plural.as_str()) {
                    needs.push(Need::new("patch", GROUP_V3, &format!("tier.{}", t.plural), t.namespace.as_deref()));
                    tiered = true;
                }
            }
        }
        if tiered {
            needs.push(Need::new("get", GROUP_V3, "tiers", None));
        }
    }
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
    // The drain reads what calico-kube-controllers does about leaked addresses.
    needs.push(Need::new("get", "crd.projectcalico.org", "kubecontrollersconfigurations", None));
    if opts.release_leaked {
        // Blocks are already asked for above unless the operator deletes the pool.
        let kinds: &[Kind] = if plan.via_operator { &[Kind::IPAMBlock, Kind::IPAMHandle] } else { &[Kind::IPAMHandle] };
        for kind in kinds {
            let r = calico.resource(*kind);
            for verb in ["update", "delete"] {
                needs.push(Need::new(verb, &r.group, &r.plural, None));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for m in &plan.moves {
        let ns = m.owner.as_ref().map(|o| o.namespace.to_string());
        if let (true, Some(o)) = (m.surge > 0, &m.owner) {
            let res = if o.kind == OwnerKind::StatefulSet { "statefulsets" } else { "deployments" };
            if seen.insert(("patch", res, ns.clone())) {
                needs.push(Need::new("patch", "apps", res, ns.as_deref()));
            }
        }
        match (m.kind, &m.owner) {
            (MoveKind::Rollout, Some(o)) => {
                let (group, res) = match o.kind {
                    OwnerKind::Deployment => ("apps", "deployments"),
                    OwnerKind::StatefulSet => ("apps", "statefulsets"),
                    OwnerKind::Rollout => ("argoproj.io", "rollouts"),
                    _ => ("apps", "daemonsets"),
                };
                if seen.insert(("patch", res, ns.clone())) {
                    needs.push(Need::new("patch", group, res, ns.as_deref()));
                }
                // Decided again when its lane starts, a rollout may become
                // evictions (and leftovers after it are evicted).
                if let Some(n) = ns.as_ref().filter(|n| seen.insert(("create", "pods/eviction", Some(n.to_string())))) {
                    needs.push(Need::new("create", "", "pods", Some(n)).sub("eviction"));
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
    if opts.strategy == Strategy::Drain {
        needs.push(Need::new("patch", "", "nodes", None));
    }
    needs.push(Need::new("create", "", "namespaces", None));
    needs.push(Need::new("delete", "", "namespaces", None));
    needs.push(Need::new("create", "", "pods", None));
    // The canary's Service and its readiness.
    needs.push(Need::new("create", "", "services", None));
    needs.push(Need::new("list", "discovery.k8s.io", "endpointslices", None));
    needs.push(Need::new("watch", "discovery.k8s.io", "endpointslices", None));
    for verb in ["get", "create", "update"] {
        needs.push(Need::new(verb, "", "configmaps", ks));
        needs.push(Need::new(verb, "coordination.k8s.io", "leases", ks));
    }
    needs
}

/// The policy kinds Calico's API server authorizes per tier.
const TIERED: &[&str] =
    &["networkpolicies", "globalnetworkpolicies", "stagednetworkpolicies", "stagedglobalnetworkpolicies"];
