//! One pod watch and one PodDisruptionBudget watch per namespace (or, past
//! `NAMESPACED_WATCHES_MAX` namespaces, one of each across the cluster),
//! shared by every lane of a migration: waits read what the watches keep in
//! memory instead of each lane listing or watching on its own, so a pod
//! moved costs its eviction and little else.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio::sync::Notify;

use super::movers::is_healthy;
use super::progress::{Progress, ProgressEvent};
use super::workloads::owner_of;
use super::Cluster;
use crate::core::model::Owner;
use crate::error::{Error, Result};

/// What a wait needs of a pod.
#[derive(Debug, Clone)]
struct PodState {
    uid: String,
    owner: Owner,
    healthy: bool,
    deleting: bool,
}

/// What a wait needs of a PodDisruptionBudget: evictions it allows now,
/// once its controller has counted the current spec (else 0).
#[derive(Debug, Clone, Copy)]
struct PdbState {
    allowed: i32,
}

#[derive(Default)]
struct Store {
    pods: HashMap<String, PodState>,
    by_owner: HashMap<Owner, HashSet<String>>,
    pdbs: HashMap<String, PdbState>,
    /// Watches (pods and PDBs of each namespace) that have listed once.
    synced: usize,
    failed: Option<String>,
}

impl Store {
    fn put_pod(&mut self, key: String, p: PodState) {
        self.remove_pod(&key);
        self.by_owner.entry(p.owner.clone()).or_default().insert(key.clone());
        self.pods.insert(key, p);
    }

    fn remove_pod(&mut self, key: &str) -> Option<Owner> {
        let old = self.pods.remove(key)?;
        if let Some(set) = self.by_owner.get_mut(&old.owner) {
            set.remove(key);
        }
        Some(old.owner)
    }

    fn healthy(&self, owner: &Owner) -> usize {
        let keys = self.by_owner.get(owner);
        keys.into_iter().flatten().filter(|k| self.pods.get(*k).is_some_and(|p| p.healthy)).count()
    }

    /// The pod `key` with this UID is gone or on its way out.
    fn leaving(&self, key: &str, uid: &str) -> bool {
        self.pods.get(key).is_none_or(|p| p.deleting || (!uid.is_empty() && p.uid != uid))
    }
}

struct Inner {
    store: Mutex<Store>,
    /// Wakes the waits on one key (`pod/owner display`, `pdb/ns/name`).
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes every wait (a watch synced or failed).
    all: Notify,
    watches: usize,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waker(&self, key: &str) -> Arc<Notify> {
        let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        w.entry(key.to_string()).or_insert_with(|| Arc::new(Notify::new())).clone()
    }

    fn wake(&self, key: &str) {
        let w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = w.get(key) {
            n.notify_waiters();
        }
    }
}

/// The shared watches of one migration round; dropped, they stop.
pub struct SharedWatch {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SharedWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn owner_key(o: &Owner) -> String {
    format!("pod/{}", o.display())
}

fn pdb_key(pdb: &str) -> String {
    format!("pdb/{pdb}")
}

fn pod_state(p: &Pod) -> PodState {
    PodState {
        uid: p.uid().unwrap_or_default(),
        owner: owner_of(p),
        healthy: is_healthy(p),
        deleting: p.metadata.deletion_timestamp.is_some(),
    }
}

fn pdb_state(p: &PodDisruptionBudget) -> PdbState {
    let allowed = p.status.as_ref().map_or(0, |st| {
        let counted = st.observed_generation.unwrap_or(0) >= p.metadata.generation.unwrap_or(0);
        if counted {
            st.disruptions_allowed
        } else {
            0
        }
    });
    PdbState { allowed }
}

/// Past this many namespaces, one cluster-wide watch of each kind replaces
/// the per-namespace ones: a migration across hundreds of namespaces would
/// otherwise hold two connections open per namespace.
pub const NAMESPACED_WATCHES_MAX: usize = 8;

/// What one watch covers: a namespace, or every namespace of the migration
/// through a cluster-wide watch (events elsewhere are dropped).
#[derive(Clone)]
enum Scope {
    Namespace(String),
    Namespaces(Arc<HashSet<String>>),
}

impl Scope {
    fn covers(&self, ns: &str) -> bool {
        match self {
            Scope::Namespace(n) => n == ns,
            Scope::Namespaces(set) => set.contains(ns),
        }
    }

