//! `BudgetWatch`: a test-side witness that no PodDisruptionBudget went below
//! its floor and no Service lost its last ready endpoint while something (a
//! migration, a rollout) was moving pods.
//!
//! Watches (never polls), all namespaces, filtered to the namespaces given:
//! Pods, PodDisruptionBudgets, Deployments, ReplicaSets, StatefulSets and
//! EndpointSlices, each with kube-runtime's `watcher` (list + watch, re-list
//! after a lost watch). One task applies the events in arrival order.
//!
//! On every pod event, for every PDB of that pod's namespace:
//! * healthy = pods matched by the PDB's selector (in its namespace) that are
//!   `Ready=True` and have no `deletionTimestamp`: `countHealthyPods` of the
//!   disruption controller (pkg/controller/disruption/disruption.go, v1.33).
//!   Not modelled: `status.disruptedPods` (a pod evicted but whose delete has
//!   not been seen yet), a window of a few milliseconds between the eviction's
//!   PDB write and its pod delete.
//! * floor (desiredHealthy), from two sources:
//!   - `status.desiredHealthy` written by the real disruption controller in
//!     kubesim's controller-manager, used when `status.observedGeneration`
//!     is current;
//!   - our own `getExpectedPodCount`: maxUnavailable (int, or percent rounded
//!     UP) → expected − that, floored at 0; minAvailable int → that;
//!     minAvailable percent → ceil(pct × expected); expected = sum of the
//!     `spec.replicas` of the distinct controllers of the matched pods (pod →
//!     ReplicaSet → its Deployment if any; pod → StatefulSet), pods without a
//!     controller not counted, as `getExpectedScale` does.
//!
//!   The floor is the LOWER of the two when both are known. The controller
//!   only re-syncs a PDB on pod and PDB events, not on a scale change, so its
//!   status can lag a Deployment scale-down (a surge being undone) for a
//!   moment; ours can lag a ReplicaSet creation by one event. Taking the
//!   lower never turns either lag into a false violation; when both agree (the
//!   steady state) it is exactly the controller's number. Disagreements are
//!   counted in the report.
//!
//! EndpointSlices: per Service (label `kubernetes.io/service-name`), the
//! number of endpoints with `conditions.ready` true (nil counts as ready, as
//! the API documents) summed over its slices; a Service whose count goes from
//! > 0 to 0 is recorded.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::oneshot;

mod report;
use report::RECENT;
pub use report::{Coverage, Lowest, Report, ServiceAtZero, Violation};

/// The PDBs of kubesim's `realistic` scenario without `single`.
pub const REALISTIC_PDBS: &[&str] =
    &["kube-system/coredns", "shop/web", "shop/api", "shop/front", "shop/legacy", "data/db"];
/// The Services of kubesim's `realistic` scenario without `single`.
pub const REALISTIC_SERVICES: &[&str] = &[
    "kube-system/kube-dns",
    "shop/web",
    "shop/api",
    "shop/front-a",
    "shop/front-b",
    "shop/legacy",
    "data/db",
    "data/agent",
];

/// A running watch. `stop` it to get the report.
pub struct BudgetWatch {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Report>,
}

