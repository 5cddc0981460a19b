//! [`State`]: the registry's mutable state, and [`Core`]: what every part of a running
//! center shares.
//!
//! `State` holds the lease table (every node with its record and deadline), the
//! revision of the last change and the change log. Its fields are private: a change
//! goes through [`State::put`], [`State::remove`] or [`State::expire`], each of which
//! numbers the next revision, applies the change and logs it in one call, so "one
//! revision per change, logged in order" holds by construction rather than by the
//! callers' discipline. The same three calls keep the posting lists of filtered
//! queries ([`isek::index::Postings`], keyed by node id) in step with the table, so
//! the index cannot drift from what it indexes.
//!
//! `Core` wraps the state in a `std::sync::Mutex` (held for microseconds, never across
//! an `.await`) and publishes its revision in an atomic when the lock is released
//! ([`Locked`]), so freshness checks read it without locking.
//!
//! Level 1: knows the pure values below it (records, leases, rules, frames), not the
//! store, the writer or HTTP.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use isek::filter::{Plan, PlanKind};
use isek::index::Postings;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::feed::{Feed, Resync, WatchStart};
use crate::lease::{Expired, LeaseTable};
use crate::metrics::Metrics;
use crate::policy::Horizons;
use crate::record::NodeRecord;
use crate::render::snapshot_frame;
use crate::skeleton::SkeletonIndex;
use crate::snapshot::SnapshotCache;

/// The mutable registry state.
#[derive(Debug)]
pub(crate) struct State {
    /// Every node with its lease, sorted by id.
    leases: LeaseTable<NodeRecord>,
    /// Revision of the last change applied.
    revision: u64,
    /// The change log of `GET /v1/watch`.
    feed: Feed,
    /// How many nodes in `leases` have an owner key (for the metrics: counted as the
    /// table changes, so a scrape does not walk the table).
    signed: usize,
    /// The ids of `leases` by confusable skeleton, kept in step with it, when the
    /// center refuses look-alike ids (`--confusable-ids refuse`); `None`: allowed.
    skeletons: Option<SkeletonIndex>,
    /// Posting lists over the metadata of every node in `leases` (expired ones not
    /// yet retired included), changed only where `leases` is.
    postings: Postings,
    /// Set if a node could not be indexed (every slot number in use): from then on
    /// every filtered query scans, so an answer is never missing a node.
    index_broken: bool,
    /// The expiry guard: when the state was last locked (every lock is a sign of
    /// life: a request served, a reaper tick), and the silence after which a lock
    /// counts the time since as a gap (`None`: `--expiry-guard off`).
    beat: Beat,
}

/// The expiry guard's heartbeat (see [`State::heartbeat`]).
#[derive(Debug)]
struct Beat {
    /// When the state was last locked.
    last: Instant,
    /// A silence longer than this is a gap; `None`: no guard.
    gap: Option<Duration>,
}

/// A gap the expiry guard gave back (see [`State::heartbeat`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap {
    /// How long nothing locked the state.
    pub length: Duration,
    /// What the lease table did about it.
    pub guarded: crate::lease::Guarded,
}

impl State {
    /// The state after loading `loaded` (every node with its generation, each a
    /// revision of its own, none above `revision`; every node gets a fresh lease),
    /// with an empty change log starting after `revision`; `skeletons`: keep the
    /// look-alike index (see [`State::skeletons`]).
    pub fn load(
        ttl: Duration,
        now: Instant,
        loaded: Vec<(Arc<str>, NodeRecord, u64)>,
        revision: u64,
        skeletons: bool,
        new_feed: impl FnOnce(u64) -> Feed,
    ) -> Self {
        let mut leases = LeaseTable::new(ttl, now);
        let mut skeletons = skeletons.then(SkeletonIndex::new);
        let mut signed = 0;
        let mut postings = Postings::new();
        let mut index_broken = false;
        let mut revision = revision;
        for (id, record, generation) in loaded {
            revision = revision.max(generation);
            signed += usize::from(record.owner().is_some());
            if let Some(index) = &mut skeletons {
                index.insert(&id);
            }
            index_broken |= !index(&mut postings, &id, &record);
            leases.insert(id, record, generation, now);
        }
        Self {
            leases,
            revision,
            feed: new_feed(revision),
            signed,
            skeletons,
            postings,
            index_broken,
            beat: Beat {
                last: now,
                gap: None,
            },
        }
    }

