//! One long-lived etcd `LeaseKeepAlive` stream shared by every lease of a registry.
//!
//! etcd's keep-alive RPC is a bidirectional stream that accepts any lease id in any
//! request and answers each request, in order, with that id and its new TTL (0 when the
//! lease is gone). So one stream carries every refresh of a registry: a refresh sends
//! its lease id and waits for the answer with that id, instead of opening a stream of
//! its own. Answers are matched to waiters by lease id (first waiter of that id on the
//! same connection first, since etcd answers one stream's requests in order).
//!
//! Bounded: at most `max_in_flight` keep-alives wait for an answer at once (more callers
//! wait for a slot, within their timeout); a waiter whose caller gave up stays in the
//! table, holding its slot, until its answer or the end of its connection removes it.
//! When the stream breaks (etcd restarted, connection lost), every waiter on it is told
//! so and sends again (at most three attempts in all, within the timeout) on a fresh
//! stream, opened by the next keep-alive with its own lease as the first request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tonic::Code;

use super::map_etcd_error;
use crate::{Error, Result};

/// How many times a keep-alive is sent again after its stream broke under it.
const ATTEMPTS: usize = 3;

/// What etcd said about a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAlive {
    /// Renewed. `revision` is the store revision in the answer's header, when known:
    /// nothing in etcd changed after it when the keep-alive was served.
    Alive {
        /// The header revision of the answer (`None` for the stream's first answer,
        /// which etcd-client consumes itself).
        revision: Option<i64>,
    },
    /// The lease does not exist (expired or revoked).
    Gone,
}

/// The answer handed to one waiter.
enum Answer {
    /// etcd answered for the lease.
    Done(KeepAlive),
    /// The stream broke before the answer came: send again on a new one.
    Lost,
}

/// One caller waiting for an answer.
struct Waiter {
    /// The connection the request went out on.
    generation: u64,
    /// Where the answer goes (a caller that gave up has dropped the receiver).
    reply: oneshot::Sender<Answer>,
    /// The in-flight slot, released when the waiter leaves the table.
    _permit: OwnedSemaphorePermit,
}

/// Waiters by lease id, in request order; shared with the connections' reader tasks.
#[derive(Default)]
struct Pending {
    /// Lease id -> waiters, oldest first.
    by_lease: HashMap<i64, VecDeque<Waiter>>,
    /// Total number of waiters (sum of the queues).
    len: usize,
}

impl Pending {
    /// Removes the oldest waiter of `lease` on connection `generation`.
    fn take(&mut self, lease: i64, generation: u64) -> Option<Waiter> {
        let queue = self.by_lease.get_mut(&lease)?;
        let at = queue.iter().position(|w| w.generation == generation)?;
        let waiter = queue.remove(at);
        if queue.is_empty() {
            self.by_lease.remove(&lease);
        }
        self.len = self.len.saturating_sub(usize::from(waiter.is_some()));
        waiter
    }

    /// Removes every waiter of connection `generation`.
    fn drain(&mut self, generation: u64) -> Vec<Waiter> {
        let mut out = Vec::new();
        self.by_lease.retain(|_, queue| {
            let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                queue.drain(..).partition(|w| w.generation == generation);
            out.extend(gone);
            *queue = kept;
            !queue.is_empty()
        });
        self.len = self.len.saturating_sub(out.len());
        out
    }
}

/// One open keep-alive stream.
struct Connection {
    /// Distinguishes this stream's waiters from those of earlier ones.
    generation: u64,
    /// Lease ids to send; the writer task forwards them to etcd. Capacity is the
    /// in-flight bound, so a sender holding a slot never finds it full.
    requests: mpsc::Sender<i64>,
    /// Set by the reader task when the stream ended or failed.
    broken: Arc<AtomicBool>,
}

/// The shared keep-alive stream of one registry (see the module docs).
pub(super) struct LeaseStream {
    /// The etcd connection.
    client: Client,
    /// Bound on one keep-alive, connecting included.
    timeout: Duration,
    /// The endpoints, for error messages.
    endpoints: String,
    /// Slots for keep-alives awaiting an answer.
    slots: Arc<Semaphore>,
    /// The bound those slots enforce.
    max_in_flight: usize,
    /// Waiters by lease id.
    pending: Arc<Mutex<Pending>>,
    /// The current stream, if one was opened (it may have broken since). A std mutex,
    /// held only to clone or replace it.
    current: Mutex<Option<Arc<Connection>>>,
    /// Held by the one caller opening a new stream.
    opening: tokio::sync::Mutex<()>,
    /// Source of connection generations.
    generations: AtomicU64,
}

