//! The store writer: one thread owns the store and commits writes in groups.
//!
//! Requests arrive on a channel, each with a oneshot reply. The writer takes
//! everything queued (up to `max_batch`) into ONE transaction, commits it (one fsync),
//! applies the changes to the lease table in commit order, and only then answers every
//! waiter. Under load, batches grow with concurrency, so durable throughput is not
//! capped at one fsync per request (group commit).
//!
//! Decisions (is this node live? is this expiry still current?) are taken against the
//! table plus the earlier operations of the same batch, so a batch behaves exactly
//! like its operations run one by one in queue order. Expiry deletes only remove the
//! generation that ran out: a re-registration that happened meanwhile survives.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::lease::Expired;
use crate::ownership::{Guard, Owner, Refusal};
use crate::registry::{Core, NodeRecord};
use crate::store::{Store, StoreOp};

/// Why a register or deregister could not be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The store failed to commit; nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The center is stopping and accepts no more writes.
    #[error("the center is shutting down")]
    ShuttingDown,
    /// The request lacks the proof of ownership the node needs, or the center is
    /// full: nothing was changed.
    #[error("{0}")]
    Refused(Refusal),
}

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Register or replace a node.
    Put {
        /// The node id.
        id: Arc<str>,
        /// Its record.
        record: NodeRecord,
        /// The proof the registration carries, checked against the current owner.
        guard: Guard,
        /// Timestamp (Unix ms) of a signed registration's op proof: accepted by the
        /// replay horizon only after the ownership check passed, so a refused
        /// registration cannot push the horizon of a node it does not own.
        timestamp: Option<u64>,
        /// Answered after the commit.
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Deregister a node; the reply says whether it was live.
    Delete {
        /// The node id.
        id: Arc<str>,
        /// The proof the deregistration carries, checked against the current owner.
        guard: Guard,
        /// Answered after the commit (or at once when the node is not live).
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// Remove leases that ran out (from the reaper; nobody waits).
    Expire {
        /// What ran out, with generations.
        expired: Vec<Expired>,
    },
}

/// One decided operation of a batch.
enum Plan {
    /// Store and index a node.
    Put {
        /// The node id.
        id: Arc<str>,
        /// Its record.
        record: NodeRecord,
        /// The waiter.
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Remove a live node.
    Delete {
        /// The node id.
        id: Arc<str>,
        /// The waiter.
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// Remove one expired generation.
    Expire {
        /// The node id.
        id: Arc<str>,
        /// The generation that ran out.
        generation: u64,
    },
}

/// Starts the writer thread; the returned receiver fires when it has stopped (all
/// senders dropped, queue drained, store closed).
pub(crate) fn spawn(
    store: Store,
    core: Arc<Core>,
    rx: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    max_nodes: Option<usize>,
) -> Result<oneshot::Receiver<Result<()>>> {
    let (done, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("isek-store-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                store,
                core,
                max_batch: max_batch.max(1),
                max_nodes,
            };
            writer.run(rx);
            // Closing the connection checkpoints the WAL.
            let closed = match writer.store {
                Store::Sqlite(conn) => conn.close().map_err(|(_, e)| Error::Store(e)),
                Store::Memory => Ok(()),
            };
            let _ = done.send(closed);
        })
        .map_err(Error::Io)?;
    Ok(done_rx)
}

/// The writer thread's state.
struct Writer {
    /// The store it alone touches.
    store: Store,
    /// The registry core it applies commits to.
    core: Arc<Core>,
    /// Most operations per transaction.
    max_batch: usize,
    /// Most nodes the table may hold; registrations of new ids beyond it are refused.
    max_nodes: Option<usize>,
}

impl Writer {
    /// Serves batches until every sender is gone.
    fn run(&mut self, mut rx: mpsc::Receiver<WriteOp>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.process(std::mem::take(&mut batch));
        }
    }

    /// Decides, commits, applies and answers one batch.
    fn process(&mut self, batch: Vec<WriteOp>) {
        let plans = self.decide(batch);
        if plans.is_empty() {
            return;
        }
        let ops: Vec<StoreOp<'_>> = plans
            .iter()
            .map(|p| match p {
                Plan::Put { id, record, .. } => StoreOp::Upsert { id, record },
                Plan::Delete { id, .. } | Plan::Expire { id, .. } => StoreOp::Delete { id },
            })
            .collect();
        let started = std::time::Instant::now();
        let committed = self.store.commit(&ops);
        let size = ops.len();
        drop(ops);
        tracing::debug!(
            size,
            commit_ms = started.elapsed().as_secs_f64() * 1e3,
            "store commit"
        );
        match committed {
            Ok(()) => self.apply(plans),
            Err(e) => self.fail(plans, &e),
        }
    }

    /// Turns requests into plans, answering at once those that change nothing.
    fn decide(&self, batch: Vec<WriteOp>) -> Vec<Plan> {
        let now = Instant::now();
        let state = self.core.lock();
        // Ids changed earlier in this batch: whether they are live after that change.
        let mut touched: HashMap<Arc<str>, bool> = HashMap::new();
        // Owners of ids put earlier in this batch (ownership checks see them).
        let mut owners: HashMap<Arc<str>, Option<Arc<Owner>>> = HashMap::new();
        let current_owner =
            |id: &Arc<str>, owners: &HashMap<Arc<str>, Option<Arc<Owner>>>| match owners.get(id) {
                Some(owner) => owner.clone(),
                None => state
                    .leases
                    .get(id, now)
                    .and_then(|e| e.value.owner().cloned()),
            };
        // Entries in the table plus those this batch adds (for `max_nodes`).
        let mut count = state.leases.len();
        let max_nodes = self.max_nodes;
        let mut plans = Vec::with_capacity(batch.len());
        for op in batch {
            match op {
                WriteOp::Put {
                    id,
                    record,
                    guard,
                    timestamp,
                    reply,
                } => {
                    let live = touched
                        .get(&id)
                        .copied()
                        .unwrap_or_else(|| state.leases.is_live(&id, now));
                    let current = if live {
                        current_owner(&id, &owners)
                    } else {
                        None
                    };
                    if let Err(refusal) = guard.check_register(&id, current.as_deref()) {
                        let _ = reply.send(Err(WriteError::Refused(refusal)));
                        continue;
                    }
                    let known = live || state.leases.generation(&id).is_some();
                    if !known && max_nodes.is_some_and(|max| count >= max) {
                        let _ = reply.send(Err(WriteError::Refused(Refusal {
                            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            message: format!("center is full ({} nodes)", count),
                        })));
                        continue;
                    }
                    if let Some(timestamp) = timestamp {
                        let now_ms = crate::ownership::unix_now();
                        if let Err(refusal) = self.core.horizons.accept(&id, timestamp, now_ms) {
                            let _ = reply.send(Err(WriteError::Refused(refusal)));
                            continue;
                        }
                    }
                    if !known {
                        count += 1;
                    }
                    touched.insert(Arc::clone(&id), true);
                    owners.insert(Arc::clone(&id), record.owner().cloned());
                    plans.push(Plan::Put { id, record, reply });
                }
                WriteOp::Delete { id, guard, reply } => {
                    let live = touched
                        .get(&id)
                        .copied()
                        .unwrap_or_else(|| state.leases.is_live(&id, now));
                    if live {
                        let current = current_owner(&id, &owners);
                        if let Err(refusal) = guard.check_act(&id, current.as_deref()) {
                            let _ = reply.send(Err(WriteError::Refused(refusal)));
                            continue;
                        }
                        touched.insert(Arc::clone(&id), false);
                        owners.insert(Arc::clone(&id), None);
                        plans.push(Plan::Delete { id, reply });
                    } else {
                        let _ = reply.send(Ok(false));
                    }
                }
                WriteOp::Expire { expired } => {
                    for Expired { id, generation } in expired {
                        // Re-registered or deregistered since it ran out: not ours.
                        if touched.contains_key(&id)
                            || state.leases.generation(&id) != Some(generation)
                        {
                            continue;
                        }
                        touched.insert(Arc::clone(&id), false);
                        plans.push(Plan::Expire { id, generation });
                    }
                }
            }
        }
        plans
    }

    /// Applies committed plans to the table in order, then answers the waiters.
    fn apply(&self, plans: Vec<Plan>) {
        let now = Instant::now();
        let mut put_replies = Vec::new();
        let mut delete_replies = Vec::new();
        let (mut puts, mut deletes, mut expiries) = (0usize, 0usize, 0usize);
        {
            let mut state = self.core.lock();
            let before = state.leases.next_deadline();
            for plan in plans {
                match plan {
                    Plan::Put { id, record, reply } => {
                        let generation = state.log_put(&id, &record);
                        state.leases.insert(id, record, generation, now);
                        put_replies.push(reply);
                        puts += 1;
                    }
                    Plan::Delete { id, reply } => {
                        state.leases.remove(&id);
                        state.log_delete(&id, "deregister");
                        delete_replies.push(reply);
                        deletes += 1;
                    }
                    Plan::Expire { id, generation } => {
                        if state.leases.remove_generation(&id, generation).is_some() {
                            state.log_delete(&id, "expire");
                            expiries += 1;
                            tracing::debug!(node_id = %id, "lease expired; node removed");
                        }
                    }
                }
            }
            self.core.revision.store(state.revision, Ordering::Release);
            let after = state.leases.next_deadline();
            let earlier = match (before, after) {
                (None, Some(_)) => true,
                (Some(b), Some(a)) => a < b,
                _ => false,
            };
            if earlier {
                self.core.reaper_wake.notify_one();
            }
        }
        self.core.snapshot.invalidate();
        for reply in put_replies {
            let _ = reply.send(Ok(()));
        }
        for reply in delete_replies {
            let _ = reply.send(Ok(true));
        }
        tracing::debug!(puts, deletes, expiries, "batch committed");
    }

    /// Answers every waiter of a batch whose commit failed. Expired leases are
    /// removed from memory anyway (they must not linger); their rows come back with
    /// a fresh lease after a restart, which is harmless.
    fn fail(&self, plans: Vec<Plan>, error: &Error) {
        tracing::error!(%error, "store commit failed");
        let message = error.to_string();
        let mut state = self.core.lock();
        for plan in plans {
            match plan {
                Plan::Put { reply, .. } => {
                    let _ = reply.send(Err(WriteError::Unavailable(message.clone())));
                }
                Plan::Delete { reply, .. } => {
                    let _ = reply.send(Err(WriteError::Unavailable(message.clone())));
                }
                Plan::Expire { id, generation } => {
                    if state.leases.remove_generation(&id, generation).is_some() {
                        state.log_delete(&id, "expire");
                    }
                }
            }
        }
        self.core.revision.store(state.revision, Ordering::Release);
        drop(state);
        self.core.snapshot.invalidate();
    }
}
