//! The client side of an Isek Center's change stream (`GET /v1/watch`, server-sent
//! events), behind [`crate::IsekCenterRegistry`]'s [`crate::Registry::watch_nodes`].
//!
//! The stream yields a [`NodeEvent::Snapshot`] first, then `Put`/`Delete` in revision
//! order. Faults are handled inside, so a watcher sees a continuous history:
//!
//! - a cut connection or a silent one (no byte, not even the server's keep-alive
//!   comment, for three keep-alive intervals) reconnects with `since=<last revision>`
//!   and the center's epoch, and resumes without a gap or a duplicate;
//! - a `resync` event or a `410 Gone` answer (revision compacted, the watcher fell
//!   behind, the center restarted with another epoch) reconnects without `since`: the
//!   center answers with a fresh snapshot, consistent with the changes that follow,
//!   which is emitted as a new [`NodeEvent::Snapshot`];
//! - when the center cannot be reached after a few quick attempts, the stream yields an
//!   [`Error::Unavailable`] and ends; the caller (a [`crate::PeerView`]) reconnects
//!   with its own backoff.
//!
//! A center without the endpoint (the original Python one answers 404) makes
//! `watch_nodes` return `Ok(None)`, so the caller polls instead.
//!
//! SSE is parsed here by hand: the center writes `event:`, `id:`, `data:` lines and
//! `:` comments, one JSON object per `data:` line.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::error::root_cause;
use crate::wire::center::{
    WATCH_EVENT_DELETE, WATCH_EVENT_HELLO, WATCH_EVENT_PUT, WATCH_EVENT_RESYNC,
    WATCH_EVENT_SNAPSHOT, WATCH_PATH, WatchDelete, WatchHello, WatchPut, WatchResync,
    WatchSnapshot, WatchedNode,
};
use crate::{Error, NodeEvent, NodeEventStream, NodeInfo, Result};

/// Silence tolerated before the server's first `hello` tells its keep-alive interval.
const INITIAL_SILENCE: Duration = Duration::from_secs(15);
/// Waits before the quick reconnection attempts after a cut (then the stream fails).
const RECONNECT_DELAYS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(1000),
];
/// Events buffered between the reading task and the consumer.
const CHANNEL_CAPACITY: usize = 256;
/// Largest event accepted (a snapshot of a million nodes is ~150 MB; beyond that the
/// server is not an Isek Center).
const MAX_EVENT_BYTES: usize = 1 << 30;

/// Opens the change stream of the center at `base` (no trailing slash). `Ok(None)` when
/// the center has no change stream (404); `timeout` bounds connecting and the answer's
/// headers, not the stream's life.
pub(crate) async fn open(
    http: reqwest::Client,
    bases: Vec<String>,
    current: usize,
    timeout: Duration,
) -> Result<Option<NodeEventStream>> {
    let mut feed = Feed {
        http,
        bases,
        at: current,
        timeout,
        position: None,
        epoch: None,
        silence: INITIAL_SILENCE,
    };
    let mut first = feed.connect().await;
    // Several centers: an unreachable one hands over to the next, once each.
    for _ in 1..feed.bases.len() {
        if !matches!(first, Err(Error::Unavailable(_))) {
            break;
        }
        feed.rotate();
        first = feed.connect().await;
    }
    let response = match first? {
        Connected::Stream(response) => response,
        Connected::Missing => return Ok(None),
        Connected::Gone(message) => {
            return Err(Error::Backend(format!(
                "the center refused a fresh change stream: {message}"
            )));
        }
    };
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(feed.run(response, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Some(stream.boxed()))
}

/// Where a watcher stands in the center's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The center incarnation the revision belongs to.
    epoch: u64,
    /// Revision of the last event delivered.
    revision: u64,
}

