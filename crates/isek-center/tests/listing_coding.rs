//! `available_nodes` for pollers (issue 14): unchanged ISEK 0.2.1 nodes download the
//! whole listing every 5 s with `Accept-Encoding: gzip, deflate` (Python's requests).
//! The center answers them gzip-coded, the compressed bytes made once per listing
//! and shared, with an `ETag`; `If-None-Match` with a current tag gets a 304.
//! Served over real HTTP; reqwest here has no decompression, so the raw coding shows.
//! The uncompressed `available_nodes` listing is streamed: rendered
//! a chunk at a time while they are sent, from one copy of the live nodes shared by
//! every listing at that revision, instead of a whole body per answer (about 200 MB
//! each at a million nodes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Read as _;
use std::time::Duration;

use isek::Registry as _;
use isek_testkit::center::ServedCenter;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `GET available_nodes` with `headers`: status, headers and the raw body bytes.
async fn get(
    center: &ServedCenter,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = reqwest::Client::new().get(center.url_of("/isek_center/available_nodes"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    (status, headers, body)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

async fn center_with_nodes(count: usize) -> ServedCenter {
    // Hour-long leases and listings cached for an hour: the listing changes only when
    // the test changes the membership.
    let center = ServedCenter::start(isek_center::Config {
        snapshot_max_age: Duration::from_secs(3600),
        ..isek_center::Config::in_memory(Duration::from_secs(3600))
    })
    .await;
    for i in 0..count {
        let metadata = json!({ "name": format!("agent {i}"), "bio": "x".repeat(200) });
        center
            .client()
            .register_node(
                &format!("n{i}"),
                "127.0.0.1",
                9000,
                metadata.as_object().unwrap().clone(),
            )
            .await
            .unwrap();
    }
    center
}

#[tokio::test]
async fn requests_accept_encoding_gets_the_listing_gzip_coded_and_shared() {
    let center = center_with_nodes(200).await;
    let (status, plain_headers, plain) = get(&center, &[]).await;
    assert_eq!(status, 200);
    assert!(plain_headers.get("content-encoding").is_none());
    let listing: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(
        listing["data"]["available_nodes"]
            .as_object()
            .unwrap()
            .len(),
        200
    );

    let python = [("accept-encoding", "gzip, deflate")];
    let (status, headers, coded) = get(&center, &python).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["vary"], "accept-encoding");
    assert_eq!(gunzip(&coded), plain, "the same listing, compressed");
    assert!(
        coded.len() * 4 < plain.len(),
        "{} bytes compressed from {}",
        coded.len(),
        plain.len()
    );
    // Another poller gets the very same bytes, and the same tag.
    let (_, again_headers, again) = get(&center, &python).await;
    assert_eq!(again, coded);
    assert_eq!(again_headers["etag"], headers["etag"]);
    // The coded and the plain body are different representations: different tags.
    assert_ne!(headers["etag"], plain_headers["etag"]);

    // A client that refuses gzip gets it plain.
    let (_, refused, body) = get(&center, &[("accept-encoding", "gzip;q=0")]).await;
    assert!(refused.get("content-encoding").is_none());
    assert_eq!(body, plain);
}

#[tokio::test]
async fn if_none_match_gets_a_304_until_the_membership_changes() {
    let center = center_with_nodes(3).await;
    let (_, headers, _) = get(&center, &[("accept-encoding", "gzip")]).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let conditional = [
        ("accept-encoding", "gzip"),
        ("if-none-match", etag.as_str()),
    ];
    let (status, headers, body) = get(&center, &conditional).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());

    // The plain representation is not the tag the client holds: a full answer.
    let (status, _, body) = get(&center, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(status, 200);
    assert!(!body.is_empty());

    // A change: the tag the client holds is stale, the new listing comes in full.
    center
        .client()
        .register_node("late", "127.0.0.1", 9000, Default::default())
        .await
        .unwrap();
    let (status, headers, body) = get(&center, &conditional).await;
    assert_eq!(status, 200);
    assert_ne!(headers["etag"], etag.as_str());
    let listing: Value = serde_json::from_slice(&gunzip(&body)).unwrap();
    assert!(
        listing["data"]["available_nodes"]["late"].is_object(),
        "{listing}"
    );
}

/// The node ids of a `/v1/nodes` or `available_nodes` body.
fn ids(body: &[u8], field: &str) -> BTreeSet<String> {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["data"][field]
        .as_object()
        .unwrap_or_else(|| panic!("no data.{field} in {value}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn full_listings_are_streamed_in_chunks_with_the_same_bytes() {
    let center = center_with_nodes(3000).await;
    for (path, field) in [("/isek_center/available_nodes", "available_nodes")] {
        let response = reqwest::get(center.url_of(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        // Streamed: sent before its length is known, so chunked, not Content-Length.
        assert!(
            response.headers().get("content-length").is_none(),
            "{path} answered with a length: rendered whole before sending"
        );
        assert_eq!(response.headers()["transfer-encoding"], "chunked", "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = response.bytes().await.unwrap();
        assert_eq!(ids(&body, field).len(), 3000, "{path}");
        assert!(body.ends_with(b"\"message\":\"success\"}\n"), "{path}");
        // One listing shared: a second answer at the same revision, the same bytes.
        let again = reqwest::get(center.url_of(path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body, again, "{path}");
    }
}

#[tokio::test]
async fn a_listing_being_read_shows_the_revision_it_started_at() {
    let center = center_with_nodes(3000).await;
    // HTTP/1.0: the body is the raw bytes, up to the end of the connection; a small
    // receive buffer keeps most of the answer at the center while the test waits.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(center.addr()).await.unwrap();
    stream
        .write_all(b"GET /v1/nodes HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut read = vec![0u8; 4096];
    let first = stream.read(&mut read).await.unwrap();
    read.truncate(first);
    // The membership changes while the answer is still being sent.
    for i in 0..100 {
        center
            .client()
            .deregister_node(&format!("n{i}"))
            .await
            .unwrap();
        center
            .client()
            .register_node(&format!("new{i}"), "127.0.0.1", 9000, Default::default())
            .await
            .unwrap();
    }
    stream.read_to_end(&mut read).await.unwrap();
    let start = read
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let read = read.split_off(start);
    let value: Value = serde_json::from_slice(&read).unwrap();
    let expected: BTreeSet<String> = (0..3000).map(|i| format!("n{i}")).collect();
    assert_eq!(ids(&read, "nodes"), expected);
    let revision = value["data"]["revision"].as_u64().unwrap();
    // The next listing shows the changes, at a later revision.
    let after = reqwest::get(center.url_of("/v1/nodes"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let now = ids(&after, "nodes");
    let later: Value = serde_json::from_slice(&after).unwrap();
    assert_eq!(later["data"]["revision"].as_u64().unwrap(), revision + 200);
    assert_eq!(now.len(), 3000);
    assert!(now.contains("new0") && !now.contains("n0"));
}