    fn covers_key(&self, key: &str) -> bool {
        key.split_once('/').is_some_and(|(ns, _)| self.covers(ns))
    }

    fn api<K>(&self, cluster: &Cluster) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match self {
            Scope::Namespace(n) => Api::namespaced(cluster.client.clone(), n),
            Scope::Namespaces(_) => Api::all(cluster.client.clone()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Namespace(n) => write!(f, "in {n}"),
            Scope::Namespaces(set) => write!(f, "in all namespaces (for {} of them)", set.len()),
        }
    }
}

fn key_of<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

impl SharedWatch {
    /// Start watching pods and PodDisruptionBudgets in `namespaces`; returns
    /// once every watch has listed (or failed).
    pub async fn start(cluster: &Cluster, namespaces: &[String], timeout: Duration) -> Result<SharedWatch> {
        let scopes: Vec<Scope> = if namespaces.len() > NAMESPACED_WATCHES_MAX {
            vec![Scope::Namespaces(Arc::new(namespaces.iter().cloned().collect()))]
        } else {
            namespaces.iter().map(|n| Scope::Namespace(n.clone())).collect()
        };
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::default()),
            wakers: Mutex::new(HashMap::new()),
            all: Notify::new(),
            watches: scopes.len() * 2,
        });
        let mut tasks = Vec::new();
        for scope in scopes {
            tracing::info!("watching pods and poddisruptionbudgets {scope}");
            tasks.push(tokio::spawn(run_pods(inner.clone(), scope.api(cluster), scope.clone())));
            tasks.push(tokio::spawn(run_pdbs(inner.clone(), scope.api(cluster), scope)));
        }
        let w = SharedWatch { inner, tasks };
        w.wait(&[], "the pod and PodDisruptionBudget watches to list", timeout, |_| true).await?;
        Ok(w)
    }

    /// Wait until `cond` holds of what the watches hold, re-checked whenever
    /// something under one of `keys` changes (or a watch syncs).
    async fn wait(&self, keys: &[String], what: &str, timeout: Duration, cond: impl Fn(&Store) -> bool) -> Result<()> {
        let wakers: Vec<Arc<Notify>> = keys.iter().map(|k| self.inner.waker(k)).collect();
        let run = async {
            loop {
                // Registered before the check, so no change slips between them.
                let mut woken: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> =
                    wakers.iter().map(|n| Box::pin(n.notified())).collect();
                woken.push(Box::pin(self.inner.all.notified()));
                for n in &mut woken {
                    n.as_mut().enable();
                }
                {
                    let s = self.inner.store();
                    if let Some(why) = &s.failed {
                        return Err(Error::Other(format!("waiting for {what}: {why}")));
                    }
                    if s.synced >= self.inner.watches && cond(&s) {
                        return Ok(());
                    }
                }
                futures::future::select_all(woken).await;
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(Error::Timeout { what: what.to_string(), after: timeout }))
    }

    /// Ready pods of `owner` that are not on their way out.
    pub fn healthy(&self, owner: &Owner) -> usize {
        self.inner.store().healthy(owner)
    }

    /// Wait until PodDisruptionBudget `pdb` (ns/name) lets `need` more pods
    /// go; one that does not exist allows anything. Reports once when it
    /// has to wait.
    pub async fn wait_allows(&self, progress: &dyn Progress, pdb: &str, need: i32, timeout: Duration) -> Result<()> {
        let (ns, name) = pdb.split_once('/').unwrap_or(("default", pdb));
        let what = format!(
            "PodDisruptionBudget {pdb} to allow {need} more pod(s) down (are its pods healthy? kubectl get pdb -n {ns} {name})"
        );
        let reported = std::cell::Cell::new(false);
        self.wait(&[pdb_key(pdb)], &what, timeout, |s| {
            let allowed = s.pdbs.get(pdb).map(|p| p.allowed);
            let ok = allowed.is_none_or(|a| a >= need);
            if !ok && !reported.replace(true) {
                progress.report(ProgressEvent::WaitingForBudget { pdb, need, allowed: allowed.unwrap_or(0) });
            }
            ok
        })
        .await
    }

    /// Wait until every pod of `evicted` (key, UID) is gone or terminating
    /// and, with an owner, it has `want` healthy pods again: the
    /// replacements are Ready. The first part keeps a watch that has not yet
    /// seen the evictions from counting the evicted pods as still there.
    pub async fn wait_replaced(
        &self,
        owner: Option<&Owner>,
        evicted: &[(String, String)],
        want: usize,
        timeout: Duration,
    ) -> Result<()> {
        let mut keys: Vec<String> = evicted.iter().map(|(k, _)| format!("name/{k}")).collect();
        let what = match owner {
            Some(o) => {
                keys.push(owner_key(o));
                format!("{} to have {want} Ready pod(s) again (the replacements of evicted pods)", o.display())
            }
            None => format!("{} evicted pod(s) to terminate", evicted.len()),
        };
        self.wait(&keys, &what, timeout, |s| {
            evicted.iter().all(|(k, uid)| s.leaving(k, uid)) && owner.is_none_or(|o| s.healthy(o) >= want)
        })
        .await
    }

    /// Wait until every pod of `pods` (key, UID) no longer exists.
    pub async fn wait_gone(&self, pods: &[(String, String)], timeout: Duration) -> Result<()> {
        let keys: Vec<String> = pods.iter().map(|(k, _)| format!("name/{k}")).collect();
        let what = format!("{} evicted pod(s) to be gone", pods.len());
        self.wait(&keys, &what, timeout, |s| {
            pods.iter().all(|(k, uid)| s.pods.get(k).is_none_or(|p| !uid.is_empty() && p.uid != *uid))
        })
        .await
    }
}

