//! Requests hyper refuses before any handler runs (a malformed request line, a URL
//! over 64 KiB, more than 100 headers) are answered with the JSON envelope like every
//! other error, not hyper's empty body.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek_center::Config;
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::DEADLINE;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a new connection; the whole answer until the server closes.
async fn answer(served: &ServedCenter, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(served.addr()).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(DEADLINE, socket.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "no close within {DEADLINE:?}");
    String::from_utf8(got).unwrap()
}

/// Checks that `answer` has status `code`, a JSON content type, and an envelope body
/// with that code and a message; returns the message.
fn envelope(answer: &str, code: u16) -> String {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {answer:?}"));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {code} ")),
        "status: {answer:?}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json"),
        "{answer:?}"
    );
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{answer:?}"
    );
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    assert_eq!(value["code"], code, "{answer:?}");
    assert_eq!(value["data"], Value::Null, "{answer:?}");
    let message = value["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "{answer:?}");
    message
}

/// A center with default settings.
async fn center() -> ServedCenter {
    ServedCenter::start(Config::in_memory(Duration::from_secs(30))).await
}

#[tokio::test]
async fn a_malformed_request_line_gets_a_400_envelope() {
    let served = center().await;
    for request in [
        &b"GET /healthz HTTP/1.1 extra\r\nhost: x\r\n\r\n"[..],
        b"G\x01T / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
    ] {
        let got = answer(&served, request).await;
        envelope(&got, 400);
    }
}

#[tokio::test]
async fn a_70_kb_url_gets_a_414_envelope() {
    let served = center().await;
    let request = format!(
        "GET /isek_center/available_nodes?{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let got = answer(&served, request.as_bytes()).await;
    envelope(&got, 414);
}

#[tokio::test]
async fn more_than_100_headers_get_a_431_envelope() {
    let served = center().await;
    let mut request = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for i in 0..101 {
        request.push_str(&format!("x-header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let got = answer(&served, request.as_bytes()).await;
    envelope(&got, 431);
}

#[tokio::test]
async fn a_kept_alive_connection_gets_the_envelope_after_a_good_answer() {
    // The refusal is not the first answer on its connection.
    let served = center().await;
    let got = answer(
        &served,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1 extra\r\n\r\n",
    )
    .await;
    let second = got
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(at, _)| &got[at..])
        .unwrap_or_else(|| panic!("one answer only: {got:?}"));
    assert!(got.starts_with("HTTP/1.1 200 "), "{got:?}");
    envelope(second, 400);
}
