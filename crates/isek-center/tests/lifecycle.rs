//! The life cycle of a center on disk: whatever way it ends (the last handle dropped,
//! or several `shutdown` calls at once), its data directory is free again only once
//! SQLite has closed the store, so the next center never opens a store still in use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{File, OpenOptions};
use std::path::Path;

use isek_center::dirlock::LOCK_FILE;
use isek_center::store::DB_FILE;
use isek_center::{Center, Config, NodeRecord, Register};

/// Whether this process still has the store file of `dir` open (SQLite's handle).
fn store_open(dir: &Path) -> bool {
    let db = dir.join(DB_FILE).canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target == db)
}

/// Tries the directory lock the way a second center would; the lock (and its file)
/// is released when the returned file is dropped.
fn try_lock(dir: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    file.try_lock().ok().map(|()| file)
}

/// A center on `dir` with one write committed, so the store is open and has content.
async fn started(dir: &Path) -> Center {
    let center = Center::start(Config::on_disk(dir)).await.unwrap();
    center
        .register(Register::unsigned(
            "n1",
            NodeRecord::new("127.0.0.1", 1, "{}"),
        ))
        .await
        .unwrap();
    assert!(store_open(dir));
    center
}

/// Dropping the last handle without `shutdown` used to release the lock at once,
/// while the writer thread was still closing SQLite.
#[tokio::test]
async fn a_dropped_center_frees_its_directory_only_after_closing_the_store() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let center = started(dir.path()).await;
        drop(center);
        // Whenever the lock is free, the store must already be closed.
        let lock = loop {
            if let Some(lock) = try_lock(dir.path()) {
                break lock;
            }
            tokio::task::yield_now().await;
        };
        assert!(
            !store_open(dir.path()),
            "round {round}: the lock was free while the store was open"
        );
        drop(lock);
        // And the next center opens the directory and finds the node.
        let next = Center::start(Config::on_disk(dir.path())).await.unwrap();
        assert_eq!(next.live_count(), 1);
        next.shutdown().await.unwrap();
    }
}

/// A second `shutdown` running beside the first used to return `Ok` at once, before
/// the store was closed: a caller that then reused the directory raced the writer.
#[tokio::test]
async fn every_concurrent_shutdown_returns_after_the_store_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let center = started(dir.path()).await;
    let (first, second) = (center.clone(), center.clone());
    let path = dir.path().to_path_buf();
    let (a, b) = tokio::join!(first.shutdown(), async {
        let result = second.shutdown().await;
        (result, store_open(&path), try_lock(&path).is_some())
    });
    a.unwrap();
    let (result, open, lockable) = b;
    result.unwrap();
    assert!(
        !open,
        "the second shutdown returned while the store was open"
    );
    assert!(
        lockable,
        "the second shutdown returned while the directory was locked"
    );
}

/// A store written by a newer schema is refused with an error that names both
/// versions (it used to surface as `rusqlite`'s `InvalidParameterName`), and is left
/// as it was.
#[tokio::test]
async fn a_store_of_an_unknown_schema_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    started(dir.path()).await.shutdown().await.unwrap();
    let db = dir.path().join(DB_FILE);
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();

    let error = Center::start(Config::on_disk(dir.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            isek_center::Error::SchemaVersion {
                found: 99,
                supported: 3
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("99") && message.contains("upgrade the center"),
        "{message}"
    );
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 99, "the refused store must not be rewritten");
    // The refusal released the directory: a center of the right version may use it.
    assert!(try_lock(dir.path()).is_some());
}
