//! The Isek Center HTTP protocol.
//!
//! Paths, bodies and messages match the original Flask center of isek 0.2.1 (see
//! `shared/spec/center_responses.txt`); an unchanged Python `IsekCenterRegistry`
//! depends on them. The message texts are functions here so the server and the
//! tests use one spelling.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Metadata;

/// Path of the registration endpoint (POST).
pub const REGISTER_PATH: &str = "/isek_center/register";
/// Path of the lease renewal endpoint (POST).
pub const RENEW_PATH: &str = "/isek_center/renew";
/// Path of the deregistration endpoint (POST).
pub const DEREGISTER_PATH: &str = "/isek_center/deregister";
/// Path of the node listing (GET).
pub const AVAILABLE_NODES_PATH: &str = "/isek_center/available_nodes";

/// Every response body: `{"code": <HTTP status>, "data": ..., "message": ...}`.
///
/// The original client raises when `code != 200`, so `code` always equals the HTTP
/// status. `data` is `null` except for listings (and our extensions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Same as the HTTP status code.
    pub code: u16,
    /// The payload, `null` for most answers.
    pub data: T,
    /// Human-readable outcome, exact texts for compatibility.
    pub message: String,
}

/// Body of `POST /isek_center/register` as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Id of the node to register.
    pub node_id: String,
    /// Where peers reach the node.
    pub host: String,
    /// Where peers reach the node.
    pub port: u16,
    /// The node's agent card.
    #[serde(default)]
    pub metadata: Metadata,
}

/// Body of `POST /isek_center/renew` and `/deregister` as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeIdRequest {
    /// Id of the node to act on.
    pub node_id: String,
}

/// `data` of `GET /isek_center/available_nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableNodes {
    /// Live nodes keyed by node id.
    ///
    /// Values stay raw JSON so a client can skip one entry that an original center
    /// stored with a defect (port `true`, string metadata) without failing the list.
    pub available_nodes: BTreeMap<String, serde_json::Value>,
}

/// One node in the listing, as the center writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedNode {
    /// Unix seconds (float) when the lease runs out.
    pub expires_at: f64,
    /// Where peers reach the node.
    pub host: String,
    /// The node's agent card.
    pub metadata: Metadata,
    /// Id of the node.
    pub node_id: String,
    /// Where peers reach the node.
    pub port: u16,
}

/// `message` of a successful registration.
pub fn registered_message(node_id: &str) -> String {
    format!("Node '{node_id}' registered successfully.")
}

/// `message` of a successful renewal.
pub fn renewed_message(node_id: &str) -> String {
    format!("Lease for node '{node_id}' renewed successfully.")
}

/// `message` of a successful deregistration.
pub fn deregistered_message(node_id: &str) -> String {
    format!("Node '{node_id}' deregistered successfully.")
}

/// `message` (404) when renewing an unknown node.
pub fn renew_not_found_message(node_id: &str) -> String {
    format!("Node '{node_id}' not found for lease renewal.")
}

/// `message` (404) when deregistering an unknown node.
pub fn deregister_not_found_message(node_id: &str) -> String {
    format!("Node '{node_id}' not found for deregistration.")
}

/// `message` of a successful listing.
pub const LIST_MESSAGE: &str = "success";
/// `message` (400) when a registration lacks `node_id`, `host` or `port` (or they are falsy).
pub const REQUIRED_FIELDS_MESSAGE: &str = "'node_id', 'host', and 'port' are required fields.";
/// `message` (400) when `port` is not an integer.
pub const PORT_NOT_INTEGER_MESSAGE: &str = "'port' must be an integer.";
/// `message` (400) when renew/deregister lack `node_id`.
pub const NODE_ID_REQUIRED_MESSAGE: &str = "'node_id' is required.";
/// `message` (400) when the body is empty, `null`, or `{}`.
pub const BODY_MUST_BE_JSON_MESSAGE: &str = "Request body must be JSON.";

// ---------------------------------------------------------------------------
// Our extension: the change stream (`/v1/nodes`, `/v1/watch`). Not in the
// original center; a client that gets 404 for them falls back to polling.
// ---------------------------------------------------------------------------

/// Path of the listing with the current revision (GET), our extension.
pub const NODES_PATH: &str = "/v1/nodes";

