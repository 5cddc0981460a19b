//! The follower of a shared store: applies every center's changes (this one's
//! included) to this center's state, in the store's revision order.
//!
//! A center on etcd loads the registry at one revision, then watches the prefix from
//! the next one; each watched put or delete becomes `State::put_at` or
//! `State::remove_at` at its etcd revision, so every center numbers every change
//! alike and `/v1/watch?since=REV` resumes on any center of the cluster. Changes at
//! or below the state's revision were applied already (a watch restarted after a
//! break repeats nothing). A broken watch is opened again from the last applied
//! revision after a capped back-off; the writer's acknowledgements wait for this
//! task ([`crate::state::Core::wait_applied`]).
//!
//! Level 2: a worker beside the writer and the reaper; it knows the state and the
//! store's change stream, not HTTP.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::state::Core;
use crate::store::etcd::{Change, Etcd};

/// First pause before opening a broken watch again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest pause between attempts to open the watch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows `store` from after revision `loaded` until `stop` turns true.
pub(crate) async fn run(
    core: Arc<Core>,
    store: Etcd,
    loaded: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let after = core.revision().max(loaded);
        let opened = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            opened = store.changes(after) => opened,
        };
        match opened {
            Ok(mut changes) => loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    next = changes.next() => next,
                };
                match next {
                    Ok(Some((batch, _))) => {
                        backoff = FIRST_BACKOFF;
                        apply(&core, batch);
                    }
                    Ok(None) => {
                        tracing::warn!("the etcd watch ended; opening it again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the etcd watch broke; opening it again");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch etcd; retrying"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies one watched batch under the state lock, then tells the writer.
fn apply(core: &Core, batch: Vec<Change>) {
    if batch.is_empty() {
        return;
    }
    let now = Instant::now();
    let (mut puts, mut removals) = (0usize, 0usize);
    {
        let mut state = core.lock();
        let before = state.leases().next_deadline();
        for change in batch {
            match change {
                Change::Put {
                    revision,
                    id,
                    record,
                } if revision > state.revision() => {
                    state.put_at(revision, id, record, now);
                    puts += 1;
                }
                Change::Delete {
                    revision,
                    id,
                    expired,
                } if revision > state.revision() => {
                    let reason = if expired { "expire" } else { "deregister" };
                    removals += usize::from(state.remove_at(revision, &id, reason).is_some());
                }
                Change::Put { .. } | Change::Delete { .. } => {}
            }
        }
        let after = state.leases().next_deadline();
        if matches!((before, after), (None, Some(_)))
            || matches!((before, after), (Some(b), Some(a)) if a < b)
        {
            core.wake_reaper();
        }
    }
    core.applied();
    if puts + removals > 0 {
        core.snapshot().invalidate();
    }
    tracing::debug!(puts, removals, "applied changes from etcd");
}
