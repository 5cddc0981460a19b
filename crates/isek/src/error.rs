//! The one error type of the library.
//!
//! Variants say what the caller can do, not where the failure came from: a node
//! runtime re-registers on [`Error::NotFound`], backs off on [`Error::Unavailable`],
//! and gives up on [`Error::PermissionDenied`], whatever the backend.

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The node (or its lease) does not exist; a caller may register it again.
    #[error("not found: {0}")]
    NotFound(String),
    /// The node exists and belongs to someone else, or a write raced another one.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request itself is malformed (bad node id, port, metadata, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller lacks the proof of ownership (key, token) the operation needs.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The backend could not be reached or is overloaded; retrying later may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something unexpected or failed internally.
    #[error("backend error: {0}")]
    Backend(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The innermost error of a chain: the OS or protocol reason (e.g. "Connection
/// refused"), without the wrappers (reqwest's, hyper's) that repeat the URL. Why
/// here: both HTTP clients (the center registry and the change feed) word their
/// [`Error::Unavailable`] from it.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