/// The reading task's state.
struct Feed {
    /// Shared connection pool of the registry.
    http: reqwest::Client,
    /// Base URLs of the centers of one registry (at least one).
    bases: Vec<String>,
    /// Index in `bases` of the center the stream reads from.
    at: usize,
    /// Bound on connecting and on the answer's headers.
    timeout: Duration,
    /// Last delivered position; `None` until the first snapshot or after a resync.
    position: Option<Position>,
    /// Epoch announced by the current connection's `hello`.
    epoch: Option<u64>,
    /// Longest silence before the connection counts as dead (3 keep-alives).
    silence: Duration,
}

/// Result of one connection attempt.
enum Connected {
    /// 200: the event stream.
    Stream(reqwest::Response),
    /// 404: no change stream on this center.
    Missing,
    /// 410: `since` cannot be resumed; the message says why.
    Gone(String),
}

/// Why reading one connection stopped.
enum Stopped {
    /// The consumer dropped the stream.
    Consumer,
    /// The connection broke, ended or went silent: resume from the last position.
    Cut(String),
    /// The center asked for a resync: start over from a snapshot.
    Resync(String),
}

/// One parsed server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    /// `event:` field (`message` when absent).
    event: String,
    /// `data:` lines joined with `\n`.
    data: String,
}

impl Feed {
    /// The base URL of the current center.
    fn base(&self) -> &str {
        self.bases
            .get(self.at % self.bases.len().max(1))
            .map_or("", String::as_str)
    }

    /// Moves to the next center (after the current one was unavailable); the position
    /// is kept, so the stream resumes there with `since`/`epoch` (a center of another
    /// epoch or without the history answers 410 or another hello: a fresh snapshot).
    fn rotate(&mut self) {
        if self.bases.len() > 1 {
            self.at = (self.at + 1) % self.bases.len();
            tracing::info!(center = %self.base(), "change stream moves to another center");
        }
    }

    /// The watch URL for the current position.
    fn url(&self) -> String {
        match self.position {
            Some(p) => format!(
                "{}{WATCH_PATH}?since={}&epoch={}",
                self.base(),
                p.revision,
                p.epoch
            ),
            None => format!("{}{WATCH_PATH}", self.base()),
        }
    }

