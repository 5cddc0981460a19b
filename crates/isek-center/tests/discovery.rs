//! Filtered and paged discovery (issue 11): `GET /v1/nodes?filter=CEL&limit=N&cursor=C`
//! answers the matching live nodes through the center's index (or a scan, and says
//! which), in pages pinned to the revision of the first; a bad filter is a 400 naming
//! its position, every bound an operator sets has its envelope when hit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use isek::NodeInfo;
use isek::filter::Filter;
use isek_center::{Config, Discovery};
use isek_testkit::agents::{agent_node, card};
use isek_testkit::condition::wait_until;
use isek_testkit::router::{Answer, TestCenter};
use serde_json::Value;

const NODES: &str = "/v1/nodes";

/// The `data` of a 200 answer.
fn data(answer: &Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let v: Value = serde_json::from_str(&answer.body).unwrap();
    v["data"].clone()
}

/// The node ids of a page, in body order.
fn ids(data: &Value) -> Vec<String> {
    data["nodes"].as_object().unwrap().keys().cloned().collect()
}

/// A center holding `n` realistic agents (nodes of a membership of 1000).
async fn agents(n: u64) -> (TestCenter, Vec<NodeInfo>) {
    let c = TestCenter::in_memory().await;
    let nodes: Vec<NodeInfo> = (0..n).map(|i| agent_node(i, 1000)).collect();
    for node in &nodes {
        assert_eq!(c.register_node(node).await.status, StatusCode::OK);
    }
    (c, nodes)
}