    /// Turns the expiry guard on: a silence (no lock at all) longer than `gap` is
    /// given back to the running leases at the next lock (see [`State::heartbeat`]).
    pub fn guard_gaps(&mut self, gap: Duration) {
        self.beat.gap = Some(gap);
    }

    /// The expiry guard, run at every lock before anything reads a deadline: if
    /// nothing locked the state for longer than the guard's gap (the process was
    /// stopped, stalled, or its clock jumped), nobody could renew meanwhile, so the
    /// leases running when the silence began get its length back (at most one TTL
    /// past `now`: `LeaseTable::guard`). Every lock is a beat, so the gap is only
    /// the time in which nothing at all ran.
    pub fn heartbeat(&mut self, now: Instant) -> Option<Gap> {
        let since = self.beat.last;
        self.beat.last = now.max(since);
        let length = now.saturating_duration_since(since);
        if length <= self.beat.gap? {
            return None;
        }
        let guarded = self.leases.guard(since, now);
        Some(Gap { length, guarded })
    }

    /// The lease table (reads only: changes go through the methods below).
    pub fn leases(&self) -> &LeaseTable<NodeRecord> {
        &self.leases
    }

    /// The ids of the table (live or not yet retired) by confusable skeleton, when
    /// look-alike ids are refused.
    pub fn skeletons(&self) -> Option<&SkeletonIndex> {
        self.skeletons.as_ref()
    }

    /// Revision of the last change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A copy of the nodes live at `now` (sorted by id, with their deadlines) and the
    /// revision they show: pointer copies only (ids and records are reference
    /// counted), so the caller can hold the lock for the copy and render after
    /// releasing it. Renewals and writer acknowledgements then wait for the copy
    /// (a few ms at 1M nodes), not for the rendering (hundreds).
    pub fn live_copy(&self, now: Instant) -> LiveCopy {
        let mut nodes = Vec::with_capacity(self.leases.len());
        nodes.extend(
            self.leases
                .live(now)
                .map(|e| (Arc::clone(e.id), e.value.clone(), e.deadline)),
        );
        LiveCopy {
            nodes,
            revision: self.revision,
        }
    }

    /// The candidates of `plan` live at `now` (a superset of the nodes matching the
    /// filter it came from; every live node for a scan), in no particular order, and
    /// the revision they show: pointer copies, like [`State::live_copy`], for the
    /// caller to sort and evaluate after releasing the lock. Costs in proportion to
    /// the candidates of an index plan, not to the membership.
    pub fn candidates(&self, plan: &Plan, now: Instant) -> (PlanKind, LiveCopy) {
        if self.index_broken || matches!(plan, Plan::Scan) {
            return (PlanKind::Scan, self.live_copy(now));
        }
        let (kind, slots) = self.postings.candidates(plan);
        let mut nodes = Vec::with_capacity(usize::try_from(slots.len()).unwrap_or(0));
        for slot in slots.iter() {
            let Some(id) = self.postings.id(slot) else {
                continue;
            };
            if let Some(entry) = self.leases.get(id, now) {
                nodes.push((Arc::clone(entry.id), entry.value.clone(), entry.deadline));
            }
        }
        let copy = LiveCopy {
            nodes,
            revision: self.revision,
        };
        (kind, copy)
    }

    /// The live nodes at `now` whose deadline the expiry guard moved (not renewed
    /// since), sorted by id, with that deadline: nothing to copy, and no walk, while
    /// none is guarded.
    pub fn guarded(&self, now: Instant) -> Vec<(Arc<str>, Instant)> {
        self.leases
            .guarded(now)
            .map(|e| (Arc::clone(e.id), e.deadline))
            .collect()
    }

    /// Nodes in the table with an owner key, and without (expired leases not yet
    /// retired included: the reaper removes them within milliseconds).
    pub fn signed_and_unsigned(&self) -> (usize, usize) {
        (self.signed, self.leases.len().saturating_sub(self.signed))
    }

    /// Registers (or replaces) `id` with a fresh lease: numbers the change, applies it
    /// and logs it; returns its revision (also the registration's generation).
    pub fn put(&mut self, id: Arc<str>, record: NodeRecord, now: Instant) -> u64 {
        self.put_at(self.revision + 1, id, record, now)
    }

