//! [`SnapshotCache`]: the live nodes one listing shows, copied once and shared by
//! every listing (`available_nodes` and `/v1/nodes`) until they change.
//!
//! A listing costs a clone of a reference-counted copy while the cached copy is
//! fresh; the caller renders it in chunks while it sends (`render::Chunks`), so no
//! answer holds its whole body: at a million nodes a body is about 200 MB, the copy
//! it renders from about a third of that, shared. It is rebuilt lazily, on the next
//! listing after:
//! - a membership change (register, update, deregister, expiry: the revision moved),
//! - `max_age` (1 s): renewals do not rebuild it, so `expires_at` values lag by at
//!   most that much,
//! - the earliest deadline among the listed nodes: a node never appears after its
//!   lease ran out, even before the reaper removed it.
//!
//! Nothing is built until somebody lists, and a membership change drops the cached
//! copy, so an idle center holds no copy of its nodes.
//!
//! Each copy has a build number ([`Listing::build`], unique within the cache) that
//! names its bytes (rendering a copy always gives the same bytes), for `ETag`s, and a
//! compressed `available_nodes` body made at most once, on the first request that
//! accepts it, and then shared by every such caller ([`Listing::compressed`]): ten
//! thousand ISEK nodes polling every 5 s cost one compression per change, not one per
//! request.
//!
//! Level 1: a cache. It does not know the registry state: the caller hands in the
//! current revision and a function that copies the live nodes (and, for the
//! compressed body, the function that renders and compresses).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::render::Members;

/// One listing: the nodes it shows, its build number and its compressed body.
#[derive(Debug)]
pub struct Listing {
    /// The nodes, rendered by each caller in chunks.
    members: Arc<Members>,
    /// Which build of the cache this is (1, 2, ...): two listings with the same
    /// number are the same bytes, so it can name them in an `ETag`.
    build: u64,
    /// The `available_nodes` body compressed, once, by the first caller that asks
    /// (`None`: compressing failed, and the body goes out as it is).
    compressed: OnceLock<Option<Bytes>>,
}

impl Listing {
    /// The nodes it shows, to render.
    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// The build number: equal numbers, equal bytes (within one cache).
    pub fn build(&self) -> u64 {
        self.build
    }

    /// The body `compress` makes of the nodes, computed by the first caller only
    /// (others wait for it rather than compressing again) and then shared.
    pub fn compressed(
        &self,
        compress: impl FnOnce(&Arc<Members>) -> Option<Vec<u8>>,
    ) -> Option<Bytes> {
        self.compressed
            .get_or_init(|| compress(&self.members).map(Bytes::from))
            .clone()
    }
}

/// One listing and how long it stays valid.
#[derive(Debug)]
struct Snapshot {
    /// The listing.
    listing: Arc<Listing>,
    /// Revision of the state it was built from.
    revision: u64,
    /// After this instant it must be rebuilt (age limit or earliest node deadline).
    valid_until: Instant,
}

/// The lazily rebuilt listing.
#[derive(Debug)]
pub(crate) struct SnapshotCache {
    /// The current snapshot, if any. Held while rebuilding, so concurrent listers
    /// wait for one rebuild instead of each doing their own.
    cached: Mutex<Option<Snapshot>>,
    /// Oldest a body may get.
    max_age: Duration,
    /// Build number of the last body built (0: none yet).
    builds: Mutex<u64>,
}

impl SnapshotCache {
    /// An empty cache whose bodies live at most `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self {
            cached: Mutex::new(None),
            max_age,
            builds: Mutex::new(0),
        }
    }

    /// The current listing at `revision`, rebuilt first by `build` if stale.
    /// `build(now)` copies the nodes live at `now` (with the revision they show).
    pub fn listing(&self, revision: u64, build: impl FnOnce(Instant) -> Members) -> Arc<Listing> {
        let now = Instant::now();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &*cached
            && s.revision == revision
            && now < s.valid_until
        {
            return Arc::clone(&s.listing);
        }
        let members = build(now);
        let (revision, earliest) = (members.revision, members.earliest_deadline());
        let number = {
            let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
            *builds += 1;
            *builds
        };
        let listing = Arc::new(Listing {
            members: Arc::new(members),
            build: number,
            compressed: OnceLock::new(),
        });
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
            listing: Arc::clone(&listing),
            revision,
            valid_until,
        });
        listing
    }

    /// Drops the cached copy (membership changed): frees its memory early, unless a
    /// listing still being sent holds it.
    pub fn invalidate(&self) {
        let old = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(old);
    }
}
