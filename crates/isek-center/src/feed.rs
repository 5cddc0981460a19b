//! [`Feed`]: the change log behind `GET /v1/watch` (the stream each watcher reads is
//! `crate::stream`).
//!
//! Every change to the registry (register, update, deregister, expiry) already gets the
//! next revision; the writer also hands it to the feed, under the same state lock, as
//! one pre-rendered server-sent event (rendered once, shared by every watcher). The
//! feed keeps:
//!
//! - a bounded ring of the latest changes, for resuming with `since=REV`; a revision
//!   older than the ring gets a resync answer, never a partial replay;
//! - a bounded broadcast channel to live watchers; a watcher that falls further behind
//!   than its buffer gets a `resync` event and its stream ends, so a slow reader costs
//!   at most the buffer, never unbounded memory.
//!
//! Consistency: a watcher takes its starting point (a snapshot of the live nodes, or
//! the ring's changes after `since`) and subscribes to the broadcast under the state
//! lock, while changes are recorded and broadcast under that lock too; so it sees each
//! revision after its starting point exactly once, in order, without gap.
//!
//! Revisions are only meaningful within one `epoch` (random per start; for a center
//! cluster on etcd, derived from the etcd cluster and prefix, [`shared_epoch`]): a
//! client resuming with another epoch's revision is told to resync.
//!
//! Level 1: owned by `state` (the feed is appended to only by `State`'s numbered
//! changes); frames are rendered by `render`. No HTTP, no store.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::broadcast;

use isek::filter::Filter;

use crate::cursor::node_info;
use crate::record::NodeRecord;
use crate::render::{delete_frame, put_frame};

/// One recorded change: its revision, its rendered SSE event, and what a filtered
/// watcher needs to scope it (the node, its record before and after).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// Revision of the change.
    pub revision: u64,
    /// The whole `event: ...\nid: ...\ndata: ...\n\n` frame.
    pub frame: Bytes,
    /// The node the change is about.
    pub id: Arc<str>,
    /// Its record before the change (`None`: it was not registered).
    pub before: Option<NodeRecord>,
    /// Its record after the change (`None`: it left).
    pub after: Option<NodeRecord>,
}

impl Change {
    /// This change as a watcher scoped by `filter` sees it: the shared frame when
    /// the node matches after a put, or matched before a deregistration or expiry;
    /// a `delete` with reason `filter` when a put makes a matching node stop
    /// matching; nothing when the node matches neither before nor after. Evaluates
    /// the filter (at most twice): never call it under the state lock.
    pub fn scoped(&self, filter: &Filter) -> Option<Bytes> {
        let matches = |record: &NodeRecord| filter.matches(&node_info(&self.id, record));
        match &self.after {
            Some(after) if matches(after) => Some(self.frame.clone()),
            Some(_) => self.before.as_ref().filter(|b| matches(b)).map(|_| {
                delete_frame(
                    self.revision,
                    &self.id,
                    isek::wire::center::WATCH_REASON_FILTER,
                )
            }),
            None => self
                .before
                .as_ref()
                .filter(|b| matches(b))
                .map(|_| self.frame.clone()),
        }
    }

    /// What the history counts for this change: its frame, and the record it
    /// keeps alive after the table let go of it (the one before).
    fn weight(&self) -> usize {
        self.frame.len()
            + self
                .before
                .as_ref()
                .map_or(0, |b| b.host().len() + b.metadata().len())
    }
}

/// The change log: a bounded history plus a bounded live broadcast.
#[derive(Debug)]
pub(crate) struct Feed {
    /// The latest changes, oldest first, revisions strictly increasing.
    history: VecDeque<Change>,
    /// Most changes kept in `history`.
    capacity: usize,
    /// Most frame bytes kept in `history`.
    max_bytes: usize,
    /// Frame bytes currently in `history`.
    bytes: usize,
    /// Every change with a revision above `base` is in `history`: `since >= base`
    /// can be resumed.
    base: u64,
    /// Live watchers.
    live: broadcast::Sender<Change>,
    /// The latest snapshot event and its revision, held weakly: while any watcher
    /// still holds it (in its queue, or hyper in its write buffer), later watchers
    /// share the same bytes and get the changes since from `history`, so a snapshot
    /// is rendered once per `buffer` changes, not once per watcher; once no watcher
    /// holds it, it is freed. (A node whose lease ran out but whose expiry is not
    /// logged yet may still be in it: its `delete` follows, so snapshot plus changes
    /// stay exact.)
    snapshot: Option<(u64, Weak<Bytes>)>,
    /// Most changes a watcher may get after a shared snapshot (the live buffer: a
    /// watcher may be this far behind anyway).
    buffer: usize,
}

