//! Calico objects: which API serves them, and how to read them.
//!
//! Three install shapes exist (see shared/notes/calico-facts.md §2.1):
//! - classic KDD: only `crd.projectcalico.org/v1` CRDs;
//! - the aggregated Calico API server: `projectcalico.org/v3` served for
//!   pools, with the v1 CRDs beneath (IPAM blocks and handles are only
//!   readable through v1);
//! - native v3 CRDs (3.32 tech preview): `projectcalico.org/v3` only.
//!
//! Everything else in the tool works with `core::model` values and never
//! sees which of these it was.

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Resource;
use serde::Serialize;
use serde_json::Value;

mod decode;

pub use decode::{affinity_from_object, block_from_object, handle_from_object, nth_addr, pool_from_object};

use super::listing::{list_as, Freshness};
use super::Cluster;
use crate::core::model::{Ipam, Pool};
use crate::error::{Error, KubeResultExt, Result};

pub const GROUP_V1: &str = "crd.projectcalico.org";
pub const GROUP_V3: &str = "projectcalico.org";
pub const GROUP_OPERATOR: &str = "operator.tigera.io";
pub const GROUP_MIGRATION: &str = "migration.projectcalico.org";

/// How Calico's API is served in this cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ApiMode {
    /// Only `crd.projectcalico.org/v1` CRDs: we write them directly and
    /// apply calicoctl's validation ourselves.
    CrdV1,
    /// Aggregated Calico API server: pools through `projectcalico.org/v3`,
    /// IPAM blocks/affinities/handles through `crd.projectcalico.org/v1`.
    ApiServer,
    /// Native `projectcalico.org/v3` CRDs, no v1 group.
    NativeV3,
}

/// What we know about the Calico install.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Calico {
    pub mode: ApiMode,
    /// An `operator.tigera.io/v1` Installation named `default` exists.
    pub operator: bool,
    pub calico_version: Option<String>,
    pub cluster_type: Option<String>,
}

/// The resource kinds we use, by their v3 kind name.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    IPPool,
    IPAMBlock,
    BlockAffinity,
    IPAMHandle,
    ClusterInformation,
}

impl Calico {
    /// Find Calico, refusing clearly when it is absent, not doing IPAM, or locked.
    pub async fn detect(cluster: &Cluster) -> Result<Calico> {
        let groups = cluster.client.list_api_groups().await.op("list", "API groups", None)?;
        let has = |g: &str| groups.groups.iter().any(|x| x.name == g);
        let mode = match (has(GROUP_V1), has(GROUP_V3)) {
            (true, true) => ApiMode::ApiServer,
            (true, false) => ApiMode::CrdV1,
            (false, true) => ApiMode::NativeV3,
            (false, false) => {
                return Err(Error::Calico(format!(
                    "Calico not found in {}: neither the {GROUP_V1} nor the {GROUP_V3} API group is served",
                    cluster.describe()
                )))
            }
        };
        if mode == ApiMode::ApiServer {
            super::apiservice::require_available(cluster, super::apiservice::CALICO_APISERVICE).await?;
        }
        let mut calico = Calico { mode, operator: false, calico_version: None, cluster_type: None };

        // A datastore migration (v1 -> v3 CRDs) locks IPAM in its last phase.
        if has(GROUP_MIGRATION) {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(GROUP_MIGRATION, "v1", "DatastoreMigration"),
                "datastoremigrations",
            );
            let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
            if let Ok(list) = api.list(&ListParams::default()).await {
                for m in list.items {
                    let phase = m.data.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
                    if phase != "Complete" {
                        return Err(Error::Calico(format!(
                            "a Calico datastore migration ({}) is in phase {phase}; IPAM is locked until it completes. Run again when `kubectl get datastoremigrations` shows Complete",
                            m.metadata.name.unwrap_or_default()
                        )));
                    }
                }
            }
        }

        let info_api: Api<DynamicObject> =
            Api::all_with(cluster.client.clone(), &calico.resource(Kind::ClusterInformation));
        if let Some(info) = info_api.get_opt("default").await.op("get", "clusterinformations", None)? {
            calico.calico_version = info
                .data
                .pointer("/spec/calicoVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            calico.cluster_type = info.data.pointer("/spec/clusterType").and_then(Value::as_str).map(str::to_string);
            if info.data.pointer("/spec/datastoreReady").and_then(Value::as_bool) == Some(false) {
                return Err(Error::Calico(
                    "the Calico datastore is locked (ClusterInformation default has datastoreReady=false, e.g. by `calicoctl datastore migrate lock`); unlock it first".into(),
                ));
            }
        }

        if has(GROUP_OPERATOR) {
            if let Some(inst) = installation_api(cluster).get_opt("default").await.op(
                "get",
                "installations.operator.tigera.io",
                None,
            )? {
                calico.operator = true;
                let ipam = inst.data.pointer("/spec/cni/ipam/type").and_then(Value::as_str).unwrap_or("Calico");
                if ipam != "Calico" {
                    return Err(Error::Calico(format!(
                        "Calico IPAM is not in use (Installation default has spec.cni.ipam.type={ipam}); pod IPs do not come from IP pools, so there is nothing to migrate"
                    )));
                }
            }
        }
        if !calico.operator {
            // Manifest installs keep the CNI config in a ConfigMap.
            let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(cluster.client.clone(), "kube-system");
            if let Ok(Some(cm)) = cms.get_opt("calico-config").await {
                let cni = cm.data.as_ref().and_then(|d| d.get("cni_network_config")).cloned().unwrap_or_default();
                if cni.contains("host-local") && !cni.contains("calico-ipam") {
                    return Err(Error::Calico(
                        "Calico IPAM is not in use (ConfigMap kube-system/calico-config configures host-local IPAM); pod IPs do not come from IP pools".into(),
                    ));
                }
            }
        }
        Ok(calico)
    }

