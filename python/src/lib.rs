//! `isek_rs._core`: the native half of the `isek_rs` Python package.
//!
//! Python programs get ISEK's registry classes backed by the Rust `isek` crate. This
//! module holds everything that touches Rust; the pure-Python half (`isek_rs/`) adds the
//! drop-in class signatures of ISEK 0.2.1 and the exception classes.
//!
//! - [`runtime`]: the one Tokio runtime, blocking calls that release the GIL and honour
//!   Ctrl-C, and asyncio futures resolved from Rust tasks.
//! - [`errors`]: which Python exception each `isek::Error` kind raises.
//! - [`convert`]: JSON values and node entries between Rust and Python.
//! - [`identity`]: `NodeIdentity`, a node's own P-256 key.
//! - [`registry`]: `CoreRegistry`, a center or etcd client with re-registration after a
//!   lost lease.
//! - [`watch`]: `Watch`, membership changes as a (sync and async) iterator.
//! - [`peers`]: `PeerView`, a live copy of the membership with lookups.
//! - [`node`]: `Node`, a node kept registered by `isek::runtime::Node`.

use pyo3::prelude::*;

pub mod convert;
pub mod errors;
pub mod identity;
pub mod node;
pub mod peers;
pub mod registry;
pub mod runtime;
pub mod watch;

/// The extension module (`isek_rs._core`).
#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<identity::PyNodeIdentity>()?;
    m.add_class::<registry::CoreRegistry>()?;
    m.add_class::<watch::Watch>()?;
    m.add_class::<watch::WatchEvent>()?;
    m.add_class::<peers::PyPeerView>()?;
    m.add_class::<node::PyNode>()?;
    m.add_function(wrap_pyfunction!(runtime::resolve_future, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::runtime_stats, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::sleep, m)?)?;
    Ok(())
}
