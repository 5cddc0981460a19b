//! The writer's decisions, as a pure function of a batch and the table before it.
//!
//! [`plan`] decides, for each queued [`WriteOp`], whether it changes anything and may
//! (ownership, look-alike ids, node cap, replay window): refused requests and requests that change
//! nothing are answered at once, the rest become [`Plan`]s that the writer commits and
//! applies. Kept apart from the thread, the store and the lock so its rules are unit
//! tested with made-up tables.

use std::collections::HashMap;
use std::sync::Arc;

use isek::identity::PublicKey;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::lease::{Expired, LeaseTable};
use crate::policy::{Guard, Refusal, RefusalKind};
use crate::record::{NodeRecord, Owner};
use crate::skeleton::{SkeletonIndex, skeleton_of};

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

impl From<Refusal> for WriteError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
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
        /// The signer and op-proof timestamp of a signed registration (already
        /// accepted by the replay horizon): stored with the row, or alone when the
        /// registration is refused, so no copy of it works after a restart either.
        horizon: Option<(PublicKey, u64)>,
        /// Answered after the commit.
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Deregister a node; the reply says whether it was live.
    Delete {
        /// The node id.
        id: Arc<str>,
        /// The proof the deregistration carries, checked against the current owner.
        guard: Guard,
        /// The key and timestamp of a signed deregistration, stored with the delete.
        horizon: Option<(PublicKey, u64)>,
        /// Answered after the commit (or at once when the node is not live).
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// Remove leases that ran out (from the reaper; nobody waits).
    Expire {
        /// What ran out, with generations.
        expired: Vec<Expired>,
    },
    /// Check that the store takes a write now (`GET /readyz`). The writer answers it
    /// itself after the batch it came with; [`plan`] never sees one.
    Probe {
        /// Answered after the store's probe write.
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
}

/// One decided operation of a batch.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Store and index a node.
    Put {
        /// The node id.
        id: Arc<str>,
        /// Its record.
        record: NodeRecord,
        /// Replay horizon stored with it (signed registrations).
        horizon: Option<(PublicKey, u64)>,
        /// The generation it replaces in the table (`None`: none, or one put earlier
        /// in the batch), for stores shared with other centers.
        expect: Option<u64>,
        /// The waiter.
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Remove a live node.
    Delete {
        /// The node id.
        id: Arc<str>,
        /// Replay horizon stored with it (signed deregistrations).
        horizon: Option<(PublicKey, u64)>,
        /// The generation it removes in the table (`None`: put earlier in the batch).
        expect: Option<u64>,
        /// The waiter.
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// Store the replay horizon of a refused signed registration (nobody waits).
    Horizon {
        /// The node id.
        id: Arc<str>,
        /// The signing key.
        key: PublicKey,
        /// The op proof's timestamp, Unix ms.
        timestamp: u64,
    },
    /// Remove one expired generation.
    Expire {
        /// The node id.
        id: Arc<str>,
        /// The generation that ran out.
        generation: u64,
    },
}

/// Decides a batch against `leases` (the table before it) and the earlier operations
/// of the same batch, as if they ran one by one in queue order: the plans to commit,
/// in order. Requests that change nothing (refused, not live) are answered at once.
/// With `distinct` (a store shared with other centers, where an op's `expect` must
/// name a committed generation), a register or deregister of a node already changed
/// earlier in the batch is not planned but handed back, in order, for the next batch.
/// Pure apart from those answers.
#[allow(clippy::too_many_lines)]
pub(crate) fn plan(
    batch: Vec<WriteOp>,
    leases: &LeaseTable<NodeRecord>,
    skeletons: Option<&SkeletonIndex>,
    max_nodes: Option<usize>,
    distinct: bool,
    now: Instant,
) -> (Vec<Plan>, Vec<WriteOp>) {
    let mut deferred = Vec::new();
    // Ids changed earlier in this batch: whether they are live after that change.
    let mut touched: HashMap<Arc<str>, bool> = HashMap::new();
    // Owners of ids put earlier in this batch (ownership checks see them).
    let mut owners: HashMap<Arc<str>, Option<Arc<Owner>>> = HashMap::new();
    let current_owner =
        |id: &Arc<str>, owners: &HashMap<Arc<str>, Option<Arc<Owner>>>| match owners.get(id) {
            Some(owner) => owner.clone(),
            None => leases.get(id, now).and_then(|e| e.value.owner().cloned()),
        };
    // Skeletons of the new ids this batch puts (look-alikes of each other count too).
    let mut new_skeletons: Vec<(String, Arc<str>)> = Vec::new();
    // Entries in the table plus those this batch adds (for `max_nodes`).
    let mut count = leases.len();
    let mut plans = Vec::with_capacity(batch.len());
    for op in batch {
        if distinct
            && let WriteOp::Put { id, .. } | WriteOp::Delete { id, .. } = &op
            && touched.contains_key(id)
        {
            deferred.push(op);
            continue;
        }
        match op {
            WriteOp::Put {
                id,
                record,
                guard,
                horizon,
                reply,
            } => {
                // A refused signed registration still stores its horizon.
                let refuse =
                    |plans: &mut Vec<Plan>, refusal: Refusal, reply: oneshot::Sender<_>| {
                        if let Some((key, timestamp)) = &horizon {
                            plans.push(Plan::Horizon {
                                id: Arc::clone(&id),
                                key: key.clone(),
                                timestamp: *timestamp,
                            });
                        }
                        let _ = reply.send(Err(WriteError::Refused(refusal)));
                    };
                let live = touched
                    .get(&id)
                    .copied()
                    .unwrap_or_else(|| leases.is_live(&id, now));
                let current = if live {
                    current_owner(&id, &owners)
                } else {
                    None
                };
                if let Err(refusal) = guard.check_register(&id, current.as_deref()) {
                    refuse(&mut plans, refusal, reply);
                    continue;
                }
                let skeleton = match skeletons {
                    Some(_) if !live => Some(skeleton_of(&id)),
                    _ => None,
                };
                if let Some(skeleton) = &skeleton {
                    let is_live = |other: &Arc<str>| {
                        touched
                            .get(other)
                            .copied()
                            .unwrap_or_else(|| leases.is_live(other, now))
                    };
                    let in_table = skeletons
                        .into_iter()
                        .flat_map(|index| index.look_alikes(&id, skeleton));
                    let in_batch = new_skeletons
                        .iter()
                        .filter(|(s, other)| s == skeleton && **other != *id)
                        .map(|(_, other)| other);
                    if let Some(other) = in_table.chain(in_batch).find(|other| is_live(other)) {
                        let message = format!(
                            "'node_id' '{}' looks like the live node '{}' (the same Unicode confusable skeleton, UTS #39): look-alike ids are refused (--confusable-ids).",
                            isek::node_id::escaped(&id),
                            isek::node_id::escaped(other),
                        );
                        refuse(
                            &mut plans,
                            Refusal::new(RefusalKind::LookAlike, message),
                            reply,
                        );
                        continue;
                    }
                }
                let known = live || leases.generation(&id).is_some();
                if !known && max_nodes.is_some_and(|max| count >= max) {
                    let full =
                        Refusal::new(RefusalKind::Full, format!("center is full ({count} nodes)"));
                    refuse(&mut plans, full, reply);
                    continue;
                }
                if !known {
                    count += 1;
                }
                let expect = if touched.contains_key(&id) {
                    None
                } else {
                    leases.generation(&id)
                };
                touched.insert(Arc::clone(&id), true);
                owners.insert(Arc::clone(&id), record.owner().cloned());
                if let Some(skeleton) = skeleton {
                    new_skeletons.push((skeleton, Arc::clone(&id)));
                }
                plans.push(Plan::Put {
                    id,
                    record,
                    horizon,
                    expect,
                    reply,
                });
            }
            WriteOp::Delete {
                id,
                guard,
                horizon,
                reply,
            } => {
                let live = touched
                    .get(&id)
                    .copied()
                    .unwrap_or_else(|| leases.is_live(&id, now));
                if live {
                    let current = current_owner(&id, &owners);
                    if let Err(refusal) = guard.check_act(&id, current.as_deref()) {
                        let _ = reply.send(Err(WriteError::Refused(refusal)));
                        continue;
                    }
                    let expect = if touched.contains_key(&id) {
                        None
                    } else {
                        leases.generation(&id)
                    };
                    touched.insert(Arc::clone(&id), false);
                    owners.insert(Arc::clone(&id), None);
                    plans.push(Plan::Delete {
                        id,
                        horizon,
                        expect,
                        reply,
                    });
                } else {
                    let _ = reply.send(Ok(false));
                }
            }
            WriteOp::Expire { expired } => {
                for Expired { id, generation } in expired {
                    // Re-registered or deregistered since it ran out: not ours.
                    if touched.contains_key(&id) || leases.generation(&id) != Some(generation) {
                        continue;
                    }
                    touched.insert(Arc::clone(&id), false);
                    plans.push(Plan::Expire { id, generation });
                }
            }
            WriteOp::Probe { reply } => {
                // The writer takes probes out of a batch before planning it; one that
                // got here anyway was not run, and says so.
                let _ = reply.send(Err(WriteError::Unavailable(
                    "the store probe was not run".to_owned(),
                )));
            }
        }
    }
    (plans, deferred)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use isek::identity::NodeIdentity;

    use super::*;

    fn put(
        id: &str,
        record: NodeRecord,
        guard: Guard,
    ) -> (WriteOp, oneshot::Receiver<Result<(), WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Put {
            id: Arc::from(id),
            record,
            guard,
            horizon: None,
            reply,
        };
        (op, answer)
    }

    fn delete(id: &str, guard: Guard) -> (WriteOp, oneshot::Receiver<Result<bool, WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Delete {
            id: Arc::from(id),
            guard,
            horizon: None,
            reply,
        };
        (op, answer)
    }

    fn kinds(plans: &[Plan]) -> Vec<String> {
        plans
            .iter()
            .map(|p| match p {
                Plan::Put { id, .. } => format!("put {id}"),
                Plan::Delete { id, .. } => format!("delete {id}"),
                Plan::Expire { id, generation } => format!("expire {id}@{generation}"),
                Plan::Horizon { id, timestamp, .. } => format!("horizon {id}@{timestamp}"),
            })
            .collect()
    }

    fn record() -> NodeRecord {
        NodeRecord::new("h", 1, "{}")
    }

    #[test]
    fn a_batch_behaves_like_its_operations_one_by_one() {
        let t0 = Instant::now();
        let mut leases = LeaseTable::new(Duration::from_secs(30), t0);
        leases.insert(Arc::from("old"), record(), 1, t0);
        let (p1, _a1) = put("a", record(), Guard::Unsigned);
        let (d1, a2) = delete("a", Guard::Unsigned);
        let (d2, mut a3) = delete("ghost", Guard::Unsigned);
        let expire_old = WriteOp::Expire {
            expired: vec![Expired {
                id: Arc::from("old"),
                generation: 1,
            }],
        };
        let (p2, _a4) = put("old", record(), Guard::Unsigned);
        // "old" re-registered earlier in the batch: its expiry is no longer ours.
        let late_expiry = WriteOp::Expire {
            expired: vec![Expired {
                id: Arc::from("old"),
                generation: 1,
            }],
        };
        let (plans, _) = plan(
            vec![p1, d1, d2, p2, expire_old, late_expiry],
            &leases,
            None,
            None,
            false,
            t0,
        );
        assert_eq!(kinds(&plans), ["put a", "delete a", "put old"]);
        assert_eq!(a3.try_recv(), Ok(Ok(false)), "not live: answered at once");
        drop(plans);
        assert!(
            a2.blocking_recv().is_err(),
            "planned ops are answered after the commit"
        );
    }

    /// The race of the invariant "an expiry removes only the generation that ran
    /// out": the reaper collected generation 1 of "a", then a re-registration of "a"
    /// was committed and applied (generation 2) before the reaper's expiry reached the
    /// writer. The expiry must plan nothing, or the commit would delete the new row.
    /// Decided here, deterministically (the integration test in `tests/center/leases.rs`
    /// only hits this window by chance).
    #[test]
    fn an_expiry_of_a_replaced_generation_plans_nothing() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut leases = LeaseTable::new(ttl, t0);
        leases.insert(Arc::from("a"), record(), 1, t0);
        leases.insert(Arc::from("b"), record(), 2, t0);
        let ran_out = t0 + ttl;
        let expired = leases.expire(ran_out);
        assert_eq!(expired.len(), 2, "both leases ran out: {expired:?}");
        // "a" registered again in an earlier batch, before the expiry was planned.
        leases.insert(Arc::from("a"), record(), 3, ran_out);
        let (plans, _) = plan(
            vec![WriteOp::Expire { expired }],
            &leases,
            None,
            None,
            false,
            ran_out,
        );
        assert_eq!(
            kinds(&plans),
            ["expire b@2"],
            "only the generation that ran out is removed; a@1 was replaced by a@3"
        );
        assert!(leases.is_live("a", ran_out));
    }

    #[test]
    fn ownership_and_the_node_cap_are_decided_in_order() {
        let t0 = Instant::now();
        let owner_key = NodeIdentity::generate().public_key().clone();
        let other = NodeIdentity::generate().public_key().clone();
        let owned = record().with_owner(Some(Arc::new(Owner::new(owner_key.clone(), None))));
        let mut leases = LeaseTable::new(Duration::from_secs(30), t0);
        leases.insert(Arc::from("owned"), owned.clone(), 1, t0);
        let (hijack, mut refused) = put("owned", record(), Guard::Key(other));
        let (full, mut too_many) = put("new", record(), Guard::Unsigned);
        let (again, _ok) = put("owned", owned, Guard::Key(owner_key));
        let (plans, _) = plan(vec![hijack, full, again], &leases, None, Some(1), false, t0);
        assert_eq!(kinds(&plans), ["put owned"]);
        let refusal = |r: Result<Result<(), WriteError>, _>| match r {
            Ok(Err(WriteError::Refused(refusal))) => Some(refusal.kind),
            _ => None,
        };
        assert_eq!(refusal(refused.try_recv()), Some(RefusalKind::Forbidden));
        assert_eq!(refusal(too_many.try_recv()), Some(RefusalKind::Full));
    }

    #[test]
    fn look_alikes_are_refused_against_the_table_and_earlier_puts_of_the_batch() {
        let t0 = Instant::now();
        let mut leases = LeaseTable::new(Duration::from_secs(30), t0);
        let mut index = SkeletonIndex::new();
        let live: Arc<str> = Arc::from("paypal");
        leases.insert(Arc::clone(&live), record(), 1, t0);
        index.insert(&live);
        let (fake, mut refused) = put("p\u{430}ypal", record(), Guard::Unsigned);
        let (first, _ok) = put("node-1", record(), Guard::Unsigned);
        let (second, mut refused_too) = put("node-l", record(), Guard::Unsigned);
        let (again, _ok_again) = put("paypal", record(), Guard::Unsigned);
        let (plans, _) = plan(
            vec![fake, first, second, again],
            &leases,
            Some(&index),
            None,
            false,
            t0,
        );
        assert_eq!(kinds(&plans), ["put node-1", "put paypal"]);
        for answer in [refused.try_recv(), refused_too.try_recv()] {
            assert!(
                matches!(&answer, Ok(Err(WriteError::Refused(r))) if r.kind == RefusalKind::LookAlike),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn a_shared_store_gets_one_op_per_node_and_its_generation() {
        let t0 = Instant::now();
        let mut leases = LeaseTable::new(Duration::from_secs(30), t0);
        leases.insert(Arc::from("old"), record(), 7, t0);
        let (p1, _a1) = put("a", record(), Guard::Unsigned);
        let (d1, _a2) = delete("a", Guard::Unsigned);
        let (p2, _a3) = put("old", record(), Guard::Unsigned);
        let (p3, _a4) = put("a", record(), Guard::Unsigned);
        let (plans, deferred) = plan(vec![p1, d1, p2, p3], &leases, None, None, true, t0);
        assert_eq!(kinds(&plans), ["put a", "put old"]);
        let expects: Vec<_> = plans
            .iter()
            .map(|p| match p {
                Plan::Put { expect, .. } | Plan::Delete { expect, .. } => *expect,
                _ => None,
            })
            .collect();
        assert_eq!(expects, [None, Some(7)], "the generation the table holds");
        let kinds_of_deferred: Vec<_> = deferred
            .iter()
            .map(|op| match op {
                WriteOp::Put { id, .. } => format!("put {id}"),
                WriteOp::Delete { id, .. } => format!("delete {id}"),
                _ => "other".to_owned(),
            })
            .collect();
        assert_eq!(kinds_of_deferred, ["delete a", "put a"], "in queue order");
    }
}