    /// Registers (or replaces) `id` at `revision`, given by a store shared with other
    /// centers (above the current one: the caller skips those it has applied).
    pub fn put_at(&mut self, revision: u64, id: Arc<str>, record: NodeRecord, now: Instant) -> u64 {
        self.revision = revision;
        self.signed += usize::from(record.owner().is_some());
        self.index_broken |= !index(&mut self.postings, &id, &record);
        let before = self
            .leases
            .insert(Arc::clone(&id), record.clone(), self.revision, now);
        match &before {
            Some(old) => self.signed -= usize::from(old.owner().is_some()),
            None => {
                if let Some(index) = &mut self.skeletons {
                    index.insert(&id);
                }
            }
        }
        self.feed.put(self.revision, &id, &record, before);
        self.revision
    }

    /// Removes `id` (a deregistration); its revision, `None` when it was not there.
    pub fn remove(&mut self, id: &str) -> Option<u64> {
        self.remove_at(self.revision + 1, id, "deregister")
    }

    /// Removes `id` at `revision` of a shared store (`reason`: `deregister` or
    /// `expire`), whichever registration it holds; `None` when it was not there (the
    /// revision is then not this state's: nothing changed).
    pub fn remove_at(&mut self, revision: u64, id: &str, reason: &str) -> Option<u64> {
        let old = self.leases.remove(id)?;
        self.signed -= usize::from(old.owner().is_some());
        if let Some(index) = &mut self.skeletons {
            index.remove(id);
        }
        self.postings.remove(id);
        self.revision = revision;
        self.feed.delete(revision, id, reason, old);
        Some(revision)
    }

    /// Removes the registration `generation` of `id` that ran out; its revision,
    /// `None` when that generation is gone (re-registered or removed meanwhile).
    pub fn expire(&mut self, id: &str, generation: u64) -> Option<u64> {
        let old = self.leases.remove_generation(id, generation)?;
        self.signed -= usize::from(old.owner().is_some());
        if let Some(index) = &mut self.skeletons {
            index.remove(id);
        }
        self.postings.remove(id);
        Some(self.log_delete(id, "expire", old))
    }

    /// Numbers and logs the departure of `id` (whose record was `before`: filtered
    /// watchers decide from it whether they saw the node).
    fn log_delete(&mut self, id: &str, reason: &str, before: NodeRecord) -> u64 {
        self.revision += 1;
        self.feed.delete(self.revision, id, reason, before);
        self.revision
    }

    /// Renewals another center of the cluster accepted: each known id not reported
    /// expired gets `now` + TTL, lapsed or not (see [`LeaseTable::refresh`]); how many.
    pub fn renew_forwarded<'a>(
        &mut self,
        ids: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> usize {
        ids.filter(|id| self.leases.refresh(id, now)).count()
    }

    /// Gives every node a fresh full lease from `now` (this center became the lease
    /// holder of its cluster).
    pub fn refresh_all(&mut self, now: Instant) {
        self.leases.refresh_all(now);
    }

    /// Extends the lease of a live `id` to `now` + TTL (not a change: no revision).
    pub fn renew(&mut self, id: &str, now: Instant) -> bool {
        self.leases.renew(id, now)
    }

    /// At most `limit` leases that ran out by `now`: invisible from now on, removed
    /// (and numbered) only by [`State::expire`] once the store forgot them.
    pub fn collect_expired(&mut self, now: Instant, limit: usize) -> Vec<Expired> {
        self.leases.expire_at_most(now, limit)
    }

    /// Where a new watcher starts, atomically with its subscription: after `since`
    /// from the change log, or (without `since`) from a snapshot of the nodes live at
    /// `now` (or the feed's shared, slightly older one plus the changes since: see
    /// `Feed::snapshot`). `hello` opens the stream.
    pub fn watch_start(
        &mut self,
        since: Option<u64>,
        now: Instant,
        hello: Bytes,
    ) -> Result<WatchStart, Resync> {
        let Self {
            leases,
            revision,
            feed,
            ..
        } = self;
        let revision = *revision;
        match since {
            None => {
                let snapshot = feed.snapshot(revision, || {
                    let live = leases.live(now).map(|e| (&**e.id, e.value));
                    snapshot_frame(live, leases.len(), revision)
                });
                let mut initial = Vec::with_capacity(2 + snapshot.since.len());
                initial.push(hello);
                initial.push(snapshot.frame);
                initial.extend(snapshot.since);
                Ok(WatchStart {
                    initial,
                    live: feed.subscribe(),
                    after: revision,
                })
            }
            Some(since) => {
                let (backlog, live) = feed.resume(since, revision)?;
                let mut initial = Vec::with_capacity(backlog.len() + 1);
                initial.push(hello);
                initial.extend(backlog);
                Ok(WatchStart {
                    initial,
                    live,
                    after: revision,
                })
            }
        }
    }
}

