//! The baseline: a bare axum server whose only route answers a renew the way the center
//! does, with no lease table, store or validation behind it.
//!
//! The center's renew throughput is compared with this server's on the same machine,
//! with the same load, to see what the center's own logic costs above the framework.

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use isek::wire::center::{Envelope, NodeIdRequest, RENEW_PATH, renewed_message};
use tokio::net::TcpListener;

use crate::BenchError;

/// How much work the baseline route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaselineMode {
    /// Parse the JSON body and answer the envelope for that node id (what any real
    /// renew handler must at least do).
    Echo,
    /// Ignore the body and answer a fixed envelope for node `x` (the framework floor).
    Static,
}

/// Answers like the center: envelope for the requested node, as JSON with a trailing newline.
async fn renew_echo(Json(request): Json<NodeIdRequest>) -> impl IntoResponse {
    let envelope = Envelope {
        code: 200,
        data: (),
        message: renewed_message(&request.node_id),
    };
    let mut body = serde_json::to_vec(&envelope).unwrap_or_default();
    body.push(b'\n');
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The fixed answer of [`BaselineMode::Static`].
const STATIC_ANSWER: &str =
    "{\"code\":200,\"data\":null,\"message\":\"Lease for node 'x' renewed successfully.\"}\n";

/// Answers a fixed body without reading the request.
async fn renew_static() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], STATIC_ANSWER)
}

/// The baseline router: `POST /isek_center/renew` only.
pub fn router(mode: BaselineMode) -> Router {
    match mode {
        BaselineMode::Echo => Router::new().route(RENEW_PATH, post(renew_echo)),
        BaselineMode::Static => Router::new().route(RENEW_PATH, post(renew_static)),
    }
}

/// Serves the baseline on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    mode: BaselineMode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BenchError> {
    axum::serve(listener, router(mode))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
