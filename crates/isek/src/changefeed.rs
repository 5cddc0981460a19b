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
    base: String,
    timeout: Duration,
) -> Result<Option<NodeEventStream>> {
    let feed = Feed {
        http,
        base,
        timeout,
        position: None,
        epoch: None,
        silence: INITIAL_SILENCE,
    };
    let response = match feed.connect().await? {
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
    /// Base URL of the center.
    base: String,
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
    /// The watch URL for the current position.
    fn url(&self) -> String {
        match self.position {
            Some(p) => format!(
                "{}{WATCH_PATH}?since={}&epoch={}",
                self.base, p.revision, p.epoch
            ),
            None => format!("{}{WATCH_PATH}", self.base),
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
                Err(e) => last_error = e,
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
        let mut buffer: Vec<u8> = Vec::new();
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
            buffer.extend_from_slice(&bytes);
            while let Some((event, used)) = next_event(&buffer) {
                buffer.drain(..used);
                if let Some(stop) = self.handle(event, tx).await {
                    return stop;
                }
            }
            if buffer.len() > MAX_EVENT_BYTES {
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

/// The first complete event in `buffer` (comments and events without data skipped)
/// and how many bytes it used, or `None` when no complete event is there yet.
fn next_event(buffer: &[u8]) -> Option<(SseEvent, usize)> {
    let mut start = 0;
    loop {
        let rest = buffer.get(start..)?;
        let end = find_blank_line(rest)?;
        let block = rest.get(..end.0)?;
        start += end.1;
        let event = parse_block(block);
        if !event.data.is_empty() || !event.event.is_empty() {
            return Some((event, start));
        }
        // A comment (keep-alive) only: look further.
        if start >= buffer.len() {
            return Some((SseEvent::default(), start));
        }
    }
}

/// Position of the first blank line: (end of the block, start of what follows).
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'\n') {
            match bytes.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if bytes.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
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

/// The innermost error of a chain: the OS or protocol reason.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_on_blank_lines_and_comments_skipped() {
        let text = b": keep-alive\n\nevent: put\nid: 3\ndata: {\"a\":1}\n\nevent: del";
        let (event, used) = next_event(text).unwrap();
        assert_eq!(event.event, "put");
        assert_eq!(event.data, "{\"a\":1}");
        assert_eq!(&text[used..], b"event: del");
        assert!(
            next_event(&text[used..]).is_none(),
            "incomplete event waits"
        );
    }

    #[test]
    fn crlf_and_multiline_data_are_understood() {
        let text = b"event: x\r\ndata: a\r\ndata: b\r\n\r\n";
        let (event, used) = next_event(text).unwrap();
        assert_eq!(event.event, "x");
        assert_eq!(event.data, "a\nb");
        assert_eq!(used, text.len());
    }

    #[test]
    fn a_lone_comment_is_consumed() {
        let text = b": keep-alive\n\n";
        let (event, used) = next_event(text).unwrap();
        assert_eq!(event, SseEvent::default());
        assert_eq!(used, text.len());
    }
}
