//! [`PeerView`]: a live, local copy of the registry's membership.
//!
//! A node (or a watcher such as `isek watch`) needs to know its peers without asking
//! for the full list all the time, as the original ISEK did every 5 s. The view takes
//! a full list once and then only changes, from [`Registry::watch_nodes`] when the
//! backend can push them, or by polling [`Registry::get_available_nodes`] and diffing
//! when it cannot. Either way subscribers see the same [`PeerChange`]s.
//!
//! When the change stream ends or fails, the view reconnects with [`Backoff`] and takes
//! the stream's new snapshot as the truth, diffing it against what it had, so it
//! converges to the registry's state even if changes were missed meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::backoff::Backoff;
use crate::filter::Filter;
use crate::{Error, NodeEvent, NodeEventStream, NodeInfo, Registry};

/// How a [`PeerView`] follows the registry.
#[derive(Debug, Clone)]
pub struct PeerViewConfig {
    /// Time between two full lists when the backend has no change stream (original: 5 s).
    pub poll_interval: Duration,
    /// A node id left out of the view: a node usually does not count itself as a peer.
    pub exclude: Option<String>,
    /// Only peers matching this filter are in the view: one that stops matching
    /// leaves it ([`PeerChange::Left`]), one that starts matching joins it. The
    /// same evaluator as a center's `?filter=`, run here on every entry, so it
    /// works on every backend (etcd included).
    pub filter: Option<Filter>,
    /// Wait between reconnection attempts after the stream or a list failed.
    pub backoff: Backoff,
    /// Longest wait for one list or for opening the stream, so a frozen registry is
    /// noticed instead of hanging the view.
    pub call_timeout: Duration,
    /// Changes buffered per subscriber; one that falls further behind is resynced.
    pub channel_capacity: usize,
}

impl Default for PeerViewConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            exclude: None,
            filter: None,
            backoff: Backoff::default(),
            call_timeout: Duration::from_secs(10),
            channel_capacity: 1024,
        }
    }
}

/// One change in the set of peers, as a subscriber sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerChange {
    /// A node appeared.
    Joined(NodeInfo),
    /// A known node re-registered with a different address, metadata or key. (A new
    /// lease deadline alone is not a change.)
    Updated {
        /// The entry before.
        previous: NodeInfo,
        /// The entry now.
        current: NodeInfo,
    },
    /// A node left: deregistered or its lease expired. Carries its last known entry.
    Left(NodeInfo),
}

impl PeerChange {
    /// Id of the node the change is about.
    pub fn node_id(&self) -> &str {
        match self {
            PeerChange::Joined(node) | PeerChange::Left(node) => &node.node_id,
            PeerChange::Updated { current, .. } => &current.node_id,
        }
    }
}

/// What a [`PeerSubscription`] yields.
// Moved once per change, never stored in bulk: boxing would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PeerUpdate {
    /// The next change, in order.
    Change(PeerChange),
    /// The subscriber fell behind and changes were dropped: here is the complete current
    /// set of peers; changes after it follow as usual.
    Resync(BTreeMap<String, NodeInfo>),
}

/// Where a live view gets its changes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSource {
    /// The registry's change stream ([`Registry::watch_nodes`]).
    Stream,
    /// Full lists every [`PeerViewConfig::poll_interval`], diffed locally.
    Poll,
}

/// How far a [`PeerView`] can be trusted.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerSync {
    /// No full list received yet; the view is empty.
    Pending,
    /// The view follows the registry.
    Live {
        /// Stream or polling.
        source: PeerSource,
    },
    /// Contact with the registry was lost; the view keeps the last known peers (none if
    /// it was never live) while it reconnects.
    Stale {
        /// When contact was lost.
        since: SystemTime,
        /// The latest failure.
        last_error: Error,
    },
}

