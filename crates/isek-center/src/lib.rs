//! # isek-center: the Isek Center server
//!
//! A drop-in replacement for the original Python Isek Center: the same four HTTP
//! endpoints, bodies and messages (unchanged Python nodes work against it), but
//! durable, with leases that expire on time, and fast.
//!
//! The crate is built in levels; a module imports only from its own level or below
//! (`tests/layers.rs` enforces it, and ARCHITECTURE.md explains each level):
//!
//! - level 0, pure values and rules: [`record`] ([`NodeRecord`], [`record::Owner`]),
//!   [`lease`] (the clock-free lease table), [`policy`] (who may act on a node:
//!   guards, replay horizons, refusals with a kind), [`command`] (the typed requests),
//!   [`render`] (every output byte), [`body`] (strict JSON), [`config`], [`error`],
//!   [`cursor`] (the open paged answers, pinned to one revision),
//!   [`metrics`] (the counters every layer records into; `http` exposes them);
//! - level 1, state and storage: `state` (the registry state, one numbered revision
//!   per change), `feed` (the change log), `snapshot` (the cached listing), [`store`]
//!   (SQLite, the only user of `rusqlite`, or etcd, the only user of `etcd_client`),
//!   [`dirlock`];
//! - level 2, the workers: [`writer`] (the single store writer with group commit; its
//!   decisions are a pure `plan`), `reaper` (retires expired leases), `stream` (the
//!   body of one change stream), `follower` (applies a shared store's changes), `holder` (the lease holder
//!   election of a center cluster);
//! - level 3: [`center`] ([`Center`], the service and its life cycle, typed methods);
//! - level 4: [`http`] (request parsing, [`http::Rejection`], handlers, transport,
//!   [`app`] and [`run`]): the only place axum/hyper/tower/rustls appear; beside it
//!   [`admission`] (the connection table and its cap) and [`socket`] (the deadlines
//!   of one connection's byte stream).
//!
//! Invariants: a register or deregister is answered only after its commit is durable
//! and applied; a node is invisible from its lease deadline on, and removed from the
//! store shortly after; an expiry only removes the registration that ran out; no lock
//! is held across an `.await`.

pub mod admission;
pub mod body;
pub mod center;
pub mod command;
pub mod config;
pub mod cursor;
pub mod dirlock;
pub mod encoding;
pub mod error;
mod feed;
mod follower;
mod holder;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod policy;
mod reaper;
pub mod record;
pub mod render;
pub mod reserve;
pub mod skeleton;
mod snapshot;
pub mod socket;
mod state;
pub mod store;
mod stream;
pub mod writer;

pub use center::{Center, QueryError};
pub use command::{Deregister, Query, Register, Renew};
pub use config::{
    ClusterStore, Config, ConfusableIds, ConnectionLimits, DEFAULT_LEASE_TTL, Discovery, Limits,
    Security, Timeouts, TlsFiles,
};
pub use error::{Error, Result};
pub use http::{app, run, run_announced};
pub use record::NodeRecord;
pub use snapshot::Listing;
pub use writer::WriteError;
