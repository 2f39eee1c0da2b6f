//! What a run reads from the cluster before planning, and the plan's input
//! made from it and the flags.

use std::collections::BTreeSet;

use crate::cluster::calico::Calico;
use crate::cluster::snapshot::Snapshot;
use crate::cluster::{budgets, networks, workloads, Cluster};
use crate::core::model::{CniPools, PdbInfo, WorkloadInfo};
use crate::core::plan::PlanInput;
use crate::error::Result;

use super::MigrateOptions;

/// Everything read from the cluster before planning.
pub(crate) struct Facts {
    pub(super) snap: Snapshot,
    pub(super) workloads: Vec<WorkloadInfo>,
    pub(super) pdbs: Vec<PdbInfo>,
    pub(super) cni: Option<CniPools>,
    /// Pods selected by `-l` (None: no label filter).
    pub(super) label_filter: Option<BTreeSet<String>>,
    /// IPReservation CIDRs (read once, by `run`), for the capacity check.
    pub(super) reservations: Vec<ipnet::IpNet>,
    /// The GitOps controller syncing Installation `default`, if any.
    pub(super) installation_gitops: Option<String>,
}

impl Facts {
    pub(super) async fn read(cluster: &Cluster, calico: Calico, opts: &MigrateOptions) -> Result<Facts> {
        let operator = calico.operator;
        let (snap, workloads, pdbs, cni, labelled, installation_gitops) = tokio::try_join!(
            Snapshot::read(cluster, calico),
            workloads::list_workloads(cluster),
            budgets::list_pdbs(cluster),
            async { Ok(networks::read_cni_pools(cluster).await) },
            async {
                match &opts.selector {
                    Some(sel) => Ok(Some(
                        workloads::list_pods(cluster, Some(sel))
                            .await?
                            .into_iter()
                            .map(|p| p.key())
                            .collect::<BTreeSet<_>>(),
                    )),
                    None => Ok(None),
                }
            },
            async {
                Ok(match operator {
                    true => crate::cluster::calico::installation_gitops(cluster).await,
                    false => None,
                })
            },
        )?;
        Ok(Facts { snap, workloads, pdbs, cni, label_filter: labelled, reservations: vec![], installation_gitops })
    }

    pub(super) fn plan_input<'a>(&'a self, opts: &'a MigrateOptions, operator: bool) -> PlanInput<'a> {
        PlanInput {
            from: &opts.from,
            to: opts.to.clone(),
            also: opts.also.clone(),
            overrides: opts.overrides.clone(),
            strategy: opts.strategy,
            jobs: opts.jobs,
            force: opts.force,
            allow_outside_cluster_cidr: opts.allow_outside_cluster_cidr,
            operator,
            inventory: &self.snap.inventory,
            nodes: &self.snap.nodes,
            namespaces: &self.snap.namespaces,
            networks: &self.snap.networks,
            workloads: &self.workloads,
            pdbs: &self.pdbs,
            cni_pools: self.cni.clone(),
            pod_filter: self.label_filter.as_ref(),
            canary_per_node: opts.canary_per_node,
            canary_image: &opts.canary_image,
            parallel: opts.max_parallel.map(usize::from),
            max_unavailable: opts.max_unavailable,
            surge: opts.surge,
            allow_downtime: opts.allow_downtime,
            reservations: &self.reservations,
            installation_gitops: self.installation_gitops.clone(),
        }
    }
}
