//! Every byte the center answers with: JSON exactly as Flask's `jsonify` writes it,
//! the `{code, data, message}` envelopes, the listings (`available_nodes`,
//! `/v1/nodes`) and the server-sent event frames of `/v1/watch`.
//!
//! Flask 3 serializes with `sort_keys=True`, `ensure_ascii=True` and compact
//! separators (`,` and `:`), then appends `"\n"`. Python's string escapes and
//! number formats come from [`isek::canonical`]; this module only changes the
//! separators and frames the envelopes.
//!
//! Level 0 (pure): functions from values to text. No lock, no clock read, no HTTP
//! type: the status code of an envelope is a number handed in by `http`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use isek::canonical::{KeyOrder, Separators, write_float, write_str, write_with};
use isek::wire::center::{
    LIST_MESSAGE, WATCH_EVENT_DELETE, WATCH_EVENT_HELLO, WATCH_EVENT_PUT, WATCH_EVENT_RESYNC,
    WATCH_EVENT_SNAPSHOT,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::record::NodeRecord;

/// Appends `value` compactly, keys sorted at every depth, non-ASCII escaped.
pub fn write_compact(out: &mut String, value: &Value) {
    write_with(out, value, KeyOrder::Sorted, Separators::Compact);
}

/// `value` as compact Flask JSON text (no trailing newline).
pub fn to_compact_string(value: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, value);
    out
}

/// A whole response body `{"code":C,"data":null,"message":M}\n`.
pub fn envelope_without_data(code: u16, message: &str) -> String {
    let mut out = String::with_capacity(40 + message.len());
    out.push_str("{\"code\":");
    out.push_str(&code.to_string());
    out.push_str(",\"data\":null,\"message\":");
    write_str(&mut out, message);
    out.push_str("}\n");
    out
}

/// An envelope carrying `data` (any serializable value, written compact with sorted
/// keys like the rest): the operators' endpoints (`/healthz`, `/readyz`).
pub fn envelope_with_data(code: u16, message: &str, data: &impl serde::Serialize) -> String {
    // Serializing plain structs of strings and numbers into a Value does not fail; a
    // value that did would be reported as `null` rather than break the answer.
    let data = serde_json::to_value(data).unwrap_or(Value::Null);
    let mut out = String::with_capacity(64 + message.len());
    let _ = write!(out, "{{\"code\":{code},\"data\":");
    write_compact(&mut out, &data);
    out.push_str(",\"message\":");
    write_str(&mut out, message);
    out.push_str("}\n");
    out
}

/// The `put` event of `id` registered (or replaced) with `record` at `revision`.
pub fn put_frame(revision: u64, id: &str, record: &NodeRecord) -> Bytes {
    let data_len = 96 + id.len() + record.host().len() + record.metadata().len();
    let mut out = frame_start(WATCH_EVENT_PUT, Some(revision), data_len);
    out.push_str("{\"node\":");
    write_node(&mut out, id, record);
    let _ = write!(out, ",\"revision\":{revision}}}");
    frame_end(out)
}

/// The `delete` event of `id` leaving at `revision` (`reason`: `deregister`, `expire`).
pub fn delete_frame(revision: u64, id: &str, reason: &str) -> Bytes {
    let mut out = frame_start(WATCH_EVENT_DELETE, Some(revision), 64 + id.len());
    out.push_str("{\"node_id\":");
    write_str(&mut out, id);
    out.push_str(",\"reason\":");
    write_str(&mut out, reason);
    let _ = write!(out, ",\"revision\":{revision}}}");
    frame_end(out)
}

/// The comment line sent on a quiet change stream.
pub const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// A 200 envelope whose `data` is `{"lease_token": token}` (Flask-style JSON).
pub fn envelope_with_token(message: &str, token: &str) -> String {
    let mut out = String::with_capacity(80 + message.len() + token.len());
    out.push_str("{\"code\":200,\"data\":{\"lease_token\":");
    write_str(&mut out, token);
    out.push_str("},\"message\":");
    write_str(&mut out, message);
    out.push_str("}\n");
    out
}

