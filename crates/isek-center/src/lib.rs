//! # isek-center: the Isek Center server
//!
//! A drop-in replacement for the original Python Isek Center: the same four HTTP
//! endpoints, bodies and messages (unchanged Python nodes work against it), but
//! durable, with leases that expire on time, and fast.
//!
//! The parts, from the socket inwards:
//!
//! - [`server`]: [`run`] serves a [`Config`] on a listener until shutdown; [`app`]
//!   builds the router and its [`Center`] without a socket (for tests).
//! - [`api`]: the axum handlers of `register`, `renew`, `deregister`,
//!   `available_nodes`, our `GET /v1/nodes` and `GET /v1/watch`, and JSON 404/405
//!   answers.
//! - [`request`]: parsing and validating bodies, with the original's messages and a
//!   field-naming 400 where the original accepted bad input.
//! - [`body`]: strict JSON parsing of bodies (duplicate keys refused at any depth).
//! - [`json`]: JSON text byte-compatible with Flask's `jsonify`.
//! - [`registry`]: [`Center`], the shared core: register/deregister go through the
//!   writer, renew touches only the lease table, listing reads the snapshot.
//! - [`lease`]: [`lease::LeaseTable`], the pure, clock-free index of nodes and their
//!   deadlines, with deadline-ordered expiry.
//! - `reaper`: the task that sleeps until the next deadline and retires expired
//!   leases.
//! - [`writer`]: the single store writer with group commit (one transaction and
//!   one fsync for everything queued).
//! - [`dirlock`]: one center per data directory (an OS lock held while the store is open).
//! - [`store`]: SQLite in WAL mode with `synchronous=FULL`, or nothing (`--in-memory`).
//! - `feed`: the change log and the server-sent event streams of `GET /v1/watch`
//!   (bounded history for `since=REV`, bounded live buffer per watcher).
//! - `snapshot`: the cached, lazily rebuilt `available_nodes` body.
//! - [`ownership`]: who may renew, overwrite or deregister a node (signed
//!   registrations, lease tokens, signed operations, admin token, node cap).
//! - [`transport`]: the accept loop: plain HTTP or HTTPS (rustls), header-read,
//!   request and handshake timeouts, graceful shutdown.
//! - [`ui`]: the operators' dashboard at `/ui/`, static files embedded in the binary.
//! - [`config`]: [`Config`] and [`Limits`]; [`error`]: [`Error`].
//!
//! Invariants: a register or deregister is answered only after its commit is durable
//! and applied; a node is invisible from its lease deadline on, and removed from the
//! store shortly after; an expiry only removes the registration that ran out; no lock
//! is held across an `.await`.

pub mod api;
pub mod body;
pub mod config;
pub mod dirlock;
pub mod error;
mod feed;
pub mod json;
pub mod lease;
pub mod ownership;
mod reaper;
pub mod registry;
pub mod request;
pub mod server;
mod snapshot;
pub mod store;
pub mod transport;
pub mod ui;
pub mod writer;

pub use config::{Config, DEFAULT_LEASE_TTL, Limits};
pub use error::{Error, Result};
pub use registry::{Center, NodeRecord};
pub use server::{app, run};
pub use writer::WriteError;