impl State {
    /// Where a new watcher scoped by a filter with `plan` starts, atomically with
    /// its subscription: the changes after `since` from the change log, or (without
    /// `since`) the plan's candidates live at `now`. Nothing is evaluated here: the
    /// caller scopes them after releasing the lock.
    pub fn scoped_watch_start(
        &self,
        since: Option<u64>,
        plan: &Plan,
        now: Instant,
    ) -> Result<ScopedStart, Resync> {
        match since {
            None => {
                let (_, copy) = self.candidates(plan, now);
                Ok(ScopedStart {
                    revision: self.revision,
                    from: ScopedFrom::Candidates(copy.nodes),
                    live: self.feed.subscribe(),
                })
            }
            Some(since) => {
                let (changes, live) = self.feed.resume_changes(since, self.revision)?;
                Ok(ScopedStart {
                    revision: self.revision,
                    from: ScopedFrom::Changes(changes),
                    live,
                })
            }
        }
    }
}

/// Where a filtered watcher starts, before its filter is evaluated (see
/// [`State::scoped_watch_start`]).
#[derive(Debug)]
pub(crate) struct ScopedStart {
    /// The revision the start shows.
    pub revision: u64,
    /// The candidates of its snapshot, or the changes it missed.
    pub from: ScopedFrom,
    /// Live changes after `revision`.
    pub live: tokio::sync::broadcast::Receiver<crate::feed::Change>,
}

/// What a filtered watcher's initial frames are made from.
#[derive(Debug)]
pub(crate) enum ScopedFrom {
    /// A superset of the nodes its snapshot holds (id, record, deadline).
    Candidates(Vec<(Arc<str>, NodeRecord, Instant)>),
    /// The changes after its `since`, to scope one by one.
    Changes(Vec<crate::feed::Change>),
}

/// Adds (or replaces) `id` in `postings` with the keys of its metadata; false if
/// no slot was left for it.
fn index(postings: &mut Postings, id: &Arc<str>, record: &NodeRecord) -> bool {
    // The text is the compact JSON object checked at registration (or loaded from
    // the store, which holds only such text); anything else has no keys.
    let metadata: isek::Metadata = serde_json::from_str(record.metadata()).unwrap_or_default();
    match postings.insert(Arc::clone(id), isek::filter::plan::keys_of(&metadata)) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "a node could not be indexed; filtered queries scan from now on");
            postings.remove(id);
            false
        }
    }
}

/// The live nodes at one revision, copied out of the state (see [`State::live_copy`]).
#[derive(Debug)]
pub(crate) struct LiveCopy {
    /// Node id, record and lease deadline, sorted by id.
    pub nodes: Vec<(Arc<str>, NodeRecord, Instant)>,
    /// The revision the copy shows.
    pub revision: u64,
}

/// What the center handle, the writer, the reaper and the streams share.
#[derive(Debug)]
pub(crate) struct Core {
    /// The registry state.
    state: Mutex<State>,
    /// Copy of the state's revision, published when the lock is released and readable
    /// without it (snapshot freshness, resync events).
    revision: Arc<AtomicU64>,
    /// Wakes the reaper when a deadline earlier than the one it sleeps for appears.
    reaper_wake: Notify,
    /// The cached `available_nodes` body.
    snapshot: SnapshotCache,
    /// Incarnation of this center: revisions are only comparable within one epoch.
    epoch: u64,
    /// Turns true at shutdown: every change stream ends, so a graceful shutdown does
    /// not wait for watchers that never hang up.
    watchers_closed: watch::Sender<bool>,
    /// Newest accepted signed-op timestamp per node id (no replay), refusing anything
    /// signed before this center started.
    horizons: Horizons,
    /// What every part of the center records its figures into (`GET /metrics`).
    metrics: Arc<Metrics>,
    /// Taken to announce, and to wait for, a revision reached by the follower of a
    /// shared store ([`Core::applied`], [`Core::wait_applied`]).
    applied: Mutex<()>,
    /// Signalled by [`Core::applied`].
    applied_signal: Condvar,
    /// The cluster side of a center on a shared store (`None`: a store of its own).
    cluster: Option<Cluster>,
}

