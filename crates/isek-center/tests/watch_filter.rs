//! Scoped change streams, `GET /v1/watch?filter=CEL`, over real sockets: the
//! filtered stream of a center under churn (nodes registered, moved in and out of
//! the filter, deregistered, expired) equals the filtered diff of the full stream
//! read from the same center, also across a cut and a resume; resuming follows the
//! unfiltered stream's 410 rules; a bad filter is a 400 naming its position.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use isek::Registry;
use isek_testkit::agents::card;
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::DEADLINE;
use isek_testkit::sse::{self, Event, Opened};
use serde_json::{Value, json};

/// The filter of these tests, and the same rule written out as the test's oracle.
const FILTER: &str = r#"metadata.role == "planner""#;

fn matches(node: &Value) -> bool {
    node["metadata"]["role"] == "planner"
}

/// `/v1/watch` with `FILTER` and `extra` parameters, URL-encoded.
fn scoped(extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("filter", FILTER);
    for (k, v) in extra {
        query.append_pair(k, v);
    }
    format!("/v1/watch?{}", query.finish())
}

fn config(ttl_ms: u64) -> isek_center::Config {
    isek_center::Config {
        watch_keepalive: Duration::from_millis(200),
        ..isek_center::Config::in_memory(Duration::from_millis(ttl_ms))
    }
}

/// A deterministic pseudo-random sequence (no dependency, same churn every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// `ops` changes over 30 ids: registrations with a random role (a newcomer, or an
/// update moving the node into or out of the filter, or within it) and
/// deregistrations (some of ids not registered: a 404, no change).
async fn churn(center: &ServedCenter, rng: &mut Lcg, ops: usize) {
    let roles = ["planner", "worker", "tester"];
    for _ in 0..ops {
        let id = format!("n{:02}", rng.below(30));
        if rng.below(4) == 0 {
            let _ = center.client().deregister_node(&id).await;
        } else {
            let role = roles[rng.below(3) as usize];
            let port = 9000 + u16::try_from(rng.below(1000)).unwrap();
            center
                .client()
                .register_node(&id, "127.0.0.1", port, card(role))
                .await
                .unwrap();
        }
    }
}

/// The full stream as the test reads it: the nodes at each revision.
#[derive(Default)]
struct Full {
    nodes: BTreeMap<String, Value>,
    /// Every change event after the snapshot, in order.
    changes: Vec<Event>,
}

impl Full {
    fn apply(&mut self, event: &Event) {
        match event.event.as_str() {
            "put" => {
                let node = &event.data["node"];
                let id = node["node_id"].as_str().unwrap().to_owned();
                self.nodes.insert(id, node.clone());
            }
            "delete" => {
                self.nodes.remove(event.data["node_id"].as_str().unwrap());
            }
            other => panic!("unexpected {other} event: {event:?}"),
        }
    }

    /// The matching nodes after revision `at`, and the filtered stream that must
    /// follow: a put for each change leaving the node matching, a `filter` leave
    /// for a change that makes a node in view stop matching, the real leave of a
    /// node in view; nothing else.
    fn scoped_after(&self, snapshot: &BTreeMap<String, Value>, at: u64) -> (Value, Vec<Event>) {
        let mut nodes = snapshot.clone();
        let mut view = BTreeMap::new();
        let mut at_start = None;
        let mut events = Vec::new();
        let mut started = false;
        for change in &self.changes {
            if !started && change.id.unwrap() > at {
                started = true;
                view = nodes.clone();
                view.retain(|_, node| matches(node));
                at_start = Some(view.clone());
            }
            let id = match change.event.as_str() {
                "put" => change.data["node"]["node_id"].as_str().unwrap(),
                _ => change.data["node_id"].as_str().unwrap(),
            }
            .to_owned();
            let node = &change.data["node"];
            if change.event == "put" {
                nodes.insert(id.clone(), node.clone());
            } else {
                nodes.remove(&id);
            }
            if !started {
                continue;
            }
            if change.event == "put" && matches(node) {
                view.insert(id, node.clone());
                events.push(change.clone());
            } else if view.remove(&id).is_some() {
                let revision = change.id.unwrap();
                events.push(match change.event.as_str() {
                    "put" => Event {
                        event: "delete".into(),
                        id: Some(revision),
                        data: json!({"node_id": id, "reason": "filter", "revision": revision}),
                    },
                    _ => change.clone(),
                });
            }
        }
        let mut snapshot = at_start.unwrap_or(nodes);
        snapshot.retain(|_, node| matches(node));
        let snapshot: serde_json::Map<String, Value> = snapshot.into_iter().collect();
        (Value::Object(snapshot), events)
    }
}

