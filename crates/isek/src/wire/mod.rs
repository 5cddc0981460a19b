//! Every JSON format that travels between processes, defined once.
//!
//! - [`center`]: the Isek Center HTTP protocol (`{code, data, message}` envelopes,
//!   request bodies, the `available_nodes` listing), exactly as the original Python
//!   center speaks it, plus our extensions.
//! - [`cluster`]: what centers sharing one etcd cluster store there.
//! - [`etcd`]: the value ISEK stores under `/{parent}/{node_id}` in etcd.
//! - [`proof`]: signed registrations, lease tokens and signed operations (center security).
//!
//! Invariant: no other module declares a serde type that is sent over a socket or
//! stored in etcd; servers and clients both import from here, so they cannot drift.

pub mod center;
pub mod cluster;
pub mod etcd;
pub mod proof;
