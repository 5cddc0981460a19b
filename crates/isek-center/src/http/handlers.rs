//! The HTTP API: the four compatibility endpoints, `GET /v1/nodes`, `GET /v1/watch`,
//! the operators' `/healthz`, `/readyz` and `/metrics` ([`super::operator`]),
//! `/openapi.json` ([`super::openapi`], from the `utoipa::path` attributes here), plus JSON
//! 404/405 answers. Every handler records its latency (and a registry operation its
//! outcome) in the center's metrics.
//!
//! Every answer is a `{code, data, message}` envelope written like Flask's `jsonify`
//! (sorted keys, compact separators, trailing newline), `Content-Type:
//! application/json`. Handlers never panic; bad input gets a 4xx envelope naming the
//! field (see [`super::request`]). A handler is three steps: parse the request into a
//! command, call the [`Center`], map the answer to a response.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use isek::wire::center::{
    AGENTS_PATH, AVAILABLE_NODES_PATH, DEREGISTER_PATH, NODES_PATH, REGISTER_PATH, RENEW_PATH,
    WATCH_PATH, deregister_not_found_message, deregistered_message, registered_message,
    renew_not_found_message, renewed_message,
};

use std::sync::Arc;
use std::time::Instant;

use super::negotiation;
use super::openapi::{
    AgentsAnswer, AvailableNodesAnswer, Envelope, GoneAnswer, NodesAnswer, OPENAPI_PATH,
    ProofRequest, RegisterAnswer, RegisterRequest,
};
use super::operator::{self, HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use super::rejection::{Rejection, envelope, json_response};
use super::request::{
    compile_filter, deregister_of, listing_query, read_object, register_of, renew_of, watch_query,
};
use crate::admission::{ClientAddr, WatcherRefusal, Watchers};
use crate::center::{Center, QueryError};
use crate::command::{Collection, Query, agents_filter};
use crate::metrics::{Endpoint, Op, Outcome, ResyncReason};
use crate::render::{Chunks, ListingKind, envelope_with_token, gone_envelope};
use crate::snapshot::Listing;

/// The center's router, with its state attached.
pub fn router(center: Center) -> Router {
    let limits = center.config().connections;
    let watchers = Watchers::new(limits.max_watchers, limits.max_watchers_per_ip);
    Router::new()
        .route(REGISTER_PATH, post(register))
        .route(RENEW_PATH, post(renew))
        .route(DEREGISTER_PATH, post(deregister))
        .route(AVAILABLE_NODES_PATH, get(available_nodes))
        .route(NODES_PATH, get(nodes))
        .route(AGENTS_PATH, get(agents))
        .route(WATCH_PATH, get(watch))
        .route(
            isek::wire::cluster::RENEWALS_PATH,
            post(super::peers::renewals),
        )
        .route(HEALTHZ_PATH, get(operator::healthz))
        .route(READYZ_PATH, get(operator::readyz))
        .route(METRICS_PATH, get(operator::metrics))
        .route(OPENAPI_PATH, get(super::openapi::openapi_json))
        .merge(super::ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(watchers))
        .with_state(center)
}

/// `POST /isek_center/register`.
#[utoipa::path(
    post,
    path = "/isek_center/register",
    tag = "registry",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered (or replaced); a signed registration's answer carries its lease token", body = RegisterAnswer),
        (status = 400, description = "Not a JSON object, a field missing or invalid, or a malformed A2A card in metadata.agent_card (the field is named in the message), or a node id not in NFC or with an invisible character", body = Envelope),
        (status = 401, description = "This center requires signed registrations", body = Envelope),
        (status = 403, description = "The id belongs to another key, or the signature or its timestamp is refused", body = Envelope),
        (status = 409, description = "A new id that looks like a live node's (same UTS #39 confusable skeleton) under --confusable-ids refuse", body = Envelope),
        (status = 413, description = "The body is larger than the limit", body = Envelope),
        (status = 503, description = "The center is full, or its store is not taking writes", body = Envelope),
    )
)]
pub(super) async fn register(
    State(center): State<Center>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        let config = center.config();
        let body = read_object(config.limits.max_body_bytes, &headers, body).await?;
        let request = register_of(&body, &config.limits)?;
        let id = request.node_id.clone();
        let token = center.register(request).await?;
        Ok::<_, Rejection>(match token {
            Some(token) => json_response(
                StatusCode::OK,
                envelope_with_token(&registered_message(&id), &token),
            ),
            None => envelope(StatusCode::OK, &registered_message(&id)),
        })
    };
    let response = result.await.unwrap_or_else(IntoResponse::into_response);
    observed(
        &center,
        Endpoint::Register,
        Some(Op::Register),
        started,
        response,
    )
}