/// Reads `stream` until the put of `marker`, every change event before it.
async fn until_put_of(stream: &mut sse::Stream, marker: &str) -> Vec<Event> {
    let read = async {
        let mut events = Vec::new();
        loop {
            let event = stream.next().await.expect("the stream stays open");
            if event.event == "put" && event.data["node"]["node_id"] == marker {
                return events;
            }
            events.push(event);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the marker's put")
}

/// Reads the full stream into `seen` until every node of the churn left (their
/// expiries included), then registers the last node, `zz` (a planner, so every
/// stream gets its put), and reads the full stream up to it.
async fn end_with_marker(center: &ServedCenter, full: &mut sse::Stream, seen: &mut Full) {
    let body: Value = reqwest::get(center.url_of("/v1/nodes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let churned = body["data"]["revision"].as_u64().unwrap();
    let read = async {
        while seen.changes.last().is_none_or(|e| e.id.unwrap() < churned) || !seen.nodes.is_empty()
        {
            let event = full.next().await.expect("the full stream stays open");
            seen.apply(&event);
            seen.changes.push(event);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("every churned node leaves");
    center
        .client()
        .register_node("zz", "127.0.0.1", 1, card("planner"))
        .await
        .unwrap();
    seen.changes.extend(until_put_of(full, "zz").await);
}

/// The snapshot event's nodes as a map.
fn nodes_of(snapshot: &Event) -> BTreeMap<String, Value> {
    snapshot.data["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test]
async fn the_filtered_stream_is_the_filtered_diff_of_the_full_stream_under_churn() {
    let center = ServedCenter::start(config(1500)).await;
    let addr = center.addr();
    let mut rng = Lcg(11);
    churn(&center, &mut rng, 40).await;

    let mut full = sse::stream(addr, "/v1/watch").await;
    full.expect("hello").await;
    let full_snapshot = full.expect("snapshot").await;
    let mut scoped_stream = sse::stream(addr, &scoped(&[])).await;
    scoped_stream.expect("hello").await;
    let snapshot = scoped_stream.expect("snapshot").await;
    let at = snapshot.id.unwrap();

    churn(&center, &mut rng, 300).await;
    let mut seen = Full {
        nodes: nodes_of(&full_snapshot),
        changes: Vec::new(),
    };
    end_with_marker(&center, &mut full, &mut seen).await;
    let got = until_put_of(&mut scoped_stream, "zz").await;
    let (expected_snapshot, expected) = seen.scoped_after(&nodes_of(&full_snapshot), at);
    assert_eq!(snapshot.data["nodes"], expected_snapshot);
    assert!(
        snapshot.data["nodes"].as_object().unwrap().len()
            < full_snapshot.data["nodes"].as_object().unwrap().len(),
        "the scoped snapshot holds only the matching nodes"
    );
    assert_eq!(got, expected);

    // The churn moved nodes both ways, and nodes in view left for every reason.
    let reasons: BTreeSet<&str> = got
        .iter()
        .filter(|e| e.event == "delete")
        .map(|e| e.data["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["deregister", "expire", "filter"]),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_filtered_stream_resumes_across_a_cut_without_gap_or_duplicate() {
    let center = ServedCenter::start(config(1500)).await;
    let addr = center.addr();
    let mut rng = Lcg(29);
    churn(&center, &mut rng, 40).await;

    let mut full = sse::stream(addr, "/v1/watch").await;
    full.expect("hello").await;
    let full_snapshot = full.expect("snapshot").await;
    let mut first = sse::stream(addr, &scoped(&[])).await;
    let epoch = first.expect("hello").await.data["epoch"].as_u64().unwrap();
    let snapshot = first.expect("snapshot").await;
    let at = snapshot.id.unwrap();

    churn(&center, &mut rng, 150).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(first.next().await.expect("a change before the cut"));
    }
    drop(first);
    churn(&center, &mut rng, 150).await;

    let last = got.last().unwrap().id.unwrap().to_string();
    let epoch = epoch.to_string();
    let mut resumed = sse::stream(addr, &scoped(&[("since", &last), ("epoch", &epoch)])).await;
    resumed.expect("hello").await;
    let mut seen = Full {
        nodes: nodes_of(&full_snapshot),
        changes: Vec::new(),
    };
    end_with_marker(&center, &mut full, &mut seen).await;
    got.extend(until_put_of(&mut resumed, "zz").await);

    let (expected_snapshot, expected) = seen.scoped_after(&nodes_of(&full_snapshot), at);
    assert_eq!(snapshot.data["nodes"], expected_snapshot);
    assert!(got.iter().all(|e| e.event == "put" || e.event == "delete"));
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_filtered_stream_resumes_by_the_same_rules() {
    let center = ServedCenter::start(isek_center::Config {
        watch_history: 4,
        ..config(30_000)
    })
    .await;
    let addr = center.addr();
    for i in 0..10 {
        center
            .client()
            .register_node(&format!("p{i}"), "127.0.0.1", 1, card("planner"))
            .await
            .unwrap();
    }
    let mut stream = sse::stream(addr, &scoped(&[])).await;
    let epoch = stream.expect("hello").await.data["epoch"].as_u64().unwrap();
    let epoch = epoch.to_string();
    let gone = |opened: Opened| match opened {
        Opened::Answer(410, body) => body,
        Opened::Answer(status, body) => panic!("{status} {body}"),
        Opened::Stream(_) => panic!("a stream instead of 410"),
    };
    let compacted = gone(sse::open(addr, &scoped(&[("since", "1"), ("epoch", &epoch)])).await);
    assert_eq!(compacted["data"]["revision"], 10);
    assert!(compacted["message"].as_str().unwrap().contains("compacted"));
    let ahead = gone(sse::open(addr, &scoped(&[("since", "11"), ("epoch", &epoch)])).await);
    assert!(ahead["message"].as_str().unwrap().contains("ahead"));
    let no_epoch = gone(sse::open(addr, &scoped(&[("since", "9")])).await);
    assert!(no_epoch["message"].as_str().unwrap().contains("epoch"));
    // Within the history: only the retained changes after `since`, scoped.
    center
        .client()
        .register_node("p3", "127.0.0.1", 1, card("worker"))
        .await
        .unwrap();
    let mut resumed = sse::stream(addr, &scoped(&[("since", "8"), ("epoch", &epoch)])).await;
    resumed.expect("hello").await;
    assert_eq!(resumed.expect("put").await.id, Some(9));
    assert_eq!(resumed.expect("put").await.id, Some(10));
    let left = resumed.expect("delete").await;
    assert_eq!(
        left.data,
        json!({"node_id": "p3", "reason": "filter", "revision": 11})
    );
}

#[tokio::test]
async fn a_bad_filter_is_a_400_naming_its_position() {
    let center = ServedCenter::start(config(30_000)).await;
    let addr = center.addr();
    let bad = |path: String| async move {
        match sse::open(addr, &path).await {
            Opened::Answer(400, body) => body["message"].as_str().unwrap().to_owned(),
            Opened::Answer(status, body) => panic!("{status} {body}"),
            Opened::Stream(_) => panic!("a stream for {path}"),
        }
    };
    let encoded = |filter: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", filter)
            .finish()
    };
    let unknown = bad(format!(
        "/v1/watch?{}",
        encoded("node_id == \"n1\" &&\n  metdata.role == \"x\"")
    ))
    .await;
    assert!(unknown.contains("2:3: unknown name 'metdata'"), "{unknown}");
    let syntax = bad(format!("/v1/watch?{}", encoded("metadata.role == "))).await;
    assert!(syntax.contains("filter 1:"), "{syntax}");
    let long = bad(format!("/v1/watch?{}", encoded(&"a".repeat(3000)))).await;
    assert!(long.contains("--max-filter-bytes"), "{long}");
    let twice = bad(format!("/v1/watch?{}&{}", encoded("true"), encoded("true"))).await;
    assert!(twice.contains("more than once"), "{twice}");
}