/// Keep the pods `scope` covers in the store.
async fn run_pods(inner: Arc<Inner>, api: Api<Pod>, scope: Scope) {
    let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
    let mut initial: HashMap<String, PodState> = HashMap::new();
    let mut first = true;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) if super::watch::is_permanent(&e) => return fail(&inner, format!("watching pods {scope}: {e}")),
            Err(e) => {
                tracing::debug!("watching pods {scope}: {e}; re-establishing the watch");
                continue;
            }
        };
        let mut woken: Vec<String> = Vec::new();
        match ev {
            Event::Init => initial.clear(),
            Event::InitApply(p) | Event::Apply(p) | Event::Delete(p) if !scope.covers_key(&key_of(&p)) => {}
            Event::InitApply(p) => {
                initial.insert(key_of(&p), pod_state(&p));
            }
            Event::InitDone => {
                let mut s = inner.store();
                let gone: Vec<String> =
                    s.pods.keys().filter(|k| scope.covers_key(k) && !initial.contains_key(*k)).cloned().collect();
                for k in gone {
                    s.remove_pod(&k);
                }
                for (k, p) in initial.drain() {
                    s.put_pod(k, p);
                }
                if std::mem::take(&mut first) {
                    s.synced += 1;
                }
                drop(s);
                inner.all.notify_waiters();
                continue;
            }
            Event::Apply(p) => {
                let key = key_of(&p);
                let st = pod_state(&p);
                woken.push(owner_key(&st.owner));
                woken.push(format!("name/{key}"));
                if let Some(old) = inner.store().pods.get(&key).map(|o| o.owner.clone()) {
                    woken.push(owner_key(&old));
                }
                inner.store().put_pod(key, st);
            }
            Event::Delete(p) => {
                let key = key_of(&p);
                woken.push(format!("name/{key}"));
                if let Some(o) = inner.store().remove_pod(&key) {
                    woken.push(owner_key(&o));
                }
            }
        }
        for k in woken {
            inner.wake(&k);
        }
    }
}

