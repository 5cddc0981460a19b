//! The operators' endpoints: `GET /healthz` (the process answers), `GET /readyz` (the
//! store takes a durable write now) and `GET /metrics` (Prometheus exposition).
//!
//! Both probes answer with the center's envelope, `200` or `503`, so a Kubernetes
//! `livenessProbe` / `readinessProbe` (`httpGet`) works unchanged and a human with
//! curl reads why. `/readyz` sends a probe write through the store writer (one small
//! transaction with its fsync, after whatever is queued), so it fails when the
//! writer is stuck or gone (shutdown), the database is locked by another process,
//! or the disk refuses writes.
//!
//! `/metrics` encodes the center's [`crate::metrics::Metrics`] in the text format
//! Prometheus scrapes (OpenMetrics 1.0 text, from `prometheus-client`).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::openapi::{HealthAnswer, ReadinessAnswer};
use super::rejection::json_response;
use crate::center::Center;
use crate::metrics::Endpoint;
use crate::render::envelope_with_data;

/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the readiness probe.
pub const READYZ_PATH: &str = "/readyz";
/// Path of the Prometheus exposition.
pub const METRICS_PATH: &str = "/metrics";

/// Longest `/readyz` waits for the store's probe write before answering 503 (below
/// Kubernetes' default probe timeout of 1 s would be too tight for an fsync on a
/// busy disk; above it, set the probe's `timeoutSeconds` to 3).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Content type of the exposition (OpenMetrics text, which Prometheus negotiates).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `data` of a `/healthz` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `alive` (a process that cannot answer does not answer at all).
    pub status: &'static str,
    /// The center's version.
    pub version: &'static str,
}

/// The `data` of a `/readyz` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok`, or why the store does not take writes.
    pub store: String,
    /// `disk` or `memory` (`--in-memory`: nothing to write, ready while running).
    pub storage: &'static str,
    /// Milliseconds the probe write took (or waited before giving up).
    pub probe_ms: f64,
}

/// `GET /healthz`: 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operators",
    responses((status = 200, description = "The process serves requests (a liveness probe)", body = HealthAnswer))
)]
pub async fn healthz(State(center): State<Center>) -> Response {
    let started = Instant::now();
    let health = Health {
        status: "alive",
        version: env!("CARGO_PKG_VERSION"),
    };
    let response = json_response(StatusCode::OK, envelope_with_data(200, "alive", &health));
    center
        .metrics()
        .request(Endpoint::Health, started.elapsed());
    response
}

/// `GET /readyz`: 200 when the store takes a probe write within [`READY_TIMEOUT`],
/// else 503 saying why.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operators",
    responses(
        (status = 200, description = "The store takes writes (a readiness probe)", body = ReadinessAnswer),
        (status = 503, description = "The store does not take writes, or the center is stopping", body = ReadinessAnswer),
    )
)]
pub async fn readyz(State(center): State<Center>) -> Response {
    let started = Instant::now();
    let probed = center.ready(READY_TIMEOUT).await;
    let storage = if center.config().data_dir.is_some() {
        "disk"
    } else {
        "memory"
    };
    let probe_ms = started.elapsed().as_secs_f64() * 1e3;
    let (status, message, readiness) = match probed {
        Ok(()) => (
            StatusCode::OK,
            "ready",
            Readiness {
                status: "ready",
                store: "ok".to_owned(),
                storage,
                probe_ms,
            },
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the store does not take writes",
                Readiness {
                    status: "not_ready",
                    store: e.to_string(),
                    storage,
                    probe_ms,
                },
            )
        }
    };
    let body = envelope_with_data(status.as_u16(), message, &readiness);
    let response = json_response(status, body);
    center
        .metrics()
        .request(Endpoint::Health, started.elapsed());
    response
}

/// `GET /metrics`: every metric of this center in the exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operators",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String))
)]
pub async fn metrics(State(center): State<Center>) -> Response {
    let started = Instant::now();
    center.refresh_metrics();
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) =
        prometheus_client::encoding::text::encode(&mut text, center.metrics().registry())
    {
        // Writing into a String does not fail; say so plainly if it ever does.
        tracing::error!(error = %e, "cannot encode the metrics");
        return super::rejection::envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The metrics could not be encoded.",
        );
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    center
        .metrics()
        .request(Endpoint::Metrics, started.elapsed());
    response
}
