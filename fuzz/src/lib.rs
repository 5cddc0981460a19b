//! Shared pieces of the isek fuzz targets (see `fuzz/README.md`).
//!
//! - [`samples`]: the valid signed etcd entries the targets start from, and the
//!   oracle that says whether a verified entry is one of them.
//! - [`curve`]: the P-256 group order, to recognise the one signature change that
//!   legitimately still verifies (`s` replaced by `n - s`).
//!
//! The center targets (`center_request`, `center_security`) are functions of
//! `isek_testkit::fuzzing`, so a workspace test replays their seeds.

pub mod curve;
pub mod samples;