/// Keep the PodDisruptionBudgets `scope` covers in the store.
async fn run_pdbs(inner: Arc<Inner>, api: Api<PodDisruptionBudget>, scope: Scope) {
    let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
    let mut initial: HashMap<String, PdbState> = HashMap::new();
    let mut first = true;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) if super::watch::is_permanent(&e) => {
                return fail(&inner, format!("watching poddisruptionbudgets {scope}: {e}"))
            }
            Err(e) => {
                tracing::debug!("watching poddisruptionbudgets {scope}: {e}; re-establishing the watch");
                continue;
            }
        };
        match ev {
            Event::Init => initial.clear(),
            Event::InitApply(p) | Event::Apply(p) | Event::Delete(p) if !scope.covers_key(&key_of(&p)) => {}
            Event::InitApply(p) => {
                initial.insert(key_of(&p), pdb_state(&p));
            }
            Event::InitDone => {
                let mut s = inner.store();
                s.pdbs.retain(|k, _| !scope.covers_key(k));
                s.pdbs.extend(initial.drain());
                if std::mem::take(&mut first) {
                    s.synced += 1;
                }
                drop(s);
                inner.all.notify_waiters();
            }
            Event::Apply(p) => {
                let key = key_of(&p);
                inner.store().pdbs.insert(key.clone(), pdb_state(&p));
                inner.wake(&pdb_key(&key));
            }
            Event::Delete(p) => {
                let key = key_of(&p);
                inner.store().pdbs.remove(&key);
                inner.wake(&pdb_key(&key));
            }
        }
    }
}

fn fail(inner: &Inner, why: String) {
    inner.store().failed = Some(why);
    inner.all.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::OwnerKind;

    fn owner(name: &str) -> Owner {
        Owner { kind: OwnerKind::Deployment, other_kind: None, namespace: "shop".into(), name: name.into() }
    }

    fn pod(uid: &str, o: &str, healthy: bool, deleting: bool) -> PodState {
        PodState { uid: uid.into(), owner: owner(o), healthy, deleting }
    }

    #[test]
    fn a_cluster_wide_scope_covers_only_the_migrations_namespaces() {
        let one = Scope::Namespace("shop".into());
        let many = Scope::Namespaces(Arc::new(["shop".to_string(), "web".to_string()].into()));
        assert!(one.covers_key("shop/a") && !one.covers_key("shopping/a") && !one.covers_key("web/a"));
        assert!(many.covers_key("shop/a") && many.covers_key("web/a") && !many.covers_key("kube-system/a"));
        assert!(!many.covers_key("no-namespace"));
        assert_eq!(many.to_string(), "in all namespaces (for 2 of them)");
    }

    /// The owner index follows pods that change or leave, and a pod counts
    /// as left when it is terminating or its name now has another UID.
    #[test]
    fn the_store_counts_healthy_pods_by_owner_and_sees_pods_leave() {
        let mut s = Store::default();
        s.put_pod("shop/web-1".into(), pod("u1", "web", true, false));
        s.put_pod("shop/web-2".into(), pod("u2", "web", true, false));
        s.put_pod("shop/api-1".into(), pod("u3", "api", true, false));
        assert_eq!((s.healthy(&owner("web")), s.healthy(&owner("api"))), (2, 1));
        assert!(!s.leaving("shop/web-1", "u1"));
        s.put_pod("shop/web-1".into(), pod("u1", "web", false, true));
        assert_eq!(s.healthy(&owner("web")), 1);
        assert!(s.leaving("shop/web-1", "u1"));
        s.put_pod("shop/web-2".into(), pod("u9", "web", true, false));
        assert!(s.leaving("shop/web-2", "u2"), "the name has a new pod");
        assert_eq!(s.remove_pod("shop/web-2"), Some(owner("web")));
        assert!(s.leaving("shop/web-2", "u2"));
        assert_eq!(s.healthy(&owner("web")), 0);
        assert_eq!(s.by_owner[&owner("web")].len(), 1);
    }
}
