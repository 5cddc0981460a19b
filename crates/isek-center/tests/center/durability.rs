//! Restart durability in-process: what was acknowledged is there after reopening the
//! same data directory, with a fresh full lease; what was deregistered is not.

use std::time::Duration;

use axum::http::StatusCode;
use isek_center::Config;

use crate::leases::stored_ids;
use isek_testkit::router::{REGISTER, TestCenter, mask_expires_at, unix_now};

const N: usize = 200;

fn config(dir: &std::path::Path, ttl: Duration) -> Config {
    Config {
        lease_ttl: ttl,
        ..Config::on_disk(dir)
    }
}

/// Registers `node-0000..N` concurrently (the writer groups them into few commits).
async fn register_many(c: &TestCenter) {
    let requests = (0..N).map(|i| {
        let body = serde_json::json!({
            "node_id": format!("node-{i:04}"),
            "host": "10.0.0.1",
            "port": 9000 + i,
            "metadata": {"i": i, "name": format!("agent-{i}")},
        })
        .to_string();
        async move { c.post(REGISTER, &body).await.status }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
}

#[tokio::test]
async fn nodes_survive_a_clean_restart_with_a_fresh_lease() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(2);
    {
        let c = TestCenter::with_config(config(dir.path(), ttl)).await;
        register_many(&c).await;
        for i in (0..N).step_by(10) {
            let id = format!("node-{i:04}");
            assert_eq!(c.deregister(&id).await.status, StatusCode::OK);
        }
        c.center.shutdown().await.unwrap();
        // After shutdown, writes are refused with a 503 envelope, never lost silently.
        let a = c.register("late").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            a.body,
            "{\"code\":503,\"data\":null,\"message\":\"The center is shutting down.\"}\n"
        );
    }
    let before = unix_now();
    let c = TestCenter::with_config(config(dir.path(), ttl)).await;
    let expected: Vec<String> = (0..N)
        .filter(|i| i % 10 != 0)
        .map(|i| format!("node-{i:04}"))
        .collect();
    assert_eq!(c.listed_ids().await, expected);
    let list = c.list().await.body;
    let (_, expires) = mask_expires_at(&list);
    assert!(
        expires.iter().all(|e| *e >= before + 1.9),
        "every reloaded node gets a fresh full lease"
    );
    assert!(list.contains(concat!(
        r#","host":"10.0.0.1","metadata":{"i":1,"name":"agent-1"},"#,
        r#""node_id":"node-0001","port":9001}"#
    )));
    assert_eq!(c.renew("node-0001").await.status, StatusCode::OK);
    assert_eq!(c.renew("node-0000").await.status, StatusCode::NOT_FOUND);
    c.center.shutdown().await.unwrap();
}

/// An acknowledged registration is already committed: a second process-like opener of
/// the same directory sees it while the first center still runs (no clean shutdown,
/// no checkpoint), and a center dropped without shutdown loses nothing either.
#[tokio::test]
async fn acknowledged_writes_are_committed_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(30);
    let first = TestCenter::with_config(config(dir.path(), ttl)).await;
    register_many(&first).await;
    assert_eq!(first.deregister("node-0007").await.status, StatusCode::OK);
    let stored = stored_ids(dir.path());
    assert_eq!(stored.len(), N - 1);
    assert!(!stored.contains(&"node-0007".to_owned()));

    // One center per data directory: a second one is refused while the first runs.
    let refused = isek_center::app(config(dir.path(), ttl))
        .await
        .expect_err("the data directory is locked");
    assert!(refused.to_string().contains("already in use"), "{refused}");
    first.center.shutdown().await.unwrap();
    drop(first);
    let second = TestCenter::with_config(config(dir.path(), ttl)).await;
    assert_eq!(second.listed_ids().await.len(), N - 1);
    // Dropped without a shutdown: the lock goes with the last handle, once its writer
    // thread has closed the store (so a bounded wait, not at once).
    drop(second);
    let deadline = tokio::time::Instant::now() + isek_testkit::condition::DEADLINE;
    let third = loop {
        match isek_center::app(config(dir.path(), ttl)).await {
            Ok((router, center)) => break TestCenter { router, center },
            Err(e) if e.to_string().contains("already in use") => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the dropped center never freed its directory: {e}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("the directory did not open again: {e}"),
        }
    };
    assert_eq!(third.listed_ids().await.len(), N - 1);
    third.center.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unusable_data_dir_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A regular file where the directory should be.
    let err = isek_center::app(Config::on_disk(file.path()))
        .await
        .expect_err("a file is not a data directory");
    assert!(err.to_string().contains("data directory"), "{err}");
}

#[tokio::test]
async fn unusable_settings_are_refused() {
    let zero_ttl = Config::in_memory(Duration::ZERO);
    let err = isek_center::app(zero_ttl).await.expect_err("zero TTL");
    assert!(err.to_string().contains("lease TTL"), "{err}");
    let mut zero_body = Config::default();
    zero_body.limits.max_body_bytes = 0;
    let err = isek_center::app(zero_body)
        .await
        .expect_err("zero body limit");
    assert!(err.to_string().contains("max_body_bytes"), "{err}");
}
