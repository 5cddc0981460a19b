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
//!
//! With a store shared by several centers (etcd), the writer applies nothing itself:
//! each op is committed at its own revision ([`Outcome::At`]), the follower applies
//! every center's changes in revision order, and the writer answers once the
//! follower has reached the batch's last revision. An op whose node another center
//! changed since this center's view ([`Outcome::Conflict`]) is refused with
//! [`WriteError::Unavailable`], to be retried on a fresh view.
//!
//! Level 2: the decisions are the pure `plan`; this module adds the thread, the
//! store commit and the application to `state`. It answers with
//! [`WriteError`]s and [`crate::policy::Refusal`]s, never HTTP statuses.

use std::sync::Arc;
use std::time::Duration;

use isek::identity::PublicKey;
use isek::wire::proof::TIMESTAMP_WINDOW_MS;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::dirlock::DirLock;
use crate::error::{Error, Result};
use crate::reserve::DiskReserve;
use crate::state::Core;
use crate::store::{Outcome, Store, StoreOp};

mod plan;

pub use plan::WriteError;
pub(crate) use plan::{Plan, WriteOp, plan};

/// Starts the writer thread; the returned receiver fires when it has stopped (all
/// senders dropped, queue drained, store closed, then `dir_lock` released). The
/// thread owns the lock so that no way of ending a center (shutdown, or the last
/// handle dropped) frees the directory while SQLite still holds it.
pub(crate) fn spawn(
    store: Store,
    dir_lock: Option<DirLock>,
    core: Arc<Core>,
    rx: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    max_nodes: Option<usize>,
    reserve: Option<DiskReserve>,
) -> Result<oneshot::Receiver<Result<()>>> {
    let (done, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("isek-store-writer".into())
        .spawn(move || {
            let shared = store.is_shared();
            let mut writer = Writer {
                shared,
                store,
                core,
                max_batch: max_batch.max(1),
                max_nodes,
                horizons_pruned_at: 0,
                reserve,
            };
            writer.run(rx);
            let Writer { store, .. } = writer;
            let closed = store.close();
            if let Some(lock) = dir_lock {
                lock.release();
            }
            let _ = done.send(closed);
        })
        .map_err(Error::Io)?;
    Ok(done_rx)
}

/// Longest a shared store's commit waits for the follower to apply it before the
/// writer answers anyway (the write is committed; this center's view lags).
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// The writer thread's state.
struct Writer {
    /// Whether the store is shared with other centers (see the module doc).
    shared: bool,
    /// The store it alone touches.
    store: Store,
    /// The registry core it applies commits to.
    core: Arc<Core>,
    /// Most operations per transaction.
    max_batch: usize,
    /// Most nodes the table may hold; registrations of new ids beyond it are refused.
    max_nodes: Option<usize>,
    /// When (Unix ms) stored replay horizons were last pruned.
    horizons_pruned_at: u64,
    /// Space kept free for deletes when the disk fills up.
    reserve: Option<DiskReserve>,
}

/// The store ops of `plans`, in order, and for each plan the index of its first op
/// (the one whose [`Outcome`] is the plan's).
fn store_ops(plans: &[Plan]) -> (Vec<StoreOp<'_>>, Vec<usize>) {
    let mut ops = Vec::with_capacity(plans.len() + 1);
    let mut firsts = Vec::with_capacity(plans.len());
    for p in plans {
        firsts.push(ops.len());
        match p {
            Plan::Put {
                id,
                record,
                horizon,
                expect,
                ..
            } => {
                ops.push(StoreOp::Upsert {
                    id,
                    record,
                    expect: *expect,
                });
                ops.extend(horizon_op(id, horizon.as_ref()));
            }
            Plan::Delete {
                id,
                horizon,
                expect,
                ..
            } => {
                ops.push(StoreOp::Delete {
                    id,
                    expect: *expect,
                });
                ops.extend(horizon_op(id, horizon.as_ref()));
            }
            Plan::Expire { id, generation } => ops.push(StoreOp::Expire {
                id,
                generation: *generation,
            }),
            Plan::Horizon { id, key, timestamp } => {
                ops.extend(horizon_op(id, Some(&(key.clone(), *timestamp))));
            }
        }
    }
    (ops, firsts)
}

/// Each plan with the outcome of its first store op (`firsts` from [`store_ops`]).
fn with_outcomes(plans: Vec<Plan>, firsts: &[usize], outcomes: &[Outcome]) -> Vec<(Plan, Outcome)> {
    plans
        .into_iter()
        .zip(firsts)
        .map(|(plan, &first)| (plan, outcomes.get(first).copied().unwrap_or(Outcome::Local)))
        .collect()
}

/// The store op raising the horizon of `id` to a signed op's `(key, timestamp)`.
fn horizon_op<'a>(id: &'a str, horizon: Option<&(PublicKey, u64)>) -> Option<StoreOp<'a>> {
    let (key, timestamp) = horizon?;
    Some(StoreOp::Horizon {
        id,
        key: key.to_base64().to_owned(),
        last_ms: *timestamp,
    })
}

