//! IPPool writes: create, disable/enable and delete a pool, through the
//! operator's Installation when the operator owns the pool, otherwise
//! through the Calico API the cluster serves (`Calico::resource`).
//!
//! Every write reads the object first and replaces it with that
//! resourceVersion; on 409 it re-reads and re-applies the intended change,
//! so a concurrent edit is never overwritten blindly. Every function is
//! idempotent: calling it again after an interruption is safe.

use std::time::Duration;

use ipnet::IpNet;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use serde_json::{json, Value};

use super::calico::{installation_api, pool_from_object, Calico, Kind};
use super::retry::{
    already_exists, create_once, is_transient, repeat_transient, repeat_unconditional, transient_pause,
};
use super::watch::wait_object;
use super::{list_paged, Cluster};
use crate::core::cidr::within;
use crate::core::model::{EncapMode, Pool};
use crate::error::{Error, KubeResultExt, Result};

const CONFLICT_RETRIES: u32 = 8;

pub struct PoolWriter<'a> {
    pub cluster: &'a Cluster,
    pub calico: &'a Calico,
    /// Change pools through Installation `default` (the operator owns them).
    pub via_operator: bool,
    pub timeout: Duration,
}

/// The v3/v1 IPPool spec for `pool`, with every field spelled out: in CRD
/// mode nobody applies calicoctl's defaults for us.
pub fn pool_spec(pool: &Pool) -> Value {
    let mut spec = json!({
        "cidr": pool.cidr.to_string(),
        "blockSize": pool.block_size,
        "ipipMode": pool.ipip_mode.as_str(),
        "vxlanMode": pool.vxlan_mode.as_str(),
        "natOutgoing": pool.nat_outgoing,
        "disabled": pool.disabled,
        "disableBGPExport": pool.disable_bgp_export,
        "nodeSelector": pool.node_selector,
        "allowedUses": pool.allowed_uses,
        "assignmentMode": pool.assignment_mode.clone().unwrap_or_else(|| "Automatic".into()),
    });
    if let Some(ns) = &pool.namespace_selector {
        spec["namespaceSelector"] = json!(ns);
    }
    spec
}

/// The Installation `spec.calicoNetwork.ipPools` entry for `pool`.
pub fn installation_entry(pool: &Pool) -> Value {
    let encapsulation = match (pool.ipip_mode, pool.vxlan_mode) {
        (EncapMode::Always, _) => "IPIP",
        (EncapMode::CrossSubnet, _) => "IPIPCrossSubnet",
        (_, EncapMode::Always) => "VXLAN",
        (_, EncapMode::CrossSubnet) => "VXLANCrossSubnet",
        _ => "None",
    };
    let mut e = json!({
        "name": pool.name,
        "cidr": pool.cidr.to_string(),
        "encapsulation": encapsulation,
        "natOutgoing": if pool.nat_outgoing { "Enabled" } else { "Disabled" },
        "blockSize": pool.block_size,
        "nodeSelector": pool.node_selector,
    });
    if pool.disable_bgp_export {
        e["disableBGPExport"] = json!(true);
    }
    if pool.allowed_uses != ["Workload", "Tunnel"] {
        e["allowedUses"] = json!(pool.allowed_uses);
    }
    if let Some(m) = &pool.assignment_mode {
        e["assignmentMode"] = json!(m);
    }
    e
}

