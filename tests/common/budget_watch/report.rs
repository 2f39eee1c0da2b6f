//! What a `BudgetWatch` saw: PDB floor violations, Services that lost their
//! last ready endpoint, each PDB's lowest point, and what it could not
//! evaluate.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How many pod events a violation carries (the ones up to and including its trigger).
pub(super) const RECENT: usize = 10;

/// Fewer evaluations than this is a PDB or Service that was not watched
/// while its pods moved (a move is at least a delete and an add).
pub const MIN_EVALUATIONS: usize = 2;

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

/// How often one PDB (on the pod events of its namespace) or one Service
/// (on the EndpointSlice events of its slices) was evaluated, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    pub count: usize,
    pub first: Duration,
    pub last: Duration,
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
    /// Workloads still rolling out (or pods terminating) when the watch gave
    /// up waiting for the cluster to settle after `stop`.
    pub unsettled: Vec<String>,
    pub pod_events: usize,
    pub slice_events: usize,
    /// Live pod events per namespace (each must evaluate every PDB of it).
    pub pod_events_by_namespace: BTreeMap<String, usize>,
    /// Per PDB `namespace/name`: its evaluations (floor computed, compared).
    pub pdb_coverage: BTreeMap<String, Coverage>,
    /// Per Service `namespace/name`: EndpointSlice events that recounted it.
    pub service_coverage: BTreeMap<String, Coverage>,
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
            let n = self.pdb_coverage.get(pdb).map_or(0, |c| c.count);
            s += &format!("  {pdb}: lowest {} healthy (floor {}), evaluated {n} times\n", l.healthy, l.floor);
        }
        s
    }

    /// No violation, no Service at zero, no lost watch, and no PDB
    /// evaluation skipped (a floor that could not be computed vouches for nothing).
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
            && self.services_at_zero.is_empty()
            && self.watch_errors.is_empty()
            && self.unevaluated.is_empty()
            && self.unsettled.is_empty()
    }

    /// Why the watch cannot vouch for `pdbs` and `services` (empty: it can).
    /// Each PDB must have been evaluated on every live pod event of its
    /// namespace, at least `MIN_EVALUATIONS` times, so it was watched through
    /// the whole run and not once; each Service must have been recounted on
    /// at least `MIN_EVALUATIONS` EndpointSlice events.
    pub fn coverage_problems(&self, pdbs: &[&str], services: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        for pdb in pdbs {
            let ns = pdb.split('/').next().unwrap_or_default();
            let events = self.pod_events_by_namespace.get(ns).copied().unwrap_or(0);
            match self.pdb_coverage.get(*pdb) {
                None => problems.push(format!("PDB {pdb} was never evaluated ({events} pod events in {ns})")),
                Some(c) if c.count < MIN_EVALUATIONS => problems
                    .push(format!("PDB {pdb} was evaluated only {} time(s) ({events} pod events in {ns})", c.count)),
                Some(c) if c.count != events => {
                    problems.push(format!("PDB {pdb} was evaluated on {} of the {events} pod events of {ns}", c.count))
                }
                Some(_) => {}
            }
        }
        for svc in services {
            match self.service_coverage.get(*svc) {
                None => problems.push(format!("Service {svc}: no EndpointSlice event was seen")),
                Some(c) if c.count < MIN_EVALUATIONS => {
                    problems.push(format!("Service {svc}: only {} EndpointSlice event(s) seen", c.count))
                }
                Some(_) => {}
            }
        }
        problems
    }

    /// Panics unless the watch covered `pdbs` and `services` throughout
    /// (`coverage_problems`) and is clean (`is_clean`).
    pub fn assert_covered_and_clean(&self, pdbs: &[&str], services: &[&str]) {
        let problems = self.coverage_problems(pdbs, services);
        assert!(problems.is_empty(), "the budget watch cannot vouch for the run:\n  {}\n{self}", problems.join("\n  "));
        self.assert_clean();
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
        for e in &self.unsettled {
            writeln!(f, "not settled when the watch stopped: {e}")?;
        }
        for e in &self.disagreement_examples {
            writeln!(f, "floor disagreement: {e}")?;
        }
        if !self.unevaluated.is_empty() {
            writeln!(f, "PDB evaluations skipped ({}):", self.unevaluated.len())?;
        }
        for e in self.unevaluated.iter().take(10) {
            writeln!(f, "not evaluated: {e}")?;
        }
        Ok(())
    }
}