/// The 410 envelope of a change stream that cannot resume: `data` carries the
/// center's current revision.
pub fn gone_envelope(revision: u64, message: &str) -> String {
    let mut body = format!("{{\"code\":410,\"data\":{{\"revision\":{revision}}},\"message\":");
    write_str(&mut body, message);
    body.push_str("}\n");
    body
}

/// The `GET /v1/nodes` body: `nodes` (live, sorted by id) with `revision` and `epoch`;
/// a node in `guarded` (sorted by id, with Unix seconds) carries `guarded_until`,
/// the deadline the expiry guard gave it.
pub fn nodes_body<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a NodeRecord)>,
    count: usize,
    epoch: u64,
    revision: u64,
    guarded: &[(std::sync::Arc<str>, f64)],
) -> Vec<u8> {
    let mut out = String::with_capacity(96 + count * 128);
    nodes_head(&mut out, epoch);
    if guarded.is_empty() {
        write_nodes(&mut out, nodes);
    } else {
        write_guarded_nodes(&mut out, nodes, guarded);
    }
    nodes_tail(&mut out, revision);
    out.into_bytes()
}

/// The start of a `GET /v1/nodes` body, up to its `nodes` object.
fn nodes_head(out: &mut String, epoch: u64) {
    let _ = write!(
        out,
        "{{\"code\":200,\"data\":{{\"epoch\":{epoch},\"nodes\":"
    );
}

/// The end of a `GET /v1/nodes` body, after its `nodes` object.
fn nodes_tail(out: &mut String, revision: u64) {
    let _ = writeln!(out, ",\"revision\":{revision}}},\"message\":\"success\"}}");
}

/// [`write_nodes`], with `guarded_until` (sorted first, as every key) in the nodes
/// that `guarded` names.
fn write_guarded_nodes<'a>(
    out: &mut String,
    nodes: impl Iterator<Item = (&'a str, &'a NodeRecord)>,
    guarded: &[(std::sync::Arc<str>, f64)],
) {
    let mut node = String::new();
    out.push('{');
    for (i, (id, record)) in nodes.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, id);
        out.push(':');
        let until = guarded
            .binary_search_by(|(g, _)| (**g).cmp(id))
            .ok()
            .and_then(|at| guarded.get(at));
        match until {
            None => write_node(out, id, record),
            Some((_, secs)) => {
                node.clear();
                write_node(&mut node, id, record);
                out.push_str("{\"guarded_until\":");
                write_unix_seconds(out, *secs);
                out.push(',');
                out.push_str(node.get(1..).unwrap_or("}"));
            }
        }
    }
    out.push('}');
}

/// One page of a filtered or paged `GET /v1/nodes`: `nodes` (sorted by id) at
/// `revision`, with `epoch`, the `plan` that found them (`index` or `scan`) and the
/// `cursor` of the next page (`null` on the last).
pub fn page_body<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a NodeRecord)>,
    count: usize,
    epoch: u64,
    revision: u64,
    plan: &str,
    cursor: Option<&str>,
) -> Vec<u8> {
    let mut out = String::with_capacity(128 + count * 128);
    out.push_str("{\"code\":200,\"data\":{\"cursor\":");
    match cursor {
        Some(cursor) => write_str(&mut out, cursor),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"epoch\":{epoch},\"nodes\":");
    write_nodes(&mut out, nodes);
    out.push_str(",\"plan\":");
    write_str(&mut out, plan);
    let _ = writeln!(out, ",\"revision\":{revision}}},\"message\":\"success\"}}");
    out.into_bytes()
}

/// One page of `GET /v1/agents`: the A2A agent card (`metadata.agent_card`) of each
/// node of `nodes` (sorted by id), as `{"agent_card", "node_id"}` in an array, with
/// the same `cursor`, `epoch`, `plan` and `revision` as a page of nodes.
pub fn agents_body<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a NodeRecord)>,
    count: usize,
    epoch: u64,
    revision: u64,
    plan: &str,
    cursor: Option<&str>,
) -> Vec<u8> {
    let mut out = String::with_capacity(128 + count * 512);
    out.push_str("{\"code\":200,\"data\":{\"agents\":[");
    for (i, (id, record)) in nodes.enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Stored metadata is a compact JSON object; a card is there by the query.
        let metadata: Value = serde_json::from_str(record.metadata()).unwrap_or(Value::Null);
        out.push_str("{\"agent_card\":");
        write_compact(&mut out, metadata.get("agent_card").unwrap_or(&Value::Null));
        out.push_str(",\"node_id\":");
        write_str(&mut out, id);
        out.push('}');
    }
    out.push_str("],\"cursor\":");
    match cursor {
        Some(cursor) => write_str(&mut out, cursor),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"epoch\":{epoch},\"plan\":");
    write_str(&mut out, plan);
    let _ = writeln!(out, ",\"revision\":{revision}}},\"message\":\"success\"}}");
    out.into_bytes()
}