impl BudgetWatch {
    /// Start watching the given namespaces (empty: all). Returns once every
    /// watch has delivered its initial list, so no later event is missed.
    /// Must be called inside the tokio runtime that made `client`.
    pub async fn start(client: Client, namespaces: &[&str]) -> BudgetWatch {
        let cfg = watcher::Config::default();
        let streams: Vec<BoxStream<'static, Msg>> = vec![
            watcher::watcher(Api::<Pod>::all(client.clone()), cfg.clone()).default_backoff().map(Msg::Pod).boxed(),
            watcher::watcher(Api::<PodDisruptionBudget>::all(client.clone()), cfg.clone())
                .default_backoff()
                .map(Msg::Pdb)
                .boxed(),
            watcher::watcher(Api::<Deployment>::all(client.clone()), cfg.clone())
                .default_backoff()
                .map(Msg::Deploy)
                .boxed(),
            watcher::watcher(Api::<ReplicaSet>::all(client.clone()), cfg.clone())
                .default_backoff()
                .map(Msg::Rs)
                .boxed(),
            watcher::watcher(Api::<StatefulSet>::all(client.clone()), cfg.clone())
                .default_backoff()
                .map(Msg::Sts)
                .boxed(),
            watcher::watcher(Api::<EndpointSlice>::all(client), cfg).default_backoff().map(Msg::Slice).boxed(),
        ];
        let merged = stream::select_all(streams);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (synced_tx, synced_rx) = oneshot::channel();
        let state = State::new(namespaces);
        let task = tokio::spawn(run(state, merged, stop_rx, synced_tx));
        match tokio::time::timeout(Duration::from_secs(60), synced_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("budget watch: the watch task ended before its initial lists"),
            Err(_) => panic!("budget watch: initial lists not complete after 60 s"),
        }
        BudgetWatch { stop: Some(stop_tx), task }
    }

    /// Stop watching once the cluster has settled: every watched Deployment
    /// and StatefulSet reports its rollout complete and no pod of the
    /// watched namespaces is terminating (at most `SETTLE_LIMIT`; the report
    /// names what had not settled), then the streams are quiet for 300 ms.
    pub async fn stop(mut self) -> Report {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.expect("budget watch task panicked")
    }
}

enum Msg {
    Pod(Result<Event<Pod>, watcher::Error>),
    Pdb(Result<Event<PodDisruptionBudget>, watcher::Error>),
    Deploy(Result<Event<Deployment>, watcher::Error>),
    Rs(Result<Event<ReplicaSet>, watcher::Error>),
    Sts(Result<Event<StatefulSet>, watcher::Error>),
    Slice(Result<Event<EndpointSlice>, watcher::Error>),
}

async fn run(
    mut st: State,
    mut merged: stream::SelectAll<BoxStream<'static, Msg>>,
    mut stop_rx: oneshot::Receiver<()>,
    synced_tx: oneshot::Sender<()>,
) -> Report {
    let mut synced_tx = Some(synced_tx);
    loop {
        tokio::select! {
            msg = merged.next() => match msg {
                Some(m) => st.handle(m),
                None => break,
            },
            _ = &mut stop_rx => break,
        }
        if synced_tx.is_some() && st.all_synced() {
            let _ = synced_tx.take().unwrap().send(());
        }
    }
    // Keep watching until every watched Deployment and StatefulSet reports
    // its rollout complete and no pod of theirs is terminating (a rollout
    // still running when the mover exits is still moving pods), then until
    // the streams are quiet for 300 ms.
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut unsettled = st.unsettled();
    while !unsettled.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), merged.next()).await {
            Ok(Some(m)) => st.handle(m),
            Ok(None) => break,
            Err(_) => {}
        }
        unsettled = st.unsettled();
    }
    st.report.unsettled = unsettled;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), merged.next()).await {
        st.handle(m);
    }
    st.report.watched_for = st.started.elapsed();
    st.report
}

/// How long `stop` keeps watching for the workloads to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);

/// Why a Deployment's rollout is not complete (`kubectl rollout status`'s
/// test), or None.
fn deployment_unsettled(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let current = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let (updated, total, avail) =
        (st.updated_replicas.unwrap_or(0), st.replicas.unwrap_or(0), st.available_replicas.unwrap_or(0));
    (!current || updated < want || total > updated || avail < updated)
        .then(|| format!("Deployment {}: {updated} updated, {total} in all, {avail} available of {want}", key(d)))
}

/// Why a StatefulSet's rollout is not complete, or None.
fn statefulset_unsettled(s: &StatefulSet) -> Option<String> {
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let current = st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0);
    let (ready, updated) = (st.ready_replicas.unwrap_or(0), st.updated_replicas.unwrap_or(0));
    let revision_done = st.update_revision.is_none() || st.update_revision == st.current_revision;
    (!current || ready < want || st.replicas > want || (updated < want && !revision_done))
        .then(|| format!("StatefulSet {}: {ready} ready, {} in all of {want}", key(s), st.replicas))
}

