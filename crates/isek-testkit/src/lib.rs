//! Shared test support for the isek workspace.
//!
//! - [`agents`]: realistic A2A agent cards, generated deterministically (filter tests, benchmarks).
//! - [`conformance`]: `check_registry`, the one suite every `Registry` backend must pass.
//! - [`etcd`]: starts a real etcd server on free loopback ports in a temporary
//!   directory and stops it on drop.

pub mod agents;
pub mod conformance;
pub mod etcd;
