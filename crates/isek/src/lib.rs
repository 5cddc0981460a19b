//! # isek: the ISEK node registry
//!
//! ISEK agents ("nodes") find each other through a registry: a node registers its
//! id, address and metadata (its agent card), keeps a lease alive, disappears when
//! it stops renewing, and lists its peers. This crate is everything a node needs:
//!
//! - [`node`]: [`NodeInfo`] and [`Metadata`], what a registry stores about a node.
//! - [`error`]: [`Error`], one typed error for every backend, named after what the
//!   caller can do about it.
//! - [`registry`]: the [`Registry`] trait, the four ISEK operations every backend offers.
//! - [`memory`]: [`MemoryRegistry`], an in-process registry with real leases.
//! - [`center`]: [`IsekCenterRegistry`], an HTTP client of an Isek Center (ours or the
//!   original Python one).
//! - [`credentials`]: what that client proves ownership with (identity, lease tokens).
//! - [`changefeed`]: the client of the center's change stream (`GET /v1/watch`), behind
//!   [`IsekCenterRegistry`]'s `watch_nodes`.
//! - [`wire`]: the JSON formats of the Isek Center protocol, defined once and shared by
//!   the client here and the server in `isek-center`.
//!
//! - [`identity`]: `NodeIdentity`, a node's own P-256 key pair, and signatures.
//! - [`canonical`]: the exact bytes the original Python ISEK signs (`json.dumps(sort_keys=True)`).
//! - [`etcd`]: `EtcdRegistry`, nodes registered straight into etcd in ISEK's entry format.
//!
//! - [`filter`]: [`Filter`], CEL filters over nodes, compiled once, bounded per node;
//!   [`filter::plan`] says which part of one an index serves.
//! - [`index`]: [`Index`], nodes with posting lists, answering filters by candidates.
//! - [`agent_card`]: validation of an A2A AgentCard carried in `metadata.agent_card`.
//! - [`query`]: [`Query`] and [`Page`], filtered and paged listings on every backend.
//!
//! - [`watch`]: [`NodeEvent`], incremental discovery instead of polling the full list.
//! - [`runtime`]: [`Node`] keeps a node registered through faults; [`PeerView`] follows
//!   its peers from a change stream (or by polling).
//!
//! Invariant: only [`wire`] defines JSON formats that travel between processes.

pub mod agent_card;
pub mod canonical;
pub mod center;
pub mod changefeed;
pub mod credentials;
pub mod error;
pub mod etcd;
pub mod filter;
pub mod identity;
pub mod index;
pub mod memory;
pub mod node;
pub mod node_id;
pub mod query;
pub mod registry;
pub mod runtime;
pub mod watch;
pub mod wire;

pub use center::{CenterConfig, IsekCenterRegistry};
pub use error::{Error, Result};
pub use filter::Filter;
pub use index::{Index, Postings};
pub use memory::MemoryRegistry;
pub use node::{Metadata, NodeInfo};
pub use query::{Page, Query};
pub use registry::{DEFAULT_TTL, Registry};
pub use runtime::{Node, NodeHandle, NodeState, PeerChange, PeerView, PeerViewConfig};
pub use watch::{NodeEvent, NodeEventStream};
