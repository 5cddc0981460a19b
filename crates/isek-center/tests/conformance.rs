//! The center through its Rust client, `IsekCenterRegistry`, over real sockets: the
//! Registry conformance suite (in memory and on the SQLite store), and the client's
//! mapping of HTTP answers and network failures to the typed error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek::{CenterConfig, Error, IsekCenterRegistry, Metadata, Registry};
use isek_testkit::center::ServedCenter;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_center_conforms() {
    isek_testkit::conformance::check_registry(|ttl| ServedCenter::with_ttl(ttl, false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_center_conforms() {
    isek_testkit::conformance::check_registry(|ttl| ServedCenter::with_ttl(ttl, true)).await;
}

#[tokio::test]
async fn client_maps_center_answers_to_typed_errors() {
    let center = ServedCenter::with_ttl(Duration::from_secs(30), false).await;
    let client = center.client();
    // 404 => NotFound, carrying the center's own message.
    assert_eq!(
        client.lease_refresh("ghost").await,
        Err(Error::NotFound(
            "Node 'ghost' not found for lease renewal.".into()
        ))
    );
    assert_eq!(
        client.deregister_node("ghost").await,
        Err(Error::NotFound(
            "Node 'ghost' not found for deregistration.".into()
        ))
    );
    // 400 => InvalidArgument, carrying the center's own message.
    assert_eq!(
        client.lease_refresh("").await,
        Err(Error::InvalidArgument("'node_id' is required.".into()))
    );
    assert_eq!(
        client.register_node("n", "h", 0, Metadata::new()).await,
        Err(Error::InvalidArgument(
            "'node_id', 'host', and 'port' are required fields.".into()
        ))
    );
    let long_host = "h".repeat(300);
    assert!(matches!(
        client
            .register_node("n", &long_host, 1, Metadata::new())
            .await,
        Err(Error::InvalidArgument(m)) if m.contains("host")
    ));
}

#[tokio::test]
async fn client_reports_an_unreachable_center_as_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = IsekCenterRegistry::new(&url).unwrap();
    for result in [
        client.lease_refresh("n").await,
        client.deregister_node("n").await,
        client.register_node("n", "h", 1, Metadata::new()).await,
        client.get_available_nodes().await.map(|_| ()),
    ] {
        match result {
            Err(Error::Unavailable(message)) => assert!(message.contains(&url), "{message}"),
            other => panic!("expected Unavailable naming {url}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn client_times_out_on_a_silent_center() {
    // Accepts connections and never answers: the call must end with Unavailable once
    // the configured timeout passes, not hang.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = CenterConfig::new(&url);
    config.timeout = Duration::from_millis(300);
    config.renew_timeout = Duration::from_millis(200);
    let client = IsekCenterRegistry::with_config(config).unwrap();
    for result in [
        client.lease_refresh("n").await,
        client.get_available_nodes().await.map(|_| ()),
    ] {
        match result {
            Err(Error::Unavailable(message)) => assert!(message.contains(&url), "{message}"),
            other => panic!("expected Unavailable naming {url}, got {other:?}"),
        }
    }
    silent.abort();
}

#[tokio::test]
async fn client_reuses_its_connection() {
    // A TCP relay in front of the center counts the connections the client opens.
    let center = ServedCenter::with_ttl(Duration::from_secs(30), false).await;
    let upstream = center
        .client()
        .url()
        .trim_start_matches("http://")
        .to_owned();
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", relay.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    let relay_task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut outbound = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let client = IsekCenterRegistry::new(&relay_url).unwrap();
    client
        .register_node("reused", "h", 1, Metadata::new())
        .await
        .unwrap();
    for _ in 0..5 {
        client.lease_refresh("reused").await.unwrap();
        client.get_available_nodes().await.unwrap();
    }
    // A clone shares the pool.
    client.clone().lease_refresh("reused").await.unwrap();
    client.deregister_node("reused").await.unwrap();
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    relay_task.abort();
}

#[tokio::test]
async fn client_rejects_a_url_that_is_not_http() {
    assert!(matches!(
        IsekCenterRegistry::new("ftp://example.org"),
        Err(Error::InvalidArgument(_))
    ));
}
