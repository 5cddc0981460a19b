//! `available_nodes` for pollers (issue 14): unchanged ISEK 0.2.1 nodes download the
//! whole listing every 5 s with `Accept-Encoding: gzip, deflate` (Python's requests).
//! The center answers them gzip-coded, the compressed bytes made once per listing
//! and shared, with an `ETag`; `If-None-Match` with a current tag gets a 304.
//! Served over real HTTP; reqwest here has no decompression, so the raw coding shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::time::Duration;

use isek::Registry as _;
use isek_testkit::center::ServedCenter;
use serde_json::{Value, json};

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