/// Serializes the live nodes at `now` as Flask's `jsonify` would, `expires_at` in
/// Unix seconds relative to `wall` (the wall clock at `now`); also returns the
/// earliest deadline among them.
pub fn available_nodes<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a NodeRecord, Instant)>,
    count: usize,
    now: Instant,
    wall: SystemTime,
) -> (Vec<u8>, Option<Instant>) {
    let wall_secs = unix_seconds(wall);
    let mut out = String::with_capacity(64 + count * 160);
    out.push_str(AVAILABLE_NODES_HEAD);
    let mut earliest: Option<Instant> = None;
    for (i, (id, record, deadline)) in nodes.enumerate() {
        if i > 0 {
            out.push(',');
        }
        earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        write_available_node(&mut out, id, record, deadline, now, wall_secs);
    }
    available_nodes_tail(&mut out);
    (out.into_bytes(), earliest)
}

/// The start of an `available_nodes` body, up to its first node.
const AVAILABLE_NODES_HEAD: &str = "{\"code\":200,\"data\":{\"available_nodes\":{";

/// Seconds since the Unix epoch of `wall` (0 before it).
fn unix_seconds(wall: SystemTime) -> f64 {
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One `"id":{"expires_at":..,"host":..,"metadata":..,"node_id":..,"port":..}` of
/// `available_nodes`, its deadline in Unix seconds (`wall_secs` at `now`).
fn write_available_node(
    out: &mut String,
    id: &str,
    record: &NodeRecord,
    deadline: Instant,
    now: Instant,
    wall_secs: f64,
) {
    write_json_str(out, id);
    out.push_str(":{\"expires_at\":");
    write_unix_seconds(
        out,
        wall_secs + deadline.saturating_duration_since(now).as_secs_f64(),
    );
    out.push_str(",\"host\":");
    write_json_str(out, record.host());
    out.push_str(",\"metadata\":");
    out.push_str(record.metadata());
    out.push_str(",\"node_id\":");
    write_json_str(out, id);
    out.push_str(",\"port\":");
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", record.port());
    out.push('}');
}

/// The end of an `available_nodes` body, after its last node.
fn available_nodes_tail(out: &mut String) {
    out.push_str("}},\"message\":");
    write_str(out, LIST_MESSAGE);
    out.push_str("}\n");
}

/// The live nodes of one listing, copied out of the registry at one instant and one
/// revision: what a listing renders, in pieces, while it is sent ([`Chunks`]), so no
/// answer holds its whole body and concurrent answers share one copy.
#[derive(Debug)]
pub struct Members {
    /// Node id, record and lease deadline of every live node, sorted by id.
    pub nodes: Vec<(Arc<str>, NodeRecord, Instant)>,
    /// The revision the copy shows.
    pub revision: u64,
    /// When the copy was taken (`expires_at` counts from it).
    pub now: Instant,
    /// The wall clock at `now`.
    pub wall: SystemTime,
}

impl Members {
    /// The earliest lease deadline among the nodes (None without nodes): the copy
    /// shows a node that is gone from then on.
    pub fn earliest_deadline(&self) -> Option<Instant> {
        self.nodes.iter().map(|(_, _, deadline)| *deadline).min()
    }
}

/// Which body [`Chunks`] renders.
#[derive(Debug, Clone, Copy)]
pub enum ListingKind {
    /// `GET /isek_center/available_nodes` (Flask-compatible, with `expires_at`).
    AvailableNodes,
    /// `GET /v1/nodes` with the center's epoch.
    Nodes {
        /// The center's epoch, written into the body.
        epoch: u64,
    },
}

/// About how many bytes one chunk of a listing holds: large enough that the per-chunk
/// overhead is negligible, small enough that an answer holds little memory.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A listing body rendered on demand, [`CHUNK_BYTES`] at a time, from shared
/// [`Members`]: the concatenated chunks are exactly the bytes of [`available_nodes`]
/// or [`nodes_body`] over the same nodes.
#[derive(Debug)]
pub struct Chunks {
    /// The nodes rendered.
    members: Arc<Members>,
    /// Which body.
    kind: ListingKind,
    /// Index of the next node to render; `None` before the head was written.
    next: Option<usize>,
    /// Whether the tail was written.
    done: bool,
    /// `members.wall` in Unix seconds.
    wall_secs: f64,
}

impl Chunks {
    /// The body of `kind` over `members`.
    pub fn new(members: Arc<Members>, kind: ListingKind) -> Self {
        let wall_secs = unix_seconds(members.wall);
        Self {
            members,
            kind,
            next: None,
            done: false,
            wall_secs,
        }
    }
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = String::with_capacity(CHUNK_BYTES + 1024);
        let mut index = match self.next {
            Some(index) => index,
            None => {
                match self.kind {
                    ListingKind::AvailableNodes => out.push_str(AVAILABLE_NODES_HEAD),
                    ListingKind::Nodes { epoch } => {
                        nodes_head(&mut out, epoch);
                        out.push('{');
                    }
                }
                0
            }
        };
        let members = &*self.members;
        while out.len() < CHUNK_BYTES {
            let Some((id, record, deadline)) = members.nodes.get(index) else {
                break;
            };
            if index > 0 {
                out.push(',');
            }
            match self.kind {
                ListingKind::AvailableNodes => write_available_node(
                    &mut out,
                    id,
                    record,
                    *deadline,
                    members.now,
                    self.wall_secs,
                ),
                ListingKind::Nodes { .. } => {
                    write_str(&mut out, id);
                    out.push(':');
                    write_node(&mut out, id, record);
                }
            }
            index += 1;
        }
        self.next = Some(index);
        if index >= members.nodes.len() {
            match self.kind {
                ListingKind::AvailableNodes => available_nodes_tail(&mut out),
                ListingKind::Nodes { .. } => {
                    out.push('}');
                    nodes_tail(&mut out, members.revision);
                }
            }
            self.done = true;
        }
        Some(Bytes::from(out))
    }
}

