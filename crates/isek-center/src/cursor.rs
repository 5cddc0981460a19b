//! [`Cursors`]: the open paged answers of filtered queries, each pinned to the
//! revision of its first page, and [`page`], the walk that fills one page.
//!
//! A query's first page copies its candidates (pointer copies of the live records,
//! sorted by id) out of the state once; every later page reads that copy, so all
//! pages of one query show one revision: a node registered after the first page is
//! in none of them, one removed after it is still in its page. The copy is kept in
//! a table bounded by count (`max`) and by idle time (`ttl`): an unknown, finished or
//! expired cursor is refused, and the client starts over.
//!
//! A cursor token (`E.S.O`, opaque to clients) names the center's epoch, the
//! table entry and the offset of the next candidate: asking for the same token again
//! gives the same page, and a token of an earlier incarnation of the center is
//! unknown rather than another query's page.
//!
//! Level 0 (pure): no lock and no clock (every call takes `now`); evaluating the
//! filter is bounded by its compile limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use isek::NodeInfo;
use isek::filter::{Filter, PlanKind};
use tokio::time::Instant;

use crate::command::Collection;
use crate::record::NodeRecord;

/// The candidates of one query at one revision, shared by all its pages.
#[derive(Debug)]
pub struct Pinned {
    /// What the query lists.
    pub collection: Collection,
    /// The filter the client sent (a later page must not name another).
    pub asked: Option<String>,
    /// The filter every candidate is evaluated with (`None`: every node matches).
    pub filter: Option<Filter>,
    /// Whether posting lists or a scan produced the candidates.
    pub plan: PlanKind,
    /// The revision the candidates show.
    pub revision: u64,
    /// The candidates, sorted by id.
    pub nodes: Vec<(Arc<str>, NodeRecord)>,
}

/// One page: the positions of its nodes in [`Pinned::nodes`], and where the next
/// page starts (`None`: this is the last).
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Positions of the matching candidates of this page, ascending.
    pub matches: Vec<usize>,
    /// Offset of the first match of the next page.
    pub next: Option<usize>,
}

/// The page of at most `limit` matches starting at candidate `offset`. Evaluates
/// candidates until one match past the page is found, so a page is followed by
/// another only when that one is not empty.
pub fn page(pinned: &Pinned, offset: usize, limit: usize) -> Page {
    let mut matches = Vec::with_capacity(limit.min(1024));
    let mut next = None;
    for (at, (id, record)) in pinned.nodes.iter().enumerate().skip(offset) {
        let hit = match &pinned.filter {
            None => true,
            Some(filter) => filter.matches(&node_info(id, record)),
        };
        if !hit {
            continue;
        }
        if matches.len() == limit {
            next = Some(at);
            break;
        }
        matches.push(at);
    }
    Page { matches, next }
}

/// `id` and `record` as a filter sees them.
pub fn node_info(id: &str, record: &NodeRecord) -> NodeInfo {
    // The text is a compact JSON object (checked at registration, or loaded from
    // the store, which holds only such text).
    let metadata = serde_json::from_str(record.metadata()).unwrap_or_default();
    let mut node = NodeInfo::new(id, record.host(), record.port(), metadata);
    node.public_key = record.owner().map(|o| o.key().to_base64().to_owned());
    node
}

/// Why no cursor could be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorsFull {
    /// The limit (`--max-cursors`).
    pub max: usize,
}

/// One open cursor.
#[derive(Debug)]
struct Entry {
    /// What its pages read.
    pinned: Arc<Pinned>,
    /// When a page of it was last asked for.
    used: Instant,
}

/// The open cursors, bounded by count and idle time.
#[derive(Debug)]
pub struct Cursors {
    /// The center's epoch, first part of every token.
    epoch: u64,
    /// The serial number of the next cursor.
    next: u64,
    /// Most open cursors.
    max: usize,
    /// Longest a cursor may go unused.
    ttl: Duration,
    /// The open cursors by serial number.
    open: BTreeMap<u64, Entry>,
}

impl Cursors {
    /// No open cursor; tokens will name `epoch`.
    pub fn new(epoch: u64, max: usize, ttl: Duration) -> Self {
        Self {
            epoch,
            next: 1,
            max,
            ttl,
            open: BTreeMap::new(),
        }
    }