    /// One attempt to open the stream at the current position.
    async fn connect(&self) -> Result<Connected> {
        let url = self.url();
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(Error::Unavailable(format!(
                    "cannot open the change stream {url}: {}",
                    root_cause(&e)
                )));
            }
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "{url}: no answer within {:?}",
                    self.timeout
                )));
            }
        };
        match response.status().as_u16() {
            200 => Ok(Connected::Stream(response)),
            404 => Ok(Connected::Missing),
            410 => {
                let body = tokio::time::timeout(self.timeout, response.bytes())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str().map(str::to_owned)))
                    .unwrap_or_else(|| "revision not retained".to_owned());
                Ok(Connected::Gone(message))
            }
            code @ (429 | 502 | 503 | 504) => {
                Err(Error::Unavailable(format!("{url} answered HTTP {code}")))
            }
            code => Err(Error::Backend(format!("{url} answered HTTP {code}"))),
        }
    }

    /// Reads connections until the consumer goes away or the center stays unreachable.
    async fn run(mut self, first: reqwest::Response, tx: mpsc::Sender<Result<NodeEvent>>) {
        let mut response = first;
        loop {
            self.epoch = None;
            match self.read(response, &tx).await {
                Stopped::Consumer => return,
                Stopped::Cut(why) => {
                    tracing::info!(reason = %why, position = ?self.position, "change stream cut; resuming");
                }
                Stopped::Resync(why) => {
                    tracing::info!(reason = %why, "change stream resync; re-listing");
                    self.position = None;
                }
            }
            match self.reconnect(&tx).await {
                Some(next) => response = next,
                None => return,
            }
        }
    }

    /// A few quick attempts to reopen the stream; on failure the error goes to the
    /// consumer and `None` ends the task.
    async fn reconnect(
        &mut self,
        tx: &mpsc::Sender<Result<NodeEvent>>,
    ) -> Option<reqwest::Response> {
        let mut last_error = Error::Unavailable("the change stream was cut".into());
        for delay in RECONNECT_DELAYS {
            tokio::select! {
                () = tx.closed() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            match self.connect().await {
                Ok(Connected::Stream(response)) => return Some(response),
                Ok(Connected::Gone(message)) => {
                    tracing::info!(%message, "cannot resume the change stream; re-listing");
                    self.position = None;
                    match self.connect().await {
                        Ok(Connected::Stream(response)) => return Some(response),
                        Ok(_) => {
                            last_error =
                                Error::Backend("the center refused a fresh change stream".into());
                        }
                        Err(e) => last_error = e,
                    }
                }
                Ok(Connected::Missing) => {
                    last_error = Error::Unavailable(
                        "the center no longer offers a change stream (404)".into(),
                    );
                    break;
                }
                Err(e) => {
                    if matches!(e, Error::Unavailable(_)) {
                        self.rotate();
                    }
                    last_error = e;
                }
            }
        }
        let _ = tx.send(Err(last_error)).await;
        None
    }

    /// Delivers the events of one connection until it stops.
    async fn read(
        &mut self,
        mut response: reqwest::Response,
        tx: &mpsc::Sender<Result<NodeEvent>>,
    ) -> Stopped {
        let mut parser = SseParser::default();
        loop {
            let chunk = tokio::select! {
                () = tx.closed() => return Stopped::Consumer,
                chunk = tokio::time::timeout(self.silence, response.chunk()) => chunk,
            };
            let bytes = match chunk {
                Err(_) => {
                    return Stopped::Cut(format!("no data for {:?}", self.silence));
                }
                Ok(Err(e)) => return Stopped::Cut(root_cause(&e)),
                Ok(Ok(None)) => return Stopped::Cut("the center closed the stream".into()),
                Ok(Ok(Some(bytes))) => bytes,
            };
            parser.push(&bytes);
            while let Some(event) = parser.next_event() {
                if let Some(stop) = self.handle(event, tx).await {
                    return stop;
                }
            }
            if parser.pending() > MAX_EVENT_BYTES {
                return Stopped::Resync(format!("an event exceeds {MAX_EVENT_BYTES} bytes"));
            }
        }
    }

    /// Acts on one event; `Some` when reading must stop.
    async fn handle(
        &mut self,
        event: SseEvent,
        tx: &mpsc::Sender<Result<NodeEvent>>,
    ) -> Option<Stopped> {
        let out = match event.event.as_str() {
            WATCH_EVENT_HELLO => {
                let hello: WatchHello = match decode(&event) {
                    Ok(h) => h,
                    Err(stop) => return Some(stop),
                };
                self.silence = Duration::from_millis(hello.keepalive_ms.saturating_mul(3))
                    .max(Duration::from_secs(1));
                if self.position.is_some_and(|p| p.epoch != hello.epoch) {
                    return Some(Stopped::Resync("the center restarted".into()));
                }
                self.epoch = Some(hello.epoch);
                return None;
            }
            WATCH_EVENT_SNAPSHOT => {
                let snapshot: WatchSnapshot = match decode(&event) {
                    Ok(s) => s,
                    Err(stop) => return Some(stop),
                };
                let Some(epoch) = self.epoch else {
                    return Some(Stopped::Resync("snapshot before hello".into()));
                };
                self.position = Some(Position {
                    epoch,
                    revision: snapshot.revision,
                });
                let nodes: BTreeMap<String, NodeInfo> = snapshot
                    .nodes
                    .into_iter()
                    .map(|(id, node)| (id, node_info(node)))
                    .collect();
                NodeEvent::Snapshot {
                    revision: snapshot.revision,
                    nodes,
                }
            }
            WATCH_EVENT_PUT => {
                let put: WatchPut = match decode(&event) {
                    Ok(p) => p,
                    Err(stop) => return Some(stop),
                };
                if !self.advance(put.revision) {
                    return None;
                }
                NodeEvent::Put {
                    revision: put.revision,
                    node: node_info(put.node),
                }
            }
            WATCH_EVENT_DELETE => {
                let delete: WatchDelete = match decode(&event) {
                    Ok(d) => d,
                    Err(stop) => return Some(stop),
                };
                if !self.advance(delete.revision) {
                    return None;
                }
                NodeEvent::Delete {
                    revision: delete.revision,
                    node_id: delete.node_id,
                }
            }
            WATCH_EVENT_RESYNC => {
                let message = decode::<WatchResync>(&event)
                    .map(|r| r.message)
                    .unwrap_or_else(|_| "resync requested".into());
                return Some(Stopped::Resync(message));
            }
            _ => return None, // unknown events are for newer clients
        };
        if tx.send(Ok(out)).await.is_err() {
            return Some(Stopped::Consumer);
        }
        None
    }

    /// Moves the position to `revision`; false for a replay (already delivered).
    fn advance(&mut self, revision: u64) -> bool {
        match &mut self.position {
            Some(p) if revision > p.revision => {
                p.revision = revision;
                true
            }
            Some(_) => false,
            // A change before any snapshot cannot happen on a well-formed stream.
            None => false,
        }
    }
}

