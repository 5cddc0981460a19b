//! The node runtime: keep a node registered through faults, and know its peers.
//!
//! - [`Node`] / [`NodeHandle`] ([`lease`]): register, renew at a third of the TTL,
//!   re-register after the registry forgot the node, back off while it is unreachable,
//!   deregister on shutdown; the [`NodeState`] is observable.
//! - [`PeerView`] ([`peers`]): a live copy of the membership from a change stream (or
//!   by polling and diffing), with lookups and a subscription to [`PeerChange`]s. Usable
//!   on its own, without registering anything.
//! - [`HealthCheck`] ([`health`]): the agent's own check a node's lease is tied to.
//! - [`Backoff`] ([`backoff`]): the retry policy both share.

pub mod backoff;
mod entropy;
pub mod health;
pub mod lease;
pub mod peers;

pub use backoff::Backoff;
pub use entropy::random_node_id;
pub use health::{HealthCheck, Probe};
pub use lease::{Node, NodeHandle, NodeState};
pub use peers::{
    PeerChange, PeerSource, PeerSubscription, PeerSync, PeerUpdate, PeerView, PeerViewConfig,
};
