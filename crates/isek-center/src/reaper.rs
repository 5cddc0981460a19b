//! The reaper: sleeps until the next lease deadline, then hands what ran out to the
//! store writer.
//!
//! No periodic scan: it wakes at [`crate::lease::LeaseTable::next_deadline`], or
//! earlier when the writer signals that an earlier deadline appeared (an empty table
//! got its first node). Expired nodes are already invisible to every read at their
//! deadline; the reaper makes the store forget them within milliseconds.
//!
//! With the expiry guard on it also ticks every `beat` (a quarter of the guard's
//! gap) however far the next deadline is: each tick locks the state, which is the
//! heartbeat the guard measures silences against (see `State::heartbeat`); after
//! a stop, the first lock, this tick or any request, gives the gap back before
//! anything reads a deadline.
//!
//! Level 2: beside the writer, which it feeds; it knows the state, not HTTP.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::state::Core;
use crate::writer::WriteOp;

/// How often a cluster member that is not the lease holder looks again.
const NOT_HOLDER_POLL: Duration = Duration::from_millis(250);

/// Most expired leases handled per step: bounds the time the state lock is held and
/// the size of the store transaction when many leases run out at once.
const EXPIRE_CHUNK: usize = 4096;

/// A wave of expiries ends when the next deadline is further away than this: the
/// leases of one burst of registrations (a restart, a load test) run out over about
/// the time they took to register, and make one summary line.
const WAVE_GAP: Duration = Duration::from_secs(1);

/// A wave is summarised at least this often, so a steady trickle of expiries (one
/// every few hundred milliseconds, forever) still reaches the log.
const WAVE_MAX: Duration = Duration::from_secs(10);

/// How many node ids a wave's summary names (the rest are counted; each expiry is
/// also logged at `debug` by the writer).
const WAVE_SAMPLE: usize = 8;

/// The expiries handed to the writer since the current wave began.
#[derive(Debug)]
struct Wave {
    /// When the first lease of the wave was collected.
    started: Instant,
    /// How many leases ran out in it.
    count: usize,
    /// Reaper steps (chunks of at most `EXPIRE_CHUNK`) it took.
    steps: usize,
    /// The first few node ids.
    sample: Vec<Arc<str>>,
}

impl Wave {
    /// Logs the wave as one `info` line.
    fn log(&self, now: Instant) {
        let more = self.count.saturating_sub(self.sample.len());
        let ids = self
            .sample
            .iter()
            .map(|id| &**id)
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            count = self.count,
            steps = self.steps,
            duration_ms = (now - self.started).as_millis() as u64,
            node_ids = %ids,
            more,
            "leases expired; nodes removed"
        );
    }
}

/// Runs until `stop` turns true (or its sender is gone) or the writer is gone;
/// wakes at least every `beat`, if given (the expiry guard's heartbeat).
pub(crate) async fn run(
    core: Arc<Core>,
    writes: mpsc::WeakSender<WriteOp>,
    mut stop: watch::Receiver<bool>,
    beat: Option<Duration>,
) {
    let mut wave: Option<Wave> = None;
    loop {
        let now = Instant::now();
        if !core.may_expire(now) {
            // A center cluster's member that is not the lease holder: the holder
            // expires; look again when woken (taking over) or soon.
            let woken = core.reaper_woken();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = woken => {}
                () = tokio::time::sleep(NOT_HOLDER_POLL) => {}
            }
            continue;
        }
        let (expired, next) = {
            let mut state = core.lock();
            (
                state.collect_expired(now, EXPIRE_CHUNK),
                state.leases().next_deadline(),
            )
        };
        if !expired.is_empty() {
            let current = wave.get_or_insert_with(|| {
                core.metrics().expiry_wave();
                Wave {
                    started: now,
                    count: 0,
                    steps: 0,
                    sample: Vec::new(),
                }
            });
            current.count += expired.len();
            current.steps += 1;
            let room = WAVE_SAMPLE.saturating_sub(current.sample.len());
            current
                .sample
                .extend(expired.iter().take(room).map(|e| Arc::clone(&e.id)));
            let Some(tx) = writes.upgrade() else {
                return;
            };
            if tx.send(WriteOp::Expire { expired }).await.is_err() {
                return;
            }
        }
        // The wave ends when nothing more runs out soon (or it has lasted long enough).
        if let Some(current) = &wave {
            let quiet = next.is_none_or(|at| at > now + WAVE_GAP);
            if quiet || now - current.started >= WAVE_MAX {
                current.log(now);
                wave = None;
            }
        }
        // Created before sleeping; a wake-up sent since `next` was read is kept as a
        // permit by `notify_one`, so none is lost.
        let woken = core.reaper_woken();
        let wake = match (next, beat) {
            (Some(at), Some(beat)) => Some(at.min(now + beat)),
            (None, Some(beat)) => Some(now + beat),
            (next, None) => next,
        };
        let deadline = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            stopped = stop.wait_for(|s| *s) => {
                let _ = stopped;
                if let Some(current) = &wave {
                    current.log(Instant::now());
                }
                return;
            }
            () = woken => {}
            () = deadline => {}
        }
    }
}