/// The owner of a shared snapshot's bytes: what [`Bytes::from_owner`] keeps alive
/// for every watcher's copy of the handle.
struct SharedFrame(Arc<Bytes>);

impl AsRef<[u8]> for SharedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A snapshot to start a watcher with: the snapshot event, then the changes after it.
#[derive(Debug)]
pub(crate) struct SnapshotStart {
    /// The snapshot event (shared by every watcher that got it).
    pub frame: Bytes,
    /// Changes between the snapshot's revision and now, oldest first.
    pub since: Vec<Bytes>,
}

/// Why a watcher cannot resume where it asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resync {
    /// The center's current revision.
    pub revision: u64,
    /// What went wrong, for the client and its logs.
    pub message: String,
}

impl Feed {
    /// An empty feed whose history starts after `base` (the revision reached by
    /// loading the store), keeping at most `capacity` changes and `max_bytes` of them,
    /// and buffering `buffer` changes per watcher.
    pub fn new(base: u64, capacity: usize, max_bytes: usize, buffer: usize) -> Self {
        let (live, _) = broadcast::channel(buffer.max(1));
        Self {
            history: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            max_bytes,
            bytes: 0,
            base,
            live,
            snapshot: None,
            buffer: buffer.max(1),
        }
    }

    /// A snapshot for a watcher starting at `revision` (the current one): the shared
    /// snapshot still held by other watchers plus the changes since, when the history
    /// has them and they are at most `buffer`; else a new one rendered by `render`
    /// (which becomes the shared one).
    pub fn snapshot(&mut self, revision: u64, render: impl FnOnce() -> Bytes) -> SnapshotStart {
        if let Some((at, shared)) = &self.snapshot
            && let Some(frame) = shared.upgrade()
            && let Ok(since) = self.resume_frames(*at, revision)
            && since.len() <= self.buffer
        {
            return SnapshotStart {
                frame: Bytes::from_owner(SharedFrame(frame)),
                since,
            };
        }
        let frame = Arc::new(render());
        self.snapshot = Some((revision, Arc::downgrade(&frame)));
        SnapshotStart {
            frame: Bytes::from_owner(SharedFrame(frame)),
            since: Vec::new(),
        }
    }

    /// Records that `id` was registered (or replaced, `before` being its earlier
    /// record) with `record` at `revision`.
    pub fn put(
        &mut self,
        revision: u64,
        id: &Arc<str>,
        record: &NodeRecord,
        before: Option<NodeRecord>,
    ) {
        self.push(Change {
            revision,
            frame: put_frame(revision, id, record),
            id: Arc::clone(id),
            before,
            after: Some(record.clone()),
        });
    }

    /// Records that `id` (whose record was `before`) left at `revision`, `reason`
    /// being `deregister` or `expire`.
    pub fn delete(&mut self, revision: u64, id: &str, reason: &str, before: NodeRecord) {
        self.push(Change {
            revision,
            frame: delete_frame(revision, id, reason),
            id: Arc::from(id),
            before: Some(before),
            after: None,
        });
    }

    /// Appends to the history (dropping the oldest beyond capacity) and broadcasts.
    fn push(&mut self, change: Change) {
        self.history.push_back(change.clone());
        self.bytes += change.weight();
        while self.history.len() > self.capacity || self.bytes > self.max_bytes {
            let Some(oldest) = self.history.pop_front() else {
                break;
            };
            self.bytes -= oldest.weight();
            self.base = oldest.revision;
        }
        // No receivers is fine: nobody watches.
        let _ = self.live.send(change);
    }

    /// The frames of every change after `since` and a receiver of the later ones, or
    /// why `since` cannot be resumed (`current` is the center's revision).
    pub fn resume(
        &self,
        since: u64,
        current: u64,
    ) -> Result<(Vec<Bytes>, broadcast::Receiver<Change>), Resync> {
        let frames = self.resume_frames(since, current)?;
        Ok((frames, self.live.subscribe()))
    }

