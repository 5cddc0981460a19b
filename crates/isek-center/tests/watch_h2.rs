//! A change stream over HTTP/2 whose client answers pings (the connection is
//! alive) but never opens its stream's flow-control window: hyper stops polling the
//! stream's body, so neither the socket's write deadline (the socket drains) nor the
//! watcher's lag (its body is never asked for the next change) ends it. The stream
//! is released once its body went unpolled for `--write-timeout` with changes
//! pending: its watcher slot is given back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek::Registry;
use isek_center::config::{ConnectionLimits, Timeouts};
use isek_testkit::agents::card;
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::wait_until;

#[tokio::test]
async fn an_h2_watcher_that_never_opens_its_window_loses_its_slot() {
    let center = ServedCenter::start(isek_center::Config {
        timeouts: Timeouts {
            write_stall: Duration::from_secs(1),
            ..Timeouts::default()
        },
        connections: ConnectionLimits {
            max_watchers_per_ip: 1,
            ..ConnectionLimits::default()
        },
        watch_keepalive: Duration::from_millis(200),
        ..isek_center::Config::in_memory(Duration::from_secs(30))
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(center.addr()).await.unwrap();
    // A 1 KiB stream window, never released: the hello and the snapshot fit, the
    // changes below do not.
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(1024)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    // The connection task answers the center's pings.
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get(center.url_of("/v1/watch"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body();

    let url = center.url_of("/v1/watch");
    let second = || async { reqwest::get(&url).await.unwrap().status().as_u16() };
    assert_eq!(
        second().await,
        429,
        "the stalled watcher holds the address's one slot"
    );
    let padding = "x".repeat(4096);
    for i in 0..8 {
        let mut metadata = card("planner");
        metadata.insert("padding".into(), padding.clone().into());
        center
            .client()
            .register_node(&format!("n{i}"), "127.0.0.1", 1, metadata)
            .await
            .unwrap();
    }
    wait_until("the stalled HTTP/2 watcher gives its slot back", || async {
        second().await == 200
    })
    .await;
    assert!(!connection.is_finished(), "the connection itself stayed up");
    drop(body);
}