/// A store of one kind, keyed `namespace/name`, with the re-list buffer.
struct Objs<K> {
    map: BTreeMap<String, K>,
    relist: Option<BTreeMap<String, K>>,
    synced: bool,
}

enum Change<K> {
    Added(K),
    Modified(K),
    Deleted(K),
}

fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.as_deref().unwrap_or(""), o.meta().name.as_deref().unwrap_or(""))
}

impl<K: Resource + Clone> Objs<K> {
    fn new() -> Self {
        Objs { map: BTreeMap::new(), relist: None, synced: false }
    }

    /// Applies one watcher event; returns the resulting changes (a re-list
    /// turns into the adds, modifications and deletes it implies).
    fn apply(&mut self, ev: Event<K>) -> Vec<Change<K>> {
        match ev {
            Event::Apply(o) => {
                let k = key(&o);
                match self.map.insert(k, o.clone()) {
                    Some(_) => vec![Change::Modified(o)],
                    None => vec![Change::Added(o)],
                }
            }
            Event::Delete(o) => {
                self.map.remove(&key(&o));
                vec![Change::Deleted(o)]
            }
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                vec![]
            }
            Event::InitApply(o) => {
                self.relist.get_or_insert_with(BTreeMap::new).insert(key(&o), o);
                vec![]
            }
            Event::InitDone => {
                self.synced = true;
                let new = self.relist.take().unwrap_or_default();
                let mut out = Vec::new();
                for (k, o) in &self.map {
                    if !new.contains_key(k) {
                        out.push(Change::Deleted(o.clone()));
                    }
                }
                for (k, o) in &new {
                    match self.map.get(k) {
                        None => out.push(Change::Added(o.clone())),
                        Some(old) if old.meta().resource_version != o.meta().resource_version => {
                            out.push(Change::Modified(o.clone()))
                        }
                        Some(_) => {}
                    }
                }
                self.map = new;
                out
            }
        }
    }

    fn get(&self, ns: &str, name: &str) -> Option<&K> {
        self.map.get(&format!("{ns}/{name}"))
    }

    fn in_namespace<'a>(&'a self, ns: &str) -> impl Iterator<Item = &'a K> + 'a {
        let prefix = format!("{ns}/");
        self.map.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(&prefix)).map(|(_, v)| v)
    }
}

struct State {
    namespaces: BTreeSet<String>,
    started: Instant,
    pods: Objs<Pod>,
    pdbs: Objs<PodDisruptionBudget>,
    deploys: Objs<Deployment>,
    rss: Objs<ReplicaSet>,
    stss: Objs<StatefulSet>,
    slices: Objs<EndpointSlice>,
    recent: VecDeque<String>,
    /// Per PDB: the (healthy, floor) of the last recorded violation while it lasts.
    below: HashMap<String, (i32, i32)>,
    /// Per Service: ready endpoints now.
    svc_ready: HashMap<String, i32>,
    report: Report,
}

fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn controller_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true))
}

/// `metav1.LabelSelectorAsSelector` semantics: nil selects nothing, empty selects everything.
fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else { return false };
    if let Some(ml) = &sel.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let val = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or(&[]);
        let ok = match e.operator.as_str() {
            "In" => val.is_some_and(|v| values.contains(v)),
            "NotIn" => !val.is_some_and(|v| values.contains(v)),
            "Exists" => val.is_some(),
            "DoesNotExist" => val.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
pub fn scaled_up(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: {s:?}"))?;
            Ok(((p * total as i64 + 99).div_euclid(100)) as i32)
        }
    }
}

fn describe_pod(p: &Pod) -> String {
    let state = if p.metadata.deletion_timestamp.is_some() {
        "Deleting"
    } else if pod_is_ready(p) {
        "Ready"
    } else {
        "NotReady"
    };
    let status = p.status.as_ref();
    format!(
        "{} {} {} node={} ip={}",
        key(p),
        status.and_then(|s| s.phase.as_deref()).unwrap_or("-"),
        state,
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("-"),
        status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
    )
}

