//! LIST responses decoded while they arrive, one item at a time.
//!
//! The body is handed chunk by chunk to a blocking thread that parses it
//! as it comes (so parsing overlaps the transfer and the other core does
//! the work), turning each item into the caller's type at once: neither
//! the whole response nor a list of full objects is ever held. Callers
//! deserialize into small structs naming only the fields they use; serde
//! skips the rest.

use std::io::{BufReader, Read};
use std::marker::PhantomData;
use std::sync::Arc;

use futures::{AsyncBufReadExt, AsyncReadExt};
use kube::api::ListParams;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Cluster, PAGE_SIZE};
use crate::error::{Error, KubeResultExt, Result};

/// Where a LIST is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// From etcd, page by page (`limit`, `continue`): one consistent
    /// snapshot, what `migrate` plans from.
    Consistent,
    /// From the API server's watch cache in one unpaged response
    /// (`resourceVersion=0`): possibly a moment old, which a display
    /// such as `status` or `verify` can take, and much cheaper to serve.
    Cached,
}

/// How many body chunks may wait for the parser before the transfer pauses.
const CHUNKS_IN_FLIGHT: usize = 16;

/// LIST `url_path` (e.g. `/api/v1/pods`) with the selectors of `lp`, turning
/// each item into an `R` with `keep` (None drops it) as it is parsed.
pub async fn list_as<T, R, F>(
    cluster: &Cluster,
    url_path: &str,
    lp: &ListParams,
    freshness: Freshness,
    what: &str,
    namespace: Option<&str>,
    keep: F,
) -> Result<Vec<R>>
where
    T: DeserializeOwned,
    R: Send + 'static,
    F: Fn(T) -> Option<R> + Send + Sync + 'static,
{
    let keep = Arc::new(keep);
    let mut lp = lp.clone();
    match freshness {
        // kube-rs drops resourceVersion=0 when a limit is set, and the watch
        // cache would serve the whole list anyway: ask for it in one piece.
        Freshness::Cached => {
            lp.limit = None;
            lp = lp.match_any();
        }
        Freshness::Consistent => lp = lp.limit(PAGE_SIZE),
    }
    let mut out = Vec::new();
    loop {
        let request = kube::core::Request::new(url_path)
            .list(&lp)
            .map_err(|e| Error::Other(format!("list {what}: cannot build the request: {e}")))?;
        let body = cluster.client.request_stream(request).await.op("list", what, namespace)?;
        let (next, items) = parse_streaming(body, keep.clone(), what).await?;
        out.extend(items);
        match next.filter(|c| !c.is_empty() && freshness == Freshness::Consistent) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Feed `body` to a parser thread; returns the `continue` token and the kept items.
async fn parse_streaming<T, R, F>(
    body: impl futures::AsyncBufRead,
    keep: Arc<F>,
    what: &str,
) -> Result<(Option<String>, Vec<R>)>
where
    T: DeserializeOwned,
    R: Send + 'static,
    F: Fn(T) -> Option<R> + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = BufReader::with_capacity(64 * 1024, ChunkReader { rx, chunk: Vec::new(), pos: 0 });
        let mut de = serde_json::Deserializer::from_reader(reader);
        let mut items = Vec::new();
        let next = ListSeed { keep: &*keep, items: &mut items, item: PhantomData }.deserialize(&mut de)?;
        de.end()?;
        Ok::<_, serde_json::Error>((next, items))
    });
    let mut body = std::pin::pin!(body);
    let mut transfer_error = None;
    loop {
        let chunk = match body.as_mut().fill_buf().await {
            Ok([]) => break,
            Ok(c) => c.to_vec(),
            Err(e) => {
                transfer_error = Some(e);
                break;
            }
        };
        body.as_mut().consume(chunk.len());
        if tx.send(chunk).await.is_err() {
            // The parser stopped early: its error says why.
            break;
        }
    }
    drop(tx);
    // Drain what is left so the connection can be reused.
    let _ = body.read_to_end(&mut Vec::new()).await;
    let parsed = parser.await.map_err(|e| Error::Other(format!("list {what}: parser stopped: {e}")))?;
    if let Some(e) = transfer_error {
        return Err(Error::Other(format!("list {what}: lost the connection to the API server: {e}")));
    }
    parsed.map_err(|e| Error::Other(format!("list {what}: unreadable response: {e}")))
}

/// `std::io::Read` over the chunks the transfer task sends.
struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

/// A `*List` object: reads `metadata.continue` and streams `items`.
struct ListSeed<'a, T, R, F> {
    keep: &'a F,
    items: &'a mut Vec<R>,
    item: PhantomData<T>,
}

impl<'de, T, R, F> DeserializeSeed<'de> for ListSeed<'_, T, R, F>
where
    T: DeserializeOwned,
    F: Fn(T) -> Option<R>,
{
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T, R, F> Visitor<'de> for ListSeed<'_, T, R, F>
where
    T: DeserializeOwned,
    F: Fn(T) -> Option<R>,
{
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes list object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut next = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => next = map.next_value::<ListMeta>()?.continue_,
                "items" => {
                    map.next_value_seed(ItemsSeed { keep: self.keep, items: &mut *self.items, item: PhantomData })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(next)
    }
}

struct ItemsSeed<'a, T, R, F> {
    keep: &'a F,
    items: &'a mut Vec<R>,
    item: PhantomData<T>,
}

impl<'de, T, R, F> DeserializeSeed<'de> for ItemsSeed<'_, T, R, F>
where
    T: DeserializeOwned,
    F: Fn(T) -> Option<R>,
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T, R, F> Visitor<'de> for ItemsSeed<'_, T, R, F>
where
    T: DeserializeOwned,
    F: Fn(T) -> Option<R>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of items or null")
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            if let Some(r) = (self.keep)(item) {
                self.items.push(r);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Named {
        metadata: NameOnly,
    }
    #[derive(Deserialize)]
    struct NameOnly {
        name: String,
    }

    fn parse(text: &str) -> (Option<String>, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // Split the body into small chunks so items straddle chunk borders.
        let chunks: Vec<std::io::Result<Vec<u8>>> = text.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
        let body = futures::stream::iter(chunks).into_async_read();
        rt.block_on(parse_streaming(body, Arc::new(|n: Named| Some(n.metadata.name)), "things")).unwrap()
    }

    use futures::TryStreamExt;

    #[test]
    fn items_stream_and_unknown_fields_are_skipped() {
        let (next, names) = parse(
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"abc"},
               "items":[{"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"containers":[{"name":"c"}]}},
                        {"metadata":{"name":"b"},"status":{"phase":"Running"}}]}"#,
        );
        assert_eq!(next.as_deref(), Some("abc"));
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn null_items_and_no_continue() {
        let (next, names) = parse(r#"{"metadata":{"resourceVersion":"9"},"items":null}"#);
        assert_eq!(next, None);
        assert!(names.is_empty());
    }

    #[test]
    fn a_cut_body_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let chunks: Vec<std::io::Result<Vec<u8>>> = vec![Ok(br#"{"items":[{"metadata":{"name":"a"}},"#.to_vec())];
        let body = futures::stream::iter(chunks).into_async_read();
        let r = rt.block_on(parse_streaming(body, Arc::new(|n: Named| Some(n.metadata.name)), "things"));
        assert!(r.unwrap_err().to_string().contains("unreadable response"));
    }
}
