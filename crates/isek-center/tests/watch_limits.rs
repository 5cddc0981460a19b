//! Caps on change streams of a served center: one more stream than
//! `--max-watchers-per-ip` from one address gets a 429 envelope, one more than
//! `--max-watchers` a 503 envelope; a stream that ends gives its place back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek_center::{Config, ConnectionLimits};
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::DEADLINE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `GET /v1/watch` from `local` (a loopback address); the socket and the
/// answer's head (with the body when the answer is not a stream).
async fn open_watch(served: &ServedCenter, local: [u8; 4]) -> (TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((local, 0))).unwrap();
    let mut stream = socket.connect(served.addr()).await.unwrap();
    stream
        .write_all(b"GET /v1/watch HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            // A stream: its head and first event; a refusal: head and envelope.
            if text.contains("event: hello") || text.contains("\"code\":") {
                return text;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    (stream, read.expect("an answer"))
}

#[tokio::test]
async fn streams_beyond_the_caps_get_429_and_503_envelopes() {
    let served = ServedCenter::start(Config {
        connections: ConnectionLimits {
            max_watchers: 3,
            max_watchers_per_ip: 2,
            ..ConnectionLimits::default()
        },
        ..Config::in_memory(Duration::from_secs(30))
    })
    .await;
    let (first, head) = open_watch(&served, [127, 0, 0, 1]).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let (_second, head) = open_watch(&served, [127, 0, 0, 1]).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let (_, head) = open_watch(&served, [127, 0, 0, 1]).await;
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    assert!(head.contains(r#""code":429"#), "{head}");
    assert!(head.contains("--max-watchers-per-ip"), "{head}");
    // Another address still gets one, then the total is reached.
    let (_third, head) = open_watch(&served, [127, 0, 0, 2]).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let (_, head) = open_watch(&served, [127, 0, 0, 3]).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(head.contains(r#""code":503"#), "{head}");
    // A closed stream gives its place back (once the center noticed the close).
    drop(first);
    isek_testkit::condition::wait_until("the closed stream's place is free", || async {
        let (_socket, head) = open_watch(&served, [127, 0, 0, 1]).await;
        head.starts_with("HTTP/1.1 200 ")
    })
    .await;
}
