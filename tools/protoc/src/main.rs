//! Runs the vendored protoc with its well-known types on the include path.
//!
//! prost-build (the etcd client's build script) calls `$PROTOC` with its own `-I`
//! options; this adds the directory holding `google/protobuf/descriptor.proto`, which
//! Debian ships apart from the compiler (libprotobuf-dev), so the build needs no
//! system package at all. `--check` prints the two paths after checking both exist:
//! the scripts use it to fail early with one line instead of deep in a build script.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The one file the etcd protos import from the well-known types; its absence is the
/// failure this tool exists to prevent.
const WELL_KNOWN: &str = "google/protobuf/descriptor.proto";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("isek-protoc: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let (protoc, include) = paths()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--check") {
        println!("PROTOC={}", protoc.display());
        println!("PROTOC_INCLUDE={}", include.display());
        return Ok(ExitCode::SUCCESS);
    }
    let status = Command::new(&protoc)
        .args(&args)
        .arg(format!("--proto_path={}", include.display()))
        .status()
        .map_err(|e| format!("cannot run {}: {e}", protoc.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// The vendored binary and include directory, each checked to be there.
fn paths() -> Result<(PathBuf, PathBuf), String> {
    let protoc = protoc_bin_vendored::protoc_bin_path()
        .map_err(|e| format!("no vendored protoc for this platform: {e}"))?;
    let include = protoc_bin_vendored::include_path()
        .map_err(|e| format!("no vendored protoc include directory: {e}"))?;
    require(&protoc)?;
    require(&include.join(WELL_KNOWN))?;
    Ok((protoc, include))
}

fn require(path: &Path) -> Result<(), String> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!("missing {} (from the protoc-bin-vendored crate)", path.display()))
    }
}