impl<'a> PoolWriter<'a> {
    /// The writer for a migration off pool `from`, deciding once how pools
    /// are changed: through Installation `default` when the operator lists
    /// that pool there or labels it as its own (never behind its back),
    /// directly otherwise.
    pub async fn for_migration(
        cluster: &'a Cluster,
        calico: &'a Calico,
        from: &str,
        from_managed_by_operator: bool,
        timeout: Duration,
    ) -> Result<PoolWriter<'a>> {
        let mut w = PoolWriter { cluster, calico, via_operator: false, timeout };
        if calico.operator {
            w.via_operator = from_managed_by_operator || w.listed_in_installation(from).await?;
        }
        Ok(w)
    }

    /// A writer that changes each pool through Installation `default` when
    /// the operator lists that pool there, directly otherwise.
    pub fn where_listed(cluster: &'a Cluster, calico: &'a Calico, timeout: Duration) -> PoolWriter<'a> {
        PoolWriter { cluster, calico, via_operator: calico.operator, timeout }
    }

    fn api(&self) -> Api<DynamicObject> {
        self.calico.api(self.cluster, Kind::IPPool)
    }

    fn plural(&self) -> String {
        let ar = self.calico.resource(Kind::IPPool);
        format!("ippools.{}", ar.group)
    }

    pub async fn get(&self, name: &str) -> Result<Option<DynamicObject>> {
        self.api().get_opt(name).await.op("get", &self.plural(), None)
    }

    /// Create the pool (no-op if a pool of that name and CIDR exists), then
    /// wait until it is there and enabled.
    pub async fn ensure_created(&self, pool: &Pool) -> Result<()> {
        if let Some(o) = self.get(&pool.name).await? {
            let have = pool_from_object(&o).map_err(Error::Calico)?;
            if have.cidr != pool.cidr {
                return Err(Error::Other(format!(
                    "IPPool {} exists with CIDR {}, not {}",
                    pool.name, have.cidr, pool.cidr
                )));
            }
        } else if self.via_operator {
            let entry = installation_entry(pool);
            let name = pool.name.clone();
            self.edit_installation(move |pools| {
                if !pools.iter().any(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str())) {
                    pools.push(entry.clone());
                }
                Ok(())
            })
            .await?;
        } else {
            let ar = self.calico.resource(Kind::IPPool);
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": ar.api_version, "kind": "IPPool",
                "metadata": {"name": pool.name, "annotations": {"ippool.kubectl.io/created-by": "kubectl-ippool migrate"}},
                "spec": pool_spec(pool),
            }))
            .map_err(|e| Error::Other(e.to_string()))?;
            let (api, pp) = (self.api(), PostParams::default());
            match create_once(|| api.create(&pp, &obj)).await {
                Ok(_) => {}
                Err(e) if already_exists(&e) => {}
                Err(e) => return Err(e).op("create", &self.plural(), None),
            }
        }
        self.wait_pool(&pool.name, "to exist and be enabled", |p| p.is_some_and(|p| !p.disabled)).await
    }

    /// Set `spec.disabled` (operator: `disableNewAllocations`) and wait until
    /// the IPPool shows it.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        if self.via_operator && self.in_installation(name).await? {
            let name2 = name.to_string();
            self.edit_installation(move |pools| {
                let entry = pools.iter_mut().find(|p| p.get("name").and_then(Value::as_str) == Some(name2.as_str()));
                let entry =
                    entry.ok_or_else(|| Error::Other(format!("IPPool {name2} is not in Installation default")))?;
                entry["disableNewAllocations"] = json!(disabled);
                Ok(())
            })
            .await?;
        } else {
            for attempt in 0..CONFLICT_RETRIES {
                let Some(mut o) = self.get(name).await? else {
                    return Err(Error::Other(format!("IPPool {name} not found")));
                };
                if o.data.pointer("/spec/disabled").and_then(Value::as_bool).unwrap_or(false) == disabled {
                    break;
                }
                o.data["spec"]["disabled"] = json!(disabled);
                match self.api().replace(name, &PostParams::default(), &o).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    // Landed or not, the next read tells; the resourceVersion guards a repeat.
                    Err(e) if is_transient(&e) => tokio::time::sleep(transient_pause(attempt)).await,
                    Err(e) => return Err(e).op("update", &self.plural(), None),
                }
            }
        }
        let what = if disabled { "to be disabled" } else { "to be enabled" };
        self.wait_pool(name, what, move |p| p.is_some_and(|p| p.disabled == disabled)).await
    }

    /// Delete the pool the safe way (disabled first, affinities released,
    /// then deleted) and wait until it is gone. The caller has checked that
    /// it holds no allocations.
    /// Blocks inside `keep` (a target pool nested in the old one) are left alone.
    pub async fn delete_safely(&self, pool: &Pool, keep: Option<IpNet>) -> Result<()> {
        if self.get(&pool.name).await?.is_none() {
            return Ok(());
        }
        if self.via_operator && self.in_installation(&pool.name).await? {
            // The operator deletes it through the v3 API, which releases
            // the affinities itself.
            let name = pool.name.clone();
            self.edit_installation(move |pools| {
                pools.retain(|p| p.get("name").and_then(Value::as_str) != Some(name.as_str()));
                Ok(())
            })
            .await?;
        } else {
            self.set_disabled(&pool.name, true).await?;
            release_affinities(self.cluster, self.calico, &pool.cidr, keep).await?;
            super::pause::point("delete:affinities-released").await;
            let (api, dp) = (self.api(), DeleteParams::default());
            match repeat_unconditional(|| api.delete(&pool.name, &dp)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e).op("delete", &self.plural(), None),
            }
        }
        self.wait_pool(&pool.name, "to be deleted", |p| p.is_none()).await?;
        // An operator's (or the v3 controller's) release may have left blocks; clean what is empty.
        release_affinities(self.cluster, self.calico, &pool.cidr, keep).await
    }

    /// Installation `default` lists this pool (so the operator owns it; its
    /// label is not always visible on the v1 object).
    async fn in_installation(&self, name: &str) -> Result<bool> {
        if !self.calico.operator {
            return Ok(false);
        }
        self.listed_in_installation(name).await
    }

    async fn listed_in_installation(&self, name: &str) -> Result<bool> {
        let inst = installation_api(self.cluster).get_opt("default").await.op(
            "get",
            "installations.operator.tigera.io",
            None,
        )?;
        Ok(inst
            .and_then(|i| i.data.pointer("/spec/calicoNetwork/ipPools").and_then(Value::as_array).cloned())
            .is_some_and(|pools| pools.iter().any(|p| p.get("name").and_then(Value::as_str) == Some(name))))
    }

    /// Read-modify-write `spec.calicoNetwork.ipPools` of Installation `default`.
    async fn edit_installation(&self, change: impl Fn(&mut Vec<Value>) -> Result<()>) -> Result<()> {
        let api = installation_api(self.cluster);
        for attempt in 0..CONFLICT_RETRIES {
            let mut inst = api.get("default").await.op("get", "installations.operator.tigera.io", None)?;
            let mut pools =
                inst.data.pointer("/spec/calicoNetwork/ipPools").and_then(Value::as_array).cloned().unwrap_or_default();
            let before = pools.clone();
            change(&mut pools)?;
            if pools == before {
                return Ok(());
            }
            inst.data["spec"]["calicoNetwork"]["ipPools"] = json!(pools);
            match api.replace("default", &PostParams::default(), &inst).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) if is_transient(&e) => tokio::time::sleep(transient_pause(attempt)).await,
                Err(e) => return Err(e).op("update", "installations.operator.tigera.io", None),
            }
        }
        Err(Error::Other("Installation default kept changing under us; try again".into()))
    }

    async fn wait_pool(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(Option<&Pool>) -> bool + Send + 'static,
    ) -> Result<()> {
        let label = format!(
            "IPPool {name} {what}{}",
            if self.via_operator { " (the operator applies Installation default)" } else { "" }
        );
        wait_object(self.api(), name, &label, self.timeout, move |o: Option<&DynamicObject>| {
            let pool = o.filter(|o| o.metadata.deletion_timestamp.is_none()).and_then(|o| pool_from_object(o).ok());
            cond(pool.as_ref())
        })
        .await
        .map(|_| ())
    }
}