/// The ids of `nodes` that `filter` matches, by evaluating each (brute force).
fn expected(nodes: &[NodeInfo], filter: &str) -> Vec<String> {
    let filter = Filter::compile(filter).unwrap();
    let mut ids: Vec<String> = nodes
        .iter()
        .filter(|n| filter.matches(n))
        .map(|n| n.node_id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_filter_answers_what_a_scan_of_the_same_nodes_does_and_names_its_plan() {
    let (c, nodes) = agents(60).await;
    let cases = [
        (r#"metadata.role == "planner""#, "index"),
        (
            r#""rare-3" in metadata.agent_card.skills.map(s, s.id)"#,
            "index",
        ),
        (
            r#"metadata.agent_card.skills.exists(s, "web" in s.tags) && metadata.role != "critic""#,
            "index",
        ),
        (r#"metadata.name.endsWith("7")"#, "scan"),
        (r#"port > 9030 || metadata.role == "scout""#, "scan"),
    ];
    for (filter, plan) in cases {
        let answer = data(&c.get_with(NODES, &[("filter", filter)]).await);
        let want = expected(&nodes, filter);
        assert!(!want.is_empty(), "{filter}: the case selects something");
        assert!(want.len() < nodes.len(), "{filter}: and not everything");
        assert_eq!(ids(&answer), want, "{filter}");
        assert_eq!(answer["plan"], plan, "{filter}");
        assert_eq!(answer["cursor"], Value::Null, "{filter}: one page");
        assert!(answer["revision"].as_u64().unwrap() >= 60);
        assert!(answer["epoch"].is_u64());
    }
    // A node as a filtered answer carries it: the same object as the full listing's.
    let full = data(&c.get(NODES).await);
    let one = data(
        &c.get_with(NODES, &[("filter", r#"node_id == "agent-0000007""#)])
            .await,
    );
    assert_eq!(
        one["nodes"]["agent-0000007"],
        full["nodes"]["agent-0000007"]
    );
    assert_eq!(one["plan"], "index");
}

#[tokio::test]
async fn pages_are_pinned_to_the_revision_of_the_first() {
    let c = TestCenter::in_memory().await;
    let planners: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    for id in &planners {
        let node = NodeInfo::new(id, "h", 1, card("planner"));
        c.register_node(&node).await;
        c.register_node(&NodeInfo::new(format!("e{id}"), "h", 1, card("executor")))
            .await;
    }
    let filter = r#"metadata.role == "planner""#;
    let first = data(
        &c.get_with(NODES, &[("filter", filter), ("limit", "10")])
            .await,
    );
    assert_eq!(ids(&first), planners[..10]);
    let revision = first["revision"].clone();
    // Changes after the first page: none shows in the later pages.
    c.deregister("p22").await;
    c.register_node(&NodeInfo::new("p99", "h", 1, card("planner")))
        .await;
    c.register_node(&NodeInfo::new("p15", "h", 1, card("executor")))
        .await;
    let mut seen = ids(&first);
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    let mut pages = 1;
    loop {
        let page = data(
            &c.get_with(NODES, &[("cursor", &cursor), ("limit", "10")])
                .await,
        );
        assert_eq!(page["revision"], revision, "every page shows one revision");
        assert_eq!(page["plan"], "index");
        seen.extend(ids(&page));
        pages += 1;
        match page["cursor"].as_str() {
            Some(next) => {
                // Asking for a page again (a retry) gives the same page; the last
                // page closes its cursor, so only the earlier ones are asked twice.
                let again = data(
                    &c.get_with(NODES, &[("cursor", &cursor), ("limit", "10")])
                        .await,
                );
                assert_eq!(again, page);
                cursor = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, planners,
        "each planner of the first revision once, in order"
    );
    // The last page closed its cursor.
    let gone = c.get_with(NODES, &[("cursor", &cursor)]).await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.body);
    // A new query sees the changes.
    let now = data(&c.get_with(NODES, &[("filter", filter)]).await);
    let mut want: Vec<String> = planners
        .iter()
        .filter(|p| *p != "p22" && *p != "p15")
        .cloned()
        .collect();
    want.push("p99".into());
    assert_eq!(ids(&now), want);
}

#[tokio::test]
async fn a_limit_without_a_filter_pages_through_every_node() {
    let c = TestCenter::in_memory().await;
    for i in 0..7 {
        c.register(&format!("n{i}")).await;
    }
    let mut seen = Vec::new();
    let mut params = vec![("limit".to_owned(), "3".to_owned())];
    loop {
        let borrowed: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let page = data(&c.get_with(NODES, &borrowed).await);
        assert_eq!(page["plan"], "scan");
        seen.extend(ids(&page));
        match page["cursor"].as_str() {
            Some(next) => params = vec![("cursor".into(), next.into())],
            None => break,
        }
    }
    let all: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
    assert_eq!(seen, all);
}

#[tokio::test]
async fn a_bad_filter_is_a_400_naming_line_column_and_problem() {
    let c = TestCenter::in_memory().await;
    c.register("n1").await;
    let unknown = c
        .get_with(
            NODES,
            &[("filter", "node_id == \"n1\" &&\n  metdata.role == \"x\"")],
        )
        .await;
    unknown.assert_bad_request_naming("2:3: unknown name 'metdata'");
    let syntax = c.get_with(NODES, &[("filter", "metadata.role == ")]).await;
    syntax.assert_bad_request_naming("filter 1:");
    let limit = c.get_with(NODES, &[("limit", "0")]).await;
    limit.assert_bad_request_naming("'limit'");
    let twice = c.get(&format!("{NODES}?limit=1&limit=2")).await;
    twice.assert_bad_request_naming("more than once");
    let unknown_cursor = c.get_with(NODES, &[("cursor", "not-a-cursor")]).await;
    assert_eq!(unknown_cursor.status, StatusCode::GONE);
    let v: Value = serde_json::from_str(&unknown_cursor.body).unwrap();
    assert_eq!(v["code"], 410);
    assert!(v["data"]["revision"].is_u64());
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("start the query over"),
        "{v}"
    );
}

/// A center with these discovery bounds and `n` planners.
async fn bounded(discovery: Discovery, n: usize) -> TestCenter {
    let c = TestCenter::with_config(Config {
        discovery,
        ..Config::default()
    })
    .await;
    for i in 0..n {
        c.register_node(&NodeInfo::new(format!("p{i}"), "h", 1, card("planner")))
            .await;
    }
    c
}

#[tokio::test]
async fn every_discovery_bound_has_its_envelope_when_hit() {
    let discovery = Discovery {
        max_page: 2,
        max_cursors: 1,
        max_filter_bytes: 40,
        max_filter_cost: 500,
        ..Discovery::default()
    };
    let c = bounded(discovery, 5).await;
    c.get_with(NODES, &[("limit", "3")])
        .await
        .assert_bad_request_naming("--max-page");
    let long = format!("node_id == \"{}\"", "x".repeat(40));
    c.get_with(NODES, &[("filter", &long)])
        .await
        .assert_bad_request_naming("--max-filter-bytes");
    c.get_with(NODES, &[("filter", "metadata.l.all(x, x.all(y, y))")])
        .await
        .assert_bad_request_naming("--max-filter-cost");
    // A filter without a limit gets pages of --max-page nodes.
    let first = data(&c.get_with(NODES, &[("filter", "has(metadata.role)")]).await);
    assert_eq!(ids(&first).len(), 2);
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    // One cursor is open: a second paged query is refused, a one-page one is not.
    let refused = c.get_with(NODES, &[("limit", "1")]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.body.contains("--max-cursors"), "{}", refused.body);
    let small = data(&c.get_with(NODES, &[("filter", r#"node_id == "p1""#)]).await);
    assert_eq!(ids(&small), ["p1"]);
    // Another filter on this cursor is refused; its own filter is fine.
    c.get_with(NODES, &[("cursor", &cursor), ("filter", "true")])
        .await
        .assert_bad_request_naming("another query");
    let second = data(
        &c.get_with(
            NODES,
            &[("cursor", &cursor), ("filter", "has(metadata.role)")],
        )
        .await,
    );
    assert_eq!(ids(&second), ["p2", "p3"]);
}

#[tokio::test]
async fn an_unused_cursor_expires_and_its_place_is_free_again() {
    let discovery = Discovery {
        max_page: 2,
        max_cursors: 1,
        cursor_ttl: Duration::from_millis(50),
        ..Discovery::default()
    };
    let c = bounded(discovery, 3).await;
    let first = data(&c.get_with(NODES, &[("limit", "1")]).await);
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    wait_until("the unused cursor has expired", || async {
        c.get_with(NODES, &[("cursor", &cursor)]).await.status == StatusCode::GONE
    })
    .await;
    let again = data(&c.get_with(NODES, &[("limit", "1")]).await);
    assert!(again["cursor"].is_string(), "a new cursor could be opened");
}

#[tokio::test]
async fn the_index_follows_registrations_replacements_deregistrations_and_expiries() {
    let c = TestCenter::with_ttl(Duration::from_secs(3)).await;
    let role = |id: &str, role: &str| NodeInfo::new(id, "h", 1, card(role));
    c.register_node(&role("x", "planner")).await;
    wait_until("x expired", || async { c.listed_ids().await.is_empty() }).await;
    // The same id again, another role: the expiry of the first registration must
    // not take the second out of the index.
    c.register_node(&role("x", "executor")).await;
    c.register_node(&role("y", "planner")).await;
    c.register_node(&role("y", "critic")).await;
    c.register_node(&role("z", "planner")).await;
    c.register_node(&role("w", "planner")).await;
    c.deregister("w").await;
    let by_index = |r: &'static str| {
        let c = &c;
        async move {
            let filter = format!("metadata.role == \"{r}\"");
            let answer = data(&c.get_with(NODES, &[("filter", &filter)]).await);
            assert_eq!(answer["plan"], "index");
            ids(&answer).into_iter().collect::<BTreeSet<_>>()
        }
    };
    let by_scan = |r: &'static str| {
        let c = &c;
        async move {
            let filter = format!("metadata.role + \"\" == \"{r}\"");
            let answer = data(&c.get_with(NODES, &[("filter", &filter)]).await);
            assert_eq!(answer["plan"], "scan");
            ids(&answer).into_iter().collect::<BTreeSet<_>>()
        }
    };
    for r in ["planner", "executor", "critic"] {
        assert_eq!(by_index(r).await, by_scan(r).await, "{r}");
    }
    assert_eq!(by_index("planner").await, BTreeSet::from(["z".to_owned()]));
    assert_eq!(by_index("executor").await, BTreeSet::from(["x".to_owned()]));
}
