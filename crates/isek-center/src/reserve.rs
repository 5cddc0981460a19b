//! [`DiskReserve`]: space set aside in the data directory so deregistrations (and
//! expiries) still commit when the disk is full.
//!
//! A full disk makes every SQLite write fail, deletes included, since a delete
//! appends WAL frames too; an operator could then not free space by removing nodes.
//! So the center keeps a file of `--disk-reserve-bytes` (written out, not sparse) in
//! its data directory. When a commit fails, the writer releases the file and retries
//! the batch's deletes alone: they fit in the space it held. The file is written
//! again (at most every [`REFILL_EVERY`]) after later commits succeed, once there is
//! room; rows freed by the deletes are reused by SQLite inside its own file, so new
//! registrations work again too.
//!
//! Level 1: file I/O only (no SQL, no thread).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File name of the reserve inside the data directory.
pub const RESERVE_FILE: &str = "isek-center.reserve";

/// Least time between two attempts to write the reserve again (each may write its
/// whole size before finding the disk still full).
pub const REFILL_EVERY: Duration = Duration::from_secs(10);

/// Bytes written per call while filling the reserve.
const CHUNK: usize = 64 * 1024;

/// The reserve file and whether it currently holds its space.
#[derive(Debug)]
pub struct DiskReserve {
    /// Where the file lives.
    path: PathBuf,
    /// How many bytes it holds when full.
    bytes: u64,
    /// Whether the file holds its space now.
    held: bool,
    /// When filling it was last tried.
    tried: Option<Instant>,
}

impl DiskReserve {
    /// A reserve of `bytes` in `dir`, written now if there is room (a warning
    /// otherwise; the center runs without it until there is). `None` for 0 bytes.
    pub fn open(dir: &Path, bytes: u64) -> Option<Self> {
        if bytes == 0 {
            return None;
        }
        let mut reserve = Self {
            path: dir.join(RESERVE_FILE),
            bytes,
            held: false,
            tried: None,
        };
        reserve.fill();
        if !reserve.held {
            tracing::warn!(bytes, path = %reserve.path.display(), "no room for the disk reserve: deregistrations may fail while the disk is full");
        }
        Some(reserve)
    }

    /// Whether the reserve holds its space now.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Gives the space back to the file system (the writer then retries its deletes).
    /// Returns whether there was anything to release.
    pub fn release(&mut self) -> bool {
        let had = self.held;
        self.held = false;
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not remove the disk reserve");
        }
        if had {
            tracing::warn!(
                bytes = self.bytes,
                "disk full: the disk reserve was released so deletes can commit"
            );
        }
        had
    }

    /// Writes the reserve again if it is released and the last try is long enough
    /// ago; a failed try leaves no partial file.
    pub fn refill(&mut self) {
        if self.held || self.tried.is_some_and(|t| t.elapsed() < REFILL_EVERY) {
            return;
        }
        self.fill();
        if self.held {
            tracing::info!(bytes = self.bytes, "disk reserve restored");
        }
    }

    /// Writes the whole file (zeros, synced) or removes it.
    fn fill(&mut self) {
        self.tried = Some(Instant::now());
        match write_zeros(&self.path, self.bytes) {
            Ok(()) => self.held = true,
            Err(_) => {
                let _ = std::fs::remove_file(&self.path);
                self.held = false;
            }
        }
    }
}

/// Creates `path` holding `bytes` zero bytes, really allocated and synced.
fn write_zeros(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let zeros = [0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_written_released_and_refilled() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(DiskReserve::open(dir.path(), 0).is_none());
        let mut reserve =
            DiskReserve::open(dir.path(), 100_000).unwrap_or_else(|| panic!("a reserve"));
        let path = dir.path().join(RESERVE_FILE);
        assert!(reserve.is_held());
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(100_000)
        );
        assert!(reserve.release());
        assert!(!reserve.release(), "released once");
        assert!(!path.exists());
        // Too soon after the last try: nothing written.
        reserve.refill();
        assert!(!reserve.is_held());
        reserve.tried = None;
        reserve.refill();
        assert!(reserve.is_held());
        assert!(path.exists());
    }
}