/// Decodes an event's JSON data; a malformed event forces a resync.
fn decode<T: DeserializeOwned>(event: &SseEvent) -> Result<T, Stopped> {
    serde_json::from_str(&event.data).map_err(|e| {
        tracing::warn!(event = %event.event, error = %e, "malformed change event");
        Stopped::Resync(format!("malformed {} event: {e}", event.event))
    })
}

/// A streamed node as the crate's [`NodeInfo`].
fn node_info(node: WatchedNode) -> NodeInfo {
    NodeInfo::new(node.node_id, node.host, node.port, node.metadata)
}

/// An incremental server-sent-events parser: bytes go in as they arrive, complete
/// events come out. Each byte is searched for the blank line that ends an event once
/// (the search resumes where the last one stopped), and consumed bytes are dropped only
/// when they are at least half the buffer, so a stream of S bytes costs O(S) whatever
/// the chunk size: a 150 MB snapshot is not rescanned after every chunk.
#[derive(Debug, Default)]
struct SseParser {
    /// Received bytes; `buffer[start..]` is not consumed yet.
    buffer: Vec<u8>,
    /// Start of the first byte not yet part of a returned event.
    start: usize,
    /// Where the blank-line search resumes: no blank line starts in `start..scanned`.
    scanned: usize,
    /// Bytes the blank-line search has looked at, over the parser's life: what the
    /// linear-cost test counts.
    examined: u64,
}

