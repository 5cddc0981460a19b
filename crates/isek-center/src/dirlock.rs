//! [`DirLock`]: one center per data directory.
//!
//! Two centers writing the same SQLite store would each believe they own every lease
//! and hand out conflicting answers. A center takes an exclusive lock on
//! `isek-center.lock` in its data directory before opening the store and holds it
//! until the store is closed; a second center fails to start with an error naming the
//! directory. The lock is the operating system's (`flock`), so it is released when the
//! process dies, even by `kill -9`: no stale lock file to clean up. Level 1 (beside
//! the store): it knows files, not what is stored.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, Result};

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "isek-center.lock";

/// An exclusive lock on a data directory, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    /// The locked file; closing it releases the lock.
    file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, or fails with [`Error::DataDirLocked`] when
    /// another center (in this process or another) holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let io = |source| Error::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { file }),
            Err(TryLockError::WouldBlock) => Err(Error::DataDirLocked {
                path: dir.to_path_buf(),
                lock: path,
            }),
            Err(TryLockError::Error(source)) => Err(io(source)),
        }
    }

    /// Releases the lock now (also done on drop).
    pub fn release(self) {
        let _ = self.file.unlock();
    }
}
