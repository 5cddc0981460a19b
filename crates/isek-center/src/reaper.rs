//! The reaper: sleeps until the next lease deadline, then hands what ran out to the
//! store writer.
//!
//! No periodic scan: it wakes at [`crate::lease::LeaseTable::next_deadline`], or
//! earlier when the writer signals that an earlier deadline appeared (an empty table
//! got its first node). Expired nodes are already invisible to every read at their
//! deadline; the reaper makes the store forget them within milliseconds.
//!
//! Level 2: beside the writer, which it feeds; it knows the state, not HTTP.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::state::Core;
use crate::writer::WriteOp;

/// Most expired leases handled per step: bounds the time the state lock is held and
/// the size of the store transaction when many leases run out at once.
const EXPIRE_CHUNK: usize = 4096;

/// Runs until `stop` turns true (or its sender is gone) or the writer is gone.
pub(crate) async fn run(
    core: Arc<Core>,
    writes: mpsc::WeakSender<WriteOp>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let now = Instant::now();
        let (expired, next) = {
            let mut state = core.lock();
            (
                state.collect_expired(now, EXPIRE_CHUNK),
                state.leases().next_deadline(),
            )
        };
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "leases expired");
            let Some(tx) = writes.upgrade() else {
                return;
            };
            if tx.send(WriteOp::Expire { expired }).await.is_err() {
                return;
            }
        }
        // Created before sleeping; a wake-up sent since `next` was read is kept as a
        // permit by `notify_one`, so none is lost.
        let woken = core.reaper_woken();
        let deadline = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            stopped = stop.wait_for(|s| *s) => {
                let _ = stopped;
                return;
            }
            () = woken => {}
            () = deadline => {}
        }
    }
}
