//! Waiting on the cluster: every wait is a watch with a deadline, never a
//! polling loop, and outlives a dropped watch.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::wait::Condition;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Watch one object until `cond` holds, or fail after `timeout`. Returns
/// the object as it was when `cond` first held (None: it does not exist).
pub async fn wait_object<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut seen: Option<K> = None;
    wait_list(api, config, what, timeout, |objs| {
        let current = objs.iter().find(|o| o.name_any() == name).copied();
        let met = cond.matches_object(current);
        if met {
            seen = current.cloned();
        }
        met
    })
    .await?;
    Ok(seen)
}

/// Watch a set of objects (a LIST + WATCH kept in memory) until `done`
/// holds for the current set, or fail after `timeout`. A watch that drops
/// or expires is re-established (resuming from the last resourceVersion,
/// or listing afresh when it is too old) and the wait goes on; only an
/// error no retry can mend (401, 403, 404) ends it early.
pub async fn wait_list<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[&K]) -> bool,
) -> Result<()>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let run = async {
        let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        let mut items: BTreeMap<String, K> = BTreeMap::new();
        let mut initial: BTreeMap<String, K> = BTreeMap::new();
        let mut synced = false;
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) if is_permanent(&e) => return Err(Error::Other(format!("watching {what}: {e}"))),
                Err(e) => {
                    tracing::debug!("watching {what}: {e}; re-establishing the watch");
                    continue;
                }
            };
            match ev {
                Event::Init => initial.clear(),
                Event::InitApply(o) => {
                    initial.insert(key(&o), o);
                }
                Event::InitDone => {
                    items = std::mem::take(&mut initial);
                    synced = true;
                }
                Event::Apply(o) => {
                    items.insert(key(&o), o);
                }
                Event::Delete(o) => {
                    items.remove(&key(&o));
                }
            }
            if synced {
                let current: Vec<&K> = items.values().collect();
                if done(&current) {
                    return Ok(());
                }
            }
        }
        Err(Error::Other(format!("watch of {what} ended")))
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(Error::Timeout { what: what.to_string(), after: timeout }))
}

/// Errors a new attempt cannot mend: credentials, permissions, a missing kind.
pub(super) fn is_permanent(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    };
    matches!(api, Some(401 | 403 | 404))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::core::Status {
        kube::core::Status::failure("no", "Reason").with_code(code)
    }

    #[test]
    fn only_errors_no_retry_can_mend_end_a_wait() {
        assert!(is_permanent(&watcher::Error::WatchError(status(403).into())));
        assert!(is_permanent(&watcher::Error::InitialListFailed(kube::Error::Api(status(401).into()))));
        assert!(!is_permanent(&watcher::Error::WatchError(status(410).into())), "too old: list afresh");
        assert!(!is_permanent(&watcher::Error::WatchFailed(kube::Error::Api(status(500).into()))));
        assert!(!is_permanent(&watcher::Error::NoResourceVersion));
    }
}
