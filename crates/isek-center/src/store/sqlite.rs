//! [`Sqlite`]: the store of one center on its own disk (the default).
//!
//! Table `nodes(node_id, host, port, metadata, public_key, token_hash)` (the
//! last two, added in schema 2, hold the owner of a signed registration: its raw
//! `X||Y` key in base64 and the SHA-256 of its lease token; NULL for unsigned nodes
//! and for rows of schema-1 stores, which load unchanged), and, since schema 3,
//! `horizons(node_id, public_key, last_ms)`: the newest signed-op timestamp accepted
//! per node id and key for registrations and deregistrations (refused registrations
//! included), written in the same transaction as the row it goes with, so a
//! signature cannot be replayed after a restart (see `policy::Horizons`); rows older
//! than the signature window are useless and deleted at load and about once per
//! window. Both in WAL mode with
//! `synchronous=FULL`: a commit returns only after its WAL frames are fsynced, so a
//! registration acknowledged after [`Sqlite::commit`] survives `kill -9` and power loss.
//! Only the store writer ([`crate::writer`]) touches the connection, from one thread.
//! Lease deadlines are never stored: after a restart every node gets a fresh lease.
//! This center is the only writer, so the ops' expectations (`StoreOp::expect`)
//! always hold and are not checked.
//!
//! The only file that knows SQLite: `rusqlite` appears nowhere else (its errors
//! leave as [`Error::Store`]).

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, params};

use isek::identity::PublicKey;

use crate::error::{Error, Result};
use crate::record::{NodeRecord, Owner};

use super::StoreOp;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "isek-center.sqlite3";

/// Schema version kept in `PRAGMA user_version`, for future migrations. Version 1
/// lacked the owner columns, version 2 the `horizons` table; opening such a store
/// adds them.
const SCHEMA_VERSION: i64 = 3;

/// The `horizons` table of schema 3.
const CREATE_HORIZONS: &str = "CREATE TABLE IF NOT EXISTS horizons (
    node_id    TEXT NOT NULL,
    public_key TEXT NOT NULL,
    last_ms    INTEGER NOT NULL,
    PRIMARY KEY (node_id, public_key)
) WITHOUT ROWID;";

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(Box::new(e))
    }
}

/// An open SQLite store.
#[derive(Debug)]
pub struct Sqlite {
    /// The connection, used from the writer's thread only.
    conn: Connection,
}

