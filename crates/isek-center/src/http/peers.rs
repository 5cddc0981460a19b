//! The centers of a cluster telling each other about renewals (`--store etcd`).
//!
//! Renewals are answered by the center that received them, from its own view, and
//! never written to etcd. [`forward`] sends the ids renewed here, every
//! [`FORWARD_EVERY`], to every other center of the cluster (their URLs are announced
//! in etcd, see `crate::holder`); [`renewals`] takes such a batch at
//! `POST /v1/cluster/renewals`, guarded by the cluster's secret (kept in etcd: only
//! who can read the cluster's prefix can send renewals). Every center thus holds
//! every deadline within a batch interval, and the lease holder, which alone expires
//! nodes, sees renewals sent to any center. A peer that cannot be reached misses the
//! batch (logged); a node renewed at TTL/3 has two more chances before its deadline.
//! The forwarding is asynchronous: a renewal's answer does not wait for it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use isek::wire::cluster::{RENEWALS_PATH, Renewals, SECRET_HEADER};

use super::rejection::envelope;
use crate::center::Center;

/// How often renewed ids go to the other centers.
pub const FORWARD_EVERY: Duration = Duration::from_millis(100);

/// Most bytes of ids in one forwarded request (a batch is split beyond it).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Largest request body [`renewals`] reads.
const MAX_BODY_BYTES: usize = 4 * MAX_BATCH_BYTES;

/// Longest a forwarded batch may take to be answered.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(1);

/// `POST /v1/cluster/renewals`: renewals another center of the cluster accepted.
pub(super) async fn renewals(
    State(center): State<Center>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(secret) = center.cluster_secret() else {
        return envelope(StatusCode::NOT_FOUND, "This center is not in a cluster.");
    };
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same(given.as_bytes(), secret.as_bytes()) {
        return envelope(
            StatusCode::FORBIDDEN,
            "Only the centers of this cluster may forward renewals.",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return envelope(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The batch of renewals is too large.",
        );
    };
    let Ok(batch) = serde_json::from_slice::<Renewals>(&bytes) else {
        return envelope(StatusCode::BAD_REQUEST, "Expected {\"ids\": [...]}.");
    };
    let known = center.apply_renewals(batch.ids.iter().map(String::as_str));
    envelope(
        StatusCode::OK,
        &format!("{known} of {} leases renewed.", batch.ids.len()),
    )
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Forwards the ids renewed on `center` to the other centers of its cluster until
/// `stop` completes.
pub(super) async fn forward(center: Center, stop: impl std::future::Future<Output = ()>) {
    let Some(secret) = center.cluster_secret().map(str::to_owned) else {
        return;
    };
    let client = match reqwest::Client::builder().timeout(FORWARD_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client of the cluster; renewals are not forwarded");
            return;
        }
    };
    let mut tick = tokio::time::interval(FORWARD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let renewed = center.take_renewed();
        if renewed.is_empty() {
            continue;
        }
        let peers = center.peer_urls();
        if peers.is_empty() {
            continue;
        }
        for body in bodies(&renewed) {
            let sends = peers.iter().map(|peer| {
                let request = client
                    .post(format!("{}{RENEWALS_PATH}", peer.trim_end_matches('/')))
                    .header(SECRET_HEADER, &secret)
                    .header("content-type", "application/json")
                    .body(body.clone());
                async move { (peer, request.send().await) }
            });
            for (peer, sent) in futures::future::join_all(sends).await {
                match sent {
                    Ok(answer) if answer.status().is_success() => {}
                    Ok(answer) => {
                        tracing::warn!(%peer, status = %answer.status(), "a center refused forwarded renewals");
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot forward renewals to a center");
                    }
                }
            }
        }
    }
}

/// The JSON bodies of `ids`, each at most about [`MAX_BATCH_BYTES`].
fn bodies(ids: &[std::sync::Arc<str>]) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for id in ids {
        if bytes + id.len() > MAX_BATCH_BYTES && !batch.is_empty() {
            bodies.push(render(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += id.len() + 3;
        batch.push(id.to_string());
    }
    if !batch.is_empty() {
        bodies.push(render(batch));
    }
    bodies
}

/// One forwarded body.
fn render(ids: Vec<String>) -> String {
    serde_json::to_string(&Renewals { ids }).unwrap_or_default()
}