fn wall() -> String {
    chrono::Utc::now().format("%H:%M:%S%.3f").to_string()
}

impl State {
    fn new(namespaces: &[&str]) -> State {
        State {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            started: Instant::now(),
            pods: Objs::new(),
            pdbs: Objs::new(),
            deploys: Objs::new(),
            rss: Objs::new(),
            stss: Objs::new(),
            slices: Objs::new(),
            recent: VecDeque::new(),
            below: HashMap::new(),
            svc_ready: HashMap::new(),
            report: Report::default(),
        }
    }

    fn all_synced(&self) -> bool {
        self.pods.synced
            && self.pdbs.synced
            && self.deploys.synced
            && self.rss.synced
            && self.stss.synced
            && self.slices.synced
    }

    /// The watched workloads whose rollout is not complete, and pods still terminating.
    fn unsettled(&self) -> Vec<String> {
        let ns_of = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.namespace.clone();
        let deploys = self.deploys.map.values().filter(|d| self.wanted(ns_of(&d.metadata).as_deref()));
        let stss = self.stss.map.values().filter(|s| self.wanted(ns_of(&s.metadata).as_deref()));
        let terminating = self
            .pods
            .map
            .values()
            .filter(|p| self.wanted(ns_of(&p.metadata).as_deref()) && p.metadata.deletion_timestamp.is_some())
            .map(|p| format!("Pod {} terminating", key(p)));
        deploys
            .filter_map(deployment_unsettled)
            .chain(stss.filter_map(statefulset_unsettled))
            .chain(terminating)
            .collect()
    }

    fn wanted(&self, ns: Option<&str>) -> bool {
        self.namespaces.is_empty() || ns.is_some_and(|n| self.namespaces.contains(n))
    }

    fn error(&mut self, what: &str, e: watcher::Error) {
        let msg = format!("[+{:.3}s {}] {what}: {e}", self.started.elapsed().as_secs_f64(), wall());
        self.report.watch_errors.push(msg);
    }

    fn handle(&mut self, m: Msg) {
        // Only evaluate once every store holds its initial list.
        let live = self.all_synced();
        match m {
            Msg::Pod(Ok(ev)) => {
                for ch in self.pods.apply(ev) {
                    self.pod_changed(ch, live);
                }
            }
            Msg::Pdb(Ok(ev)) => {
                self.pdbs.apply(ev);
            }
            Msg::Deploy(Ok(ev)) => {
                self.deploys.apply(ev);
            }
            Msg::Rs(Ok(ev)) => {
                self.rss.apply(ev);
            }
            Msg::Sts(Ok(ev)) => {
                self.stss.apply(ev);
            }
            Msg::Slice(Ok(ev)) => {
                for ch in self.slices.apply(ev) {
                    self.slice_changed(ch, live);
                }
            }
            Msg::Pod(Err(e)) => self.error("pods", e),
            Msg::Pdb(Err(e)) => self.error("poddisruptionbudgets", e),
            Msg::Deploy(Err(e)) => self.error("deployments", e),
            Msg::Rs(Err(e)) => self.error("replicasets", e),
            Msg::Sts(Err(e)) => self.error("statefulsets", e),
            Msg::Slice(Err(e)) => self.error("endpointslices", e),
        }
    }

    fn pod_changed(&mut self, ch: Change<Pod>, live: bool) {
        let (verb, pod) = match &ch {
            Change::Added(p) => ("ADDED", p),
            Change::Modified(p) => ("MODIFIED", p),
            Change::Deleted(p) => ("DELETED", p),
        };
        let ns = pod.namespace().unwrap_or_default();
        if !self.wanted(Some(&ns)) {
            return;
        }
        let line = format!("+{:.3}s {} {verb} {}", self.started.elapsed().as_secs_f64(), wall(), describe_pod(pod));
        self.recent.push_back(line.clone());
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        if !live {
            return;
        }
        self.report.pod_events += 1;
        *self.report.pod_events_by_namespace.entry(ns.clone()).or_default() += 1;
        let pdbs: Vec<PodDisruptionBudget> = self.pdbs.in_namespace(&ns).cloned().collect();
        for pdb in &pdbs {
            self.check_pdb(pdb, &line);
        }
    }

