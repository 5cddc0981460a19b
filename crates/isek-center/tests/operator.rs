//! The operators' endpoints on a real served center: `/healthz` and `/readyz` (200,
//! and 503 when the store does not take writes: locked by another process, or the
//! center shut down), and `/metrics` scraped after known operations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use isek::identity::NodeIdentity;
use isek::{IsekCenterRegistry, Metadata, Registry};
use isek_center::Config;
use isek_testkit::center::ServedCenter;
use tower::ServiceExt;

async fn get_json(url: &str) -> (StatusCode, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    (status, response.json().await.unwrap())
}

/// The samples of an exposition: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

async fn scrape(served: &ServedCenter) -> BTreeMap<String, f64> {
    let response = reqwest::get(served.url_of("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    samples(&text)
}

#[track_caller]
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = ServedCenter::start_answering(Config::on_disk(dir.path())).await;
    let (status, health) = get_json(&served.url_of("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(health["code"], 200);
    assert_eq!(health["data"]["status"], "alive");
    assert_eq!(health["data"]["version"], env!("CARGO_PKG_VERSION"));
    let (status, ready) = get_json(&served.url_of("/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["data"]["status"], "ready");
    assert_eq!(ready["data"]["store"], "ok");
    assert_eq!(ready["data"]["storage"], "disk");
    served.stop().await;
}

#[tokio::test]
async fn readyz_is_503_while_another_process_holds_the_store_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = ServedCenter::start_answering(Config::on_disk(dir.path())).await;
    // Another writer (a backup tool, an operator's sqlite3 shell) takes the write lock.
    let path = dir.path().join(isek_center::store::DB_FILE);
    let intruder = rusqlite::Connection::open(&path).unwrap();
    intruder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, ready) = get_json(&served.url_of("/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["code"], 503);
    assert_eq!(ready["data"]["status"], "not_ready");
    assert!(
        ready["data"]["store"]
            .as_str()
            .unwrap()
            .contains("did not take a write"),
        "{ready}"
    );
    // The liveness probe is not the readiness probe: the process still answers.
    let (status, _) = get_json(&served.url_of("/healthz")).await;
    assert_eq!(status, 200);
    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    // Ready again once the lock is gone (the writer finishes its waiting probe first).
    let mut last = None;
    for _ in 0..200 {
        let (status, ready) = get_json(&served.url_of("/readyz")).await;
        if status == 200 {
            last = None;
            break;
        }
        last = Some(ready);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.is_none(), "still not ready: {last:?}");
    served.stop().await;
}

#[tokio::test]
async fn readyz_is_503_once_the_center_is_shutting_down() {
    let (router, center) = isek_center::app(Config::default()).await.unwrap();
    let ask = |router: axum::Router| async move {
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, body)
    };
    let (status, body) = ask(router.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["storage"], "memory");
    center.shutdown().await.unwrap();
    let (status, body) = ask(router).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["store"], "the center is shutting down");
}

/// Registers `unsigned_ids` with an unsigned client and `s1` with a signed one;
/// returns both clients.
async fn register_mixed(
    served: &ServedCenter,
    unsigned_ids: &[&str],
) -> (IsekCenterRegistry, IsekCenterRegistry) {
    let unsigned = IsekCenterRegistry::new(served.url()).unwrap();
    let signed = IsekCenterRegistry::new(served.url())
        .unwrap()
        .with_identity(NodeIdentity::generate());
    for id in unsigned_ids {
        unsigned
            .register_node(id, "10.0.0.1", 9000, Metadata::new())
            .await
            .unwrap();
    }
    signed
        .register_node("s1", "10.0.0.2", 9000, Metadata::new())
        .await
        .unwrap();
    (unsigned, signed)
}

#[tokio::test]
async fn metrics_count_known_operations() {
    let dir = tempfile::tempdir().unwrap();
    // Leases far longer than the test: an expiry on a slow machine would change the
    // exact counts below (expiries are their own test).
    let mut served = ServedCenter::start_answering(Config {
        lease_ttl: Duration::from_secs(3600),
        watch_keepalive: Duration::from_millis(100),
        ..Config::on_disk(dir.path())
    })
    .await;
    let (unsigned, signed) = register_mixed(&served, &["u1", "u2", "u3"]).await;
    unsigned.lease_refresh("u1").await.unwrap();
    signed.lease_refresh("s1").await.unwrap();
    assert!(unsigned.lease_refresh("ghost").await.is_err());
    // An unsigned client cannot renew the signed node.
    assert!(unsigned.lease_refresh("s1").await.is_err());
    unsigned.deregister_node("u3").await.unwrap();
    assert!(unsigned.deregister_node("u3").await.is_err());

    let m = scrape(&served).await;
    assert_eq!(value(&m, "isek_register_total{outcome=\"ok\"}"), 4.0);
    assert_eq!(value(&m, "isek_renew_total{outcome=\"ok\"}"), 2.0);
    assert_eq!(value(&m, "isek_renew_total{outcome=\"not_found\"}"), 1.0);
    assert_eq!(value(&m, "isek_renew_total{outcome=\"denied\"}"), 1.0);
    assert_eq!(value(&m, "isek_deregister_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(
        value(&m, "isek_deregister_total{outcome=\"not_found\"}"),
        1.0
    );
    assert_eq!(value(&m, "isek_nodes{signed=\"true\"}"), 1.0);
    assert_eq!(value(&m, "isek_nodes{signed=\"false\"}"), 2.0);
    assert_eq!(
        value(
            &m,
            "isek_http_request_duration_seconds_count{endpoint=\"renew\"}"
        ),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "isek_http_request_duration_seconds_count{endpoint=\"register\"}"
        ),
        4.0
    );
    // Four registrations and one deregistration were committed (in any grouping).
    assert_eq!(value(&m, "isek_writer_batch_size_sum"), 5.0);
    let commits = value(&m, "isek_writer_batch_size_count");
    assert!((1.0..=5.0).contains(&commits), "{commits}");
    assert_eq!(
        value(&m, "isek_store_commit_duration_seconds_count"),
        commits
    );
    assert!(value(&m, "isek_store_commit_duration_seconds_sum") > 0.0);
    assert!(value(&m, "isek_store_size_bytes") > 0.0);
    assert!(value(&m, "isek_http_connections") >= 1.0);
    assert!(value(&m, "isek_http_connections_accepted_total") >= 1.0);
    assert_eq!(
        value(
            &m,
            &format!(
                "isek_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert_eq!(value(&m, "isek_watchers"), 0.0);

    // A watcher is counted while its stream is open; a `since` that is gone is a resync.
    let watch = reqwest::get(served.url_of("/v1/watch")).await.unwrap();
    assert_eq!(watch.status(), 200);
    let m = scrape(&served).await;
    assert_eq!(value(&m, "isek_watchers"), 1.0);
    drop(watch);
    let gone = reqwest::get(served.url_of("/v1/watch?since=1&epoch=1"))
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    let mut m = scrape(&served).await;
    for _ in 0..500 {
        if value(&m, "isek_watchers") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(&served).await;
    }
    assert_eq!(value(&m, "isek_watchers"), 0.0);
    assert_eq!(value(&m, "isek_watch_resyncs_total{reason=\"gone\"}"), 1.0);
    served.stop().await;
}

#[tokio::test]
async fn metrics_count_an_expiry_wave() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = ServedCenter::start_answering(Config {
        lease_ttl: Duration::from_secs(1),
        ..Config::on_disk(dir.path())
    })
    .await;
    register_mixed(&served, &["u1", "u2"]).await;

    // The three nodes stop renewing: expiries remove them all. One scrape is not one
    // instant: the node gauges are read before the counters are encoded, so a scrape
    // taken while the writer applies the expiries can count them and still show the
    // nodes (seen 1 in 12 runs under load). Wait until one scrape shows both.
    let mut m = scrape(&served).await;
    for _ in 0..500 {
        if value(&m, "isek_expire_total{outcome=\"ok\"}") == 3.0
            && value(&m, "isek_nodes{signed=\"true\"}") == 0.0
            && value(&m, "isek_nodes{signed=\"false\"}") == 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(&served).await;
    }
    assert_eq!(value(&m, "isek_expire_total{outcome=\"ok\"}"), 3.0);
    assert_eq!(value(&m, "isek_nodes{signed=\"true\"}"), 0.0);
    assert_eq!(value(&m, "isek_nodes{signed=\"false\"}"), 0.0);
    assert!(value(&m, "isek_expiry_waves_total") >= 1.0);
    served.stop().await;
}
