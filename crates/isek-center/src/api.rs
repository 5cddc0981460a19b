//! The HTTP API: the four compatibility endpoints, plus JSON 404/405 answers.
//!
//! Every answer is a `{code, data, message}` envelope written like Flask's `jsonify`
//! (sorted keys, compact separators, trailing newline), `Content-Type:
//! application/json`. Handlers never panic; bad input gets a 4xx envelope naming the
//! field (see [`crate::request`]).

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use isek::wire::center::{
    AVAILABLE_NODES_PATH, DEREGISTER_PATH, NODES_PATH, REGISTER_PATH, RENEW_PATH, WATCH_PATH,
    deregister_not_found_message, deregistered_message, registered_message,
    renew_not_found_message, renewed_message,
};
use serde_json::{Map, Value};

use crate::json::envelope_without_data;
use crate::registry::Center;
use crate::request::{Rejection, parse_object};
use crate::writer::WriteError;

/// The center's router, with its state attached.
pub fn router(center: Center) -> Router {
    Router::new()
        .route(REGISTER_PATH, post(register))
        .route(RENEW_PATH, post(renew))
        .route(DEREGISTER_PATH, post(deregister))
        .route(AVAILABLE_NODES_PATH, get(available_nodes))
        .route(NODES_PATH, get(nodes))
        .route(WATCH_PATH, get(watch))
        .merge(crate::ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(center)
}

/// A JSON body with the right content type.
fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An envelope with `data: null`.
fn envelope(status: StatusCode, message: &str) -> Response {
    json_response(status, envelope_without_data(status.as_u16(), message))
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        envelope(self.status, &self.message)
    }
}

impl From<WriteError> for Rejection {
    fn from(error: WriteError) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: match error {
                WriteError::Unavailable(e) => format!("Storage unavailable: {e}"),
                WriteError::ShuttingDown => "The center is shutting down.".to_owned(),
                WriteError::Refused(refusal) => return refusal.into(),
            },
        }
    }
}

/// Reads the body (bounded by the configured limit) and parses it into an object.
async fn read_object(
    center: &Center,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, Rejection> {
    let limit = center.config().limits.max_body_bytes;
    let too_large = || Rejection {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("Request body exceeds the limit of {limit} bytes."),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(Rejection::bad_request(format!(
                "Could not read the request body: {e}."
            )));
        }
    };
    parse_object(headers, &bytes)
}

/// `POST /isek_center/register`.
async fn register(State(center): State<Center>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = read_object(&center, &headers, body).await?;
        let (id, token) = center.register_request(&body).await?;
        tracing::debug!(node_id = %id, signed = token.is_some(), "registered");
        Ok::<_, Rejection>(match token {
            Some(token) => json_response(
                StatusCode::OK,
                crate::ownership::envelope_with_token(&registered_message(&id), &token),
            ),
            None => envelope(StatusCode::OK, &registered_message(&id)),
        })
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /isek_center/renew`.
async fn renew(State(center): State<Center>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = read_object(&center, &headers, body).await?;
        let (id, renewed) = center.renew_request(&body)?;
        Ok::<_, Rejection>(if renewed {
            envelope(StatusCode::OK, &renewed_message(&id))
        } else {
            envelope(StatusCode::NOT_FOUND, &renew_not_found_message(&id))
        })
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /isek_center/deregister`.
async fn deregister(State(center): State<Center>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = read_object(&center, &headers, body).await?;
        let (id, removed) = center.deregister_request(&headers, &body).await?;
        Ok::<_, Rejection>(if removed {
            tracing::debug!(node_id = %id, "deregistered");
            envelope(StatusCode::OK, &deregistered_message(&id))
        } else {
            envelope(StatusCode::NOT_FOUND, &deregister_not_found_message(&id))
        })
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET` (and `HEAD`) `/isek_center/available_nodes`: the cached snapshot body.
async fn available_nodes(State(center): State<Center>) -> Response {
    json_response(StatusCode::OK, center.available_nodes_body())
}

/// `GET /v1/nodes`: every live node with the current revision and epoch.
async fn nodes(State(center): State<Center>) -> Response {
    json_response(StatusCode::OK, center.nodes_body())
}

/// `GET /v1/watch[?since=REV[&epoch=E]]`: the change stream as server-sent events; a
/// `since` that cannot be resumed gets a 410 envelope telling the client to re-list.
async fn watch(State(center): State<Center>, RawQuery(query): RawQuery) -> Response {
    let (since, epoch) = match watch_query(query.as_deref().unwrap_or("")) {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection.into_response(),
    };
    let start = match center.watch(since.map(|s| (s, epoch))) {
        Ok(start) => start,
        Err(resync) => {
            let mut body = format!(
                "{{\"code\":410,\"data\":{{\"revision\":{}}},\"message\":",
                resync.revision
            );
            isek::canonical::write_str(&mut body, &resync.message);
            body.push_str("}\n");
            return json_response(StatusCode::GONE, body);
        }
    };
    let mut response =
        (StatusCode::OK, Body::from_stream(center.watch_body(start))).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `since` and `epoch` of a watch query; other parameters are ignored.
fn watch_query(query: &str) -> Result<(Option<u64>, Option<u64>), Rejection> {
    let (mut since, mut epoch) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "since" => &mut since,
            "epoch" => &mut epoch,
            _ => continue,
        };
        *slot = Some(value.parse::<u64>().map_err(|_| {
            Rejection::bad_request(format!(
                "'{key}' must be a non-negative integer, got '{value}'."
            ))
        })?);
    }
    Ok((since, epoch))
}

/// Any unknown path.
async fn not_found() -> Response {
    envelope(
        StatusCode::NOT_FOUND,
        "The requested URL was not found on the server.",
    )
}

/// A known path with the wrong method (axum adds the `Allow` header).
async fn method_not_allowed() -> Response {
    envelope(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed for the requested URL.",
    )
}
