//! Connection hardening of a served center (real sockets on 127.0.0.1): silent sockets
//! and half HTTP/2 prefaces are closed at the preface deadline, an idle HTTP/2
//! connection at the idle limit, a stalled request body gets 408, and at
//! `--max-connections` the oldest silent connection makes room for a newcomer, which
//! is refused with a 503 envelope only when every connection is busy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek_center::{Config, ConnectionLimits, Timeouts};
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::DEADLINE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface of HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An empty HTTP/2 SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// A center with short connection limits (`short`) and the default rest.
async fn center(short: Duration, max_connections: Option<usize>) -> ServedCenter {
    ServedCenter::start(Config {
        timeouts: Timeouts {
            preface: short,
            idle: short,
            body_progress: short,
            // Long: only the limit under test may end a connection.
            request: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(600),
            // How long an idle close waits for the peer to take its GOAWAY.
            keepalive_timeout: short,
            ..Timeouts::default()
        },
        connections: ConnectionLimits {
            max_connections,
            ..ConnectionLimits::default()
        },
        ..Config::in_memory(Duration::from_secs(30))
    })
    .await
}

/// Reads until the server closes `socket`; everything it sent. Fails the test when
/// the connection is still open after [`DEADLINE`].
async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection was still open after {DEADLINE:?}"
    );
    got
}

/// `GET /healthz` on a new connection: the whole answer.
async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8_lossy(&until_closed(&mut socket).await).into_owned()
}

#[tokio::test]
async fn a_silent_socket_and_half_an_h2_preface_are_closed_at_the_preface_deadline() {
    let served = center(Duration::from_millis(300), None).await;
    let mut silent = TcpStream::connect(served.addr()).await.unwrap();
    let mut half = TcpStream::connect(served.addr()).await.unwrap();
    half.write_all(&H2_PREFACE[..16]).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    assert!(until_closed(&mut half).await.is_empty());
}

#[tokio::test]
async fn an_h2_connection_without_a_stream_is_closed_at_the_idle_limit() {
    let served = center(Duration::from_millis(300), None).await;
    let mut idle = TcpStream::connect(served.addr()).await.unwrap();
    idle.write_all(H2_PREFACE).await.unwrap();
    idle.write_all(H2_SETTINGS).await.unwrap();
    let got = until_closed(&mut idle).await;
    // The server's SETTINGS, then a GOAWAY (frame type 7) before the close.
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len =
            usize::from(got[at]) << 16 | usize::from(got[at + 1]) << 8 | usize::from(got[at + 2]);
        frames.push(got[at + 3]);
        at += 9 + len;
    }
    assert!(
        frames.contains(&7),
        "no GOAWAY among frame types {frames:?}"
    );
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_gets_408() {
    let served = center(Duration::from_millis(300), None).await;
    let mut stalled = TcpStream::connect(served.addr()).await.unwrap();
    stalled
        .write_all(
            b"POST /isek_center/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"node_id\"",
        )
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut stalled).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains(r#""code":408"#), "{answer}");
}

#[tokio::test]
async fn at_the_cap_the_oldest_silent_connection_makes_room() {
    // Long preface deadline: only the cap may close the silent sockets.
    let served = center(Duration::from_secs(600), Some(3)).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(served.addr()).await.unwrap());
    }
    let answer = healthz(served.addr()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // The newcomer took the place of the oldest.
    assert!(until_closed(&mut silent[0]).await.is_empty());
}

/// Reads one answer (head and `content-length` body) from a kept-alive connection.
async fn one_answer(socket: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    read.unwrap_or_else(|_| panic!("no whole answer within {DEADLINE:?}"))
}

#[tokio::test]
async fn when_every_connection_is_busy_a_newcomer_gets_a_503_envelope() {
    let served = center(Duration::from_secs(600), Some(2)).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        // One request completed, then one whose body never ends (the body limit is
        // long): busy, and not fresh.
        let mut socket = TcpStream::connect(served.addr()).await.unwrap();
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = one_answer(&mut socket).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        socket
            .write_all(
                b"POST /isek_center/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            )
            .await
            .unwrap();
        busy.push(socket);
    }
    // The busy requests must be in flight before the newcomer comes; a request that
    // is not yet counted leaves its connection idle and reclaimable, so poll until
    // the refusal (any 200 before it means the center took a busy connection as
    // idle: then the busy socket it closed shows it, and the loop ends in failure).
    let refused = isek_testkit::condition::wait_until("a 503 at the cap", || async {
        healthz(served.addr()).await.starts_with("HTTP/1.1 503 ")
    });
    refused.await;
    let answer = healthz(served.addr()).await;
    assert!(answer.contains(r#""code":503"#), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    // Both busy connections are still open: nobody was closed to make room.
    for socket in &mut busy {
        let mut buf = [0u8; 1];
        let peek = tokio::time::timeout(Duration::from_millis(50), socket.peek(&mut buf)).await;
        assert!(peek.is_err(), "a busy connection was closed or answered");
    }
}