/// Appends `s` as a Python `ensure_ascii` JSON string; printable ASCII without quotes
/// or backslashes (nearly every id and host) is copied as is.
fn write_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        write_str(out, s);
    }
}

/// Appends a Unix time as Python's `float.__repr__` writes it. Python uses fixed
/// notation between 1e-4 and 1e16, where Rust's `Display` gives the same shortest
/// round-trip digits (it only omits the `.0` of integral values); anything else (a
/// wall clock set to 1970 or the far future) goes through the general writer.
fn write_unix_seconds(out: &mut String, secs: f64) {
    if (1e-4..1e16).contains(&secs) {
        let start = out.len();
        // Writing to a String cannot fail.
        let _ = write!(out, "{secs}");
        if out.get(start..).is_some_and(|digits| !digits.contains('.')) {
            out.push_str(".0");
        }
    } else {
        write_float(out, secs);
    }
}

/// A whole SSE frame. `data` must be one line (JSON written with escaped strings).
pub fn frame(event: &str, id: Option<u64>, data: &str) -> Bytes {
    let mut out = frame_start(event, id, data.len());
    out.push_str(data);
    frame_end(out)
}

/// The `event:`, `id:` and `data: ` lines of an SSE frame, in a buffer with room for
/// `data_len` more bytes: the caller writes the data (one line) straight into it and
/// [`frame_end`] closes it, so a large frame (a snapshot) is written once, never
/// rendered into a string and then copied into the frame.
fn frame_start(event: &str, id: Option<u64>, data_len: usize) -> String {
    let mut out = String::with_capacity(32 + event.len() + data_len);
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    out.push_str("data: ");
    out
}

