//! [`Error`]: why a center could not start, serve or shut down cleanly.
//!
//! Request-level failures never use this type: they become JSON envelopes in
//! [`crate::http`]. This is what `run` and `app` report to their caller (the CLI
//! prints it on one line and exits non-zero). Level 0: it names no type of a layer
//! above (SQLite errors arrive boxed, converted in `store`).

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
        lock.display()
    )]
    DataDirLocked {
        /// The directory in question.
        path: PathBuf,
        /// The lock file inside it.
        lock: PathBuf,
    },
    /// The store was written by a schema this center does not know (a newer center, or
    /// not an isek store): refusing to guess protects its data.
    #[error(
        "the store has schema version {found}, this center reads versions up to {supported}: upgrade the center or use another data directory"
    )]
    SchemaVersion {
        /// `PRAGMA user_version` of the store.
        found: i64,
        /// The newest version this center reads and writes.
        supported: i64,
    },
    /// SQLite refused an operation (open, schema, load, commit).
    #[error("store error: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Serving HTTP or spawning a worker failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A background task (store writer, reaper) stopped abnormally.
    #[error("background task failed: {0}")]
    Task(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
