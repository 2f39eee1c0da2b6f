//! Retries of API requests that are safe to repeat and can succeed: the
//! server said it did not process them (429, 503: any method), or the
//! request only reads (GET/HEAD, SelfSubjectAccessReviews) and failed with a
//! 500, 502, 504, 409 or a lost connection. A write that failed any other way is
//! not repeated blindly: the error is reported and the migration record lets
//! a re-run resume. Evictions are never retried here: their 429 means "a PDB
//! forbids it now" and the movers show and handle it. A refused connection
//! (nothing listens at the address: a wrong port, a stopped server) is never
//! retried: the command fails at once instead of backing off for seconds
//! against a closed port. Waits (watch.rs) re-establish their watch on their
//! own, so a server restart during a wait is still ridden out.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;

const MAX_RETRIES: u32 = 6;
/// About 15 s of back-off in all.
const MAX_READ_RETRIES: u32 = 9;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(3);

#[derive(Clone, Default)]
pub struct SafeRetry {
    attempt: u32,
}

impl SafeRetry {
    fn delay(&self, retry_after: Option<Duration>) -> Duration {
        let backoff = FIRST_DELAY.saturating_mul(1 << self.attempt.min(8)).min(MAX_DELAY);
        retry_after.map(|r| r.min(MAX_DELAY)).unwrap_or(backoff)
    }
}

/// Reads, and writes that only ask a question (SelfSubjectAccessReviews,
/// server-side dry runs: nothing is stored, so repeating one is harmless).
fn only_reads(req: &Request<Body>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        || (req.method() == Method::POST && req.uri().path().ends_with("/selfsubjectaccessreviews"))
        || is_dry_run(req.uri().query())
}

/// A server-side dry run (`?dryRun=All`).
fn is_dry_run(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "dryRun=All"))
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this (non-success) status.
    Status(StatusCode),
    /// The connection was refused: nothing listens at the address. The
    /// request never left, and a retry moments later meets the same closed port.
    Refused,
    /// The connection failed or dropped any other way (closed or reset
    /// before an answer, TLS handshake cut, timeout): a write may or may not
    /// have happened.
    Lost,
}

/// Classify a transport error: `Refused` if any error in its source chain
/// is an I/O error of kind ConnectionRefused, else `Lost`.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return Outcome::Refused;
        }
        cur = e.source();
    }
    Outcome::Lost
}

/// A failure a repeat may mend: the server erred (500, 502, 503, 504) or
/// the connection dropped. Only for writes that are safe to make twice
/// (the caller's own resourceVersion guard turns a landed duplicate into a
/// 409 it handles).
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => classify(e) == Outcome::Lost,
        _ => false,
    }
}

/// The pause before the `attempt`-th repeat of a write that failed
/// transiently (100 ms doubling, at most 2 s).
pub fn transient_pause(attempt: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1 << attempt.min(5)).min(Duration::from_secs(2))
}