/// Ends a frame begun by [`frame_start`] (the blank line) and hands over its buffer.
fn frame_end(mut out: String) -> Bytes {
    out.push_str("\n\n");
    Bytes::from(out)
}

/// Appends one node as `{"host":..,"metadata":..,"node_id":..,"port":..}`.
pub fn write_node(out: &mut String, id: &str, record: &NodeRecord) {
    out.push_str("{\"host\":");
    write_str(out, record.host());
    out.push_str(",\"metadata\":");
    out.push_str(record.metadata());
    out.push_str(",\"node_id\":");
    write_str(out, id);
    let _ = write!(out, ",\"port\":{}}}", record.port());
}

/// Appends `nodes` (sorted by id) as a JSON object keyed by node id.
pub fn write_nodes<'a>(out: &mut String, nodes: impl Iterator<Item = (&'a str, &'a NodeRecord)>) {
    out.push('{');
    for (i, (id, record)) in nodes.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, id);
        out.push(':');
        write_node(out, id, record);
    }
    out.push('}');
}

/// The `snapshot` event of `nodes` (the live ones, sorted by id) at `revision`.
pub fn snapshot_frame<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a NodeRecord)>,
    count: usize,
    revision: u64,
) -> Bytes {
    let mut out = frame_start(WATCH_EVENT_SNAPSHOT, Some(revision), 64 + count * 128);
    out.push_str("{\"nodes\":");
    write_nodes(&mut out, nodes);
    let _ = write!(out, ",\"revision\":{revision}}}");
    frame_end(out)
}

/// The `hello` event opening every stream.
pub fn hello_frame(epoch: u64, revision: u64, keepalive: Duration) -> Bytes {
    let data = format!(
        "{{\"epoch\":{epoch},\"keepalive_ms\":{},\"revision\":{revision}}}",
        keepalive.as_millis()
    );
    frame(WATCH_EVENT_HELLO, None, &data)
}