    /// Every change after `since` and a receiver of the later ones, or why `since`
    /// cannot be resumed: for a filtered watcher, which scopes them (see
    /// [`Change::scoped`]) after the state lock is released.
    pub fn resume_changes(
        &self,
        since: u64,
        current: u64,
    ) -> Result<(Vec<Change>, broadcast::Receiver<Change>), Resync> {
        let start = self.resumable(since, current)?;
        let changes = self.history.range(start..).cloned().collect();
        Ok((changes, self.live.subscribe()))
    }

    /// The frames of every change after `since`, or why `since` cannot be resumed.
    fn resume_frames(&self, since: u64, current: u64) -> Result<Vec<Bytes>, Resync> {
        let start = self.resumable(since, current)?;
        let frames = self
            .history
            .range(start..)
            .map(|c| c.frame.clone())
            .collect();
        Ok(frames)
    }

    /// Where in the history the changes after `since` start, or why `since` cannot
    /// be resumed.
    fn resumable(&self, since: u64, current: u64) -> Result<usize, Resync> {
        if since > current {
            return Err(Resync {
                revision: current,
                message: format!(
                    "revision {since} is ahead of this center's revision {current}; re-list from {}",
                    isek::wire::center::NODES_PATH
                ),
            });
        }
        if since < self.base {
            return Err(Resync {
                revision: current,
                message: isek::wire::center::compacted_message(since, self.base),
            });
        }
        Ok(self.history.partition_point(|c| c.revision <= since))
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.live.subscribe()
    }
}

/// A random epoch, below 2^53 so JavaScript clients read it exactly.
pub fn new_epoch() -> u64 {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    hasher.finish() & ((1 << 53) - 1)
}

/// The epoch of a registry shared by a center cluster: the same on every center of
/// etcd cluster `cluster_id` serving `prefix` (revisions are etcd's there, valid on
/// every center), below 2^53 like [`new_epoch`].
pub fn shared_epoch(cluster_id: u64, prefix: &str) -> u64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(cluster_id.to_be_bytes())
        .chain_update(prefix.trim_end_matches('/').as_bytes())
        .finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) & ((1 << 53) - 1)
}