/// Path of the A2A agent cards of the live nodes that carry one (`?filter=`,
/// `limit`, `cursor` as for [`NODES_PATH`]): the center as a curated registry.
pub const AGENTS_PATH: &str = "/v1/agents";
/// Path of the change stream (GET, `text/event-stream`), our extension. Query:
/// `since=REV` (resume after a revision), `epoch=E` (the center incarnation that
/// revision belongs to) and `filter=CEL` (a scoped stream: only the matching nodes;
/// one that stops matching leaves with [`WATCH_REASON_FILTER`]).
pub const WATCH_PATH: &str = "/v1/watch";

/// `reason` of a [`WatchDelete`] on a filtered stream when the node is still
/// registered but no longer matches the filter.
pub const WATCH_REASON_FILTER: &str = "filter";

/// SSE event name of [`WatchHello`], the first event of every stream.
pub const WATCH_EVENT_HELLO: &str = "hello";
/// SSE event name of [`WatchSnapshot`].
pub const WATCH_EVENT_SNAPSHOT: &str = "snapshot";
/// SSE event name of [`WatchPut`].
pub const WATCH_EVENT_PUT: &str = "put";
/// SSE event name of [`WatchDelete`].
pub const WATCH_EVENT_DELETE: &str = "delete";
/// SSE event name of [`WatchResync`]; the stream ends after it.
pub const WATCH_EVENT_RESYNC: &str = "resync";

/// One node in the change stream and in `/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedNode {
    /// Id of the node.
    pub node_id: String,
    /// Where peers reach the node.
    pub host: String,
    /// Where peers reach the node.
    pub port: u16,
    /// The node's agent card.
    #[serde(default)]
    pub metadata: Metadata,
}

/// `data` of `GET /v1/nodes`: every live node and the revision they reflect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesListing {
    /// Incarnation of the center: revisions of different epochs are unrelated.
    pub epoch: u64,
    /// Revision of the last change included.
    pub revision: u64,
    /// Live nodes keyed by node id.
    pub nodes: BTreeMap<String, WatchedNode>,
}

/// `data` of a filtered or paged `GET /v1/nodes` (`filter`, `limit`, `cursor`): one
/// page of the matching nodes. An unfiltered, unpaged answer ([`NodesListing`]) parses
/// as one too, with no `cursor` and no `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesPage {
    /// The token of the next page; `null` (or absent) on the last.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Incarnation of the center.
    pub epoch: u64,
    /// The page's nodes keyed by node id.
    pub nodes: BTreeMap<String, WatchedNode>,
    /// `index` or `scan`: how the center found them (absent for a plain listing).
    #[serde(default)]
    pub plan: Option<String>,
    /// The revision every page of this query shows.
    pub revision: u64,
}

/// First event of every stream: who is answering and how often it keeps quiet
/// connections alive, so the client can tell a quiet stream from a dead one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchHello {
    /// Incarnation of the center (random per start): a client resuming with another
    /// epoch's revision gets a resync instead of unrelated changes.
    pub epoch: u64,
    /// The center's current revision when the stream opened.
    pub revision: u64,
    /// Longest silence between two writes on the stream, in milliseconds.
    pub keepalive_ms: u64,
}

/// `snapshot` event: the complete set of live nodes at `revision`; the changes that
/// follow have higher revisions, without gap or duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchSnapshot {
    /// Revision of the last change included.
    pub revision: u64,
    /// Live nodes keyed by node id.
    pub nodes: BTreeMap<String, WatchedNode>,
}

/// `put` event: a node was registered or its entry replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchPut {
    /// Revision of the change (also the SSE `id`).
    pub revision: u64,
    /// The node's new entry.
    pub node: WatchedNode,
}

/// `delete` event: a node was deregistered or its lease expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchDelete {
    /// Revision of the change (also the SSE `id`).
    pub revision: u64,
    /// Id of the node that left.
    pub node_id: String,
    /// Why: `deregister` or `expire`; on a filtered stream also `filter` (the node
    /// changed and no longer matches, [`WATCH_REASON_FILTER`]).
    pub reason: String,
}

/// `resync` event (and the `data` of a 410 answer): the requested revision is not
/// retained (compacted, another epoch, or the watcher fell behind); re-list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchResync {
    /// The center's current revision.
    pub revision: u64,
    /// Human-readable reason.
    pub message: String,
}

/// `message` of a 410 answer or `resync` event for a revision no longer retained.
pub fn compacted_message(since: u64, oldest: u64) -> String {
    format!(
        "revision {since} is compacted (oldest resumable revision is {oldest}); re-list from {NODES_PATH}"
    )
}