/// The `resync` event ending a stream.
pub fn resync_frame(revision: u64, message: &str) -> Bytes {
    let mut data = String::from("{\"message\":");
    write_str(&mut data, message);
    let _ = write!(data, ",\"revision\":{revision}}}");
    frame(WATCH_EVENT_RESYNC, None, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseTable;
    use serde_json::json;

    #[test]
    fn a_guarded_node_carries_guarded_until_first() {
        let a = NodeRecord::new("h", 1, "{}");
        let b = NodeRecord::new("h", 2, r#"{"role":"x"}"#);
        let nodes = [("a", &a), ("b", &b)];
        let guarded = [(Arc::from("b"), 1795681547.5)];
        let body = nodes_body(nodes.into_iter(), 2, 7, 9, &guarded);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            concat!(
                r#"{"code":200,"data":{"epoch":7,"nodes":{"a":{"host":"h","metadata":{},"node_id":"a","port":1},"#,
                r#""b":{"guarded_until":1795681547.5,"host":"h","metadata":{"role":"x"},"node_id":"b","port":2}},"#,
                r#""revision":9},"message":"success"}"#,
                "\n"
            )
        );
        let plain = nodes_body(nodes.into_iter(), 2, 7, 9, &[]);
        assert!(!String::from_utf8(plain).unwrap().contains("guarded_until"));
    }

    #[test]
    fn compact_sorted_ascii() {
        let v = json!({"b": [1, 2.5, "é"], "a": {"z": null, "y": true}, "c": 1e16});
        assert_eq!(
            to_compact_string(&v),
            r#"{"a":{"y":true,"z":null},"b":[1,2.5,"\u00e9"],"c":1e+16}"#
        );
    }

    #[test]
    fn envelope_matches_flask() {
        assert_eq!(
            envelope_without_data(200, "Node 'n1' registered successfully."),
            "{\"code\":200,\"data\":null,\"message\":\"Node 'n1' registered successfully.\"}\n"
        );
        assert_eq!(
            envelope_without_data(404, "Node 'ü\"' not found."),
            "{\"code\":404,\"data\":null,\"message\":\"Node '\\u00fc\\\"' not found.\"}\n"
        );
    }

    #[test]
    fn unix_seconds_match_the_python_repr_writer() {
        for secs in [
            1795681547.9381578,
            1795681547.0,
            1795681547.5,
            1.0e9 + 1.0 / 3.0,
            0.00012,
            123.456,
            9.999999999999998e15,
            0.0,
            1e16,
            1e20,
        ] {
            let (mut fast, mut general) = (String::new(), String::new());
            write_unix_seconds(&mut fast, secs);
            write_float(&mut general, secs);
            assert_eq!(fast, general, "{secs}");
        }
    }

    #[test]
    fn strings_match_the_python_writer() {
        for s in ["n1", "a b~", "q\"", "back\\slash", "é", "\u{7f}", "tab\t"] {
            let (mut fast, mut general) = (String::new(), String::new());
            write_json_str(&mut fast, s);
            write_str(&mut general, s);
            assert_eq!(fast, general, "{s:?}");
        }
    }

    #[test]
    fn renders_like_flask_sorted_by_id() {
        let t0 = Instant::now();
        let mut leases = LeaseTable::new(Duration::from_secs(30), t0);
        leases.insert(
            Arc::from("n1"),
            NodeRecord::new("127.0.0.1", 9000, r#"{"name":"agent-1","role":"planner"}"#),
            1,
            t0,
        );
        leases.insert(Arc::from("é"), NodeRecord::new("h", 1, "{}"), 2, t0);
        leases.insert(Arc::from("a"), NodeRecord::new("h\"", 2, "{}"), 3, t0);
        let wall = UNIX_EPOCH + Duration::from_millis(1_795_681_517_500);
        let nodes = leases.live(t0).map(|e| (&**e.id, e.value, e.deadline));
        let (body, earliest) = available_nodes(nodes, leases.len(), t0, wall);
        assert_eq!(earliest, Some(t0 + Duration::from_secs(30)));
        let body = String::from_utf8(body).unwrap_or_default();
        let expected = concat!(
            r#"{"code":200,"data":{"available_nodes":{"#,
            r#""a":{"expires_at":1795681547.5,"host":"h\"","metadata":{},"node_id":"a","port":2},"#,
            r#""n1":{"expires_at":1795681547.5,"host":"127.0.0.1","metadata":{"name":"agent-1","role":"planner"},"node_id":"n1","port":9000},"#,
            r#""\u00e9":{"expires_at":1795681547.5,"host":"h","metadata":{},"node_id":"\u00e9","port":1}"#,
            "}},\"message\":\"success\"}\n"
        );
        assert_eq!(body, expected);
    }

    #[test]
    fn chunks_are_the_bytes_of_the_whole_bodies() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(1_795_681_517_500);
        for count in [0usize, 1, 2, 1000, 3000] {
            let nodes: Vec<(Arc<str>, NodeRecord, Instant)> = (0..count)
                .map(|i| {
                    let id: Arc<str> = Arc::from(format!("node-{i:05}-é"));
                    let record = NodeRecord::new(
                        "127.0.0.1",
                        9000,
                        r#"{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
                    );
                    (id, record, t0 + Duration::from_millis(i as u64))
                })
                .collect();
            let members = Arc::new(Members {
                nodes: nodes.clone(),
                revision: 7,
                now: t0,
                wall,
            });
            let (whole, earliest) = available_nodes(
                nodes.iter().map(|(id, r, d)| (&**id, r, *d)),
                count,
                t0,
                wall,
            );
            assert_eq!(members.earliest_deadline(), earliest);
            let chunks: Vec<Bytes> =
                Chunks::new(Arc::clone(&members), ListingKind::AvailableNodes).collect();
            assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 1024));
            assert_eq!(chunks.concat(), whole, "{count} nodes");
            let whole = nodes_body(nodes.iter().map(|(id, r, _)| (&**id, r)), count, 5, 7, &[]);
            let chunks: Vec<Bytes> =
                Chunks::new(members, ListingKind::Nodes { epoch: 5 }).collect();
            assert_eq!(chunks.concat(), whole, "{count} nodes");
            if count == 3000 {
                assert!(chunks.len() > 2, "{} chunks", chunks.len());
            }
        }
    }
}
