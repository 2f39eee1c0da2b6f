//! `TrafficMonitor`: packets as the proof of "no outage", for clusters started
//! with `kubesim --dataplane`. It runs `kubesim monitor`, which from every
//! node's network namespace opens a new TCP connection and sends one HTTP GET
//! every 100 ms to each Service ClusterIP under test, and keeps long-lived
//! connections to servers that do not move. Stopping it (closing its stdin)
//! yields the per-run report: requests, failures with time, node, error and
//! the Service's endpoints at that moment, the longest gap without an answer
//! per Service, broken long-lived connections.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

use super::{kubesim_bin, TestCluster};

#[derive(Debug, Deserialize)]
pub struct TargetReport {
    pub name: String,
    pub address: String,
    pub requests: u64,
    pub failures: u64,
    pub longest_gap_ms: u64,
    pub backends: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct SampleFailure {
    pub at_ms: u64,
    pub node: String,
    pub target: String,
    pub error: String,
    /// The Service's endpoints at that moment, "ADDRESS CONDITIONS"
    /// (ready, serving, terminating), from its EndpointSlices.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct LongLived {
    pub from: String,
    pub to: String,
    pub exchanges: u64,
    pub broken: bool,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TrafficReport {
    pub duration_ms: u64,
    pub nodes: Vec<String>,
    pub targets: Vec<TargetReport>,
    pub failures: Vec<SampleFailure>,
    pub long_lived: Vec<LongLived>,
}

impl TrafficReport {
    pub fn failed_requests(&self) -> u64 {
        self.targets.iter().map(|t| t.failures).sum()
    }
    pub fn requests(&self) -> u64 {
        self.targets.iter().map(|t| t.requests).sum()
    }
    pub fn broken_connections(&self) -> usize {
        self.long_lived.iter().filter(|l| l.broken).count()
    }
    /// One line per Service and per broken connection, then the first failures.
    pub fn summary(&self) -> String {
        let mut s = format!("traffic over {} ms from {} nodes:\n", self.duration_ms, self.nodes.len());
        for t in &self.targets {
            s += &format!(
                "  {} ({}): {} requests, {} failed, longest gap {} ms, answered by {:?}\n",
                t.name, t.address, t.requests, t.failures, t.longest_gap_ms, t.backends
            );
        }
        let ok = self.long_lived.iter().filter(|l| !l.broken).count();
        s += &format!("  long-lived connections: {ok} intact, {} broken\n", self.broken_connections());
        for l in self.long_lived.iter().filter(|l| l.broken) {
            s += &format!("    {} -> {} broke after {} exchanges: {:?}\n", l.from, l.to, l.exchanges, l.error);
        }
        for f in self.failures.iter().take(10) {
            s += &format!(
                "  failure at {} ms from {} to {}: {} (endpoints then: {:?})\n",
                f.at_ms, f.node, f.target, f.error, f.endpoints
            );
        }
        s
    }
}

pub struct TrafficMonitor {
    child: Option<Child>,
}

impl TrafficMonitor {
    /// Starts sampling `targets` (name, "ClusterIP:port/path") and holding
    /// long-lived connections to `long_lived` ("IP:port" of agnhost netexec).
    pub fn start(c: &TestCluster, targets: &[(&str, &str)], long_lived: &[&str]) -> TrafficMonitor {
        let mut cmd = Command::new(kubesim_bin("kubesim"));
        cmd.arg("monitor").arg("--dir").arg(c.dir());
        for (name, addr) in targets {
            cmd.arg("--target").arg(format!("{name}={addr}"));
        }
        for addr in long_lived {
            cmd.arg("--long-lived").arg(addr);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kubesim monitor");
        TrafficMonitor { child: Some(child) }
    }

    /// Stops the monitor and returns its report.
    pub fn stop(mut self) -> TrafficReport {
        let mut child = self.child.take().unwrap();
        drop(child.stdin.take());
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).expect("monitor output");
        let status = child.wait().expect("monitor exit");
        assert!(status.success(), "kubesim monitor failed ({status}): {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("monitor report: {e}: {out}"))
    }
}

impl Drop for TrafficMonitor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}
