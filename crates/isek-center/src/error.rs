//! [`Error`]: why a center could not start, serve or shut down cleanly.
//!
//! Request-level failures never use this type: they become JSON envelopes in
//! [`crate::api`]. This is what `run` and `app` report to their caller (the CLI
//! prints it on one line and exits non-zero).

use std::path::PathBuf;

/// Why the center failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable (zero lease, zero limits).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be created or used.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The directory in question.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Another center already uses the data directory (its lock file is held).
    #[error(
        "data directory {path} is already in use by another isek center (lock file {} is held)",
        path.join(crate::dirlock::LOCK_FILE).display()
    )]
    DataDirLocked {
        /// The directory in question.
        path: PathBuf,
    },
    /// SQLite refused an operation (open, schema, load, commit).
    #[error("store error: {0}")]
    Store(#[from] rusqlite::Error),
    /// Serving HTTP or spawning a worker failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A background task (store writer, reaper) stopped abnormally.
    #[error("background task failed: {0}")]
    Task(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