/// What one watcher's stream starts with.
#[derive(Debug)]
pub(crate) struct WatchStart {
    /// Frames to send before live changes (hello, then a snapshot or the backlog).
    pub initial: Vec<Bytes>,
    /// Live changes after those.
    pub live: broadcast::Receiver<Change>,
    /// Revision of the last change covered by `initial`.
    pub after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> NodeRecord {
        NodeRecord::new("127.0.0.1", 9000, r#"{"role":"planner"}"#)
    }

    #[test]
    fn frames_are_one_line_sse_events() {
        let mut feed = Feed::new(0, 4, 1 << 20, 4);
        feed.put(1, &Arc::from("n\u{e9}"), &record(), None);
        feed.delete(2, "n\u{e9}", "expire", record());
        let (frames, _) = feed.resume(0, 2).unwrap();
        let text: Vec<String> = frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "event: put\nid: 1\ndata: {\"node\":{\"host\":\"127.0.0.1\",\"metadata\":{\"role\":\"planner\"},\"node_id\":\"n\\u00e9\",\"port\":9000},\"revision\":1}\n\n",
                "event: delete\nid: 2\ndata: {\"node_id\":\"n\\u00e9\",\"reason\":\"expire\",\"revision\":2}\n\n",
            ]
        );
    }

    #[test]
    fn resume_replays_exactly_the_retained_suffix() {
        let mut feed = Feed::new(10, 3, 1 << 20, 4);
        for rev in 11..=15 {
            feed.put(rev, &Arc::from("a"), &record(), None);
        }
        // History holds 13..=15; base is 12.
        let revs = |since| {
            feed.resume(since, 15).map(|(frames, _)| {
                frames
                    .iter()
                    .map(|f| {
                        let t = String::from_utf8_lossy(f).into_owned();
                        t.lines()
                            .find_map(|l| l.strip_prefix("id: ").map(str::to_owned))
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(revs(12), Ok(vec!["13".into(), "14".into(), "15".into()]));
        assert_eq!(revs(14), Ok(vec!["15".into()]));
        assert_eq!(revs(15), Ok(vec![]));
        let compacted = revs(11).unwrap_err();
        assert!(compacted.message.contains("revision 11 is compacted"));
        assert!(revs(16).unwrap_err().message.contains("ahead"));
    }

    #[test]
    fn zero_history_resumes_only_the_current_revision() {
        let mut feed = Feed::new(0, 0, 1 << 20, 4);
        feed.put(1, &Arc::from("a"), &record(), None);
        assert!(feed.resume(1, 1).is_ok());
        assert!(feed.resume(0, 1).is_err());
    }

    #[test]
    fn history_is_bounded_by_bytes_too() {
        let frame_len = {
            let mut one = Feed::new(0, 10, 1 << 20, 4);
            one.put(1, &Arc::from("a"), &record(), None);
            one.bytes
        };
        let mut feed = Feed::new(0, 100, frame_len * 2, 4);
        for rev in 1..=5 {
            feed.put(rev, &Arc::from("a"), &record(), None);
        }
        assert_eq!(feed.history.len(), 2);
        assert!(feed.bytes <= frame_len * 2);
        assert!(feed.resume(3, 5).is_ok());
        assert!(feed.resume(2, 5).is_err());
    }

    #[test]
    fn a_snapshot_is_shared_while_held_then_freed() {
        let mut feed = Feed::new(0, 100, 1 << 20, 2);
        let mut renders = 0;
        let mut render = |rev: u64| {
            renders += 1;
            Bytes::from(format!("snapshot at {rev}"))
        };
        let first = feed.snapshot(0, || render(0));
        feed.put(1, &Arc::from("a"), &record(), None);
        // Held by a watcher: shared, with the change since.
        let second = feed.snapshot(1, || render(1));
        assert_eq!(second.frame, first.frame);
        assert_eq!(second.frame.as_ptr(), first.frame.as_ptr());
        assert_eq!(second.since.len(), 1);
        // More changes since than a watcher may lag: a new rendering.
        feed.put(2, &Arc::from("a"), &record(), None);
        feed.put(3, &Arc::from("a"), &record(), None);
        let third = feed.snapshot(3, || render(3));
        assert_eq!(&third.frame[..], b"snapshot at 3");
        assert!(third.since.is_empty());
        // Nobody holds it any more: freed, rendered again.
        drop(third);
        feed.put(4, &Arc::from("a"), &record(), None);
        let fourth = feed.snapshot(4, || render(4));
        assert_eq!(&fourth.frame[..], b"snapshot at 4");
        drop((first, second, fourth));
        assert_eq!(renders, 3);
    }

    #[test]
    fn a_scoped_change_is_a_put_a_filter_leave_or_nothing() {
        let filter = Filter::compile(r#"metadata.role == "planner""#).unwrap();
        let planner = record();
        let worker = NodeRecord::new("127.0.0.1", 9000, r#"{"role":"worker"}"#);
        let mut feed = Feed::new(0, 16, 1 << 20, 16);
        let a: Arc<str> = Arc::from("a");
        feed.put(1, &a, &worker, None);
        feed.put(2, &a, &planner, Some(worker.clone()));
        feed.put(3, &a, &planner, Some(planner.clone()));
        feed.put(4, &a, &worker, Some(planner.clone()));
        feed.delete(5, "a", "deregister", worker.clone());
        feed.put(6, &a, &planner, None);
        feed.delete(7, "a", "expire", planner.clone());
        let (changes, _) = feed.resume_changes(0, 7).unwrap();
        let scoped: Vec<Option<String>> = changes
            .iter()
            .map(|c| {
                c.scoped(&filter)
                    .map(|f| String::from_utf8_lossy(&f).into_owned())
            })
            .collect();
        let shared = |at: usize| Some(String::from_utf8_lossy(&changes[at].frame).into_owned());
        assert_eq!(scoped[0], None, "a non-matching newcomer");
        assert_eq!(scoped[1], shared(1), "starts matching: the shared put");
        assert_eq!(scoped[2], shared(2), "an update that still matches");
        assert_eq!(
            scoped[3].as_deref(),
            Some(
                "event: delete\nid: 4\ndata: {\"node_id\":\"a\",\"reason\":\"filter\",\"revision\":4}\n\n"
            ),
            "stops matching: a leave"
        );
        assert_eq!(scoped[4], None, "a non-matching node leaves unseen");
        assert_eq!(scoped[5], shared(5));
        assert_eq!(
            scoped[6],
            shared(6),
            "a matching node expires: the real reason"
        );
    }

    #[test]
    fn epochs_fit_in_53_bits() {
        assert!(new_epoch() < 1 << 53);
    }
}
