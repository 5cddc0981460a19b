//! # isek-bench: load tool for the Isek Center
//!
//! Drives `register`, `renew` and `available_nodes` against a center over HTTP/1.1
//! keep-alive connections and reports throughput and latency percentiles; serves a bare
//! axum baseline to compare the center with; and runs the whole benchmark suite of
//! issue 2 (center processes on free ports, loads, RSS, a summary table).
//!
//! - [`load`]: the load generator ([`load::run`] with a [`load::LoadSpec`]).
//! - [`latency`]: the fixed-size latency histogram behind the percentiles.
//! - [`baseline`]: the bare axum renew route.
//! - [`suite`]: the end-to-end benchmark (processes, phases, summary table).
//! - [`scale`]: the million-node suite of issue 14 (`scripts/bench.sh --scale`).

pub mod baseline;
pub mod latency;
pub mod load;
pub mod scale;
pub mod suite;

use std::net::SocketAddr;

/// Everything that can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A load run without duration nor request count would never stop.
    #[error("a load run needs a duration or a request count")]
    Unbounded,
    /// A parameter that makes no sense (zero connections, ...).
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// The target did not accept a connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A server process did not start or died.
    #[error("server process: {0}")]
    Process(String),
    /// A request could not be built.
    #[error("building a request: {0}")]
    Http(#[from] hyper::http::Error),
    /// A request body could not be serialized.
    #[error("serializing a request: {0}")]
    Json(#[from] serde_json::Error),
    /// Local I/O (sockets, files, /proc).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