/// The peers a view currently knows, and the bookkeeping to turn events into changes.
#[derive(Debug, Default)]
struct PeerTable {
    /// Live peers by node id.
    peers: BTreeMap<String, NodeInfo>,
    /// Revision of the latest applied event, to drop replays; 0 when unknown (polling).
    revision: u64,
    /// Node id never admitted to the table.
    exclude: Option<String>,
    /// Entries not matching it are not admitted (and leave when they stop matching).
    filter: Option<Filter>,
}

/// Whether two entries describe the same registration, ignoring the lease deadline.
fn same_entry(a: &NodeInfo, b: &NodeInfo) -> bool {
    a.node_id == b.node_id
        && a.host == b.host
        && a.port == b.port
        && a.metadata == b.metadata
        && a.public_key == b.public_key
}

impl PeerTable {
    /// A table leaving out `exclude` and the entries `filter` does not match.
    fn new(exclude: Option<String>, filter: Option<Filter>) -> Self {
        Self {
            exclude,
            filter,
            ..Self::default()
        }
    }

    /// Whether `revision` is a replay of something already applied.
    fn is_replay(&self, revision: u64) -> bool {
        revision != 0 && self.revision != 0 && revision <= self.revision
    }

    /// Applies one registry event and returns what changed for subscribers.
    fn apply(&mut self, event: NodeEvent) -> Vec<PeerChange> {
        match event {
            NodeEvent::Snapshot { revision, nodes } => {
                self.revision = revision;
                self.replace(nodes)
            }
            NodeEvent::Put { revision, node } => {
                if self.is_replay(revision) {
                    return Vec::new();
                }
                self.revision = revision;
                self.put(node).into_iter().collect()
            }
            NodeEvent::Delete { revision, node_id } => {
                if self.is_replay(revision) {
                    return Vec::new();
                }
                self.revision = revision;
                self.peers
                    .remove(&node_id)
                    .map(PeerChange::Left)
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Inserts or replaces one entry; `None` when nothing a subscriber cares about changed.
    fn put(&mut self, node: NodeInfo) -> Option<PeerChange> {
        if self.exclude.as_deref() == Some(node.node_id.as_str()) {
            return None;
        }
        if let Some(filter) = &self.filter
            && !filter.matches(&node)
        {
            return self.peers.remove(&node.node_id).map(PeerChange::Left);
        }
        match self.peers.insert(node.node_id.clone(), node.clone()) {
            None => Some(PeerChange::Joined(node)),
            Some(previous) if same_entry(&previous, &node) => None,
            Some(previous) => Some(PeerChange::Updated {
                previous,
                current: node,
            }),
        }
    }

    /// Makes `nodes` the whole table and returns the difference.
    fn replace(&mut self, nodes: BTreeMap<String, NodeInfo>) -> Vec<PeerChange> {
        let mut changes = Vec::new();
        let old = std::mem::take(&mut self.peers);
        for (id, node) in &old {
            if !nodes.contains_key(id) {
                changes.push(PeerChange::Left(node.clone()));
            }
        }
        self.peers = old;
        for (_, node) in nodes {
            changes.extend(self.put(node));
        }
        let departed: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                PeerChange::Left(node) => Some(node.node_id.clone()),
                _ => None,
            })
            .collect();
        for id in departed {
            self.peers.remove(&id);
        }
        changes
    }
}

/// State shared by a view, its task and its subscriptions.
#[derive(Debug)]
struct Shared {
    /// The peers, updated and broadcast under one lock so a subscriber that takes a
    /// copy and subscribes at once sees every later change exactly once.
    table: Mutex<PeerTable>,
    /// Changes to subscribers.
    changes: broadcast::Sender<PeerChange>,
    /// Trustworthiness of the view.
    sync: watch::Sender<PeerSync>,
}

impl Shared {
    /// The table, even if a panicking thread poisoned the lock (the map stays valid).
    fn table(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `event` and tells subscribers.
    fn apply(&self, event: NodeEvent) {
        let mut table = self.table();
        for change in table.apply(event) {
            tracing::debug!(node_id = change.node_id(), ?change, "peer change");
            // No receivers is not an error: nobody subscribed yet.
            let _ = self.changes.send(change);
        }
    }

    /// A copy of the peers and a receiver of every change after it.
    fn subscribe(&self) -> (BTreeMap<String, NodeInfo>, broadcast::Receiver<PeerChange>) {
        let table = self.table();
        (table.peers.clone(), self.changes.subscribe())
    }

    /// Records that the view follows the registry through `source`.
    fn live(&self, source: PeerSource) {
        self.sync.send_if_modified(|sync| {
            let next = PeerSync::Live { source };
            if *sync == next {
                return false;
            }
            tracing::info!(?source, "peer view live");
            *sync = next;
            true
        });
    }

    /// Records a failure to reach the registry.
    fn stale(&self, error: Error) {
        tracing::warn!(%error, "peer view lost contact with the registry");
        self.sync.send_modify(|sync| {
            let since = match sync {
                PeerSync::Stale { since, .. } => *since,
                _ => SystemTime::now(),
            };
            *sync = PeerSync::Stale {
                since,
                last_error: error,
            };
        });
    }
}

/// A live copy of the registry's membership, kept current by a background task.
///
/// Create one with [`PeerView::start`] (standalone, e.g. for a watcher) or get the one
/// a [`super::NodeHandle`] keeps. Dropping the view stops its task.
#[derive(Debug)]
pub struct PeerView {
    /// Peers, change channel and status.
    shared: Arc<Shared>,
    /// The task following the registry; aborted on drop.
    task: JoinHandle<()>,
}

impl Drop for PeerView {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PeerView {
    /// Starts following `registry`. Must be called inside a Tokio runtime.
    pub fn start(registry: Arc<dyn Registry>, config: PeerViewConfig) -> Self {
        let (changes, _) = broadcast::channel(config.channel_capacity.max(1));
        let (sync, _) = watch::channel(PeerSync::Pending);
        let shared = Arc::new(Shared {
            table: Mutex::new(PeerTable::new(
                config.exclude.clone(),
                config.filter.clone(),
            )),
            changes,
            sync,
        });
        let task = tokio::spawn(follow(Arc::clone(&shared), registry, config));
        Self { shared, task }
    }