/// calicoctl's ReleasePoolAffinities, step by step: each BlockAffinity in
/// `cidr` goes to pendingDeletion; its block is deleted if empty (marked
/// deleted first, then deleted with a UID precondition) or loses its
/// affinity if not; then the affinity is deleted.
pub async fn release_affinities(cluster: &Cluster, calico: &Calico, cidr: &IpNet, keep: Option<IpNet>) -> Result<()> {
    let aff_api = calico.api(cluster, Kind::BlockAffinity);
    let block_api = calico.api(cluster, Kind::IPAMBlock);
    let mut affinities = Vec::new();
    list_paged(&aff_api, ListParams::default(), "blockaffinities", None, |o: DynamicObject| {
        let in_pool = o
            .data
            .pointer("/spec/cidr")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<IpNet>().ok())
            .is_some_and(|c| within(&c, cidr) && keep.is_none_or(|k| !within(&c, &k)));
        if in_pool {
            affinities.push(o);
        }
    })
    .await?;
    for aff in affinities {
        let name = aff.metadata.name.clone().unwrap_or_default();
        let block_cidr = aff.data.pointer("/spec/cidr").and_then(Value::as_str).unwrap_or_default().to_string();
        let node = aff.data.pointer("/spec/node").and_then(Value::as_str).unwrap_or_default().to_string();
        update_with_retry(&aff_api, &name, "blockaffinities", |o| {
            o.data["spec"]["state"] = json!("pendingDeletion");
        })
        .await?;
        let block_name = block_cidr.replace(['.', ':', '/'], "-");
        if let Some(block) = block_api.get_opt(&block_name).await.op("get", "ipamblocks", None)? {
            let affine_here =
                block.data.pointer("/spec/affinity").and_then(Value::as_str) == Some(&format!("host:{node}"));
            let empty = block
                .data
                .pointer("/spec/allocations")
                .and_then(Value::as_array)
                .is_none_or(|a| a.iter().all(Value::is_null));
            if affine_here && empty {
                update_with_retry(&block_api, &block_name, "ipamblocks", |o| {
                    o.data["spec"]["deleted"] = json!(true);
                })
                .await?;
                delete_with_uid(&block_api, &block_name, block.metadata.uid.clone(), "ipamblocks").await?;
            } else if affine_here {
                update_with_retry(&block_api, &block_name, "ipamblocks", |o| {
                    o.data["spec"]["affinity"] = Value::Null;
                })
                .await?;
            }
        }
        // BlockAffinity.spec.deleted (a string in v1, a bool in v3) is not
        // needed: the object itself is deleted, with a UID precondition.
        delete_with_uid(&aff_api, &name, aff.metadata.uid.clone(), "blockaffinities").await?;
    }
    Ok(())
}

