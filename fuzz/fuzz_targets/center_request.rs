//! Fuzz target: request bodies through a default center's real router.
//!
//! The target is `isek_testkit::fuzzing::center_request` (input layout, oracles and
//! the center it drives are documented there): the same function replays the seeds
//! in `crates/isek-center/tests/fuzz_seeds.rs`, so this target cannot rot unnoticed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isek_testkit::fuzzing::center_request(data));
