//! [`Store`]: where registrations outlive the process, behind one seam: SQLite on
//! this center's disk (the default), nowhere (`--in-memory`), or an etcd cluster
//! shared with other centers (`--store etcd`, [`etcd`]).
//!
//! The writer hands a batch of [`StoreOp`]s to [`Store::commit`] without knowing
//! which store it talks to, and learns per op what became of it ([`Outcome`]). The
//! decisions (ownership, look-alikes, the node cap) stay in `writer::plan`; a store
//! only writes what it is given. Each node op carries what the center believed the
//! node's current registration to be (`expect`, the generation its table holds): a
//! store this center owns alone (SQLite, none) ignores it, because nothing else can
//! have changed the node; a store shared by several centers writes only if it still
//! holds that registration, so a decision taken on a stale view is never committed.
//!
//! Level 1, and the only module that knows a storage engine: `rusqlite` appears only
//! in [`sqlite`], `etcd_client` only in [`etcd`] (their errors leave as
//! [`crate::error::Error::Store`]).

use std::path::Path;
use std::sync::Arc;

use isek::identity::PublicKey;

use crate::error::Result;
use crate::record::NodeRecord;

pub mod etcd;
mod sqlite;

pub use sqlite::DB_FILE;

/// One change inside a commit.
#[derive(Debug)]
pub enum StoreOp<'a> {
    /// Insert or replace a node.
    Upsert {
        /// The node id.
        id: &'a str,
        /// Its record.
        record: &'a NodeRecord,
        /// The generation of the registration this replaces, as the center's table
        /// holds it; `None`: the table holds none.
        expect: Option<u64>,
    },
    /// Remove a node (absent rows are fine).
    Delete {
        /// The node id.
        id: &'a str,
        /// The generation of the registration this removes, as the table holds it.
        expect: Option<u64>,
    },
    /// Remove the registration `generation` of a node, whose lease ran out.
    Expire {
        /// The node id.
        id: &'a str,
        /// The generation that ran out.
        generation: u64,
    },
    /// Raise the replay horizon of `id` and `key` to `last_ms` (never lowers it).
    Horizon {
        /// The node id.
        id: &'a str,
        /// The signing key, base64 `X||Y`.
        key: String,
        /// The accepted timestamp, Unix ms.
        last_ms: u64,
    },
    /// Forget horizons older than `before` (Unix ms): outside the window, useless.
    PruneHorizons {
        /// The oldest timestamp still worth keeping.
        before: u64,
    },
}

/// What became of one op of a committed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written, durably; the center numbers the change and applies it itself (a
    /// store of its own: nothing else writes to it).
    Local,
    /// Committed by a shared store at this revision; the center applies it when its
    /// follower reaches that revision (with every other center's changes, in order).
    At(u64),
    /// Not written: the shared store's copy of the node is no longer the one the
    /// center expected (another center changed it); the store's revision then.
    Conflict(u64),
    /// Not written: this op failed alone (timeout, a refused request).
    Failed,
}

/// The durable side of the registry.
#[derive(Debug)]
pub struct Store {
    /// Which store, behind the seam.
    backend: Backend,
}

/// The stores a center can run on.
#[derive(Debug)]
enum Backend {
    /// An SQLite database file in the data directory.
    Sqlite(sqlite::Sqlite),
    /// Nothing on disk: commits succeed immediately.
    Memory,
    /// An etcd cluster shared with other centers.
    Etcd(Box<etcd::Etcd>),
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, or a memory-only store.
    pub fn open(data_dir: Option<&Path>, cache_kib: u32) -> Result<Self> {
        let backend = match data_dir {
            None => Backend::Memory,
            Some(dir) => Backend::Sqlite(sqlite::Sqlite::open(dir, cache_kib)?),
        };
        Ok(Self { backend })
    }

    /// The store shared through `etcd` (see [`etcd`]).
    pub fn etcd(etcd: etcd::Etcd) -> Self {
        Self {
            backend: Backend::Etcd(Box::new(etcd)),
        }
    }

    /// Whether other centers write to this store too: the writer then plans each
    /// batch with at most one op per node (an op's `expect` must name a committed
    /// generation) and applies nothing itself.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Etcd(_))
    }

    /// Every stored node. Rows that cannot be valid (bad port, metadata that is not
    /// a JSON object) are skipped with a warning rather than served.
    pub fn load(&self) -> Result<Vec<(Arc<str>, NodeRecord)>> {
        match &self.backend {
            Backend::Sqlite(db) => db.load(),
            Backend::Memory | Backend::Etcd(_) => Ok(Vec::new()),
        }
    }

    /// The stored replay horizons `(node id, key, last_ms)` from `oldest` (Unix ms) on;
    /// older ones are deleted first (outside the window they refuse nothing).
    pub fn load_horizons(&self, oldest: u64) -> Result<Vec<(String, PublicKey, u64)>> {
        match &self.backend {
            Backend::Sqlite(db) => db.load_horizons(oldest),
            Backend::Memory | Backend::Etcd(_) => Ok(Vec::new()),
        }
    }

    /// Closes the store (an SQLite connection checkpoints its WAL).
    pub fn close(self) -> Result<()> {
        match self.backend {
            Backend::Sqlite(db) => db.close(),
            Backend::Memory | Backend::Etcd(_) => Ok(()),
        }
    }

    /// Checks that the store takes a durable write now (the readiness probe).
    pub fn probe(&mut self) -> Result<()> {
        match &mut self.backend {
            Backend::Sqlite(db) => db.probe(),
            Backend::Memory => Ok(()),
            Backend::Etcd(etcd) => etcd.probe(),
        }
    }

    /// Commits `ops` durably, in order; on success, one [`Outcome`] per op. `Err`:
    /// nothing of the batch was written.
    pub fn commit(&mut self, ops: &[StoreOp<'_>]) -> Result<Vec<Outcome>> {
        match &mut self.backend {
            Backend::Sqlite(db) => db.commit(ops)?,
            Backend::Memory => {}
            Backend::Etcd(etcd) => return etcd.commit(ops),
        }
        Ok(vec![Outcome::Local; ops.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_keeps_nothing() {
        let mut store = Store::open(None, 1024).unwrap_or_else(|e| panic!("{e}"));
        let a = NodeRecord::new("h", 1, "{}");
        let done = store
            .commit(&[StoreOp::Upsert {
                id: "a",
                record: &a,
                expect: None,
            }])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done, [Outcome::Local]);
        assert!(store.load().unwrap_or_else(|e| panic!("{e}")).is_empty());
    }
}
