//! The center's fuzz targets, replayed on their committed seeds (`fuzz/seeds/<target>`)
//! through the same functions cargo-fuzz calls (`isek_testkit::fuzzing`): fuzzing
//! itself stays out of CI (`scripts/fuzz.sh`), but a target whose oracle no longer
//! agrees with the center, or that no longer builds, fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use isek_testkit::fuzzing;

/// The seed files of `target`, sorted.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "only {} seeds in {}",
        files.len(),
        dir.display()
    );
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// Runs `target` on every seed; a failure names the seed.
fn replay(name: &str, target: fn(&[u8])) {
    for (seed, data) in seeds(name) {
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{name} failed on its seed {seed}");
    }
}

#[test]
fn center_request_seeds_pass_their_oracles() {
    replay("center_request", fuzzing::center_request);
}

#[test]
fn center_security_seeds_pass_their_oracles() {
    replay("center_security", fuzzing::center_security);
}
