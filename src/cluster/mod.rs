//! The cluster layer: the only code that talks to the API server.
//!
//! It turns Kubernetes and Calico objects into the core's plain data
//! (`crate::core::model`) and performs the few writes `migrate` needs.
//! `calico` is the one place that knows the `crd.projectcalico.org/v1` vs
//! `projectcalico.org/v3` differences and the operator's Installation.

pub mod access;
pub mod apiservice;
pub mod budgets;
pub mod calico;
pub mod canary;
pub mod canary_paths;
pub mod events;
pub mod evictions;
pub mod kubeconfig;
pub mod leaks;
pub mod lease;
pub mod listing;
pub mod lite;
pub mod movers;
pub mod networks;
pub mod pause;
pub mod pools;
pub mod probe;
pub mod progress;
pub mod record;
pub mod retry;
pub mod rules;
pub mod shared_watch;
pub mod snapshot;
pub mod templates;
pub mod testpods;
pub mod watch;
pub mod workloads;

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::api::{Api, ListParams};
use kube::Client;
use serde::de::DeserializeOwned;

use crate::error::{root_cause, Error, KubeResultExt, Result};

/// API requests made by this process (for summaries and benchmarks).
pub static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Of those, writes (anything but GET): what a migration costs the datastore.
pub static WRITES: AtomicU64 = AtomicU64::new(0);

pub fn requests_made() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

pub fn writes_made() -> u64 {
    WRITES.load(Ordering::Relaxed)
}

/// The component name on Events and labels of the objects this tool creates.
pub const COMPONENT: &str = "kubectl-ippool";

/// Page size for LIST requests (kubectl's --chunk-size default).
pub const PAGE_SIZE: u32 = 500;

/// How to reach the cluster: kubectl's connection flags as plain data.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    /// Restrict pods to this namespace (None: all namespaces).
    pub namespace: Option<String>,
    pub as_user: Option<String>,
    pub as_group: Vec<String>,
    /// Per-request timeout; zero means none.
    pub request_timeout: Option<std::time::Duration>,
}

/// A connected client plus what we learned about the cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub context: String,
    pub cluster_name: String,
    pub server: String,
    /// The namespace of `-n`, if given (None means all namespaces).
    pub namespace: Option<String>,
}

impl Cluster {
    /// Build a client from the kubeconfig flags (or the in-cluster service
    /// account when there is no kubeconfig), the way kubectl would, and
    /// make one cheap request so a dead server fails here with one clear line.
    pub async fn connect(args: &ConnectOptions) -> Result<Cluster> {
        let (mut config, context, cluster_name) = kubeconfig::load(args).await?;
        // We retry ourselves where it is safe and visible (eviction 429s
        // must be shown, never silently waited out).
        config.default_retry = false;
        if let Some(user) = &args.as_user {
            config.auth_info.impersonate = Some(user.clone());
        }
        if !args.as_group.is_empty() {
            config.auth_info.impersonate_groups = Some(args.as_group.clone());
        }
        if let Some(t) = args.request_timeout {
            let t = if t.is_zero() { None } else { Some(t) };
            config.read_timeout = t;
            config.write_timeout = t;
            config.connect_timeout = t.or(config.connect_timeout);
        }
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let builder = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| Error::Kubeconfig(format!("context {context:?}: {}", root_cause(&e))))?;
        // Count requests so `migrate` can report API requests per pod moved,
        // and log each attempt at -v=6 (as kubectl logs its requests).
        let counting = tower::util::MapRequestLayer::new(|req: http::Request<kube::client::Body>| {
            let n = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::trace!("API request {n}: {} {}", req.method(), req.uri());
            if req.method() != http::Method::GET {
                WRITES.fetch_add(1, Ordering::Relaxed);
            }
            req
        });
        // Retries of what is safe to repeat (see retry.rs), outside the
        // counter so every attempt is counted; Retry needs a cloneable service.
        let client = builder
            .with_layer(&counting)
            .with_layer(&tower::buffer::BufferLayer::new(1024))
            .with_layer(&tower::retry::RetryLayer::new(retry::SafeRetry::default()))
            .build();

        client.apiserver_version().await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 401 => Error::Unauthorized { context: context.clone() },
            kube::Error::Api(_) => Error::Kube { op: "get /version".into(), source: e },
            _ => Error::Unreachable { server: server.clone(), reason: root_cause(&e) },
        })?;

        Ok(Cluster { client, context, cluster_name, server, namespace: args.namespace.clone() })
    }

    /// An Api for a namespaced kind in the namespace of `-n`, or in all.
    pub fn scoped<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// "context kubesim (cluster kubesim, https://127.0.0.1:6443/)", for banners.
    pub fn describe(&self) -> String {
        format!("context {} (cluster {}, {})", self.context, self.cluster_name, self.server)
    }
}

/// LIST every object page by page (PAGE_SIZE at a time), handing each one
/// to `f` as it arrives so only one page of raw objects is in memory.
pub async fn list_paged<K, F>(api: &Api<K>, lp: ListParams, what: &str, namespace: Option<&str>, mut f: F) -> Result<()>
where
    K: Clone + DeserializeOwned + Debug,
    F: FnMut(K),
{
    let mut lp = lp.limit(PAGE_SIZE);
    loop {
        let page = api.list(&lp).await.op("list", what, namespace)?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for item in page.items {
            f(item);
        }
        match next {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(()),
        }
    }
}