    /// How many cursors are open (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no cursor is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Opens a cursor over `pinned`; its serial number, or `CursorsFull` when `max`
    /// cursors used within `ttl` are open.
    pub fn open(&mut self, pinned: Arc<Pinned>, now: Instant) -> Result<u64, CursorsFull> {
        let ttl = self.ttl;
        self.open
            .retain(|_, e| now.saturating_duration_since(e.used) < ttl);
        if self.open.len() >= self.max {
            return Err(CursorsFull { max: self.max });
        }
        let serial = self.next;
        self.next += 1;
        self.open.insert(serial, Entry { pinned, used: now });
        Ok(serial)
    }

    /// The candidates of cursor `serial`, if it is open and was used within `ttl`
    /// (which it is again from `now`).
    pub fn get(&mut self, serial: u64, now: Instant) -> Option<Arc<Pinned>> {
        let entry = self.open.get_mut(&serial)?;
        if now.saturating_duration_since(entry.used) >= self.ttl {
            self.open.remove(&serial);
            return None;
        }
        entry.used = now;
        Some(Arc::clone(&entry.pinned))
    }

    /// Forgets cursor `serial` (its last page was served).
    pub fn close(&mut self, serial: u64) {
        self.open.remove(&serial);
    }

    /// The token of the page of cursor `serial` starting at `offset`.
    pub fn token(&self, serial: u64, offset: usize) -> String {
        format!("{:x}.{serial:x}.{offset:x}", self.epoch)
    }

    /// The serial number and offset a token names; `None` when it is malformed or
    /// from another epoch.
    pub fn parse(&self, token: &str) -> Option<(u64, usize)> {
        let mut parts = token.split('.');
        let epoch = u64::from_str_radix(parts.next()?, 16).ok()?;
        let serial = u64::from_str_radix(parts.next()?, 16).ok()?;
        let offset = usize::from_str_radix(parts.next()?, 16).ok()?;
        (parts.next().is_none() && epoch == self.epoch).then_some((serial, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(filter: Option<&str>, n: usize) -> Arc<Pinned> {
        let nodes = (0..n)
            .map(|i| {
                let role = if i % 2 == 0 { "even" } else { "odd" };
                let record = NodeRecord::new("h", 1, &format!("{{\"role\":\"{role}\"}}"));
                (Arc::from(format!("n{i:02}")), record)
            })
            .collect();
        Arc::new(Pinned {
            collection: Collection::Nodes,
            asked: filter.map(str::to_owned),
            filter: filter.map(|f| Filter::compile(f).unwrap()),
            plan: PlanKind::Scan,
            revision: 7,
            nodes,
        })
    }

    #[test]
    fn pages_end_with_the_last_match() {
        let p = pinned(Some(r#"metadata.role == "even""#), 10);
        assert_eq!(
            page(&p, 0, 2),
            Page {
                matches: vec![0, 2],
                next: Some(4)
            }
        );
        assert_eq!(
            page(&p, 4, 3),
            Page {
                matches: vec![4, 6, 8],
                next: None
            }
        );
        let all = pinned(None, 3);
        assert_eq!(page(&all, 1, 5).matches, vec![1, 2]);
    }

    #[test]
    fn cursors_are_bounded_by_count_and_idle_time() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut cursors = Cursors::new(0xab, 2, ttl);
        let a = cursors.open(pinned(None, 1), t0).unwrap();
        let b = cursors.open(pinned(None, 1), t0).unwrap();
        assert_eq!(
            cursors.open(pinned(None, 1), t0),
            Err(CursorsFull { max: 2 })
        );
        // `a` used later than `b`: at t0 + ttl only `b` has expired.
        assert!(cursors.get(a, t0 + ttl / 2).is_some());
        assert!(cursors.get(b, t0 + ttl).is_none());
        assert!(cursors.open(pinned(None, 1), t0 + ttl).is_ok());
        cursors.close(a);
        assert!(cursors.get(a, t0 + ttl).is_none());
    }

    #[test]
    fn tokens_name_their_epoch() {
        let cursors = Cursors::new(0xab, 2, Duration::from_secs(1));
        let token = cursors.token(3, 17);
        assert_eq!(cursors.parse(&token), Some((3, 17)));
        let other = Cursors::new(0xac, 2, Duration::from_secs(1));
        assert_eq!(other.parse(&token), None);
        for bad in ["", "ab", "ab.3", "ab.3.x", "ab.3.1.1", "zz.3.1"] {
            assert_eq!(cursors.parse(bad), None, "{bad}");
        }
    }
}
