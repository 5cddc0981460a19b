//! The load generator against the real baseline server on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use isek_bench::BenchError;
use isek_bench::baseline::{self, BaselineMode};
use isek_bench::load::{self, LoadSpec, Scenario};
use tokio::sync::oneshot;

/// Starts the baseline on a free port; dropping the sender stops it.
async fn start_baseline(mode: BaselineMode) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(baseline::serve(listener, mode, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test]
async fn renew_load_counts_every_answer() {
    for mode in [BaselineMode::Echo, BaselineMode::Static] {
        let (addr, _stop) = start_baseline(mode).await;
        let spec = LoadSpec {
            connections: 4,
            duration: None,
            requests: Some(500),
            ..LoadSpec::new(addr, Scenario::Renew)
        };
        let report = load::run(&spec).await.unwrap();
        assert_eq!(report.ok, 500, "{}", report.summary());
        assert_eq!(report.failed, 0, "{}", report.summary());
        assert_eq!(report.latency.count(), 500);
        assert!(report.latency.percentile(0.5) <= report.latency.max());
        assert!(report.throughput() > 0.0);
    }
}

#[tokio::test]
async fn echo_baseline_answers_like_the_center() {
    let (addr, _stop) = start_baseline(BaselineMode::Echo).await;
    let client = raw_post(addr, r#"{"node_id":"n1"}"#).await;
    assert!(client.starts_with("HTTP/1.1 200 OK"), "{client}");
    assert!(
        client.ends_with(
            "{\"code\":200,\"data\":null,\"message\":\"Lease for node 'n1' renewed successfully.\"}\n"
        ),
        "{client}"
    );
}

/// One raw HTTP/1.1 POST to the renew path, returning the whole response text.
async fn raw_post(addr: SocketAddr, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /isek_center/renew HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    response
}

#[tokio::test]
async fn error_statuses_are_counted_as_failures() {
    // The baseline has no list route: every answer is a 404.
    let (addr, _stop) = start_baseline(BaselineMode::Echo).await;
    let spec = LoadSpec {
        connections: 2,
        duration: None,
        requests: Some(50),
        ..LoadSpec::new(addr, Scenario::List)
    };
    let report = load::run(&spec).await.unwrap();
    assert_eq!(report.ok, 0);
    assert_eq!(report.failed, 50);
    assert!(report.first_error.as_deref().unwrap().contains("404"));
}

#[tokio::test]
async fn duration_bounds_a_run() {
    let (addr, _stop) = start_baseline(BaselineMode::Static).await;
    let spec = LoadSpec {
        connections: 2,
        duration: Some(Duration::from_millis(200)),
        requests: None,
        ..LoadSpec::new(addr, Scenario::Renew)
    };
    let report = load::run(&spec).await.unwrap();
    assert!(report.ok > 0, "{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
}

#[tokio::test]
async fn unbounded_or_empty_runs_are_refused() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let unbounded = LoadSpec {
        duration: None,
        requests: None,
        ..LoadSpec::new(addr, Scenario::Renew)
    };
    assert!(matches!(
        load::run(&unbounded).await,
        Err(BenchError::Unbounded)
    ));
    let no_connections = LoadSpec {
        connections: 0,
        ..LoadSpec::new(addr, Scenario::Renew)
    };
    assert!(matches!(
        load::run(&no_connections).await,
        Err(BenchError::Invalid(_))
    ));
}

#[tokio::test]
async fn refused_connection_is_a_clear_error() {
    // Bind then drop: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spec = LoadSpec {
        requests: Some(1),
        ..LoadSpec::new(addr, Scenario::Renew)
    };
    assert!(matches!(
        load::run(&spec).await,
        Err(BenchError::Connect { .. })
    ));
}
