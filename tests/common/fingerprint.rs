//! "Nothing written": one fingerprint of the cluster for every refusal
//! test. Every kind the API server can list (core, apps, policy, the Calico
//! CRDs and IPAM objects, the aggregated v3 API when it is served), each
//! object by kind, namespace, name, UID and resourceVersion; compared with
//! deletions, so an object created and deleted again (a lease taken and
//! dropped), or replaced under the same name, shows.
//!
//! Left out, because the control plane writes them on its own timers:
//! Leases other than ours (node heartbeats, leader election, API server
//! identity) and Events not reported by kubectl-ippool; APIServices are
//! compared by UID only (their status follows the aggregated server).

use std::collections::BTreeMap;

use super::TestCluster;

/// Kinds (`apiVersion kind`) the control plane itself rewrites, compared only by our own objects.
const OWN_ONLY: [&str; 3] = ["coordination.k8s.io/v1 Lease", "v1 Event", "events.k8s.io/v1 Event"];
/// Kinds whose status the control plane rewrites on its own (kube-apiserver's
/// availability controller, while an aggregated API server is down) and
/// that the tool never writes: compared by identity, not resourceVersion.
const IDENTITY_ONLY: [&str; 1] = ["apiregistration.k8s.io/v1 APIService"];
/// Read-only or virtual kinds with nothing anyone writes.
const SKIP: [&str; 2] = ["componentstatuses", "nodes.metrics.k8s.io"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<String, String>);

impl TestCluster {
    /// Every listable kind, every object: `apiVersion kind ns/name` -> `uid rv`.
    pub fn fingerprint(&self) -> Fingerprint {
        // A namespace being deleted (a finished run's canary) loses its
        // contents to the namespace controller after that run has exited:
        // taken meanwhile, the snapshot would charge those deletions to
        // whatever runs next. Likewise a pod a finished run deleted: with
        // kubesim's dataplane (its default on small clusters) the kubelet
        // removes it only after its preStop or --termination-delay, as a
        // real one does after the grace period.
        self.wait_until("no namespace or pod to be terminating", std::time::Duration::from_secs(60), || {
            ["namespaces", "pods"].iter().all(|kind| {
                let list: serde_json::Value =
                    serde_json::from_str(&self.kubectl_ok(&["get", kind, "-A", "-o", "json"])).unwrap();
                list["items"].as_array().unwrap().iter().all(|o| o["metadata"]["deletionTimestamp"].is_null())
            })
        });
        // An aggregated API that is down (Calico's API server, paused by a
        // test) makes discovery partial: its kinds are left out, the rest is listed.
        let out = self.kubectl(&["api-resources", "--verbs=list", "-o", "name"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("unable to retrieve the complete list of server APIs"),
            "kubectl api-resources: {err}"
        );
        let kinds = String::from_utf8_lossy(&out.stdout).into_owned();
        let kinds: Vec<&str> = kinds.lines().filter(|k| !SKIP.contains(k)).collect();
        let fields = [
            ".apiVersion",
            ".kind",
            ".metadata.namespace",
            ".metadata.name",
            ".metadata.uid",
            ".metadata.resourceVersion",
            ".source.component",
            ".reportingComponent",
            ".reportingController",
        ];
        let row: Vec<String> = fields.iter().map(|f| format!("{{{f}}}")).collect();
        let tmpl = format!("jsonpath={{range .items[*]}}{}{{\"\\n\"}}{{end}}", row.join("|"));
        let mut kinds: Vec<&str> = kinds;
        let mut listed = self.kubectl(&["get", &kinds.join(","), "-A", "-o", &tmpl]);
        if !listed.status.success() {
            // Kinds that discovery still names but whose server is down
            // (ServiceUnavailable) are left out; any other failure is fatal.
            let err = String::from_utf8_lossy(&listed.stderr).into_owned();
            let down: Vec<&str> = err
                .lines()
                .filter(|l| l.contains("(ServiceUnavailable)"))
                .filter_map(|l| l.rsplit("(get ").next()?.strip_suffix(')'))
                .collect();
            assert!(!down.is_empty(), "fingerprint: kubectl get failed: {err}");
            kinds.retain(|k| !down.contains(k));
            listed = self.kubectl(&["get", &kinds.join(","), "-A", "-o", &tmpl]);
            let err = String::from_utf8_lossy(&listed.stderr);
            assert!(listed.status.success(), "fingerprint: kubectl get failed: {err}");
        }
        let out = String::from_utf8_lossy(&listed.stdout).into_owned();
        let mut m = BTreeMap::new();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('|').collect();
            let [api, k, ns, name, uid, rv, src, rep, rep2] = f[..] else { panic!("fingerprint: {line}") };
            let kind = format!("{api} {k}");
            if OWN_ONLY.contains(&kind.as_str()) {
                let ours = name == "kubectl-ippool" || [src, rep, rep2].contains(&"kubectl-ippool");
                if !ours {
                    continue;
                }
            }
            let rv = if IDENTITY_ONLY.contains(&kind.as_str()) { "-" } else { rv };
            m.insert(format!("{kind} {ns}/{name}"), format!("{uid} {rv}"));
        }
        Fingerprint(m)
    }

    /// Panics with every object added, deleted or changed since `before`.
    pub fn assert_nothing_written(&self, before: &Fingerprint, what: &str) {
        let diff = before.diff(&self.fingerprint());
        assert!(diff.is_empty(), "{what} wrote to the cluster:\n  {}", diff.join("\n  "));
    }
}

impl Fingerprint {
    /// `+ added`, `- deleted`, `~ changed (uid rv -> uid rv)`, sorted.
    pub fn diff(&self, after: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            match after.0.get(k) {
                None => out.push(format!("- {k} ({v})")),
                Some(w) if w != v => out.push(format!("~ {k} ({v} -> {w})")),
                Some(_) => {}
            }
        }
        out.extend(after.0.iter().filter(|(k, _)| !self.0.contains_key(*k)).map(|(k, v)| format!("+ {k} ({v})")));
        out
    }

    /// The same fingerprint without the objects whose key contains `part`
    /// (a change the test made itself between the two).
    pub fn without(&self, part: &str) -> Fingerprint {
        Fingerprint(self.0.iter().filter(|(k, _)| !k.contains(part)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// The changes since `self` that are not to kinds matching one of
    /// `allowed` (substrings of `apiVersion kind ns/name`).
    pub fn changes_besides(&self, after: &Fingerprint, allowed: &[&str]) -> Vec<String> {
        self.diff(after).into_iter().filter(|d| !allowed.iter().any(|a| d.contains(a))).collect()
    }

    /// Whether any object of `apiVersion kind` was seen.
    pub fn has_kind(&self, kind: &str) -> bool {
        let prefix = format!("{kind} ");
        self.0.keys().any(|k| k.starts_with(&prefix))
    }
}
