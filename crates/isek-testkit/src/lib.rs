//! Shared test support for the isek workspace.
//!
//! - [`conformance`]: `check_registry`, the one suite every `Registry` backend must pass.
//! - [`etcd`]: starts a real etcd server on free loopback ports in a temporary
//!   directory and stops it on drop.

pub mod conformance;
pub mod etcd;
