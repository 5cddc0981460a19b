//! [`SnapshotCache`]: the `available_nodes` body, serialized once and shared.
//!
//! A listing costs a clone of a reference-counted buffer while the cached body is
//! fresh. It is rebuilt lazily, on the next listing after:
//! - a membership change (register, update, deregister, expiry: the revision moved),
//! - `max_age` (1 s): renewals do not rebuild it, so `expires_at` values lag by at
//!   most that much,
//! - the earliest deadline among the listed nodes: a node never appears after its
//!   lease ran out, even before the reaper removed it.
//!
//! Nothing is built until somebody lists, and a membership change drops the cached
//! body, so an idle center holds no copy of its nodes.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use isek::canonical::{write_float, write_str};
use isek::wire::center::LIST_MESSAGE;
use tokio::time::Instant;

use crate::registry::{Core, State};

/// One serialized listing and how long it stays valid.
#[derive(Debug)]
struct Snapshot {
    /// The full response body.
    body: Bytes,
    /// Revision of the state it was built from.
    revision: u64,
    /// After this instant it must be rebuilt (age limit or earliest node deadline).
    valid_until: Instant,
}

/// The lazily rebuilt listing body.
#[derive(Debug)]
pub(crate) struct SnapshotCache {
    /// The current snapshot, if any. Held while rebuilding, so concurrent listers
    /// wait for one rebuild instead of each doing their own.
    cached: Mutex<Option<Snapshot>>,
    /// Oldest a body may get.
    max_age: Duration,
}

impl SnapshotCache {
    /// An empty cache whose bodies live at most `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self {
            cached: Mutex::new(None),
            max_age,
        }
    }

    /// The current listing body, rebuilt first if stale.
    pub fn body(&self, core: &Core) -> Bytes {
        let now = Instant::now();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &*cached
            && s.revision == core.revision.load(Ordering::Acquire)
            && now < s.valid_until
        {
            return s.body.clone();
        }
        let (body, revision, earliest) = {
            let state = core.lock();
            let (body, earliest) = render(&state, now, SystemTime::now());
            (body, state.revision, earliest)
        };
        let body = Bytes::from(body);
        // Counted from the end of the build: a listing of a million nodes takes longer
        // to build than `max_age`, and must still be reused meanwhile.
        let age_limit = Instant::now().checked_add(self.max_age);
        let valid_until = match (earliest, age_limit) {
            (Some(d), Some(a)) => d.min(a),
            (Some(d), None) => d,
            (None, Some(a)) => a,
            // No node and an absurd max age: keep it until the next change.
            (None, None) => now + Duration::from_secs(3600),
        };
        *cached = Some(Snapshot {
            body: body.clone(),
            revision,
            valid_until,
        });
        body
    }

    /// Drops the cached body (membership changed): frees its memory early.
    pub fn invalidate(&self) {
        let old = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(old);
    }
}

/// Serializes the live nodes at `now` as Flask's `jsonify` would, `expires_at` in
/// Unix seconds relative to `wall` (the wall clock at `now`); also returns the
/// earliest deadline among them.
pub(crate) fn render(state: &State, now: Instant, wall: SystemTime) -> (Vec<u8>, Option<Instant>) {
    let wall_secs = wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut out = String::with_capacity(64 + state.leases.len() * 160);
    out.push_str("{\"code\":200,\"data\":{\"available_nodes\":{");
    let mut earliest: Option<Instant> = None;
    for (i, entry) in state.leases.live(now).enumerate() {
        if i > 0 {
            out.push(',');
        }
        earliest = Some(earliest.map_or(entry.deadline, |e| e.min(entry.deadline)));
        let record = entry.value;
        write_json_str(&mut out, entry.id);
        out.push_str(":{\"expires_at\":");
        write_unix_seconds(
            &mut out,
            wall_secs + entry.deadline.saturating_duration_since(now).as_secs_f64(),
        );
        out.push_str(",\"host\":");
        write_json_str(&mut out, record.host());
        out.push_str(",\"metadata\":");
        out.push_str(record.metadata());
        out.push_str(",\"node_id\":");
        write_json_str(&mut out, entry.id);
        out.push_str(",\"port\":");
        // Writing to a String cannot fail.
        let _ = write!(out, "{}", record.port());
        out.push('}');
    }
    out.push_str("}},\"message\":");
    write_str(&mut out, LIST_MESSAGE);
    out.push_str("}\n");
    (out.into_bytes(), earliest)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lease::LeaseTable;
    use crate::registry::NodeRecord;

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
        let state = State {
            leases,
            revision: 3,
            feed: crate::feed::Feed::new(3, 0, 0, 1),
        };
        let wall = UNIX_EPOCH + Duration::from_millis(1_795_681_517_500);
        let (body, earliest) = render(&state, t0, wall);
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
}
