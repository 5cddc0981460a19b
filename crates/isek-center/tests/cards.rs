//! A2A agent cards at registration (issue 11): a node may carry an AgentCard in
//! `metadata.agent_card`; a malformed one is refused with a 400 naming the field,
//! a well-formed one (A2A 0.3 or 1.0 field set) is stored as sent, and metadata
//! without a card (the original ISEK's) is never checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use isek_testkit::agents::agent_node;
use isek_testkit::router::{REGISTER, TestCenter};
use serde_json::{Value, json};

/// Breaks a card in one way.
type Breaker = fn(&mut Value);

/// A register body of `id` with `metadata`.
fn body(id: &str, metadata: &Value) -> String {
    json!({"node_id": id, "host": "10.0.0.1", "port": 9000, "metadata": metadata}).to_string()
}

/// The metadata of a realistic node, its card included (A2A 0.3 field set).
fn metadata_with_card() -> Value {
    Value::Object(agent_node(7, 1000).metadata)
}

#[tokio::test]
async fn a_well_formed_card_is_stored_as_sent() {
    let c = TestCenter::in_memory().await;
    let metadata = metadata_with_card();
    assert!(metadata["agent_card"]["skills"].is_array());
    let answer = c.post(REGISTER, &body("agent-7", &metadata)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let listed: Value = serde_json::from_str(&c.list().await.body).unwrap();
    assert_eq!(
        listed["data"]["available_nodes"]["agent-7"]["metadata"]["agent_card"],
        metadata["agent_card"]
    );
}

#[tokio::test]
async fn a_malformed_card_is_refused_naming_the_field() {
    let c = TestCenter::in_memory().await;
    let cases: [(&str, Breaker); 4] = [
        ("metadata.agent_card.skills[1].id", |card| {
            card["skills"][1].as_object_mut().unwrap().remove("id");
        }),
        ("metadata.agent_card.name", |card| card["name"] = json!(42)),
        ("metadata.agent_card.capabilities", |card| {
            card.as_object_mut().unwrap().remove("capabilities");
        }),
        ("metadata.agent_card", |card| *card = json!("a card")),
    ];
    for (field, break_it) in cases {
        let mut metadata = metadata_with_card();
        break_it(&mut metadata["agent_card"]);
        let answer = c.post(REGISTER, &body("agent-7", &metadata)).await;
        answer.assert_bad_request_naming(field);
        assert!(c.listed_ids().await.is_empty(), "{field}: nothing stored");
    }
}

#[tokio::test]
async fn metadata_without_a_card_is_never_checked() {
    let c = TestCenter::in_memory().await;
    // The original ISEK's metadata, and a top-level card-like object under another key.
    let metadata = json!({"name": "Agent", "bio": "b", "card": {"skills": ["x", null]}});
    let answer = c.post(REGISTER, &body("plain", &metadata)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}
