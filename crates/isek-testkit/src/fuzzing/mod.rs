//! The center's fuzz targets as plain functions (feature `center`): `fuzz/` (cargo-fuzz,
//! outside the workspace and CI) calls them from its `fuzz_target!`s, and a normal test
//! (`crates/isek-center/tests/fuzz_seeds.rs`) replays the committed seeds through the
//! same functions, so the targets keep compiling and their oracles keep agreeing
//! with the center.
//!
//! - [`center_request`]: one request body through the real router of a default
//!   center (the original protocol's endpoints and the strict body parser).
//! - [`center_security`]: the same, under the operator's security settings: an
//!   admin token (`Authorization` headers built from the input: exact, near misses,
//!   garbage), `--require-signatures`, and `--max-nodes` at and below the cap, with
//!   an unsigned and a signed resident node.
//!
//! Input layouts are in [`input`]; what each answer must be is in [`oracle`]. A
//! failed oracle panics: that is what a fuzz finding is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod harness;
pub mod input;
pub mod oracle;

use harness::{Harness, Settings};
use input::FuzzRequest;

/// Fuzz target `center_request`: byte 0 selects endpoint, `Content-Type` and
/// `Content-Length` (see [`FuzzRequest::decode`]), the rest is the body; sent to a
/// center with default security settings and no `Authorization` header.
pub fn center_request(data: &[u8]) {
    let Some(request) = FuzzRequest::decode(data) else {
        return;
    };
    oracle::check_strict_parser(request.body);
    let harness = Harness::get(Settings::default());
    oracle::run(harness, &request);
}

/// Fuzz target `center_security`: byte 0 selects the center's settings
/// ([`Settings::decode`]), byte 1 the request shape
/// (as in `center_request`), byte 2 the `Authorization` header's mode and length
/// ([`FuzzRequest::decode_with_auth`]), then the header's bytes and the body.
pub fn center_security(data: &[u8]) {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let Some(request) = FuzzRequest::decode_with_auth(rest) else {
        return;
    };
    let harness = Harness::get(Settings::decode(settings));
    oracle::run(harness, &request);
}