async fn update_with_retry(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    change: impl Fn(&mut DynamicObject),
) -> Result<()> {
    for attempt in 0..CONFLICT_RETRIES {
        let Some(mut o) = api.get_opt(name).await.op("get", what, None)? else { return Ok(()) };
        let before = o.data.clone();
        change(&mut o);
        if o.data == before {
            return Ok(());
        }
        match api.replace(name, &PostParams::default(), &o).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) if is_transient(&e) => tokio::time::sleep(transient_pause(attempt)).await,
            Err(e) => return Err(e).op("update", what, None),
        }
    }
    Err(Error::Other(format!("{what} {name} kept changing under us; try again")))
}

async fn delete_with_uid(api: &Api<DynamicObject>, name: &str, uid: Option<String>, what: &str) -> Result<()> {
    let dp = DeleteParams { preconditions: Some(Preconditions { uid, resource_version: None }), ..Default::default() };
    let mut attempt = 0;
    loop {
        match repeat_transient(|| api.delete(name, &dp)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            // 409: the UID precondition failed (the name now belongs to a new
            // object: leave it), or the delete did not happen for another
            // reason: then the same object is still there and we must not go
            // on as if it were gone (an IPAMBlock would be orphaned without
            // its affinity); it is deleted again, a few times.
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(name).await.op("get", what, None)? {
                Some(o) if o.metadata.uid == dp.preconditions.as_ref().and_then(|p| p.uid.clone()) => {
                    if attempt >= CONFLICT_RETRIES {
                        return Err(Error::Other(format!(
                            "delete {what} {name}: {} (409); it still exists, re-run to continue",
                            s.message
                        )));
                    }
                    tokio::time::sleep(transient_pause(attempt)).await;
                    attempt += 1;
                }
                _ => return Ok(()),
            },
            Err(e) => return Err(e).op("delete", what, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_spec_and_installation_entry() {
        let mut p = Pool::new("10.0.0.0-16", "10.0.0.0/16".parse().unwrap());
        p.ipip_mode = EncapMode::Always;
        p.nat_outgoing = true;
        let s = pool_spec(&p);
        assert_eq!(s["blockSize"], 26);
        assert_eq!(s["ipipMode"], "Always");
        assert_eq!(s["vxlanMode"], "Never");
        assert_eq!(s["assignmentMode"], "Automatic");
        assert_eq!(s["allowedUses"], json!(["Workload", "Tunnel"]));
        let e = installation_entry(&p);
        assert_eq!(
            e,
            json!({"name":"10.0.0.0-16","cidr":"10.0.0.0/16","encapsulation":"IPIP","natOutgoing":"Enabled","blockSize":26,"nodeSelector":"all()"})
        );
        p.ipip_mode = EncapMode::Never;
        p.vxlan_mode = EncapMode::CrossSubnet;
        assert_eq!(installation_entry(&p)["encapsulation"], "VXLANCrossSubnet");
    }
}
