//! Retries of API requests that are safe to repeat: the server said it did
//! not process them (429, 503, 504: any method), or the request only reads
//! (GET/HEAD, SelfSubjectAccessReviews) and failed with a 500, 502, 409 or a
//! lost connection. A write that failed any other way is not repeated blindly:
//! the error is reported and the migration record lets a re-run resume.
//! Evictions are never retried here: their 429 means "a PDB forbids it now"
//! and the movers show and handle it.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;

const MAX_RETRIES: u32 = 6;
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

/// Reads, and writes that only ask a question.
fn only_reads(req: &Request<Body>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        || (req.method() == Method::POST && req.uri().path().ends_with("/selfsubjectaccessreviews"))
}

/// Whether a request may be retried after this outcome.
pub fn retryable(method_reads: bool, path: &str, status: Option<StatusCode>) -> bool {
    if path.ends_with("/eviction") {
        return false;
    }
    match status {
        Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT) => true,
        // A request that only reads can be repeated whatever went wrong on the server.
        Some(StatusCode::INTERNAL_SERVER_ERROR | StatusCode::BAD_GATEWAY | StatusCode::CONFLICT) => method_reads,
        Some(_) => false,
        None => method_reads, // connection lost: a write may or may not have happened
    }
}

impl<Res> tower::retry::Policy<Request<Body>, Response<Res>, tower::BoxError> for SafeRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, tower::BoxError>,
    ) -> Option<Self::Future> {
        if self.attempt >= MAX_RETRIES {
            return None;
        }
        let (status, retry_after) = match result {
            Ok(r) if r.status().is_success() => return None,
            Ok(r) => {
                let after = r
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                (Some(r.status()), after)
            }
            Err(_) => (None, None),
        };
        if !retryable(only_reads(req), req.uri().path(), status) {
            return None;
        }
        let wait = self.delay(retry_after);
        self.attempt += 1;
        tracing::debug!(
            "retrying {} {} after {wait:?} ({})",
            req.method(),
            req.uri().path(),
            status.map(|s| s.to_string()).unwrap_or_else(|| "connection lost".into())
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
    fn what_is_safe_to_retry() {
        assert!(retryable(false, "/api/v1/namespaces/x/configmaps", Some(StatusCode::TOO_MANY_REQUESTS)));
        assert!(retryable(false, "/apis/crd.projectcalico.org/v1/ippools", Some(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!retryable(false, "/apis/crd.projectcalico.org/v1/ippools", Some(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(!retryable(false, "/apis/crd.projectcalico.org/v1/ippools", None));
        assert!(!retryable(false, "/apis/crd.projectcalico.org/v1/ippools/x", Some(StatusCode::CONFLICT)));
        assert!(retryable(true, "/api/v1/pods", Some(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(retryable(true, "/api/v1/pods", None));
        assert!(retryable(true, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Some(StatusCode::CONFLICT)));
        assert!(!retryable(true, "/api/v1/pods", Some(StatusCode::NOT_FOUND)));
        assert!(!retryable(false, "/api/v1/namespaces/shop/pods/web-1/eviction", Some(StatusCode::TOO_MANY_REQUESTS)));
    }
}