    /// The API resource for `kind`, in the group this install serves it from.
    pub fn resource(&self, kind: Kind) -> ApiResource {
        let v3 = match kind {
            Kind::IPPool | Kind::ClusterInformation => self.mode != ApiMode::CrdV1,
            // The aggregated API server does not serve blocks or handles.
            Kind::IPAMBlock | Kind::BlockAffinity | Kind::IPAMHandle => self.mode == ApiMode::NativeV3,
        };
        let (kind_name, plural) = match kind {
            Kind::IPPool => ("IPPool", "ippools"),
            Kind::IPAMBlock => ("IPAMBlock", "ipamblocks"),
            Kind::BlockAffinity => ("BlockAffinity", "blockaffinities"),
            Kind::IPAMHandle => ("IPAMHandle", "ipamhandles"),
            Kind::ClusterInformation => ("ClusterInformation", "clusterinformations"),
        };
        let (group, version) = if v3 { (GROUP_V3, "v3") } else { (GROUP_V1, "v1") };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind_name), plural)
    }

    /// Where policies, network sets and IP reservations are read and written:
    /// like pools, through the v3 API whenever it is served (the API server
    /// validates there), else the v1 CRDs (same spec shape).
    pub fn rules_api_version(&self) -> &'static str {
        if self.mode == ApiMode::CrdV1 {
            "crd.projectcalico.org/v1"
        } else {
            "projectcalico.org/v3"
        }
    }

    pub fn api(&self, cluster: &Cluster, kind: Kind) -> Api<DynamicObject> {
        Api::all_with(cluster.client.clone(), &self.resource(kind))
    }

    pub async fn list_pools(&self, cluster: &Cluster) -> Result<Vec<Pool>> {
        self.list_pools_from(cluster, Freshness::Consistent).await
    }

    pub async fn list_pools_from(&self, cluster: &Cluster, fresh: Freshness) -> Result<Vec<Pool>> {
        let objs = self.list_objects(cluster, Kind::IPPool, fresh, |o| Some(pool_from_object(&o))).await?;
        let mut pools: Vec<Pool> = objs.into_iter().map(|o| o.map_err(Error::Calico)).collect::<Result<_>>()?;
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pools)
    }

    /// LIST every object of `kind`, turning each into an `R` as it is parsed.
    async fn list_objects<T, R>(
        &self,
        cluster: &Cluster,
        kind: Kind,
        fresh: Freshness,
        keep: impl Fn(T) -> Option<R> + Send + Sync + 'static,
    ) -> Result<Vec<R>>
    where
        T: serde::de::DeserializeOwned,
        R: Send + 'static,
    {
        let ar = self.resource(kind);
        let path = DynamicObject::url_path(&ar, None);
        list_as(cluster, &path, &ListParams::default(), fresh, &ar.plural, None, keep).await
    }

    /// Blocks, affinities and handles in one consistent read, each decoded
    /// as it arrives.
    pub async fn read_ipam(&self, cluster: &Cluster) -> Result<Ipam> {
        self.read_ipam_with(cluster, true, Freshness::Consistent).await
    }

    /// Like `read_ipam`; `status` skips the handles (one per pod) it never shows.
    pub async fn read_ipam_with(&self, cluster: &Cluster, handles: bool, fresh: Freshness) -> Result<Ipam> {
        let (blocks, affinities, handles) = tokio::try_join!(
            self.list_objects(cluster, Kind::IPAMBlock, fresh, |o| Some(block_from_object(&o))),
            self.list_objects(cluster, Kind::BlockAffinity, fresh, |o| Some(affinity_from_object(&o))),
            async {
                match handles {
                    true => self.list_objects(cluster, Kind::IPAMHandle, fresh, |o| Some(handle_from_object(&o))).await,
                    false => Ok(Vec::new()),
                }
            },
        )?;
        let mut problems = Vec::new();
        let mut ipam = Ipam {
            blocks: decoded(blocks, &mut problems),
            affinities: decoded(affinities, &mut problems),
            handles: decoded(handles, &mut problems),
        };
        for p in problems {
            tracing::warn!("skipping undecodable IPAM object: {p}");
        }
        ipam.share_handle_ids();
        ipam.blocks.sort_by_key(|b| b.cidr);
        Ok(ipam)
    }
}

/// The objects that decoded; the others' problems go to `problems`.
fn decoded<T>(results: Vec<Result<T, String>>, problems: &mut Vec<String>) -> Vec<T> {
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => problems.push(e),
        }
    }
    out
}

pub fn installation_api(cluster: &Cluster) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP_OPERATOR, "v1", "Installation"),
        "installations",
    );
    Api::all_with(cluster.client.clone(), &ar)
}

/// The GitOps controller syncing Installation `default`, if any (unknown
/// counts as none).
pub async fn installation_gitops(cluster: &Cluster) -> Option<String> {
    let inst = installation_api(cluster).get_opt("default").await.ok().flatten()?;
    decode::gitops_of(&inst)
}

/// Whether a Helm release owns Installation `default` (then a `helm upgrade`
/// would put back whatever the chart's values say). Unknown counts as no.
pub async fn installation_is_helm_managed(cluster: &Cluster) -> bool {
    let Ok(Some(inst)) = installation_api(cluster).get_opt("default").await else { return false };
    let labelled =
        inst.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by")).is_some_and(|v| v == "Helm");
    labelled || inst.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("meta.helm.sh/release-name"))
}