impl SseParser {
    /// Appends received bytes.
    fn push(&mut self, bytes: &[u8]) {
        // Drop consumed bytes only when they outweigh the rest: amortised O(1) a byte.
        if self.start > 0 && self.start >= self.buffer.len() - self.start {
            self.buffer.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as an event (an incomplete event).
    fn pending(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next complete event (comments and events without data skipped), or `None`
    /// until more bytes arrive.
    fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let (end, next) = self.find_blank_line()?;
            let block = self.buffer.get(self.start..end)?;
            let event = parse_block(block);
            self.start = next;
            self.scanned = next;
            if !event.data.is_empty() || !event.event.is_empty() {
                return Some(event);
            }
            // A comment (keep-alive) only: look further.
        }
    }

    /// Absolute positions of the first blank line from `scanned`: (end of the block,
    /// start of what follows). On `None`, `scanned` moves to where the next search
    /// must start (a blank line may straddle the next chunk).
    fn find_blank_line(&mut self) -> Option<(usize, usize)> {
        let bytes = &self.buffer;
        let mut i = self.scanned.max(self.start);
        while i < bytes.len() {
            self.examined += 1;
            if bytes.get(i) == Some(&b'\n') {
                match bytes.get(i + 1) {
                    Some(b'\n') => return Some((i, i + 2)),
                    Some(b'\r') if bytes.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                    Some(b'\r') if i + 2 >= bytes.len() => {
                        // `\n\r` at the end: the `\n` may still complete it.
                        self.scanned = i;
                        return None;
                    }
                    None => {
                        self.scanned = i;
                        return None;
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.scanned = bytes.len();
        None
    }
}

/// Fields of one event block.
fn parse_block(block: &[u8]) -> SseEvent {
    let text = String::from_utf8_lossy(block);
    let mut event = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "data" => data.push(value),
            _ => {} // `id` and `retry` are implied by the JSON
        }
    }
    event.data = data.join("\n");
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in chunks of `chunk` bytes; every event and the parser.
    fn parse_in_chunks(text: &[u8], chunk: usize) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for piece in text.chunks(chunk) {
            parser.push(piece);
            while let Some(event) = parser.next_event() {
                events.push(event);
            }
        }
        (events, parser)
    }

    #[test]
    fn events_are_split_on_blank_lines_and_comments_skipped() {
        let text = b": keep-alive\n\nevent: put\nid: 3\ndata: {\"a\":1}\n\nevent: del";
        let (events, parser) = parse_in_chunks(text, text.len());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "put");
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(
            parser.pending(),
            b"event: del".len(),
            "incomplete event waits"
        );
    }

    #[test]
    fn crlf_and_multiline_data_are_understood() {
        let text = b"event: x\r\ndata: a\r\ndata: b\r\n\r\n";
        let (events, parser) = parse_in_chunks(text, text.len());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "x");
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(parser.pending(), 0);
    }

    #[test]
    fn a_lone_comment_is_consumed() {
        let text = b": keep-alive\n\n";
        let (events, parser) = parse_in_chunks(text, text.len());
        assert!(events.is_empty());
        assert_eq!(parser.pending(), 0);
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let text = b": ka\n\nevent: a\r\ndata: 1\r\n\r\nevent: b\ndata: 2\ndata: 3\n\n: ka\r\n\r\nevent: c\ndata: 4\n\n";
        let (whole, _) = parse_in_chunks(text, text.len());
        assert_eq!(whole.len(), 3);
        for chunk in 1..text.len() {
            let (events, parser) = parse_in_chunks(text, chunk);
            assert_eq!(events, whole, "chunks of {chunk} bytes");
            assert_eq!(parser.pending(), 0);
        }
    }

    /// Issue 9: the parser rescanned its whole buffer after every chunk, so a snapshot
    /// of S bytes cost about S²/chunk (769 MB examined for a 5 MB stream). A 100 MB
    /// stream, one 60 MB snapshot and 40 MB of small events, arriving in 16 KiB chunks,
    /// must be searched about once.
    #[test]
    fn a_100_mb_stream_is_parsed_in_linear_time() {
        let mut stream = Vec::with_capacity(101 << 20);
        stream.extend_from_slice(b"event: snapshot\ndata: {\"nodes\":\"");
        stream.resize(60 << 20, b'x');
        stream.extend_from_slice(b"\"}\n\n");
        let mut puts = 0;
        while stream.len() < 100 << 20 {
            stream.extend_from_slice(
                format!("event: put\nid: {puts}\ndata: {{\"revision\":{puts}}}\n\n: ka\n\n")
                    .as_bytes(),
            );
            puts += 1;
        }
        let (events, parser) = parse_in_chunks(&stream, 16 * 1024);
        assert_eq!(events.len(), 1 + puts);
        assert_eq!(events[0].event, "snapshot");
        assert_eq!(
            events[0].data.len(),
            (60 << 20) - "event: snapshot\ndata: ".len() + 2
        );
        assert_eq!(parser.pending(), 0);
        let size = stream.len() as u64;
        assert!(
            parser.examined <= size + size / 100,
            "examined {} bytes for a {size} byte stream",
            parser.examined
        );
    }
}
