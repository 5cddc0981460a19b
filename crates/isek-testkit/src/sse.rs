//! A raw reader of a center's change stream (`GET /v1/watch`, server-sent events),
//! independent of the library's parser: an HTTP/1.0 request on a socket of its own
//! (the body is the rest of the connection), events split and parsed by hand.
//!
//! For tests that compare streams event by event (a filtered stream against the
//! filtered diff of the full one) or read an answer that is not a stream (400, 410).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::condition::DEADLINE;

/// One event as read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` field.
    pub event: String,
    /// The `id:` field, if any.
    pub id: Option<u64>,
    /// The `data:` field, parsed as JSON.
    pub data: Value,
}

/// What a `GET` of the change stream answered.
pub enum Opened {
    /// 200: the stream, to read event by event.
    Stream(Stream),
    /// Any other status, with its JSON body.
    Answer(u16, Value),
}

/// An open change stream.
pub struct Stream {
    socket: TcpStream,
    buffer: Vec<u8>,
}

/// `GET path_and_query` (already URL-encoded) from the center at `addr`.
pub async fn open(addr: SocketAddr, path_and_query: &str) -> Opened {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(DEADLINE, socket.read_u8())
            .await
            .expect("the response head")
            .unwrap();
        head.push(byte);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    if status != 200 {
        let mut body = Vec::new();
        tokio::time::timeout(DEADLINE, socket.read_to_end(&mut body))
            .await
            .expect("the answer's body")
            .unwrap();
        return Opened::Answer(status, serde_json::from_slice(&body).unwrap());
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    Opened::Stream(Stream {
        socket,
        buffer: Vec::new(),
    })
}

/// `GET path_and_query`, which must answer with a stream.
pub async fn stream(addr: SocketAddr, path_and_query: &str) -> Stream {
    match open(addr, path_and_query).await {
        Opened::Stream(stream) => stream,
        Opened::Answer(status, body) => panic!("{path_and_query}: {status} {body}"),
    }
}

impl Stream {
    /// The next event (keep-alive comments skipped); `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                let mut event = Event {
                    event: String::new(),
                    id: None,
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).unwrap();
                    } else if !line.is_empty() {
                        assert!(line.starts_with(':'), "unexpected line {line:?}");
                    }
                }
                if !event.event.is_empty() {
                    return Some(event);
                }
            }
            let mut chunk = vec![0u8; 16 * 1024];
            let read = tokio::time::timeout(DEADLINE, self.socket.read(&mut chunk))
                .await
                .expect("the stream stays alive");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next event, which must be `kind`.
    pub async fn expect(&mut self, kind: &str) -> Event {
        let event = self.next().await.expect("another event");
        assert_eq!(event.event, kind, "{event:?}");
        event
    }
}