/// What the workers of a center on a shared store share besides the state.
#[derive(Debug, Default)]
pub(crate) struct Cluster {
    /// Until when this center may expire nodes: it is the lease holder, confirmed by
    /// a keep-alive (see `crate::holder`); `None`: it is not.
    holder_until: Mutex<Option<Instant>>,
    /// The other centers: (id, URL).
    peers: Mutex<Vec<(String, String)>>,
    /// Ids renewed here since the last batch was forwarded to the peers.
    renewed: Mutex<Vec<Arc<str>>>,
    /// The secret centers prove themselves to each other with.
    secret: String,
}

/// Most renewed ids kept for the next forwarded batch; beyond, renewals are still
/// answered but not forwarded (counted in the log), so a stalled forwarder costs at
/// most this much memory.
pub(crate) const MAX_PENDING_RENEWALS: usize = 1 << 20;

impl Core {
    /// The shared core of a center starting with `state`.
    pub fn new(state: State, snapshot: SnapshotCache, epoch: u64, horizons: Horizons) -> Self {
        Self {
            revision: Arc::new(AtomicU64::new(state.revision)),
            state: Mutex::new(state),
            reaper_wake: Notify::new(),
            snapshot,
            epoch,
            watchers_closed: watch::channel(false).0,
            horizons,
            metrics: Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"))),
            applied: Mutex::new(()),
            applied_signal: Condvar::new(),
            cluster: None,
        }
    }

    /// Makes this core a member of a center cluster whose centers share `secret`.
    pub fn with_cluster(mut self, secret: String) -> Self {
        self.cluster = Some(Cluster {
            secret,
            ..Cluster::default()
        });
        self
    }

    /// Whether the reaper may expire nodes at `now`: always on a store of its own; on
    /// a shared one only while this center is the confirmed lease holder.
    pub fn may_expire(&self, now: Instant) -> bool {
        match &self.cluster {
            None => true,
            Some(c) => lock(&c.holder_until).is_some_and(|until| now < until),
        }
    }

    /// This center is the lease holder until `until`; when it was not (or its last
    /// confirmation had lapsed), every node first gets a fresh full lease from
    /// `now`. Whether it became holder just now.
    pub fn take_holder(&self, until: Instant, now: Instant) -> bool {
        let Some(c) = &self.cluster else {
            return false;
        };
        let mut held = lock(&c.holder_until);
        let became = held.is_none_or(|was| was <= now);
        if became {
            self.lock().refresh_all(now);
        }
        *held = Some(until);
        drop(held);
        self.wake_reaper();
        became
    }

