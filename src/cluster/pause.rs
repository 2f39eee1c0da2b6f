//! Crash-test hook: with `KUBECTL_IPPOOL_PAUSE_AT=<point>[#<n>]` a run
//! stops for good at the n-th time (default first) it reaches the named
//! point, after writing the variable's value to `KUBECTL_IPPOOL_PAUSE_FILE`, so
//! the fault suite can SIGKILL it exactly there (a kill timed from outside
//! cannot land between two writes a few milliseconds apart). Unset, a point
//! costs one environment lookup.
//!
//! Points: `checkpoint:<Phase>` (the record was just saved in that phase),
//! `delete:affinities-released` (the old pool's block affinities are
//! released, the pool not yet deleted) and `delete:pool-deleted` (the pool
//! is gone, the record not yet at SourceDeleted).

use std::collections::HashMap;
use std::sync::Mutex;

pub const PAUSE_AT_ENV: &str = "KUBECTL_IPPOOL_PAUSE_AT";
pub const PAUSE_FILE_ENV: &str = "KUBECTL_IPPOOL_PAUSE_FILE";

static SEEN: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Whether the run must stop at this hit of `name` (`want` is the
/// variable's value).
fn due(want: &str, name: &str, hits: usize) -> bool {
    let (point, nth) = match want.split_once('#') {
        Some((p, n)) => (p, n.parse().unwrap_or(1)),
        None => (want, 1),
    };
    point == name && hits == nth
}

/// Reaching point `name`: returns at once unless the hook asks to stop here;
/// then it never returns.
pub async fn point(name: &str) {
    let Ok(want) = std::env::var(PAUSE_AT_ENV) else { return };
    let hits = {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.get_or_insert_with(HashMap::new).entry(name.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    if !due(&want, name, hits) {
        return;
    }
    if let Ok(path) = std::env::var(PAUSE_FILE_ENV) {
        let _ = std::fs::write(path, &want); // as asked, `#<n>` included
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_named_hit_only() {
        assert!(due("checkpoint:Draining", "checkpoint:Draining", 1));
        assert!(!due("checkpoint:Draining", "checkpoint:Draining", 2));
        assert!(!due("checkpoint:Draining", "checkpoint:MovingPods", 1));
        assert!(due("checkpoint:MovingPods#2", "checkpoint:MovingPods", 2));
        assert!(!due("checkpoint:MovingPods#2", "checkpoint:MovingPods", 1));
    }
}