    /// A copy of every known peer, keyed by node id.
    pub fn peers(&self) -> BTreeMap<String, NodeInfo> {
        self.shared.table().peers.clone()
    }

    /// The peer `node_id`, if it is known.
    pub fn peer(&self, node_id: &str) -> Option<NodeInfo> {
        self.shared.table().peers.get(node_id).cloned()
    }

    /// Every peer for which `predicate` holds, e.g. a metadata lookup, in node id order.
    pub fn find(&self, predicate: impl Fn(&NodeInfo) -> bool) -> Vec<NodeInfo> {
        self.shared
            .table()
            .peers
            .values()
            .filter(|node| predicate(node))
            .cloned()
            .collect()
    }

    /// Revision of the latest change applied, as the registry numbers them (etcd's
    /// revision, the center's change number); 0 when the view polls.
    pub fn revision(&self) -> u64 {
        self.shared.table().revision
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.shared.table().peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A subscription to every change from now on.
    pub fn subscribe(&self) -> PeerSubscription {
        self.subscribe_with_peers().1
    }

    /// The current peers and a subscription to every change after them, taken
    /// atomically: applying the changes to the copy always gives the current view.
    pub fn subscribe_with_peers(&self) -> (BTreeMap<String, NodeInfo>, PeerSubscription) {
        let (peers, rx) = self.shared.subscribe();
        let subscription = PeerSubscription {
            rx,
            shared: Arc::downgrade(&self.shared),
        };
        (peers, subscription)
    }

    /// How far the view can be trusted right now.
    pub fn sync(&self) -> PeerSync {
        self.shared.sync.borrow().clone()
    }

    /// A receiver notified whenever [`PeerView::sync`] changes (e.g. to wait until live).
    pub fn sync_changes(&self) -> watch::Receiver<PeerSync> {
        self.shared.sync.subscribe()
    }
}

/// A stream of [`PeerUpdate`]s from one [`PeerView`].
#[derive(Debug)]
pub struct PeerSubscription {
    /// Changes in order.
    rx: broadcast::Receiver<PeerChange>,
    /// The view, to take a fresh copy when this subscriber lagged; weak so that a
    /// forgotten subscription does not keep a dropped view's channel open.
    shared: Weak<Shared>,
}

impl PeerSubscription {
    /// The next update; `None` once the view is dropped.
    pub async fn recv(&mut self) -> Option<PeerUpdate> {
        match self.rx.recv().await {
            Ok(change) => Some(PeerUpdate::Change(change)),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let shared = self.shared.upgrade()?;
                tracing::warn!(missed, "peer subscriber fell behind; resyncing it");
                let (peers, rx) = shared.subscribe();
                self.rx = rx;
                Some(PeerUpdate::Resync(peers))
            }
        }
    }
}

/// The view's task: follow the change stream, or poll when there is none.
async fn follow(shared: Arc<Shared>, registry: Arc<dyn Registry>, config: PeerViewConfig) {
    let mut failures: u32 = 0;
    loop {
        let error = match timeout(config.call_timeout, registry.watch_nodes()).await {
            Ok(Ok(Some(stream))) => follow_stream(&shared, stream, &mut failures).await,
            Ok(Ok(None)) => return poll(&shared, registry.as_ref(), &config).await,
            Ok(Err(error)) => error,
            Err(_) => Error::Unavailable(format!(
                "opening the change stream timed out after {:?}",
                config.call_timeout
            )),
        };
        shared.stale(error);
        failures = failures.saturating_add(1);
        sleep(config.backoff.delay(failures)).await;
    }
}

/// Applies a stream's events until it fails or ends; returns why it stopped.
async fn follow_stream(shared: &Shared, mut stream: NodeEventStream, failures: &mut u32) -> Error {
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                let snapshot = matches!(event, NodeEvent::Snapshot { .. });
                shared.apply(event);
                if snapshot {
                    *failures = 0;
                    shared.live(PeerSource::Stream);
                }
            }
            Some(Err(error)) => return error,
            None => return Error::Unavailable("the change stream ended".into()),
        }
    }
}

