//! Fuzz target: requests to centers with an admin token, `--require-signatures` and
//! `--max-nodes` (at and below the cap), with `Authorization` headers built from the
//! input (the exact token, near misses, garbage).
//!
//! The target is `isek_testkit::fuzzing::center_security` (input layout, oracles and
//! the centers it drives are documented there): the same function replays the seeds
//! in `crates/isek-center/tests/fuzz_seeds.rs`, so this target cannot rot unnoticed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isek_testkit::fuzzing::center_security(data));