impl Writer {
    /// Serves batches until every sender is gone.
    fn run(&mut self, mut rx: mpsc::Receiver<WriteOp>) {
        let mut batch = Vec::new();
        let mut probes = Vec::new();
        let mut deferred: Vec<WriteOp> = Vec::new();
        loop {
            let first = if deferred.is_empty() {
                match rx.blocking_recv() {
                    Some(op) => op,
                    None => break,
                }
            } else {
                // Ops handed back by the last plan go first, in their order.
                batch.append(&mut deferred);
                match rx.try_recv() {
                    Ok(op) => op,
                    Err(_) => {
                        deferred = self.process(std::mem::take(&mut batch));
                        continue;
                    }
                }
            };
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    WriteOp::Probe { reply } => probes.push(reply),
                    op => batch.push(op),
                }
                if batch.len() < self.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            deferred = self.process(std::mem::take(&mut batch));
            if !probes.is_empty() {
                let probed = self
                    .store
                    .probe()
                    .map_err(|e| WriteError::Unavailable(e.to_string()));
                for reply in probes.drain(..) {
                    let _ = reply.send(probed.clone());
                }
            }
        }
    }

    /// Decides, commits, applies and answers one batch; returns the ops `plan`
    /// handed back for the next one.
    fn process(&mut self, batch: Vec<WriteOp>) -> Vec<WriteOp> {
        let (plans, deferred) = self.decide(batch);
        if plans.is_empty() {
            return deferred;
        }
        let (mut ops, firsts) = store_ops(&plans);
        // About once per window, stored horizons too old to refuse anything go, in a
        // commit that happens anyway.
        let now_ms = crate::policy::unix_now();
        if now_ms.saturating_sub(self.horizons_pruned_at) > TIMESTAMP_WINDOW_MS {
            self.horizons_pruned_at = now_ms;
            ops.push(StoreOp::PruneHorizons {
                before: now_ms.saturating_sub(TIMESTAMP_WINDOW_MS),
            });
        }
        let started = std::time::Instant::now();
        let committed = self.store.commit(&ops);
        let size = plans.len();
        drop(ops);
        let elapsed = started.elapsed();
        self.core.metrics().commit(size, elapsed, committed.is_ok());
        tracing::debug!(
            size,
            commit_ms = elapsed.as_secs_f64() * 1e3,
            "store commit"
        );
        match committed {
            Ok(outcomes) => {
                self.apply(with_outcomes(plans, &firsts, &outcomes));
                if let Some(reserve) = &mut self.reserve {
                    reserve.refill();
                }
            }
            Err(e) => self.retry_deletes(plans, &e),
        }
        deferred
    }

    /// After a failed commit (the disk full, say): releases the disk reserve and
    /// commits the batch's deletes and expiries alone, so deregistration keeps working
    /// when nothing else can be written; everything else fails with `error`.
    fn retry_deletes(&mut self, plans: Vec<Plan>, error: &Error) {
        let (deletes, others): (Vec<Plan>, Vec<Plan>) = plans
            .into_iter()
            .partition(|p| matches!(p, Plan::Delete { .. } | Plan::Expire { .. }));
        if deletes.is_empty() {
            return self.fail(others, error);
        }
        if let Some(reserve) = &mut self.reserve {
            reserve.release();
        }
        let (ops, firsts) = store_ops(&deletes);
        let retried = self.store.commit(&ops);
        drop(ops);
        self.core
            .metrics()
            .commit(deletes.len(), std::time::Duration::ZERO, retried.is_ok());
        match retried {
            Ok(outcomes) => {
                tracing::warn!(%error, deletes = deletes.len(), failed = others.len(), "store commit failed; its deletes committed alone");
                self.fail(others, error);
                self.apply(with_outcomes(deletes, &firsts, &outcomes));
            }
            Err(again) => {
                self.fail(others, error);
                self.fail(deletes, &again);
            }
        }
    }

    /// Turns requests into plans, answering at once those that change nothing.
    fn decide(&self, batch: Vec<WriteOp>) -> (Vec<Plan>, Vec<WriteOp>) {
        let now = Instant::now();
        let state = self.core.lock();
        plan(
            batch,
            state.leases(),
            state.skeletons(),
            self.max_nodes,
            self.shared,
            now,
        )
    }

    /// Answers the plans a shared store committed, refused or failed, once the
    /// follower has applied the last committed revision (or [`APPLY_WAIT`] passed).
    fn answer_shared(&self, plans: Vec<(Plan, Outcome)>) {
        let mut last = 0;
        let mut answers: Vec<Box<dyn FnOnce()>> = Vec::with_capacity(plans.len());
        for (plan, outcome) in plans {
            let refusal = match outcome {
                Outcome::At(revision) => {
                    last = last.max(revision);
                    None
                }
                Outcome::Local => None,
                Outcome::Conflict(_) => Some(WriteError::Unavailable(
                    "the node changed on another center meanwhile; retry".to_owned(),
                )),
                Outcome::Failed => Some(WriteError::Unavailable(
                    "the shared store did not commit the change; retry".to_owned(),
                )),
            };
            match plan {
                Plan::Put { reply, .. } => answers.push(Box::new(move || {
                    let _ = reply.send(refusal.map_or(Ok(()), Err));
                })),
                Plan::Delete { reply, .. } => answers.push(Box::new(move || {
                    let _ = reply.send(refusal.map_or(Ok(true), Err));
                })),
                Plan::Expire { .. } | Plan::Horizon { .. } => {}
            }
        }
        if last > 0 && !self.core.wait_applied(last, APPLY_WAIT) {
            tracing::warn!(
                revision = last,
                "committed, but this center's view has not reached it yet"
            );
        }
        for answer in answers {
            answer();
        }
    }

    /// Applies committed plans to the table in order, then answers the waiters.
    fn apply(&self, plans: Vec<(Plan, Outcome)>) {
        if self.shared {
            return self.answer_shared(plans);
        }
        let now = Instant::now();
        let mut put_replies = Vec::new();
        let mut delete_replies = Vec::new();
        let (mut puts, mut deletes, mut expiries) = (0usize, 0usize, 0usize);
        {
            let mut state = self.core.lock();
            let before = state.leases().next_deadline();
            for (plan, _) in plans {
                // A store of the center's own: its table numbers and applies the change.
                match plan {
                    Plan::Put {
                        id, record, reply, ..
                    } => {
                        state.put(id, record, now);
                        put_replies.push(reply);
                        puts += 1;
                    }
                    Plan::Delete { id, reply, .. } => {
                        state.remove(&id);
                        delete_replies.push(reply);
                        deletes += 1;
                    }
                    Plan::Horizon { .. } => {}
                    Plan::Expire { id, generation } => {
                        if state.expire(&id, generation).is_some() {
                            expiries += 1;
                            tracing::debug!(node_id = %id, "lease expired; node removed");
                        }
                    }
                }
            }
            let after = state.leases().next_deadline();
            let earlier = match (before, after) {
                (None, Some(_)) => true,
                (Some(b), Some(a)) => a < b,
                _ => false,
            };
            if earlier {
                self.core.wake_reaper();
            }
        }
        self.core.snapshot().invalidate();
        if expiries > 0 {
            self.core.metrics().expired(expiries, true);
        }
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
        let mut expiries = 0;
        for plan in plans {
            match plan {
                Plan::Put { reply, .. } => {
                    let _ = reply.send(Err(WriteError::Unavailable(message.clone())));
                }
                Plan::Delete { reply, .. } => {
                    let _ = reply.send(Err(WriteError::Unavailable(message.clone())));
                }
                // A shared store still holds the node: leave the table to its
                // follower (the lease stays invisible here).
                Plan::Expire { .. } if self.shared => {}
                Plan::Expire { id, generation } => {
                    expiries += usize::from(state.expire(&id, generation).is_some());
                }
                Plan::Horizon { .. } => {}
            }
        }
        drop(state);
        self.core.metrics().expired(expiries, false);
        self.core.snapshot().invalidate();
    }
}
