//! Where the connection settings come from: a kubeconfig (`--kubeconfig`,
//! `$KUBECONFIG`, `~/.kube/config`), or, as kubectl does in a pod that has
//! none, the in-cluster service account.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Config;

use super::ConnectOptions;
use crate::error::{root_cause, Error, Result};

/// The context name shown when running on the in-cluster service account.
pub const IN_CLUSTER: &str = "in-cluster";

/// The connection settings, the context name and the cluster name.
pub async fn load(args: &ConnectOptions) -> Result<(Config, String, String)> {
    let env = Env::from_process();
    if !in_cluster_applies(args, &env) {
        return from_kubeconfig(args).await;
    }
    if let Some(flag) = [("--context", &args.context), ("--cluster", &args.cluster), ("--user", &args.user)]
        .iter()
        .find_map(|(flag, v)| v.as_ref().map(|_| flag))
    {
        return Err(Error::Kubeconfig(format!(
            "{flag} names a kubeconfig entry, but there is no kubeconfig (running in-cluster on the pod's service account); drop {flag} or set --kubeconfig"
        )));
    }
    let config = Config::incluster().map_err(|e| {
        Error::Kubeconfig(format!(
            "no kubeconfig, and the in-cluster service account cannot be used: {} (set --kubeconfig or $KUBECONFIG)",
            root_cause(&e)
        ))
    })?;
    Ok((config, IN_CLUSTER.to_string(), IN_CLUSTER.to_string()))
}

/// What decides between a kubeconfig and the in-cluster account.
struct Env {
    kubeconfig: Option<std::ffi::OsString>,
    home: Option<PathBuf>,
    service_host: bool,
}

impl Env {
    fn from_process() -> Env {
        Env {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            home: std::env::var_os("HOME").map(PathBuf::from),
            service_host: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()),
        }
    }
}

/// client-go's rule: in-cluster only when no kubeconfig file can be found
/// (missing files in $KUBECONFIG are skipped) and the pod environment is there.
fn in_cluster_applies(args: &ConnectOptions, env: &Env) -> bool {
    if args.kubeconfig.is_some() || !env.service_host {
        return false;
    }
    let candidates: Vec<PathBuf> = match env.kubeconfig.as_ref().filter(|k| !k.is_empty()) {
        Some(list) => std::env::split_paths(list).filter(|p| !p.as_os_str().is_empty()).collect(),
        None => env.home.iter().map(|h| h.join(".kube/config")).collect(),
    };
    !candidates.iter().any(|p| Path::new(p).exists())
}

async fn from_kubeconfig(args: &ConnectOptions) -> Result<(Config, String, String)> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|e| Error::Kubeconfig(format!("{}: {}", path.display(), root_cause(&e))))?,
        None => Kubeconfig::read()
            .map_err(|e| Error::Kubeconfig(format!("{} (set --kubeconfig or $KUBECONFIG)", root_cause(&e))))?,
    };
    let context = match &args.context {
        Some(c) => {
            if !kubeconfig.contexts.iter().any(|nc| &nc.name == c) {
                let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::Kubeconfig(format!(
                    "context {c:?} not found; known contexts: {}",
                    known.join(", ")
                )));
            }
            c.clone()
        }
        None => kubeconfig
            .current_context
            .clone()
            .ok_or_else(|| Error::Kubeconfig("no current-context set; pass --context".into()))?,
    };
    if let Some(cl) = &args.cluster {
        if !kubeconfig.clusters.iter().any(|c| &c.name == cl) {
            return Err(Error::Kubeconfig(format!("cluster {cl:?} not found in kubeconfig")));
        }
    }
    if let Some(u) = &args.user {
        if !kubeconfig.auth_infos.iter().any(|a| &a.name == u) {
            return Err(Error::Kubeconfig(format!("user {u:?} not found in kubeconfig")));
        }
    }
    let cluster_name = args.cluster.clone().unwrap_or_else(|| {
        kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .unwrap_or_default()
    });
    let options =
        KubeConfigOptions { context: Some(context.clone()), cluster: args.cluster.clone(), user: args.user.clone() };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Kubeconfig(format!("context {context:?}: {}", root_cause(&e))))?;
    Ok((config, context, cluster_name))
}

/// Which names of a kubeconfig to list.
#[derive(Debug, Clone, Copy)]
pub enum EntryKind {
    Context,
    Cluster,
    User,
}

/// The context, cluster or user names of the kubeconfig kubectl would read
/// (`--kubeconfig`, else $KUBECONFIG, else ~/.kube/config); none if unreadable.
pub fn entry_names(path: Option<&Path>, kind: EntryKind) -> Vec<String> {
    let config = match path {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    };
    let Ok(config) = config else { return Vec::new() };
    match kind {
        EntryKind::Context => config.contexts.into_iter().map(|c| c.name).collect(),
        EntryKind::Cluster => config.clusters.into_iter().map(|c| c.name).collect(),
        EntryKind::User => config.auth_infos.into_iter().map(|a| a.name).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kubeconfig: Option<&str>, home: Option<&Path>, service_host: bool) -> Env {
        Env { kubeconfig: kubeconfig.map(Into::into), home: home.map(Path::to_path_buf), service_host }
    }

    #[test]
    fn in_cluster_only_without_any_kubeconfig_file_and_inside_a_pod() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let none = ConnectOptions::default();
        assert!(in_cluster_applies(&none, &env(None, Some(home), true)), "no ~/.kube/config, in a pod");
        assert!(!in_cluster_applies(&none, &env(None, Some(home), false)), "not in a pod");
        let flag = ConnectOptions { kubeconfig: Some("/nope".into()), ..Default::default() };
        assert!(!in_cluster_applies(&flag, &env(None, Some(home), true)), "--kubeconfig always wins");
        assert!(in_cluster_applies(&none, &env(Some("/missing/a:/missing/b"), Some(home), true)));
        std::fs::create_dir_all(home.join(".kube")).unwrap();
        std::fs::write(home.join(".kube/config"), "").unwrap();
        assert!(!in_cluster_applies(&none, &env(None, Some(home), true)), "~/.kube/config exists");
        let listed = format!("/missing:{}", home.join(".kube/config").display());
        assert!(!in_cluster_applies(&none, &env(Some(&listed), None, true)), "a $KUBECONFIG file exists");
    }
}
