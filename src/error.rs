//! The one error type of the tool, and how each kind maps to an exit code.
//!
//! Every message is meant to be read by an operator: it says what is wrong
//! and, where we know it, what to do about it.

use std::time::Duration;

/// Exit code for "the command ran and found a problem" (verify drift).
pub const EXIT_DRIFT: u8 = 1;
/// Exit code for errors: bad input, refused operations, unreachable cluster.
pub const EXIT_ERROR: u8 = 2;
/// Exit code when the user interrupted the command (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user gave us something we cannot use (flags, CIDRs, names).
    #[error("{0}")]
    Usage(String),

    /// kubeconfig missing, unreadable, or the chosen context/cluster/user is unknown.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),

    /// The API server could not be reached at all.
    #[error("cannot reach the Kubernetes API server at {server}: {reason}")]
    Unreachable { server: String, reason: String },

    /// 401: credentials expired or rejected.
    #[error("the API server rejected the credentials of context {context:?} (401 Unauthorized): log in again or refresh the kubeconfig")]
    Unauthorized { context: String },

    /// 403 on a specific request. The message tells the user how to check.
    #[error("forbidden: cannot {verb} {resource}{ns}: {message}\n  check with: kubectl auth can-i {verb} {resource}{ns_flag}",
        ns = namespace.as_deref().map(|n| format!(" in namespace {n}")).unwrap_or_default(),
        ns_flag = namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_else(|| " --all-namespaces".into()))]
    Forbidden { verb: String, resource: String, namespace: Option<String>, message: String },

    /// A preflight permission check found verbs the user lacks (several at once).
    #[error("missing permissions (nothing was changed):\n{}", .0.iter().map(|m| format!("  - cannot {m}\n    check with: kubectl auth can-i {m}")).collect::<Vec<_>>().join("\n"))]
    MissingPermissions(Vec<String>),

    /// Calico is not installed, not using Calico IPAM, or locked.
    #[error("{0}")]
    Calico(String),

    /// An operation was refused for safety; nothing was written.
    #[error("refusing to {action}:\n{}", .reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
    Refused { action: String, reasons: Vec<String> },

    /// Another migration holds the lock.
    #[error("another migration is running: lease {lease} is held by {holder} ({age}); wait for it, or if it is dead, run again: a lease not renewed for {ttl}s is taken over")]
    Locked { lease: String, holder: String, age: String, ttl: i64 },

    /// The user declined the confirmation prompt, or no terminal and no --yes.
    #[error("{0}")]
    NotConfirmed(String),

    /// Waiting for something took longer than --timeout.
    #[error("timed out after {}: {what}", humantime::format_duration(*.after))]
    Timeout { what: String, after: Duration },

    /// Interrupted by Ctrl-C; state is saved, re-running continues.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// Any other API error, with the operation that failed.
    #[error("{op}: {}", api_message(source))]
    Kube {
        op: String,
        #[source]
        source: kube::Error,
    },

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted(_) => EXIT_INTERRUPTED,
            _ => EXIT_ERROR,
        }
    }

    pub fn refused(action: impl Into<String>, reasons: Vec<String>) -> Self {
        Error::Refused { action: action.into(), reasons }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach "what we were doing" to a kube call, turning the status codes an
/// operator can act on (401, 403, connection errors) into their own variants.
pub trait KubeResultExt<T> {
    fn op(self, verb: &str, resource: &str, namespace: Option<&str>) -> Result<T>;
}

impl<T> KubeResultExt<T> for std::result::Result<T, kube::Error> {
    fn op(self, verb: &str, resource: &str, namespace: Option<&str>) -> Result<T> {
        self.map_err(|e| from_kube(e, verb, resource, namespace))
    }
}

pub fn from_kube(e: kube::Error, verb: &str, resource: &str, namespace: Option<&str>) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 403 => Error::Forbidden {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            message: s.message.clone(),
        },
        kube::Error::Api(s) if s.code == 401 => Error::Unauthorized { context: String::new() },
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            Error::Other(format!("{verb} {resource}: lost the connection to the API server: {}", root_cause(&e)))
        }
        _ => Error::Kube { op: format!("{verb} {resource}"), source: e },
    }
}

/// An API error as the server worded it ("unable to parse requirement: ...
/// (400 BadRequest)"), not kube's Debug dump of the whole Status.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// `error: <message>`, then each cause the message does not already say,
/// one per line, so the root of a failure is never hidden.
pub fn describe(e: &Error) -> String {
    let mut out = format!("error: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // kube's Display of an API error dumps the whole Status; its message
        // is already in ours.
        let status = match c.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => Some(&**s),
            _ => c
                .downcast_ref::<kube::core::Status>()
                .or_else(|| c.downcast_ref::<Box<kube::core::Status>>().map(|b| &**b)),
        };
        let text = status.map_or_else(|| c.to_string(), |s| s.message.clone());
        if !out.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
        cause = c.source();
    }
    out
}

/// The innermost error message, which is the one that says what happened
/// ("Connection refused", "certificate expired").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_chain_is_printed_once() {
        let status = kube::core::Status::failure("unable to parse requirement", "BadRequest").with_code(400);
        let e = Error::Kube { op: "list pods".into(), source: kube::Error::Api(Box::new(status)) };
        assert_eq!(describe(&e), "error: list pods: unable to parse requirement (400 BadRequest)");
        let io = std::io::Error::other("disk full");
        let e = Error::Kube { op: "watch pods".into(), source: kube::Error::ReadEvents(io) };
        let text = describe(&e);
        assert!(text.starts_with("error: watch pods: ") && text.contains("disk full"), "{text}");
    }
}
