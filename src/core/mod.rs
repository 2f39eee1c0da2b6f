//! The pure core: plain data in, decisions out. Nothing here does I/O, so
//! every rule about pools, pods and IPAM is unit-tested with literal data.

pub mod budget;
pub mod checks;
pub mod cidr;
pub mod findings;
pub mod gitops;
pub mod inventory;
pub mod leaks;
pub mod model;
pub mod name;
pub mod plan;
pub mod pod;
pub mod rules;
pub mod selector;
pub mod state;