impl Sqlite {
    /// Opens (creating if needed) the store in `dir`, migrating older schemas.
    pub fn open(dir: &Path, cache_kib: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                mode,
                "SQLite refused WAL mode; commits stay durable but slower"
            );
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -i64::from(cache_kib))?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS nodes (
                node_id  TEXT PRIMARY KEY NOT NULL,
                host     TEXT NOT NULL,
                port     INTEGER NOT NULL,
                metadata TEXT NOT NULL
            ) WITHOUT ROWID;",
        )?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 || version == 1 {
            // New store (the table above has the schema-1 columns) or a schema-1 one:
            // add the owner columns and the horizons, in one transaction with the
            // version bump.
            conn.execute_batch(&format!(
                "BEGIN;
                 ALTER TABLE nodes ADD COLUMN public_key TEXT;
                 ALTER TABLE nodes ADD COLUMN token_hash BLOB;
                 {CREATE_HORIZONS}
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))?;
        } else if version == 2 {
            conn.execute_batch(&format!(
                "BEGIN;
                 {CREATE_HORIZONS}
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))?;
        } else if version != SCHEMA_VERSION {
            return Err(Error::SchemaVersion {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Self { conn })
    }

    /// Every stored node. Rows that cannot be valid (bad port, metadata that is not
    /// a JSON object) are skipped with a warning rather than served.
    pub fn load(&self) -> Result<Vec<(Arc<str>, NodeRecord)>> {
        let conn = &self.conn;
        let mut stmt = conn
            .prepare("SELECT node_id, host, port, metadata, public_key, token_hash FROM nodes")?;
        let mut rows = stmt.query([])?;
        let mut nodes = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let host: String = row.get(1)?;
            let port: i64 = row.get(2)?;
            let metadata: String = row.get(3)?;
            let public_key: Option<String> = row.get(4)?;
            let token_hash: Option<Vec<u8>> = row.get(5)?;
            let owner = match public_key.map(|k| PublicKey::from_base64(&k)) {
                None => None,
                Some(Ok(key)) => {
                    let hash = token_hash.and_then(|h| <[u8; 32]>::try_from(h).ok());
                    Some(Arc::new(Owner::new(key, hash)))
                }
                Some(Err(e)) => {
                    // Never downgrade a signed node to an unsigned one.
                    tracing::warn!(node_id = %id, error = %e, "skipping stored node with an invalid owner key");
                    continue;
                }
            };
            let Ok(port @ 1..=u16::MAX) = u16::try_from(port) else {
                tracing::warn!(node_id = %id, port, "skipping stored node with an invalid port");
                continue;
            };
            // Stored text is what the center wrote (compact Flask JSON); check it is
            // still a JSON object rather than re-serializing it (fast restarts).
            let is_object = metadata.starts_with('{')
                && serde_json::from_str::<serde::de::IgnoredAny>(&metadata).is_ok();
            if is_object {
                nodes.push((
                    Arc::from(id),
                    NodeRecord::new(&host, port, &metadata).with_owner(owner),
                ));
            } else {
                tracing::warn!(node_id = %id, "skipping stored node with invalid metadata");
            }
        }
        Ok(nodes)
    }

    /// The stored replay horizons `(node id, key, last_ms)` from `oldest` (Unix ms) on;
    /// older ones are deleted first (outside the window they refuse nothing).
    pub fn load_horizons(&self, oldest: u64) -> Result<Vec<(String, PublicKey, u64)>> {
        let conn = &self.conn;
        conn.execute(
            "DELETE FROM horizons WHERE last_ms < ?1",
            params![to_sql_ms(oldest)],
        )?;
        let mut stmt = conn.prepare("SELECT node_id, public_key, last_ms FROM horizons")?;
        let mut rows = stmt.query([])?;
        let mut horizons = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let key: String = row.get(1)?;
            let last_ms: i64 = row.get(2)?;
            match PublicKey::from_base64(&key) {
                Ok(key) => horizons.push((id, key, u64::try_from(last_ms).unwrap_or(0))),
                Err(e) => {
                    tracing::warn!(node_id = %id, error = %e, "skipping a stored replay horizon with an invalid key");
                }
            }
        }
        Ok(horizons)
    }

    /// Closes the store; closing an SQLite connection checkpoints the WAL.
    pub fn close(self) -> Result<()> {
        self.conn.close().map_err(|(_, e)| Error::from(e))
    }

    /// Checks that the store takes a durable write now (the readiness probe): one
    /// write transaction rewriting the schema version, committed with its fsync.
    /// Fails when the file is locked by another writer past the busy timeout, has
    /// become read-only, or the disk refuses the write.
    pub fn probe(&mut self) -> Result<()> {
        let conn = &mut self.conn;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .inspect_err(|_| {
            // Leave no transaction open behind a failed probe.
            let _ = conn.execute_batch("ROLLBACK");
        })?;
        Ok(())
    }

    /// Applies `ops` in order in one transaction and makes it durable (one fsync).
    pub fn commit(&mut self, ops: &[StoreOp<'_>]) -> Result<()> {
        let conn = &mut self.conn;
        if ops.is_empty() {
            return Ok(());
        }
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT OR REPLACE INTO nodes (node_id, host, port, metadata, public_key, token_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM nodes WHERE node_id = ?1")?;
            let mut horizon = tx.prepare_cached(
                "INSERT INTO horizons (node_id, public_key, last_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node_id, public_key) DO UPDATE SET last_ms = max(last_ms, excluded.last_ms)",
            )?;
            for op in ops {
                match op {
                    StoreOp::Upsert { id, record, .. } => {
                        let owner = record.owner();
                        upsert.execute(params![
                            id,
                            record.host(),
                            i64::from(record.port()),
                            record.metadata(),
                            owner.map(|o| o.key().to_base64()),
                            owner.and_then(|o| o.token_hash()).map(|h| h.as_slice()),
                        ])?;
                    }
                    StoreOp::Delete { id, .. } | StoreOp::Expire { id, .. } => {
                        delete.execute(params![id])?;
                    }
                    StoreOp::Horizon { id, key, last_ms } => {
                        horizon.execute(params![id, key, to_sql_ms(*last_ms)])?;
                    }
                    StoreOp::PruneHorizons { before } => {
                        tx.execute(
                            "DELETE FROM horizons WHERE last_ms < ?1",
                            params![to_sql_ms(*before)],
                        )?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Unix ms as an SQLite integer (saturating: no real timestamp comes near it).
fn to_sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_durable_wal_and_round_trips() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut store = Sqlite::open(dir.path(), 1024).unwrap_or_else(|e| panic!("{e}"));
        let conn = &store.conn;
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap_or_default();
        assert_eq!(sync, 2, "synchronous=FULL");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap_or_default();
        assert_eq!(mode, "wal");

        let a = NodeRecord::new("h", 1, r#"{"k":"v"}"#);
        let b = NodeRecord::new("10.0.0.2", 65535, "{}");
        store
            .commit(&[
                StoreOp::Upsert {
                    id: "a",
                    record: &a,
                    expect: None,
                },
                StoreOp::Upsert {
                    id: "b",
                    record: &b,
                    expect: None,
                },
                StoreOp::Delete {
                    id: "a",
                    expect: None,
                },
                StoreOp::Upsert {
                    id: "a",
                    record: &b,
                    expect: None,
                },
                StoreOp::Delete {
                    id: "zz",
                    expect: None,
                },
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut loaded = store.load().unwrap_or_else(|e| panic!("{e}"));
        loaded.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            loaded,
            vec![(Arc::from("a"), b.clone()), (Arc::from("b"), b.clone())]
        );
    }

    #[test]
    fn invalid_rows_are_skipped_on_load() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Sqlite::open(dir.path(), 1024).unwrap_or_else(|e| panic!("{e}"));
        let conn = &store.conn;
        conn.execute_batch(
            r#"INSERT INTO nodes VALUES ('ok', 'h', 1, '{"a":1}', NULL, NULL);
               INSERT INTO nodes VALUES ('port0', 'h', 0, '{}', NULL, NULL);
               INSERT INTO nodes VALUES ('port-big', 'h', 70000, '{}', NULL, NULL);
               INSERT INTO nodes VALUES ('meta-list', 'h', 1, '[1]', NULL, NULL);
               INSERT INTO nodes VALUES ('meta-bad', 'h', 1, '{"a":', NULL, NULL);
               INSERT INTO nodes VALUES ('bad-key', 'h', 1, '{}', 'AAAA', NULL);"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let loaded = store.load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.len(), 1);
        assert_eq!(&*loaded[0].0, "ok");
        assert_eq!(loaded[0].1.metadata(), r#"{"a":1}"#);
    }

    #[test]
    fn horizons_only_rise_are_pruned_and_a_schema_2_store_gains_the_table() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            // A store written by the schema-2 center: no horizons table.
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap_or_else(|e| panic!("{e}"));
            conn.execute_batch(
                "CREATE TABLE nodes (node_id TEXT PRIMARY KEY NOT NULL, host TEXT NOT NULL,
                     port INTEGER NOT NULL, metadata TEXT NOT NULL, public_key TEXT,
                     token_hash BLOB) WITHOUT ROWID;
                 INSERT INTO nodes VALUES ('kept', 'h', 1, '{}', NULL, NULL);
                 PRAGMA user_version = 2;",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut store = Sqlite::open(dir.path(), 1024).unwrap_or_else(|e| panic!("{e}"));
        let key = isek::identity::NodeIdentity::generate()
            .public_key()
            .clone();
        let b64 = key.to_base64().to_owned();
        let horizon = |id: &'static str, last_ms| StoreOp::Horizon {
            id,
            key: b64.clone(),
            last_ms,
        };
        store
            .commit(&[horizon("a", 500), horizon("a", 400), horizon("b", 100)])
            .unwrap_or_else(|e| panic!("{e}"));
        // Never lowered; pruned below a bound.
        store
            .commit(&[horizon("c", 900), StoreOp::PruneHorizons { before: 200 }])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut loaded = store.load_horizons(0).unwrap_or_else(|e| panic!("{e}"));
        loaded.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            loaded,
            vec![
                ("a".to_owned(), key.clone(), 500),
                ("c".to_owned(), key.clone(), 900)
            ]
        );
        assert_eq!(
            store
                .load_horizons(600)
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            1
        );
        assert_eq!(store.load().unwrap_or_else(|e| panic!("{e}")).len(), 1);
        let conn = &store.conn;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap_or_default();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
