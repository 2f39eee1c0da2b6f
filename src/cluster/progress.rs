//! How the cluster layer tells a person what it is doing without printing:
//! it reports events to a `Progress`, which the output layer implements.

use std::time::Duration;

/// Something worth showing while the cluster layer works.
#[derive(Debug, Clone, Copy)]
pub enum ProgressEvent<'a> {
    /// A PodDisruptionBudget refused an eviction (429); it is tried again after `retry_in`.
    EvictionRefused { namespace: &'a str, name: &'a str, retry_in: Duration, message: &'a str },
    /// A move waits for PodDisruptionBudget `pdb` (`namespace/name`) to let
    /// `need` more pods go; it lets `allowed` go now.
    WaitingForBudget { pdb: &'a str, need: i32, allowed: i32 },
}

pub trait Progress: Sync {
    fn report(&self, event: ProgressEvent<'_>);
}