/// Make a write that is safe to make twice (a merge patch of absolute
/// values, a delete) again while it fails transiently, at most
/// `MAX_RETRIES` times. Other outcomes go to the caller unchanged.
pub async fn repeat_transient<T, Fut>(mut write: impl FnMut() -> Fut) -> Result<T, kube::Error>
where
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Err(e) if is_transient(&e) && attempt < MAX_RETRIES => {
                tracing::debug!("repeating a write after a transient failure: {e}");
                tokio::time::sleep(transient_pause(attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// `repeat_transient` for a write that carries no precondition (a merge
/// patch of absolute values, a delete by name): a 409 then only says the
/// server's own retries against concurrent writers ran out, so it is made
/// again too.
pub async fn repeat_unconditional<T, Fut>(mut write: impl FnMut() -> Fut) -> Result<T, kube::Error>
where
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut conflicts = 0;
    loop {
        match repeat_transient(&mut write).await {
            Err(kube::Error::Api(s)) if s.code == 409 && conflicts < MAX_RETRIES => {
                tokio::time::sleep(transient_pause(conflicts)).await;
                conflicts += 1;
            }
            r => return r,
        }
    }
}

/// A 409 whose reason is AlreadyExists: the name is taken. Any other 409
/// on a create (a conflict, as a proxy or a webhook may answer) stored
/// nothing and says nothing about the object.
pub fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Create an object of a name only this run uses, repeating the create
/// while it fails transiently or with a 409 that is not AlreadyExists. An
/// AlreadyExists after such a failure means the earlier attempt landed: it
/// counts as created.
pub async fn create_once<T, Fut>(mut create: impl FnMut() -> Fut) -> Result<Option<T>, kube::Error>
where
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match create().await {
            Ok(o) => return Ok(Some(o)),
            Err(e) if already_exists(&e) && attempt > 0 => return Ok(None),
            Err(e) if (is_transient(&e) || is_create_conflict(&e)) && attempt < MAX_RETRIES => {
                tracing::debug!("repeating a create after a transient failure: {e}");
                tokio::time::sleep(transient_pause(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_create_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409) && !already_exists(e)
}

/// Whether a request may be retried after this outcome.
pub fn retryable(method_reads: bool, path: &str, outcome: Outcome) -> bool {
    if path.ends_with("/eviction") {
        return false;
    }
    match outcome {
        Outcome::Status(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => true,
        // A request that only reads can be repeated whatever went wrong on
        // the server. A 504 says the server gave up waiting, not that the
        // write did not happen: its caller reads back and decides.
        Outcome::Status(
            StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::CONFLICT
            | StatusCode::GATEWAY_TIMEOUT,
        ) => method_reads,
        Outcome::Status(_) => false,
        Outcome::Refused => false,
        Outcome::Lost => method_reads, // a write may or may not have happened
    }
}

impl<Res> tower::retry::Policy<Request<Body>, Response<Res>, tower::BoxError> for SafeRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, tower::BoxError>,
    ) -> Option<Self::Future> {
        // A read may be repeated for longer: it cannot do harm, and a
        // server restart or a few seconds of outage is ridden out.
        let max = if only_reads(req) { MAX_READ_RETRIES } else { MAX_RETRIES };
        if self.attempt >= max {
            return None;
        }
        let (outcome, retry_after) = match result {
            Ok(r) if r.status().is_success() => return None,
            Ok(r) => {
                let after = r
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                (Outcome::Status(r.status()), after)
            }
            Err(e) => (classify(e.as_ref()), None),
        };
        if !retryable(only_reads(req), req.uri().path(), outcome) {
            return None;
        }
        let wait = self.delay(retry_after);
        self.attempt += 1;
        tracing::debug!(
            "retrying {} {} after {wait:?} ({})",
            req.method(),
            req.uri().path(),
            match outcome {
                Outcome::Status(s) => s.to_string(),
                _ => "connection lost".into(),
            }
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        let body = req.body().try_clone()?;
        let mut new = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *new.headers_mut() = req.headers().clone();
        *new.extensions_mut() = req.extensions().clone();
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_transient_client_errors_are_not() {
        let status = |code: u16| kube::Error::Api(Box::new(kube::core::Status::failure("x", "X").with_code(code)));
        assert!(is_transient(&status(500)) && is_transient(&status(503)));
        assert!(!is_transient(&status(403)) && !is_transient(&status(409)) && !is_transient(&status(422)));
    }

    #[test]
    fn what_is_safe_to_retry() {
        use Outcome::{Lost, Refused, Status};
        assert!(retryable(false, "/api/v1/namespaces/x/configmaps", Status(StatusCode::TOO_MANY_REQUESTS)));
        assert!(retryable(false, "/apis/crd.projectcalico.org/v1/ippools", Status(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!retryable(false, "/apis/crd.projectcalico.org/v1/ippools", Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(!retryable(false, "/apis/crd.projectcalico.org/v1/ippools", Lost));
        // A 504 may come after the write took effect (issue 24 item 11).
        assert!(!retryable(
            false,
            "/apis/crd.projectcalico.org/v1/globalnetworksets/x",
            Status(StatusCode::GATEWAY_TIMEOUT)
        ));
        assert!(retryable(true, "/api/v1/pods", Status(StatusCode::GATEWAY_TIMEOUT)));
        assert!(!retryable(false, "/apis/crd.projectcalico.org/v1/ippools/x", Status(StatusCode::CONFLICT)));
        assert!(retryable(true, "/api/v1/pods", Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(retryable(true, "/api/v1/pods", Lost));
        assert!(!retryable(true, "/api/v1/pods", Refused), "a refused connection cannot succeed on retry");
        assert!(!retryable(false, "/api/v1/pods", Refused));
        assert!(retryable(
            true,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Status(StatusCode::CONFLICT)
        ));
        assert!(!retryable(true, "/api/v1/pods", Status(StatusCode::NOT_FOUND)));
        assert!(!retryable(
            false,
            "/api/v1/namespaces/shop/pods/web-1/eviction",
            Status(StatusCode::TOO_MANY_REQUESTS)
        ));
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("x", "X").with_code(code)))
    }

    #[tokio::test]
    async fn a_create_that_landed_before_a_transient_failure_counts_as_created() {
        // The first attempt was stored but answered 500; the repeat meets our own object.
        let answers = std::sync::Mutex::new(vec![Err::<(), _>(exists()), Err(api_error(500))]);
        let r = create_once(|| async { answers.lock().unwrap().pop().unwrap() }).await;
        assert!(matches!(r, Ok(None)), "{r:?}");
        // AlreadyExists on the first attempt is someone else's object: the caller decides.
        let answers = std::sync::Mutex::new(vec![Err::<(), _>(exists())]);
        let r = create_once(|| async { answers.lock().unwrap().pop().unwrap() }).await;
        assert!(matches!(&r, Err(e) if already_exists(e)));
    }

    /// AlreadyExists, as the API server words a taken name.
    fn exists() -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("x", "AlreadyExists").with_code(409)))
    }

    #[tokio::test]
    async fn a_create_answered_a_plain_conflict_is_made_again_not_taken_as_existing() {
        // A 409 Conflict (not AlreadyExists) stored nothing: taking it as
        // "exists" left the canary waiting for a pod that was never made.
        let answers = std::sync::Mutex::new(vec![Ok(7), Err(api_error(409))]);
        let r = create_once(|| async { answers.lock().unwrap().pop().unwrap() }).await;
        assert!(matches!(r, Ok(Some(7))), "{r:?}");
        assert!(!already_exists(&api_error(409)) && already_exists(&exists()));
    }

    #[tokio::test]
    async fn a_repeatable_write_is_made_again_only_after_transient_failures() {
        let answers = std::sync::Mutex::new(vec![Ok(7), Err(api_error(503)), Err(api_error(500))]);
        assert_eq!(repeat_transient(|| async { answers.lock().unwrap().pop().unwrap() }).await.unwrap(), 7);
        let answers = std::sync::Mutex::new(vec![Ok(7), Err(api_error(422))]);
        assert!(repeat_transient(|| async { answers.lock().unwrap().pop().unwrap() }).await.is_err());
    }

    #[test]
    fn a_dry_run_only_reads() {
        assert!(is_dry_run(Some("dryRun=All")));
        assert!(is_dry_run(Some("fieldManager=x&dryRun=All")));
        assert!(!is_dry_run(Some("dryRun=None")) && !is_dry_run(Some("xdryRun=All")) && !is_dry_run(None));
        let req = |uri: &str| Request::builder().method(Method::POST).uri(uri).body(Body::empty()).unwrap();
        assert!(only_reads(&req("/api/v1/namespaces/default/pods?&dryRun=All")));
        assert!(!only_reads(&req("/api/v1/namespaces/default/pods")));
    }

    /// The error of a real request through kube's client (hyper-util's
    /// connector, rustls) to `server`, with no retries.
    async fn real_error(server: &str) -> kube::Error {
        let mut cfg = kube::Config::new(server.parse().unwrap());
        cfg.accept_invalid_certs = true;
        cfg.default_retry = false;
        let client = kube::Client::try_from(cfg).unwrap();
        client.apiserver_version().await.unwrap_err()
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_a_dropped_connection_is_lost() {
        // A port nobody listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = real_error(&format!("https://127.0.0.1:{port}")).await;
        assert_eq!(classify(&e), Outcome::Refused, "{e:?}");

        // A server that accepts and closes at once: the connection is lost, not refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                drop(sock);
            }
        });
        let e = real_error(&format!("https://{addr}")).await;
        assert_eq!(classify(&e), Outcome::Lost, "{e:?}");
    }
}
