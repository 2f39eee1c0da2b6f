//! What a `BudgetWatch` saw: PDB floor violations, Services that lost their
//! last ready endpoint, each PDB's lowest point, and what it could not
//! evaluate.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How many pod events a violation carries (the ones up to and including its trigger).
pub(super) const RECENT: usize = 10;

/// One instant at which a PDB had fewer healthy pods than its floor.
#[derive(Clone, Debug)]
pub struct Violation {
    /// `namespace/name` of the PDB.
    pub pdb: String,
    pub healthy: i32,
    /// The floor used: see the module docs.
    pub floor: i32,
    /// `status.desiredHealthy` from the disruption controller (None: status not current).
    pub status_desired: Option<i32>,
    /// Our own (expectedCount, desiredHealthy), or why it could not be computed.
    pub computed: Result<(i32, i32), String>,
    /// Since `BudgetWatch::start`.
    pub at: Duration,
    /// Wall clock (UTC).
    pub wall: String,
    /// The pod event that produced this state.
    pub trigger: String,
    /// The PDB's pods at that instant: `name:Ready|NotReady|Deleting`.
    pub pods: Vec<String>,
    /// The last pod events (oldest first), the trigger last.
    pub recent: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let computed = match &self.computed {
            Ok((e, d)) => format!("computed {d} of expected {e}"),
            Err(why) => format!("not computed: {why}"),
        };
        let status =
            self.status_desired.map_or("status not current".to_string(), |d| format!("status.desiredHealthy {d}"));
        writeln!(
            f,
            "[+{:.3}s {}] PDB {}: {} healthy < {} desired ({status}, {computed}) after {}",
            self.at.as_secs_f64(),
            self.wall,
            self.pdb,
            self.healthy,
            self.floor,
            self.trigger
        )?;
        writeln!(f, "    pods: {}", self.pods.join(" "))?;
        writeln!(f, "    recent pod events:")?;
        for e in &self.recent {
            writeln!(f, "      {e}")?;
        }
        Ok(())
    }
}

/// A Service whose ready endpoints went from > 0 to 0.
#[derive(Clone, Debug)]
pub struct ServiceAtZero {
    /// `namespace/name` of the Service.
    pub service: String,
    /// Ready endpoints just before.
    pub before: i32,
    pub at: Duration,
    pub wall: String,
    /// The EndpointSlice event that produced it.
    pub trigger: String,
    /// The last pod events (oldest first).
    pub recent: Vec<String>,
}

impl fmt::Display for ServiceAtZero {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "[+{:.3}s {}] Service {}: 0 ready endpoints (was {}) after {}",
            self.at.as_secs_f64(),
            self.wall,
            self.service,
            self.before,
            self.trigger
        )?;
        writeln!(f, "    recent pod events:")?;
        for e in &self.recent {
            writeln!(f, "      {e}")?;
        }
        Ok(())
    }
}

/// The lowest point of one PDB over the watch (smallest healthy − floor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lowest {
    pub healthy: i32,
    pub floor: i32,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    pub services_at_zero: Vec<ServiceAtZero>,
    /// Per PDB `namespace/name`: its lowest point (only PDBs that had a pod event).
    pub lowest: BTreeMap<String, Lowest>,
    /// Errors of the watches (each one means the watch was re-established,
    /// so events between may have been coalesced by the re-list).
    pub watch_errors: Vec<String>,
    /// How often status.desiredHealthy and our computation differed (and the first few cases).
    pub disagreements: usize,
    pub disagreement_examples: Vec<String>,
    /// PDB evaluations skipped because neither floor source was available.
    pub unevaluated: Vec<String>,
    pub pod_events: usize,
    pub slice_events: usize,
    pub watched_for: Duration,
}

impl Report {
    pub fn violations_for(&self, pdb: &str) -> Vec<&Violation> {
        self.violations.iter().filter(|v| v.pdb == pdb).collect()
    }

    /// One line per PDB with its lowest point, plus the counters.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "budget watch: {:.1}s, {} pod events, {} EndpointSlice events, {} violations, {} services at zero, {} watch errors, {} floor disagreements\n",
            self.watched_for.as_secs_f64(),
            self.pod_events,
            self.slice_events,
            self.violations.len(),
            self.services_at_zero.len(),
            self.watch_errors.len(),
            self.disagreements
        );
        for (pdb, l) in &self.lowest {
            s += &format!("  {pdb}: lowest {} healthy (floor {})\n", l.healthy, l.floor);
        }
        s
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.services_at_zero.is_empty() && self.watch_errors.is_empty()
    }

    /// Panics with every violation, every Service at zero and every watch
    /// error (a lost watch means the witness cannot vouch for that window).
    pub fn assert_clean(&self) {
        if self.is_clean() {
            return;
        }
        panic!("{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())?;
        if !self.violations.is_empty() {
            writeln!(f, "PDB floor violations ({}):", self.violations.len())?;
            for v in &self.violations {
                write!(f, "{v}")?;
            }
        }
        if !self.services_at_zero.is_empty() {
            writeln!(f, "Services that reached 0 ready endpoints ({}):", self.services_at_zero.len())?;
            for s in &self.services_at_zero {
                write!(f, "{s}")?;
            }
        }
        for e in &self.watch_errors {
            writeln!(f, "watch error: {e}")?;
        }
        for e in &self.disagreement_examples {
            writeln!(f, "floor disagreement: {e}")?;
        }
        for e in self.unevaluated.iter().take(10) {
            writeln!(f, "not evaluated: {e}")?;
        }
        Ok(())
    }
}
