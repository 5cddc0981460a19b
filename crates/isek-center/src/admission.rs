//! [`Connections`]: the table of open connections behind `--max-connections`, and who
//! makes room when it is full.
//!
//! Every accepted connection takes a [`Slot`]. At the cap, the newcomer is not
//! refused: the oldest connection that never completed a request is closed instead
//! (nginx reclaims its "reusable" connections the same way), else the oldest one with
//! no request in flight. Only when every connection is busy with a request is the
//! newcomer refused. So idle sockets (an attacker's, or a client that connected and
//! never spoke) can never keep a client with a request out. The same reclaim frees a
//! descriptor when `accept` fails for lack of one (EMFILE).
//!
//! A slot also counts its connection's requests in flight ([`Slot::request`]), which
//! the transport reads for the idle limit.
//!
//! [`Watchers`] caps change streams the same way: in total (`--max-watchers`, 503)
//! and per client address (`--max-watchers-per-ip`, 429).
//!
//! Level 4 (transport): locks and notifications, no socket and no HTTP type.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, watch};

/// Descriptors kept free for everything that is not a client connection (the store
/// and its journal, the listener, logs, the runtime): the default cap leaves these.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The default cap when the descriptor limit allows more.
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// The default `--max-connections`: 10,000, or fewer when the process may open fewer
/// descriptors (its soft RLIMIT_NOFILE less a reserve). Why: a cap above the
/// descriptor limit is never reached, and then reclaiming starts only on EMFILE.
pub fn default_max_connections() -> usize {
    let cap = match descriptor_limit() {
        Some(files) => files
            .saturating_sub(RESERVED_DESCRIPTORS)
            .clamp(1, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    };
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The soft limit of open files of this process, if it has one.
#[cfg(unix)]
fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// No descriptor limit is known off Unix.
#[cfg(not(unix))]
fn descriptor_limit() -> Option<u64> {
    None
}

/// One open connection in the table.
#[derive(Debug)]
struct Entry {
    /// Notified to close the connection.
    close: Arc<Notify>,
    /// Requests in flight on it.
    in_flight: Arc<watch::Sender<usize>>,
}

/// The table itself.
#[derive(Debug, Default)]
struct Table {
    /// Id of the next connection (ids grow with accept order: the first is the oldest).
    next: u64,
    /// Open connections not yet told to close.
    open: BTreeMap<u64, Entry>,
    /// Those of `open` that have not completed a request.
    fresh: BTreeSet<u64>,
}

impl Table {
    /// Tells the oldest reclaimable connection to close and forgets it: the oldest
    /// fresh one, else the oldest without a request in flight. False: all are busy.
    fn reclaim(&mut self) -> bool {
        let victim = match self.fresh.pop_first() {
            Some(id) => Some(id),
            None => self
                .open
                .iter()
                .find(|(_, entry)| *entry.in_flight.borrow() == 0)
                .map(|(&id, _)| id),
        };
        match victim.and_then(|id| self.open.remove(&id)) {
            Some(entry) => {
                entry.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The open connections of one server and its cap.
#[derive(Debug)]
pub struct Connections {
    /// Most connections in the table.
    limit: usize,
    /// The table.
    table: Mutex<Table>,
}

impl Connections {
    /// An empty table holding at most `limit` connections (at least one).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    /// The table, also after a panic elsewhere (its state is always consistent).
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection just accepted, making room at the cap; `None` when
    /// the table is full of connections with requests in flight.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table();
        if table.open.len() >= self.limit && !table.reclaim() {
            return None;
        }
        let id = table.next;
        table.next += 1;
        let close = Arc::new(Notify::new());
        let in_flight = Arc::new(watch::Sender::new(0));
        table.open.insert(
            id,
            Entry {
                close: Arc::clone(&close),
                in_flight: Arc::clone(&in_flight),
            },
        );
        table.fresh.insert(id);
        Some(Slot {
            id,
            connections: Arc::clone(self),
            close,
            in_flight,
        })
    }

    /// Closes the oldest reclaimable connection (accept ran out of descriptors);
    /// false when there is none.
    pub fn reclaim(&self) -> bool {
        self.table().reclaim()
    }

    /// Connections in the table (those told to close are no longer counted).
    pub fn len(&self) -> usize {
        self.table().open.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One connection's place in the table; leaves it on drop.
#[derive(Debug)]
pub struct Slot {
    /// Its id (accept order).
    id: u64,
    /// The table.
    connections: Arc<Connections>,
    /// Notified when the connection must close to make room.
    close: Arc<Notify>,
    /// Its requests in flight.
    in_flight: Arc<watch::Sender<usize>>,
}

impl Slot {
    /// Completes when the connection is told to close to make room.
    pub async fn reclaimed(&self) {
        self.close.notified().await;
    }

    /// A request started on the connection; it counts as in flight until the guard
    /// is dropped (with the response body, for a streamed answer).
    pub fn request(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// The connection completed a request: no longer first in line for reclaiming.
    pub fn completed(&self) {
        self.connections.table().fresh.remove(&self.id);
    }

    /// Watches the connection's requests in flight (for the idle limit).
    pub fn in_flight(&self) -> watch::Receiver<usize> {
        self.in_flight.subscribe()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.connections.table();
        table.open.remove(&self.id);
        table.fresh.remove(&self.id);
    }
}

/// A request in flight on a connection (see [`Slot::request`]).
#[derive(Debug)]
pub struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The address a request came from, put into its extensions by the transport (absent
/// for requests driven without a socket, as in tests through the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Why a change stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherRefusal {
    /// The center has `--max-watchers` streams open.
    Total(usize),
    /// The client's address has `--max-watchers-per-ip` streams open.
    PerAddress(usize),
}

/// Counts of open change streams, in total and per client address.
#[derive(Debug, Default)]
struct WatcherCounts {
    /// Streams open.
    total: usize,
    /// Streams open per address (no zero entries).
    by_address: HashMap<IpAddr, usize>,
}

/// The change streams of one center and their caps (`--max-watchers`,
/// `--max-watchers-per-ip`).
#[derive(Debug)]
pub struct Watchers {
    /// Most streams in total.
    max_total: usize,
    /// Most streams per address.
    max_per_address: usize,
    /// The counts.
    counts: Mutex<WatcherCounts>,
}

impl Watchers {
    /// No stream open yet; at most `max_total`, and `max_per_address` per address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            counts: Mutex::new(WatcherCounts::default()),
        })
    }

    /// The counts, also after a panic elsewhere (they are always consistent).
    fn counts(&self) -> std::sync::MutexGuard<'_, WatcherCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more stream from `client` (unknown: counted in the total
    /// only), or which cap it hits.
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<WatcherSlot, WatcherRefusal> {
        let mut counts = self.counts();
        if let Some(ip) = client
            && counts.by_address.get(&ip).copied().unwrap_or(0) >= self.max_per_address
        {
            return Err(WatcherRefusal::PerAddress(self.max_per_address));
        }
        if counts.total >= self.max_total {
            return Err(WatcherRefusal::Total(self.max_total));
        }
        counts.total += 1;
        if let Some(ip) = client {
            *counts.by_address.entry(ip).or_insert(0) += 1;
        }
        Ok(WatcherSlot {
            watchers: Arc::clone(self),
            client,
        })
    }
}

/// One open change stream's place; given back on drop (with the stream's body).
#[derive(Debug)]
pub struct WatcherSlot {
    /// The table.
    watchers: Arc<Watchers>,
    /// Its client's address.
    client: Option<IpAddr>,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut counts = self.watchers.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.client
            && let Some(n) = counts.by_address.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_fresh_then_the_oldest_idle_connection_makes_room() {
        let table = Connections::new(2);
        let a = table.admit().unwrap();
        let b = table.admit().unwrap();
        a.completed();
        // b never completed a request: it goes first, though a is older.
        let c = table.admit().unwrap();
        assert!(b.close.notified().now_or_never_ready());
        assert_eq!(table.len(), 2);
        // a and c busy: nobody can be reclaimed.
        let _a_busy = a.request();
        let _c_busy = c.request();
        c.completed();
        assert!(table.admit().is_none());
        drop(_a_busy);
        let _d = table.admit().unwrap();
        assert!(a.close.notified().now_or_never_ready());
        drop(c);
        assert_eq!(table.len(), 1);
    }

    /// Whether a notification is already stored.
    trait Ready {
        fn now_or_never_ready(self) -> bool;
    }

    impl<F: std::future::Future<Output = ()>> Ready for F {
        fn now_or_never_ready(self) -> bool {
            futures::FutureExt::now_or_never(self).is_some()
        }
    }

    #[test]
    fn watchers_are_capped_per_address_then_in_total() {
        let watchers = Watchers::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = watchers.admit(Some(a)).unwrap();
        let _a2 = watchers.admit(Some(a)).unwrap();
        assert_eq!(
            watchers.admit(Some(a)).unwrap_err(),
            WatcherRefusal::PerAddress(2)
        );
        let _b1 = watchers.admit(Some(b)).unwrap();
        assert_eq!(
            watchers.admit(Some(b)).unwrap_err(),
            WatcherRefusal::Total(3)
        );
        assert_eq!(watchers.admit(None).unwrap_err(), WatcherRefusal::Total(3));
        drop(a1);
        let _a3 = watchers.admit(Some(a)).unwrap();
    }

    #[test]
    fn the_default_cap_leaves_descriptors_free() {
        let cap = default_max_connections();
        assert!((1..=10_000).contains(&cap));
    }
}
