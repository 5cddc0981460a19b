//! The lease holder of a center cluster: the one center that expires nodes.
//!
//! Renewals never reach etcd. Every center keeps every node's deadline in memory:
//! it renews locally what its own clients renew and forwards those ids, in batches,
//! to every other center (`http::peers`), so all tables stay within a batch interval
//! of each other. Only one center, the holder, acts on deadlines: its reaper deletes
//! expired nodes from etcd (guarded by their generation); the others' reapers wait.
//!
//! The holder is elected through etcd: each center keeps an etcd lease of
//! `holder_ttl` alive, announces itself under `{prefix}/centers/` on it (value: its
//! URL, how the others find it), and every tick (a third of the TTL) tries to create
//! `{prefix}/holder` on it if absent. A center may expire nodes only until half a TTL
//! after its last confirmed keep-alive (`Core::may_expire`): a holder that loses
//! etcd, or is paused (SIGSTOP) and wakes after its lease ran out, stops expiring by
//! its own clock before anyone else can take over, so two reapers never run on
//! stale deadlines. A center that becomes holder first gives every node it knows a
//! fresh full TTL (as a restart does), so a failover never mass-expires nodes whose
//! renewals went to the old holder.
//!
//! Level 2: a worker beside the writer, the reaper and the follower.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::state::Core;
use crate::store::etcd::Etcd;

/// Longest pause between attempts after etcd failed.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Keeps this center's etcd lease, its announcement and its bid for the holder key
/// until `stop` turns true.
pub(crate) async fn run(
    core: Arc<Core>,
    store: Etcd,
    me: String,
    url: String,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tick = ttl / 3;
    loop {
        let granted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            granted = store.lease(ttl, &me, &url) => granted,
        };
        let mut lease = match granted {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take an etcd lease for the lease holder election; retrying");
                core.lose_holder();
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(MAX_BACKOFF.min(tick)) => {}
                }
                continue;
            }
        };
        loop {
            let sent = Instant::now();
            let kept = tokio::select! {
                _ = stop.wait_for(|s| *s) => None,
                kept = lease.keep_alive_and_bid(&me) => Some(kept),
            };
            let Some(kept) = kept else {
                // Give the holder key up at once (a successor need not wait a TTL).
                core.lose_holder();
                let _ = lease.revoke().await;
                return;
            };
            match kept {
                Ok(holder) => {
                    core.set_peers(holder.peers);
                    if holder.is_me {
                        if core.take_holder(sent + ttl / 2, Instant::now()) {
                            tracing::info!(center = %me, "this center is the lease holder: every node starts a fresh lease");
                        }
                    } else if core.lose_holder() {
                        tracing::info!(center = %me, "this center is no longer the lease holder");
                    }
                }
                Err(e) => {
                    if core.lose_holder() {
                        tracing::warn!(error = %e, "lost the etcd lease; no longer the lease holder");
                    } else {
                        tracing::warn!(error = %e, "lost the etcd lease");
                    }
                    break;
                }
            }
            let stopped = tokio::select! {
                _ = stop.wait_for(|s| *s) => true,
                () = tokio::time::sleep_until(sent + tick) => false,
            };
            if stopped {
                core.lose_holder();
                let _ = lease.revoke().await;
                return;
            }
        }
    }
}
