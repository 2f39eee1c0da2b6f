//! Waiting on the cluster: every wait is a watch with a deadline, never a
//! polling loop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::wait::{await_condition, Condition};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Watch one object until `cond` holds, or fail after `timeout`.
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
    match tokio::time::timeout(timeout, await_condition(api, name, cond)).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => Err(Error::Other(format!("watching {what}: {e}"))),
        Err(_) => Err(Error::Timeout { what: what.to_string(), after: timeout }),
    }
}

/// Watch a set of objects (a LIST + WATCH kept in memory) until `done`
/// holds for the current set, or fail after `timeout`.
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
        let mut stream = std::pin::pin!(watcher(api, config));
        let mut items: BTreeMap<String, K> = BTreeMap::new();
        let mut initial: BTreeMap<String, K> = BTreeMap::new();
        let mut synced = false;
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        while let Some(ev) = stream.try_next().await.map_err(|e| Error::Other(format!("watching {what}: {e}")))? {
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

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = std::result::Result<Event<K>, watcher::Error>> + Send
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    watcher::watcher(api, config).boxed()
}