    /// This center is not (or no longer) the lease holder; whether it was.
    pub fn lose_holder(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| lock(&c.holder_until).take().is_some())
    }

    /// Whether this center is the lease holder at `now`.
    pub fn is_holder(&self, now: Instant) -> bool {
        self.cluster.is_some() && self.may_expire(now)
    }

    /// Records the other centers of the cluster.
    pub fn set_peers(&self, peers: Vec<(String, String)>) {
        if let Some(c) = &self.cluster {
            *lock(&c.peers) = peers;
        }
    }

    /// The other centers' URLs.
    pub fn peer_urls(&self) -> Vec<String> {
        self.cluster.as_ref().map_or_else(Vec::new, |c| {
            lock(&c.peers).iter().map(|(_, url)| url.clone()).collect()
        })
    }

    /// The secret of the cluster, if the center is in one.
    pub fn cluster_secret(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.secret.as_str())
    }

    /// Notes that `id` was renewed here, for the next batch to the peers; false when
    /// the pending batch is full.
    pub fn note_renewed(&self, id: &Arc<str>) -> bool {
        let Some(c) = &self.cluster else {
            return true;
        };
        let mut pending = lock(&c.renewed);
        if pending.len() >= MAX_PENDING_RENEWALS {
            return false;
        }
        pending.push(Arc::clone(id));
        true
    }

    /// The ids renewed here since the last call.
    pub fn take_renewed(&self) -> Vec<Arc<str>> {
        self.cluster
            .as_ref()
            .map_or_else(Vec::new, |c| std::mem::take(&mut *lock(&c.renewed)))
    }

    /// Tells the writer's [`Core::wait_applied`] that the state lock was released
    /// after applying changes of a shared store (the revision is published then).
    pub fn applied(&self) {
        let _guard = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        self.applied_signal.notify_all();
    }

    /// Blocks the calling thread (the writer's: never a runtime thread) until the
    /// published revision reaches `revision`, at most `within`; whether it did.
    pub fn wait_applied(&self, revision: u64, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        let mut guard = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.revision() >= revision {
                return true;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.applied_signal.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The center's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Locks the state. A poisoned lock only means a panic elsewhere mid-update; the
    /// table is still a valid table, so keep serving.
    pub fn lock(&self) -> Locked<'_> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gap) = guard.heartbeat(Instant::now()) {
            self.metrics.expiry_guard(gap.length, gap.guarded.extended);
            tracing::warn!(
                gap_ms = gap.length.as_millis() as u64,
                leases = gap.guarded.extended,
                guarded_for_ms = gap.guarded.until.map_or(0, |u| u
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    as u64),
                "the center was not running (stopped, stalled or its clock jumped); the leases running when it stopped get that time back (at most one TTL from now)"
            );
        }
        Locked {
            guard,
            revision: &self.revision,
        }
    }

    /// Revision of the last change, without locking.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// A shared handle on [`Core::revision`] (for change streams, which outlive no
    /// center but must not hold the whole core).
    pub fn revision_handle(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.revision)
    }

    /// Tells the reaper an earlier deadline appeared.
    pub fn wake_reaper(&self) {
        self.reaper_wake.notify_one();
    }

    /// Completes at the next [`Core::wake_reaper`] (a wake-up sent before this is
    /// polled is kept, so none is lost).
    pub fn reaper_woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.reaper_wake.notified()
    }

    /// The cached listing body.
    pub fn snapshot(&self) -> &SnapshotCache {
        &self.snapshot
    }

    /// Incarnation of this center.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Ends every change stream now and every new one after its initial frames.
    pub fn close_watchers(&self) {
        self.watchers_closed.send_replace(true);
    }

    /// A receiver of the shutdown flag of change streams.
    pub fn watchers_closed(&self) -> watch::Receiver<bool> {
        self.watchers_closed.subscribe()
    }

    /// The replay horizon of signed operations.
    pub fn horizons(&self) -> &Horizons {
        &self.horizons
    }
}

/// Locks a mutex of the cluster side (a poisoned one still holds valid data).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The locked state; publishes the revision to [`Core::revision`] when released.
pub(crate) struct Locked<'a> {
    /// The lock guard.
    guard: MutexGuard<'a, State>,
    /// Where the revision is published.
    revision: &'a AtomicU64,
}

impl Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.revision.store(self.guard.revision, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> NodeRecord {
        NodeRecord::new("127.0.0.1", 9000, r#"{"role":"planner"}"#)
    }

    /// The invariant "an expiry removes only the registration generation that ran
    /// out, never a re-registration that raced it", where memory decides it: the
    /// reaper collected generation 1, then "a" was registered again before the
    /// expiry was applied. Deterministic: no clock, no threads.
    #[test]
    fn expiring_a_replaced_generation_keeps_the_reregistration() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut state = State::load(ttl, t0, Vec::new(), 0, true, |base| {
            Feed::new(base, 16, 1 << 20, 4)
        });
        let first = state.put(Arc::from("a"), record(), t0);
        let ran_out = t0 + ttl;
        let expired = state.collect_expired(ran_out, usize::MAX);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].generation, first);
        let second = state.put(Arc::from("a"), record(), ran_out);

        assert_eq!(
            state.expire("a", first),
            None,
            "the expiry of generation {first} removed its re-registration {second}"
        );
        assert!(state.leases().is_live("a", ran_out), "a is gone");
        assert_eq!(state.revision(), second, "a change was numbered");
        assert_eq!(state.signed_and_unsigned(), (0, 1));
        let (frames, _) = state
            .feed
            .resume(0, state.revision())
            .unwrap_or_else(|r| panic!("resume: {}", r.message));
        assert_eq!(frames.len(), 2, "two puts and nothing else");
        assert!(
            frames.iter().all(|f| f.starts_with(b"event: put\n")),
            "a delete was logged: {frames:?}"
        );

        // Generation 2 runs out in its turn: that expiry is the current one.
        let later = ran_out + ttl;
        let expired = state.collect_expired(later, usize::MAX);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].generation, second);
        assert_eq!(state.expire("a", second), Some(second + 1));
        assert_eq!(state.leases().len(), 0);
    }
}
