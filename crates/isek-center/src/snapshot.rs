//! [`SnapshotCache`]: the `available_nodes` body, serialized once and shared.
//!
//! A listing costs a clone of a reference-counted buffer while the cached body is
//! fresh. It is rebuilt lazily, on the next listing after:
//! - a membership change (register, update, deregister, expiry: the revision moved),
//! - `max_age` (1 s): renewals do not rebuild it, so `expires_at` values lag by at
//!   most that much,
//! - the earliest deadline among the listed nodes: a node never appears after its
//!   lease ran out, even before the reaper removed it.
//!
//! Nothing is built until somebody lists, and a membership change drops the cached
//! body, so an idle center holds no copy of its nodes.
//!
//! Level 1: a cache of bytes. It does not know the registry state: the caller hands
//! in the current revision and a function that renders a fresh body.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// One serialized listing and how long it stays valid.
#[derive(Debug)]
struct Snapshot {
    /// The full response body.
    body: Bytes,
    /// Revision of the state it was built from.
    revision: u64,
    /// After this instant it must be rebuilt (age limit or earliest node deadline).
    valid_until: Instant,
}

/// The lazily rebuilt listing body.
#[derive(Debug)]
pub(crate) struct SnapshotCache {
    /// The current snapshot, if any. Held while rebuilding, so concurrent listers
    /// wait for one rebuild instead of each doing their own.
    cached: Mutex<Option<Snapshot>>,
    /// Oldest a body may get.
    max_age: Duration,
}

impl SnapshotCache {
    /// An empty cache whose bodies live at most `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self {
            cached: Mutex::new(None),
            max_age,
        }
    }

    /// The current listing body at `revision`, rebuilt first by `build` if stale.
    /// `build(now)` renders the nodes live at `now` and returns the body, the revision
    /// it shows and the earliest deadline among its nodes.
    pub fn body(
        &self,
        revision: u64,
        build: impl FnOnce(Instant) -> (Vec<u8>, u64, Option<Instant>),
    ) -> Bytes {
        let now = Instant::now();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &*cached
            && s.revision == revision
            && now < s.valid_until
        {
            return s.body.clone();
        }
        let (body, revision, earliest) = build(now);
        let body = Bytes::from(body);
        // Counted from the end of the build: a listing of a million nodes takes longer
        // to build than `max_age`, and must still be reused meanwhile.
        let age_limit = Instant::now().checked_add(self.max_age);
        let valid_until = match (earliest, age_limit) {
            (Some(d), Some(a)) => d.min(a),
            (Some(d), None) => d,
            (None, Some(a)) => a,
            // No node and an absurd max age: keep it until the next change.
            (None, None) => now + Duration::from_secs(3600),
        };
        *cached = Some(Snapshot {
            body: body.clone(),
            revision,
            valid_until,
        });
        body
    }

    /// Drops the cached body (membership changed): frees its memory early.
    pub fn invalidate(&self) {
        let old = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(old);
    }
}
