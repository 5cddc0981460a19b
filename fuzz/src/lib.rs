//! Shared pieces of the isek fuzz targets (see `fuzz/README.md`).
//!
//! - [`samples`]: the valid signed etcd entries the targets start from, and the
//!   oracle that says whether a verified entry is one of them.
//! - [`curve`]: the P-256 group order, to recognise the one signature change that
//!   legitimately still verifies (`s` replaced by `n - s`).
//! - [`harness`]: one in-memory center behind its real axum router, driven by
//!   `tower::ServiceExt::oneshot` on a current-thread runtime.

pub mod curve;
pub mod harness;
pub mod samples;