/// `POST /isek_center/renew`.
#[utoipa::path(
    post,
    path = "/isek_center/renew",
    tag = "registry",
    request_body(content = ProofRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The lease runs a full TTL from now", body = Envelope),
        (status = 400, description = "Not a JSON object, or `node_id` missing or invalid", body = Envelope),
        (status = 403, description = "The node is signed and the proof is missing or wrong", body = Envelope),
        (status = 404, description = "No live node has this id: register again", body = Envelope),
        (status = 413, description = "The body is larger than the limit", body = Envelope),
    )
)]
pub(super) async fn renew(
    State(center): State<Center>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        let config = center.config();
        let body = read_object(config.limits.max_body_bytes, &headers, body).await?;
        let request = renew_of(&body, &config.limits)?;
        let id = request.node_id.clone();
        let renewed = center.renew(request)?;
        Ok::<_, Rejection>(if renewed {
            envelope(StatusCode::OK, &renewed_message(&id))
        } else {
            envelope(StatusCode::NOT_FOUND, &renew_not_found_message(&id))
        })
    };
    let response = result.await.unwrap_or_else(IntoResponse::into_response);
    observed(&center, Endpoint::Renew, Some(Op::Renew), started, response)
}

/// `POST /isek_center/deregister`.
#[utoipa::path(
    post,
    path = "/isek_center/deregister",
    tag = "registry",
    request_body(content = ProofRequest, content_type = "application/json"),
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>`: deregister any node as the operator")),
    responses(
        (status = 200, description = "Removed", body = Envelope),
        (status = 400, description = "Not a JSON object, or `node_id` missing or invalid", body = Envelope),
        (status = 403, description = "The node is signed and the proof is missing or wrong", body = Envelope),
        (status = 404, description = "No node has this id", body = Envelope),
        (status = 413, description = "The body is larger than the limit", body = Envelope),
        (status = 503, description = "The store is not taking writes", body = Envelope),
    )
)]
pub(super) async fn deregister(
    State(center): State<Center>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        let config = center.config();
        let body = read_object(config.limits.max_body_bytes, &headers, body).await?;
        let request = deregister_of(&headers, &body, &config.limits, &config.security)?;
        let id = request.node_id.clone();
        let removed = center.deregister(request).await?;
        Ok::<_, Rejection>(if removed {
            envelope(StatusCode::OK, &deregistered_message(&id))
        } else {
            envelope(StatusCode::NOT_FOUND, &deregister_not_found_message(&id))
        })
    };
    let response = result.await.unwrap_or_else(IntoResponse::into_response);
    observed(
        &center,
        Endpoint::Deregister,
        Some(Op::Deregister),
        started,
        response,
    )
}

/// `GET` (and `HEAD`) `/isek_center/available_nodes`: the cached snapshot body,
/// gzip-coded for clients that accept it (the compressed bytes are made once per
/// snapshot and shared), with an `ETag` naming those bytes; a matching
/// `If-None-Match` gets a 304 and no body.
#[utoipa::path(
    get,
    path = "/isek_center/available_nodes",
    tag = "registry",
    params(
        ("Accept-Encoding" = Option<String>, Header, description = "`gzip` (as Python's requests sends) gets the same body gzip-coded"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 while the listing is unchanged"),
    ),
    responses(
        (status = 200, description = "Every live node with its deadline", body = AvailableNodesAnswer,
            headers(("ETag" = String, description = "Names these bytes (and their coding)"))),
        (status = 304, description = "The listing named by If-None-Match is still current"),
        (status = 503, description = "The listing could not be rendered", body = Envelope),
    )
)]
pub(super) async fn available_nodes(State(center): State<Center>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let gzip = negotiation::accepts_gzip(&headers);
    let listing = {
        let center = center.clone();
        tokio::task::spawn_blocking(move || {
            let listing = center.listing();
            // Compressed on this blocking thread too, once per listing, by the first
            // caller that accepts it.
            let compressed = if gzip {
                Center::available_nodes_gzip(&listing)
            } else {
                None
            };
            (listing, compressed)
        })
        .await
    };
    let response = match listing {
        Ok((listing, compressed)) => {
            let coded = compressed.is_some();
            // Epoch and build number name the bytes: another center start, another
            // build or another coding is another tag.
            let etag = format!(
                "\"{:x}-{}{}\"",
                center.epoch(),
                listing.build(),
                if coded { "-gzip" } else { "" }
            );
            let mut response = if negotiation::none_match(&headers, &etag) {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                match compressed {
                    Some(body) => json_response(StatusCode::OK, body),
                    None => streamed(listing, ListingKind::AvailableNodes),
                }
            };
            let ok = response.status() == StatusCode::OK;
            let response_headers = response.headers_mut();
            if coded && ok {
                response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response_headers.insert(header::ETAG, value);
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a listing failed");
            Rejection::unavailable("The listing could not be rendered.").into_response()
        }
    };
    observed(&center, Endpoint::AvailableNodes, None, started, response)
}

/// `GET /v1/nodes`: every live node with the current revision and epoch; with
/// `filter`, `limit` or `cursor`, one page of the matching nodes.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "extensions",
    params(
        ("filter" = Option<String>, Query, description = "A CEL expression over `node_id`, `host`, `port`, `public_key` and `metadata`: only the nodes it matches, in pages of `limit`"),
        ("limit" = Option<usize>, Query, description = "Most nodes in the answer (1 to the center's --max-page, its default with a filter)"),
        ("cursor" = Option<String>, Query, description = "The next page of the query whose answer gave this token: same filter, same revision"),
    ),
    responses(
        (status = 200, description = "Every live node, with the revision and epoch to watch from; with filter, limit or cursor one page of the matching nodes sorted by id, the plan, and the next page's cursor", body = NodesAnswer),
        (status = 400, description = "A bad filter (its line:column and the problem), a limit out of range, a parameter given twice, or a filter other than the cursor's", body = Envelope),
        (status = 410, description = "The cursor is unknown or expired: start the query over", body = GoneAnswer),
        (status = 503, description = "The listing could not be rendered, or too many cursors are open", body = Envelope),
    )
)]
pub(super) async fn nodes(State(center): State<Center>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let response = match listing_query(
        query.as_deref().unwrap_or(""),
        center.config().discovery.max_page,
    ) {
        Err(rejection) => rejection.into_response(),
        Ok(parsed) if parsed.is_plain() => match blocking(&center, Center::nodes_body).await {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(rejection) => rejection.into_response(),
        },
        Ok(parsed) => queried(&center, parsed, Collection::Nodes).await,
    };
    observed(&center, Endpoint::Nodes, None, started, response)
}

/// `GET /v1/agents`: the A2A agent cards of the live nodes that carry one, in pages,
/// optionally narrowed by `filter`: the center as an A2A curated registry.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "extensions",
    params(
        ("filter" = Option<String>, Query, description = "A CEL expression over `node_id`, `host`, `port`, `public_key` and `metadata` (the card is `metadata.agent_card`): only the agents it matches"),
        ("limit" = Option<usize>, Query, description = "Most agents in the answer (1 to the center's --max-page, its default)"),
        ("cursor" = Option<String>, Query, description = "The next page of the query whose answer gave this token: same filter, same revision"),
    ),
    responses(
        (status = 200, description = "One page of agent cards sorted by node id, with the plan, the revision all pages show, and the next page's cursor", body = AgentsAnswer),
        (status = 400, description = "A bad filter (its line:column and the problem), a limit out of range, a parameter given twice, or a filter other than the cursor's", body = Envelope),
        (status = 410, description = "The cursor is unknown or expired: start the query over", body = GoneAnswer),
        (status = 503, description = "The answer could not be rendered, or too many cursors are open", body = Envelope),
    )
)]
pub(super) async fn agents(State(center): State<Center>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let response = match listing_query(
        query.as_deref().unwrap_or(""),
        center.config().discovery.max_page,
    ) {
        Err(rejection) => rejection.into_response(),
        Ok(parsed) => queried(&center, parsed, Collection::Agents).await,
    };
    observed(&center, Endpoint::Agents, None, started, response)
}

/// The answer of a filtered or paged listing: the filter is compiled and the page
/// evaluated on a blocking thread.
async fn queried(
    center: &Center,
    parsed: super::request::ListingQuery,
    collection: Collection,
) -> Response {
    let center = center.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let limits = center.config().discovery.filter_limits();
        // The client's filter alone first: its errors name the client's positions.
        let mut filter = parsed
            .filter
            .as_deref()
            .map(|source| compile_filter(source, limits))
            .transpose()?;
        if collection == Collection::Agents {
            let source = agents_filter(parsed.filter.as_deref());
            let wider = isek::filter::Limits {
                max_source_bytes: limits.max_source_bytes.saturating_add(64),
                max_operators: limits.max_operators.saturating_add(8),
                ..limits
            };
            filter = Some(compile_filter(&source, wider)?);
        }
        let query = Query {
            collection,
            filter,
            asked: parsed.filter,
            limit: parsed.limit,
            cursor: parsed.cursor,
        };
        Ok::<_, Rejection>(center.query(query))
    })
    .await;
    match answer {
        Ok(Ok(Ok(body))) => json_response(StatusCode::OK, body),
        Ok(Ok(Err(error))) => query_rejection(error),
        Ok(Err(rejection)) => rejection.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "answering a query failed");
            Rejection::unavailable("The listing could not be rendered.").into_response()
        }
    }
}

/// The answer to a query that has none: 410 for a cursor to start over without,
/// 400 for a filter that is not the cursor's, 503 when no cursor can be opened.
fn query_rejection(error: QueryError) -> Response {
    match error {
        QueryError::Gone { revision } => json_response(
            StatusCode::GONE,
            gone_envelope(
                revision,
                "The cursor is unknown or expired (unused for the center's --cursor-ttl, finished, or from before a restart); start the query over without 'cursor'.",
            ),
        ),
        QueryError::OtherFilter => Rejection::bad_request(
            "This cursor belongs to another query: its first page had another 'filter' or was on another listing; leave 'filter' out or start over.",
        )
        .into_response(),
        QueryError::TooManyCursors { max } => Rejection::unavailable(format!(
            "Too many open cursors ({max}, the center's --max-cursors), each open until its last page or --cursor-ttl unused); retry later."
        ))
        .into_response(),
    }
}

/// Runs `render` (a listing: every node rendered) on a blocking thread, so a large
/// listing never holds up an async worker; a render that panicked is a 503, not a
/// dropped connection.
/// `render(center)` on a blocking thread (a full listing renders every node).
async fn blocking(
    center: &Center,
    render: fn(&Center) -> bytes::Bytes,
) -> Result<bytes::Bytes, Rejection> {
    let center = center.clone();
    tokio::task::spawn_blocking(move || render(&center))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "rendering a listing failed");
            Rejection::unavailable("The listing could not be rendered.")
        })
}

/// A 200 whose JSON body is `listing` rendered as `kind` while it is sent, a chunk
/// at a time: the first bytes leave at once, and the answer holds one chunk and a
/// share of the listing, not a copy of the body.
/// A body that fits in one chunk goes out whole, with its length, as before.
fn streamed(listing: Arc<Listing>, kind: ListingKind) -> Response {
    let mut chunks = Chunks::new(Arc::clone(listing.members()), kind);
    let first = chunks.next().unwrap_or_default();
    let Some(second) = chunks.next() else {
        return json_response(StatusCode::OK, first);
    };
    let hold = Release(Some(listing));
    let chunks = [first, second].into_iter().chain(chunks);
    let body = futures::StreamExt::map(futures::stream::iter(chunks), move |chunk| {
        let _ = &hold;
        Ok::<_, std::convert::Infallible>(chunk)
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Holds a listing while its answer is sent; if that answer held the last share of
/// it, the copy (a million reference counts to drop) is freed on a blocking thread,
/// not on the runtime's workers.
struct Release(Option<Arc<Listing>>);

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(listing) = self.0.take()
            && let Ok(listing) = Arc::try_unwrap(listing)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn_blocking(move || drop(listing));
        }
    }
}

/// `GET /v1/watch[?since=REV[&epoch=E]][&filter=CEL]`: the change stream as
/// server-sent events, scoped to the nodes `filter` matches if given; a `since` that
/// cannot be resumed gets a 410 envelope telling the client to re-list.
#[utoipa::path(
    get,
    path = "/v1/watch",
    tag = "extensions",
    params(
        ("since" = Option<u64>, Query, description = "Resume after this revision (needs `epoch`)"),
        ("epoch" = Option<u64>, Query, description = "The epoch `since` belongs to"),
        ("filter" = Option<String>, Query, description = "A CEL expression over `node_id`, `host`, `port`, `public_key` and `metadata`, as for /v1/nodes: the snapshot holds only the matching nodes, a node that starts matching arrives as `put`, one that stops matching as `delete` with reason `filter`"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `hello`, then `snapshot` (without `since`) or the missed changes, then `put`/`delete`; `resync` when the watcher fell behind", content_type = "text/event-stream", body = String),
        (status = 400, description = "A malformed parameter, or a bad filter (its line:column and the problem)", body = Envelope),
        (status = 410, description = "`since` cannot be resumed: re-list from /v1/nodes", body = GoneAnswer),
        (status = 429, description = "This client address has `--max-watchers-per-ip` streams open", body = Envelope),
        (status = 503, description = "The center has `--max-watchers` streams open", body = Envelope),
    )
)]
pub(super) async fn watch(
    State(center): State<Center>,
    Extension(watchers): Extension<Arc<Watchers>>,
    client: Option<Extension<ClientAddr>>,
    version: Version,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    let client = client.map(|Extension(ClientAddr(ip))| ip);
    let response = watch_response(&center, &watchers, client, version, query.as_deref()).await;
    observed(&center, Endpoint::Watch, None, started, response)
}

/// The answer of [`watch`].
async fn watch_response(
    center: &Center,
    watchers: &Arc<Watchers>,
    client: Option<std::net::IpAddr>,
    version: Version,
    query: Option<&str>,
) -> Response {
    let parsed = match watch_query(query.unwrap_or("")) {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection.into_response(),
    };
    let slot = match watchers.admit(client) {
        Ok(slot) => slot,
        Err(WatcherRefusal::PerAddress(max)) => {
            return envelope(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "This address has {max} change streams open, the most allowed (--max-watchers-per-ip); close one first."
                ),
            );
        }
        Err(WatcherRefusal::Total(max)) => {
            return envelope(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "The center serves its maximum of {max} change streams (--max-watchers); retry later."
                ),
            );
        }
    };
    let since = parsed.since.map(|s| (s, parsed.epoch));
    let started = match parsed.filter {
        None => center.watch(since, None).map(|start| (start, None)),
        // A scoped start compiles the filter and evaluates it over the candidates:
        // on a blocking thread, like a filtered listing.
        Some(source) => {
            let center = center.clone();
            let scoped = tokio::task::spawn_blocking(move || {
                let limits = center.config().discovery.filter_limits();
                let filter = compile_filter(&source, limits)?;
                Ok::<_, Rejection>(
                    center
                        .watch(since, Some(&filter))
                        .map(|start| (start, Some(filter))),
                )
            })
            .await;
            match scoped {
                Ok(Ok(scoped)) => scoped,
                Ok(Err(rejection)) => return rejection.into_response(),
                Err(e) => {
                    tracing::error!(error = %e, "starting a scoped watch failed");
                    return Rejection::unavailable("The change stream could not be started.")
                        .into_response();
                }
            }
        }
    };
    let (start, filter) = match started {
        Ok(started) => started,
        Err(resync) => {
            center.metrics().resync(ResyncReason::Gone);
            let body = gone_envelope(resync.revision, &resync.message);
            return json_response(StatusCode::GONE, body);
        }
    };
    // The slot is given back with the stream's state. Over HTTP/2 a stream whose
    // window is never opened is released after --write-timeout (the socket's own
    // deadline covers HTTP/1, where an unread stream stalls the socket).
    let stall = (version == Version::HTTP_2).then_some(center.config().timeouts.write_stall);
    let body = center.watch_body(start, filter, Box::new(slot), stall);
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
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

/// Records the latency of a request to `endpoint` and, for a registry operation, its
/// outcome (from the status), then passes `response` on.
fn observed(
    center: &Center,
    endpoint: Endpoint,
    op: Option<Op>,
    started: Instant,
    response: Response,
) -> Response {
    let metrics = center.metrics();
    metrics.request(endpoint, started.elapsed());
    if let Some(op) = op {
        metrics.outcome(op, Outcome::of_status(response.status().as_u16()));
    }
    response
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