    /// Our own `getExpectedPodCount` (see the module docs).
    fn computed_desired(&self, pdb: &PodDisruptionBudget, pods: &[&Pod]) -> Result<(i32, i32), String> {
        let spec = pdb.spec.as_ref().ok_or("no spec")?;
        if let Some(mu) = &spec.max_unavailable {
            let expected = self.expected_scale(pods)?;
            let mu = scaled_up(mu, expected)?;
            Ok((expected, (expected - mu).max(0)))
        } else if let Some(ma) = &spec.min_available {
            match ma {
                IntOrString::Int(i) => Ok((pods.len() as i32, *i)),
                IntOrString::String(_) => {
                    let expected = self.expected_scale(pods)?;
                    Ok((expected, scaled_up(ma, expected)?))
                }
            }
        } else {
            Ok((0, 0))
        }
    }

    /// `getExpectedScale`: the sum of the scales of the pods' distinct controllers.
    fn expected_scale(&self, pods: &[&Pod]) -> Result<i32, String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        for pod in pods {
            let Some(cref) = controller_of(&pod.metadata) else { continue };
            let ns = pod.namespace().unwrap_or_default();
            let (uid, scale) = match cref.kind.as_str() {
                "ReplicaSet" => {
                    let rs = self
                        .rss
                        .get(&ns, &cref.name)
                        .filter(|rs| rs.metadata.uid.as_deref() == Some(&cref.uid))
                        .ok_or_else(|| {
                        format!("ReplicaSet {ns}/{} of pod {} not seen yet", cref.name, pod.name_any())
                    })?;
                    match controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
                        Some(dref) => {
                            let d = self
                                .deploys
                                .get(&ns, &dref.name)
                                .filter(|d| d.metadata.uid.as_deref() == Some(&dref.uid))
                                .ok_or_else(|| format!("Deployment {ns}/{} not seen yet", dref.name))?;
                            (dref.uid.clone(), d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
                        }
                        None => (cref.uid.clone(), rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
                    }
                }
                "StatefulSet" => {
                    let ss = self
                        .stss
                        .get(&ns, &cref.name)
                        .filter(|s| s.metadata.uid.as_deref() == Some(&cref.uid))
                        .ok_or_else(|| format!("StatefulSet {ns}/{} not seen yet", cref.name))?;
                    (cref.uid.clone(), ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
                }
                other => return Err(format!("controller kind {other} of pod {} is not modelled", pod.name_any())),
            };
            scales.insert(uid, scale);
        }
        Ok(scales.values().sum())
    }

    fn check_pdb(&mut self, pdb: &PodDisruptionBudget, trigger: &str) {
        let ns = pdb.namespace().unwrap_or_default();
        let name = key(pdb);
        let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let pods: Vec<&Pod> = self
            .pods
            .in_namespace(&ns)
            .filter(|p| selector_matches(sel, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
            .collect();
        let healthy = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && pod_is_ready(p)).count() as i32;
        let status_desired = pdb.status.as_ref().and_then(|s| {
            let current = s.observed_generation.unwrap_or(0) >= pdb.metadata.generation.unwrap_or(0)
                && s.observed_generation.is_some();
            current.then_some(s.desired_healthy)
        });
        let computed = self.computed_desired(pdb, &pods);
        let floor = match (status_desired, &computed) {
            (Some(s), Ok((_, c))) => {
                if s != *c {
                    self.report.disagreements += 1;
                    if self.report.disagreement_examples.len() < 5 {
                        self.report.disagreement_examples.push(format!(
                            "+{:.3}s {name}: status.desiredHealthy {s}, computed {c}",
                            self.started.elapsed().as_secs_f64()
                        ));
                    }
                }
                s.min(*c)
            }
            (Some(s), Err(_)) => s,
            (None, Ok((_, c))) => *c,
            (None, Err(why)) => {
                self.report.unevaluated.push(format!("{name} after {trigger}: status not current and {why}"));
                return;
            }
        };
        let at = self.started.elapsed();
        let cov = self.report.pdb_coverage.entry(name.clone()).or_insert(Coverage { count: 0, first: at, last: at });
        cov.count += 1;
        cov.last = at;
        let low = self.report.lowest.entry(name.clone()).or_insert(Lowest { healthy, floor });
        if healthy - floor < low.healthy - low.floor {
            *low = Lowest { healthy, floor };
        }
        if healthy >= floor {
            self.below.remove(&name);
            return;
        }
        if self.below.get(&name) == Some(&(healthy, floor)) {
            return; // same instant state as already recorded
        }
        self.below.insert(name.clone(), (healthy, floor));
        let pod_states = pods
            .iter()
            .map(|p| {
                let s = if p.metadata.deletion_timestamp.is_some() {
                    "Deleting"
                } else if pod_is_ready(p) {
                    "Ready"
                } else {
                    "NotReady"
                };
                format!("{}:{s}", p.name_any())
            })
            .collect();
        self.report.violations.push(Violation {
            pdb: name,
            healthy,
            floor,
            status_desired,
            computed,
            at: self.started.elapsed(),
            wall: wall(),
            trigger: trigger.to_string(),
            pods: pod_states,
            recent: self.recent.iter().cloned().collect(),
        });
    }

    fn slice_changed(&mut self, ch: Change<EndpointSlice>, live: bool) {
        let (verb, slice) = match &ch {
            Change::Added(s) => ("ADDED", s),
            Change::Modified(s) => ("MODIFIED", s),
            Change::Deleted(s) => ("DELETED", s),
        };
        let ns = slice.namespace().unwrap_or_default();
        // The canary's own Service goes with its throwaway namespace, by design.
        if !self.wanted(Some(&ns)) || ns.starts_with("kubectl-ippool-canary-") {
            return;
        }
        let Some(svc) = slice.labels().get("kubernetes.io/service-name").cloned() else { return };
        let ready: i32 = self
            .slices
            .in_namespace(&ns)
            .filter(|s| s.labels().get("kubernetes.io/service-name") == Some(&svc))
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .count() as i32;
        let svc_key = format!("{ns}/{svc}");
        let before = self.svc_ready.insert(svc_key.clone(), ready).unwrap_or(0);
        if !live {
            return;
        }
        self.report.slice_events += 1;
        let at = self.started.elapsed();
        let cov =
            self.report.service_coverage.entry(svc_key.clone()).or_insert(Coverage { count: 0, first: at, last: at });
        cov.count += 1;
        cov.last = at;
        if before > 0 && ready == 0 {
            self.report.services_at_zero.push(ServiceAtZero {
                service: svc_key,
                before,
                at: self.started.elapsed(),
                wall: wall(),
                trigger: format!("{verb} EndpointSlice {}", key(slice)),
                recent: self.recent.iter().cloned().collect(),
            });
        }
    }
}

impl Report {
    /// The watcher's figures for a `RELIABILITY` line.
    pub fn reliability_figures(&self) -> String {
        format!("pdb_floor_violations={} services_at_zero={}", self.violations.len(), self.services_at_zero.len())
    }
}

/// A `BudgetWatch` for tests without a runtime of their own: it owns the
/// (multi-threaded) tokio runtime its watch runs on. The watch goes through
/// the cluster's own kubeconfig (`TestCluster::client`), never through a
/// fault-injecting proxy.
pub struct BlockingBudgetWatch {
    rt: tokio::runtime::Runtime,
    watch: BudgetWatch,
}

impl BlockingBudgetWatch {
    /// Starts watching `namespaces` (empty: all) of `c`; returns once the initial lists are in.
    pub fn start(c: &super::TestCluster, namespaces: &[&str]) -> BlockingBudgetWatch {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let watch = rt.block_on(async { BudgetWatch::start(c.client().await, namespaces).await });
        BlockingBudgetWatch { rt, watch }
    }

    pub fn stop(self) -> Report {
        let BlockingBudgetWatch { rt, watch } = self;
        rt.block_on(watch.stop())
    }
}