/// Lists the registry every poll interval (sooner after a failure) and diffs.
async fn poll(shared: &Shared, registry: &dyn Registry, config: &PeerViewConfig) {
    let retry = config.backoff.capped(config.poll_interval);
    let mut failures: u32 = 0;
    loop {
        let listed = timeout(config.call_timeout, registry.get_available_nodes()).await;
        let wait = match listed {
            Ok(Ok(nodes)) => {
                failures = 0;
                shared.apply(NodeEvent::Snapshot { revision: 0, nodes });
                shared.live(PeerSource::Poll);
                config.poll_interval
            }
            Ok(Err(error)) => {
                shared.stale(error);
                failures = failures.saturating_add(1);
                retry.delay(failures)
            }
            Err(_) => {
                shared.stale(Error::Unavailable(format!(
                    "listing nodes timed out after {:?}",
                    config.call_timeout
                )));
                failures = failures.saturating_add(1);
                retry.delay(failures)
            }
        };
        sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16) -> NodeInfo {
        NodeInfo::new(id, "127.0.0.1", port, crate::Metadata::new())
    }

    fn snapshot(revision: u64, nodes: &[NodeInfo]) -> NodeEvent {
        NodeEvent::Snapshot {
            revision,
            nodes: nodes
                .iter()
                .map(|n| (n.node_id.clone(), n.clone()))
                .collect(),
        }
    }

    #[test]
    fn snapshot_diff_reports_joins_updates_and_leaves() {
        let mut table = PeerTable::new(None, None);
        let first = table.apply(snapshot(1, &[node("a", 1), node("b", 2)]));
        assert_eq!(
            first,
            [
                PeerChange::Joined(node("a", 1)),
                PeerChange::Joined(node("b", 2))
            ]
        );
        let second = table.apply(snapshot(5, &[node("b", 3), node("c", 4)]));
        assert_eq!(
            second,
            [
                PeerChange::Left(node("a", 1)),
                PeerChange::Updated {
                    previous: node("b", 2),
                    current: node("b", 3)
                },
                PeerChange::Joined(node("c", 4)),
            ]
        );
        assert_eq!(table.peers.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn lease_deadline_alone_is_not_a_change_but_is_kept() {
        let mut table = PeerTable::new(None, None);
        table.apply(snapshot(0, &[node("a", 1)]));
        let mut renewed = node("a", 1);
        renewed.expires_at = Some(42.0);
        assert!(table.apply(snapshot(0, &[renewed])).is_empty());
        assert_eq!(table.peers["a"].expires_at, Some(42.0));
    }

    #[test]
    fn excluded_node_never_appears() {
        let mut table = PeerTable::new(Some("me".into()), None);
        let changes = table.apply(snapshot(1, &[node("me", 1), node("a", 2)]));
        assert_eq!(changes, [PeerChange::Joined(node("a", 2))]);
        let put = table.apply(NodeEvent::Put {
            revision: 2,
            node: node("me", 3),
        });
        assert!(put.is_empty());
        assert!(!table.peers.contains_key("me"));
    }

    #[test]
    fn a_filtered_table_admits_matches_only_and_lets_leavers_go() {
        let Ok(filter) = Filter::compile("port >= 2") else {
            unreachable!("compiles")
        };
        let mut table = PeerTable::new(None, Some(filter));
        let changes = table.apply(snapshot(1, &[node("a", 1), node("b", 2)]));
        assert_eq!(changes, [PeerChange::Joined(node("b", 2))]);
        // "a" starts matching: it joins; "b" stops: it leaves, once.
        let join = table.apply(NodeEvent::Put {
            revision: 2,
            node: node("a", 3),
        });
        assert_eq!(join, [PeerChange::Joined(node("a", 3))]);
        let leave = table.apply(NodeEvent::Put {
            revision: 3,
            node: node("b", 1),
        });
        assert_eq!(leave, [PeerChange::Left(node("b", 2))]);
        let again = table.apply(NodeEvent::Put {
            revision: 4,
            node: node("b", 0),
        });
        assert!(again.is_empty());
        // A resync drops what no longer matches.
        let resync = table.apply(snapshot(5, &[node("a", 1), node("c", 5)]));
        assert_eq!(
            resync,
            [
                PeerChange::Left(node("a", 3)),
                PeerChange::Joined(node("c", 5))
            ]
        );
        assert_eq!(table.peers.keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn replayed_revisions_are_ignored() {
        let mut table = PeerTable::new(None, None);
        table.apply(snapshot(10, &[node("a", 1)]));
        let stale_put = table.apply(NodeEvent::Put {
            revision: 9,
            node: node("b", 2),
        });
        assert!(stale_put.is_empty());
        let stale_delete = table.apply(NodeEvent::Delete {
            revision: 10,
            node_id: "a".into(),
        });
        assert!(stale_delete.is_empty());
        let delete = table.apply(NodeEvent::Delete {
            revision: 11,
            node_id: "a".into(),
        });
        assert_eq!(delete, [PeerChange::Left(node("a", 1))]);
        let unknown = table.apply(NodeEvent::Delete {
            revision: 12,
            node_id: "zz".into(),
        });
        assert!(unknown.is_empty());
        // A new snapshot resets the revision, even to a lower one (a restarted registry).
        let restarted = table.apply(snapshot(1, &[node("b", 2)]));
        assert_eq!(restarted, [PeerChange::Joined(node("b", 2))]);
        assert_eq!(table.revision, 1);
    }
}
