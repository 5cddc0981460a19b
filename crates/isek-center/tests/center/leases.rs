//! Leases with a short TTL on a real clock: expiry, renewal, re-registration, and the
//! store forgetting expired nodes.

use std::time::Duration;

use axum::http::StatusCode;
use isek_center::Config;

use isek_testkit::router::{TestCenter, mask_expires_at, unix_now};

const TTL: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn expired_node_disappears_and_cannot_be_renewed() {
    let c = TestCenter::with_ttl(TTL).await;
    assert_eq!(c.register("a").await.status, StatusCode::OK);
    assert_eq!(c.register("b").await.status, StatusCode::OK);
    assert_eq!(c.listed_ids().await, ["a", "b"]);
    // Keep "b" alive past a's deadline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.renew("b").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // "a" (registered 1.2 s ago) is gone from every answer; "b" (renewed 0.6 s ago) is not.
    assert_eq!(c.listed_ids().await, ["b"]);
    assert_eq!(c.renew("a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.deregister("a").await.status, StatusCode::NOT_FOUND);
    assert!(!c.center.is_live("a"));
    assert!(c.center.is_live("b"));
    assert_eq!(c.renew("b").await.status, StatusCode::OK);
}

#[tokio::test]
async fn reregistering_restarts_the_lease() {
    let c = TestCenter::with_ttl(TTL).await;
    assert_eq!(c.register("a").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(c.register("a").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // 1.4 s after the first registration, 0.7 s after the second: still there.
    assert_eq!(c.listed_ids().await, ["a"]);
    assert_eq!(c.renew("a").await.status, StatusCode::OK);
    // Expiry after the re-registration's own deadline.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(c.listed_ids().await.is_empty());
    // A renew cannot revive it; a register can.
    assert_eq!(c.renew("a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.register("a").await.status, StatusCode::OK);
    assert_eq!(c.listed_ids().await, ["a"]);
}

#[tokio::test]
async fn renew_extends_expires_at() {
    let c = TestCenter::with_ttl(Duration::from_secs(2)).await;
    assert_eq!(c.register("a").await.status, StatusCode::OK);
    let (_, first) = mask_expires_at(&c.list().await.body);
    assert!(first[0] > unix_now() + 1.0 && first[0] < unix_now() + 2.5);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.renew("a").await.status, StatusCode::OK);
    // The listing is rebuilt at least once a second, so it shows the renewal by then.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (_, second) = mask_expires_at(&c.list().await.body);
    assert_eq!(second.len(), 1, "renewed before its deadline");
    assert!(second[0] > first[0] + 0.5, "{first:?} -> {second:?}");
}

/// Expired nodes leave the SQLite file too (checked by reading it directly), and a
/// re-registration made before the cleanup is not removed by it.
#[tokio::test]
async fn expired_nodes_are_deleted_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        lease_ttl: TTL,
        ..Config::on_disk(dir.path())
    };
    let c = TestCenter::with_config(config).await;
    for id in ["a", "b", "c"] {
        assert_eq!(c.register(id).await.status, StatusCode::OK);
    }
    assert_eq!(stored_ids(dir.path()), ["a", "b", "c"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.renew("c").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // a and b ran out 0.1 s ago; wait (bounded) for the reaper's delete to land.
    let mut ids = stored_ids(dir.path());
    for _ in 0..50 {
        if ids == ["c"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        ids = stored_ids(dir.path());
    }
    assert_eq!(ids, ["c"]);
    assert_eq!(c.listed_ids().await, ["c"]);
    c.center.shutdown().await.unwrap();
}

/// Node ids stored in the center's SQLite file, read through a second connection.
pub fn stored_ids(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join(isek_center::store::DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare("SELECT node_id FROM nodes ORDER BY node_id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Re-registrations racing the expiry of the previous registrations: however the
/// reaper's cleanup interleaves with them, every acknowledged registration stays live
/// and stored (an expiry only removes the generation that ran out).
#[tokio::test]
async fn reregistration_racing_expiry_is_never_removed() {
    const IDS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        lease_ttl: TTL,
        ..Config::on_disk(dir.path())
    };
    let c = TestCenter::with_config(config).await;
    let ids: Vec<String> = (0..IDS).map(|i| format!("x{i:03}")).collect();
    let register_all = || {
        futures::future::join_all(ids.iter().map(|id| {
            let c = &c;
            async move { c.register(id).await.status }
        }))
    };
    assert!(register_all().await.iter().all(|s| *s == StatusCode::OK));
    // Re-register everything again and again across the first deadline: some land
    // before it, some between the expiry and the reaper's cleanup, some after.
    tokio::time::sleep(TTL - Duration::from_millis(20)).await;
    for _ in 0..4 {
        assert!(register_all().await.iter().all(|s| *s == StatusCode::OK));
    }
    // Give any stale cleanup time to run, well within the last leases.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.listed_ids().await, ids);
    assert_eq!(stored_ids(dir.path()), ids);
    for id in &ids {
        assert_eq!(c.renew(id).await.status, StatusCode::OK);
    }
    c.center.shutdown().await.unwrap();
}
