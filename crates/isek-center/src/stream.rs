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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
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
    /// The watcher's admission slot, given back with the state.
    _hold: Box<dyn Send + Sync + 'static>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.metrics.watcher_closed();
    }
}

/// The body of one `GET /v1/watch` answer: the initial frames, then live changes
/// (scoped by `filter`, if any), keep-alive comments on silence, and a final
/// `resync` if the watcher lags. `hold` (the watcher's admission slot) lives as long
/// as the stream's state.
///
/// With `stall`, a watch task releases the stream when its body yielded a frame and
/// then went unpolled for `stall` while changes are pending: an HTTP/2 client that
/// answers pings but never opens its stream's flow-control window stops hyper from
/// polling the body, so neither the socket's write deadline (the socket drains)
/// nor lagging (the body never takes a change) would end it. Released, its state
/// (slot, feed position, queued frames) is dropped at once, and the body ends
/// when it is next polled.
pub(crate) fn watch_stream(
    start: WatchStart,
    filter: Option<Filter>,
    streams: Streams,
    hold: Box<dyn Send + Sync + 'static>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let Streams {
        keepalive,
        closed,
        revision,
        metrics,
        stall,
    } = streams;
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
        _hold: hold,
    };
    let shared = Arc::new(Shared {
        parked: Mutex::new(Some((state, tokio::time::Instant::now()))),
    });
    if let Some(stall) = stall {
        tokio::spawn(watch_for_stall(Arc::downgrade(&shared), stall));
    }
    futures::stream::unfold(shared, |shared| async move {
        let mut s = shared.take()?;
        let frame = next_frame(&mut s).await?;
        shared.park(s);
        Some((Ok(frame), shared))
    })
}

/// What a change stream is made with besides its start, filter and slot.
pub(crate) struct Streams {
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// Turns true when the center shuts down.
    pub closed: watch::Receiver<bool>,
    /// The center's current revision.
    pub revision: Arc<AtomicU64>,
    /// Where streams count themselves.
    pub metrics: Arc<Metrics>,
    /// Release a stream whose body goes unpolled this long with changes pending
    /// (`None`: never).
    pub stall: Option<Duration>,
}

/// What a watcher's body and its stall watch share.
struct Shared {
    /// The stream's state and when it was parked, between a frame yielded and the
    /// next poll; `None` while a poll runs, or once released.
    parked: Mutex<Option<(WatchStream, tokio::time::Instant)>>,
}

impl Shared {
    /// The state, for a poll; `None` once released.
    fn take(&self) -> Option<WatchStream> {
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        parked.take().map(|(s, _)| s)
    }

    /// Parks the state after yielding a frame.
    fn park(&self, s: WatchStream) {
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        *parked = Some((s, tokio::time::Instant::now()));
    }
}

/// Releases the stream behind `shared` once it has been parked for `stall` with
/// changes pending; ends with the stream.
async fn watch_for_stall(shared: Weak<Shared>, stall: Duration) {
    let mut tick = tokio::time::interval((stall / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let released = {
            let mut parked = shared.parked.lock().unwrap_or_else(PoisonError::into_inner);
            let stalled = parked.as_ref().is_some_and(|(s, at)| {
                at.elapsed() >= stall && (!s.queue.is_empty() || !s.live.is_empty())
            });
            if stalled { parked.take() } else { None }
        };
        if let Some((s, _)) = released {
            tracing::info!(
                stall_ms = stall.as_millis() as u64,
                pending = s.queue.len() + s.live.len(),
                "a watcher's stream was not read for --write-timeout with changes pending (an HTTP/2 flow-control window never opened?); released"
            );
            drop(s);
            return;
        }
    }
}

/// The next frame of `s`; `None` when the stream ends.
async fn next_frame(s: &mut WatchStream) -> Option<Bytes> {
    if let Some(frame) = s.queue.pop_front() {
        return Some(frame);
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
                    match &s.filter {
                        None => return Some(change.frame),
                        Some(filter) => match change.scoped(filter) {
                            Some(frame) => return Some(frame),
                            None => continue,
                        },
                    }
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
                    return Some(resync_frame(s.revision.load(Ordering::Acquire), &message));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            () = tokio::time::sleep_until(quiet_until) => {
                return Some(Bytes::from_static(KEEPALIVE_FRAME));
            }
        }
    }
}
