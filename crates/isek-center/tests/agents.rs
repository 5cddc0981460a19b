//! `GET /v1/agents` (issue 11): the center as an A2A curated registry. It answers
//! the agent cards (`metadata.agent_card`) of the live nodes that carry one, with
//! the same `filter`, limits and pinned pages as `GET /v1/nodes`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use isek::NodeInfo;
use isek_testkit::agents::{agent_node, card, card_of};
use isek_testkit::router::{Answer, TestCenter};
use serde_json::Value;

const AGENTS: &str = "/v1/agents";

/// The `data` of a 200 answer.
fn data(answer: &Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let v: Value = serde_json::from_str(&answer.body).unwrap();
    v["data"].clone()
}

/// The node ids of a page of agents, in body order.
fn ids(data: &Value) -> Vec<String> {
    data["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A center with 10 agents (with cards) and 3 plain ISEK nodes (without).
async fn mixed() -> (TestCenter, Vec<NodeInfo>) {
    let c = TestCenter::in_memory().await;
    let agents: Vec<NodeInfo> = (0..10).map(|i| agent_node(i, 1000)).collect();
    for node in &agents {
        assert_eq!(c.register_node(node).await.status, StatusCode::OK);
    }
    for i in 0..3 {
        c.register_node(&NodeInfo::new(
            format!("plain-{i}"),
            "h",
            1,
            card("planner"),
        ))
        .await;
    }
    (c, agents)
}

#[tokio::test]
async fn the_cards_of_the_nodes_that_carry_one_are_listed_as_registered() {
    let (c, agents) = mixed().await;
    let page = data(&c.get(AGENTS).await);
    assert_eq!(page["plan"], "index");
    assert_eq!(page["cursor"], Value::Null);
    let listed = page["agents"].as_array().unwrap();
    assert_eq!(listed.len(), agents.len(), "no plain node: {page}");
    for (agent, node) in listed.iter().zip(&agents) {
        assert_eq!(agent["node_id"], node.node_id.as_str());
        assert_eq!(&agent["agent_card"], card_of(node).unwrap());
    }
    // A deregistered agent leaves the list.
    c.deregister("agent-0000004").await;
    let page = data(&c.get(AGENTS).await);
    assert!(!ids(&page).contains(&"agent-0000004".to_owned()));
    assert_eq!(ids(&page).len(), 9);
}

#[tokio::test]
async fn a_filter_narrows_the_agents_and_its_errors_name_the_clients_positions() {
    let (c, agents) = mixed().await;
    let filter = r#""rare-3" in metadata.agent_card.skills.map(s, s.id)"#;
    let page = data(&c.get_with(AGENTS, &[("filter", filter)]).await);
    assert_eq!(page["plan"], "index");
    assert_eq!(ids(&page), ["agent-0000003"]);
    // A filter every plain node matches still lists agents only.
    let page = data(&c.get_with(AGENTS, &[("filter", "port > 0")]).await);
    assert_eq!(ids(&page).len(), agents.len());
    // Positions are the client's own, not those of the center's wrapping.
    c.get_with(AGENTS, &[("filter", "metdata.role == \"x\"")])
        .await
        .assert_bad_request_naming("1:1: unknown name 'metdata'");
}

#[tokio::test]
async fn agents_page_like_nodes_and_a_cursor_belongs_to_its_listing() {
    let (c, agents) = mixed().await;
    let first = data(&c.get_with(AGENTS, &[("limit", "3")]).await);
    let mut seen = ids(&first);
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    // The cursor of an agents query is not one of /v1/nodes.
    c.get_with("/v1/nodes", &[("cursor", &cursor)])
        .await
        .assert_bad_request_naming("another query");
    let mut cursor = Some(cursor);
    while let Some(token) = cursor {
        let page = data(
            &c.get_with(AGENTS, &[("cursor", &token), ("limit", "3")])
                .await,
        );
        assert_eq!(page["revision"], first["revision"]);
        seen.extend(ids(&page));
        cursor = page["cursor"].as_str().map(str::to_owned);
    }
    let all: Vec<String> = agents.iter().map(|n| n.node_id.clone()).collect();
    assert_eq!(seen, all);
    c.get_with(AGENTS, &[("limit", "0")])
        .await
        .assert_bad_request_naming("'limit'");
}
