//! The body stream of one `GET /v1/watch` answer: initial frames, live changes from
//! the [`crate::feed`] broadcast, keep-alive comments, a final `resync` when the
//! watcher lags, and the end when the center shuts down.
//!
//! A stream scoped by a filter (`?filter=`) passes each change through
//! `Change::scoped` here, in the watcher's own task and never under the state
//! lock: the shared frame when the node matches, a `delete` with reason `filter`
//! when it stops matching, nothing otherwise. An unfiltered stream sends the shared
//! frames as they are.
//!
//! Level 2: reads the feed's receiver and two shared values (the shutdown flag, the
//! current revision); it never locks the registry state and knows no HTTP type (the
//! `http` layer wraps the stream into a response body).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use isek::filter::Filter;
use tokio::sync::{broadcast, watch};

use crate::feed::{Change, WatchStart};
use crate::metrics::{Metrics, ResyncReason};
use crate::render::{KEEPALIVE_FRAME, resync_frame};

/// The state of one watcher's body stream.
struct WatchStream {
    /// Frames not yet sent.
    queue: VecDeque<Bytes>,
    /// Live changes.
    live: broadcast::Receiver<Change>,
    /// Revision of the last change sent (the broadcast could in theory repeat one).
    after: u64,
    /// Keep-alive interval.
    keepalive: Duration,
    /// Turns true when the center shuts down: the stream ends so shutdown never waits
    /// for watchers.
    closed: watch::Receiver<bool>,
    /// The center's current revision, for the `resync` event of a lagging watcher.
    revision: Arc<AtomicU64>,
    /// Set after the final frame: the next poll ends the stream.
    done: bool,
    /// Where the stream counts itself (open watchers, lag, resyncs).
    metrics: Arc<Metrics>,
    /// The filter of a scoped stream (`None`: every change).
    filter: Option<Filter>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.metrics.watcher_closed();
    }
}

/// The body of one `GET /v1/watch` answer: the initial frames, then live changes
/// (scoped by `filter`, if any), keep-alive comments on silence, and a final
/// `resync` if the watcher lags.
pub(crate) fn watch_stream(
    start: WatchStart,
    filter: Option<Filter>,
    keepalive: Duration,
    closed: watch::Receiver<bool>,
    revision: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    metrics.watcher_opened();
    let state = WatchStream {
        queue: start.initial.into(),
        live: start.live,
        after: start.after,
        keepalive,
        closed,
        revision,
        done: false,
        metrics,
        filter,
    };
    futures::stream::unfold(state, |mut s| async move {
        if let Some(frame) = s.queue.pop_front() {
            return Some((Ok(frame), s));
        }
        if s.done {
            return None;
        }
        // From the last frame sent: changes a filter skips are no traffic, so they
        // do not put the keep-alive off.
        let quiet_until = tokio::time::Instant::now() + s.keepalive;
        loop {
            let mut closed = s.closed.clone();
            let shutdown = async move {
                let _ = closed.wait_for(|c| *c).await;
            };
            tokio::select! {
                () = shutdown => return None,
                received = s.live.recv() => match received {
                    Ok(change) if change.revision <= s.after => continue,
                    Ok(change) => {
                        s.metrics.watcher_lag(s.live.len());
                        s.after = change.revision;
                        let frame = match &s.filter {
                            None => change.frame,
                            Some(filter) => match change.scoped(filter) {
                                Some(frame) => frame,
                                None => continue,
                            },
                        };
                        return Some((Ok(frame), s));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "watcher fell behind; sending resync");
                        s.metrics.resync(ResyncReason::Lagged);
                        s.done = true;
                        let message = format!(
                            "this watcher fell {missed} changes behind after revision {}; re-list from {}",
                            s.after,
                            isek::wire::center::NODES_PATH
                        );
                        let frame = resync_frame(s.revision.load(Ordering::Acquire), &message);
                        return Some((Ok(frame), s));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(quiet_until) => {
                    return Some((Ok(Bytes::from_static(KEEPALIVE_FRAME)), s));
                }
            }
        }
    })
}