impl LeaseStream {
    /// A stream for `client`, opened on first use.
    pub(super) fn new(
        client: Client,
        timeout: Duration,
        endpoints: String,
        max_in_flight: usize,
    ) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            client,
            timeout,
            endpoints,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            pending: Arc::new(Mutex::new(Pending::default())),
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
        }
    }

    /// How many keep-alives are waiting for their answer (never above the bound).
    pub(super) fn in_flight(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len
    }

    /// Renews `lease` once: [`KeepAlive::Gone`] when etcd no longer has it.
    pub(super) async fn keep_alive(&self, lease: i64) -> Result<KeepAlive> {
        let deadline = Instant::now() + self.timeout;
        let mut lost = 0;
        loop {
            let permit = match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "etcd at {}: lease keep-alive found all {} keep-alive slots busy for {:?}",
                        self.endpoints, self.max_in_flight, self.timeout
                    )));
                }
            };
            let reply = match self.send(lease, permit, deadline).await? {
                Sent::Answered(answer) => return Ok(answer),
                Sent::Waiting(reply) => reply,
            };
            match tokio::time::timeout_at(deadline, reply).await {
                Ok(Ok(Answer::Done(answer))) => return Ok(answer),
                // The stream broke (or its reader went away) before answering.
                Ok(Ok(Answer::Lost) | Err(_)) => {
                    lost += 1;
                    if lost >= ATTEMPTS {
                        return Err(Error::Unavailable(format!(
                            "etcd at {}: lease keep-alive stream kept breaking",
                            self.endpoints
                        )));
                    }
                }
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "etcd at {}: lease keep-alive got no answer within {:?}",
                        self.endpoints, self.timeout
                    )));
                }
            }
        }
    }

    /// Queues a keep-alive for `lease` on the open stream, opening one first if needed
    /// (opening answers for `lease` itself).
    async fn send(
        &self,
        lease: i64,
        permit: OwnedSemaphorePermit,
        deadline: Instant,
    ) -> Result<Sent> {
        let permit = match self.enqueue(lease, permit) {
            Ok(reply) => return Ok(Sent::Waiting(reply)),
            Err(permit) => permit,
        };
        // No usable stream: one caller opens it while the others wait, then use it.
        let _opening = tokio::time::timeout_at(deadline, self.opening.lock())
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "etcd at {}: lease keep-alive stream not opened within {:?}",
                    self.endpoints, self.timeout
                ))
            })?;
        let permit = match self.enqueue(lease, permit) {
            Ok(reply) => return Ok(Sent::Waiting(reply)),
            Err(permit) => permit,
        };
        // The opening request is answered before `open` returns: it needs no slot.
        drop(permit);
        match self.open(lease, deadline).await? {
            Opened::Gone => Ok(Sent::Answered(KeepAlive::Gone)),
            Opened::Open(open) => {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(open));
                Ok(Sent::Answered(KeepAlive::Alive { revision: None }))
            }
        }
    }

    /// Queues a keep-alive for `lease` on the current stream if it is healthy; hands
    /// the slot back when there is none. Never awaits: refreshes share no async lock
    /// (a fair one hands over to the next waiter only once that task is scheduled,
    /// which serialises every refresh behind the scheduler).
    fn enqueue(
        &self,
        lease: i64,
        permit: OwnedSemaphorePermit,
    ) -> std::result::Result<oneshot::Receiver<Answer>, OwnedSemaphorePermit> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(open) = current.filter(|c| !c.broken.load(Ordering::Acquire)) else {
            return Err(permit);
        };
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Never full (the channel holds at most one id per slot); closed when the
        // writer is gone, i.e. the stream broke.
        if open.requests.try_send(lease).is_err() {
            return Err(permit);
        }
        pending
            .by_lease
            .entry(lease)
            .or_default()
            .push_back(Waiter {
                generation: open.generation,
                reply: tx,
                _permit: permit,
            });
        pending.len += 1;
        Ok(rx)
    }

    /// Opens a new stream, whose first request renews `lease`, and starts its writer
    /// and reader tasks.
    async fn open(&self, lease: i64, deadline: Instant) -> Result<Opened> {
        let mut lc = self.client.lease_client();
        let (keeper, stream) = match tokio::time::timeout_at(deadline, lc.keep_alive(lease)).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(msg))) if msg.contains("not found") => {
                return Ok(Opened::Gone);
            }
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.code() == Code::NotFound => {
                return Ok(Opened::Gone);
            }
            Ok(Err(e)) => return Err(map_etcd_error(&self.endpoints, "lease keep-alive", e)),
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "etcd at {}: lease keep-alive got no answer within {:?}",
                    self.endpoints, self.timeout
                )));
            }
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let (requests, ids) = mpsc::channel(self.max_in_flight);
        let broken = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_requests(keeper, ids));
        tokio::spawn(read_answers(
            stream,
            generation,
            self.pending.clone(),
            broken.clone(),
            writer,
        ));
        Ok(Opened::Open(Connection {
            generation,
            requests,
            broken,
        }))
    }
}

/// The outcome of queueing a keep-alive.
enum Sent {
    /// Answered already (a new stream's first request).
    Answered(KeepAlive),
    /// Queued; the answer comes here.
    Waiting(oneshot::Receiver<Answer>),
}

/// The outcome of opening a stream.
enum Opened {
    /// Open, and the first lease renewed.
    Open(Connection),
    /// etcd refused the first lease: it does not exist.
    Gone,
}

/// Forwards lease ids to etcd until the registry drops the stream or etcd's side closes.
async fn write_requests(mut keeper: LeaseKeeper, mut ids: mpsc::Receiver<i64>) {
    while let Some(id) = ids.recv().await {
        keeper.id = id;
        if keeper.keep_alive().await.is_err() {
            break;
        }
    }
}

/// Hands each answer to the oldest waiter for its lease id; when the stream ends, marks
/// it broken, stops the writer and tells every remaining waiter.
async fn read_answers(
    mut stream: LeaseKeepAliveStream,
    generation: u64,
    pending: Arc<Mutex<Pending>>,
    broken: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<()>,
) {
    loop {
        match stream.message().await {
            Ok(Some(answer)) => {
                let outcome = if answer.ttl() > 0 {
                    KeepAlive::Alive {
                        revision: answer.header().map(|h| h.revision()),
                    }
                } else {
                    KeepAlive::Gone
                };
                let waiter = pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(answer.id(), generation);
                if let Some(waiter) = waiter {
                    // The caller may have given up; its slot is freed either way.
                    let _ = waiter.reply.send(Answer::Done(outcome));
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "etcd lease keep-alive stream broke");
                break;
            }
        }
    }
    broken.store(true, Ordering::Release);
    writer.abort();
    let waiters = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(generation);
    for waiter in waiters {
        let _ = waiter.reply.send(Answer::Lost);
    }
}
