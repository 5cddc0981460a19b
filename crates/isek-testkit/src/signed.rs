//! Signed nodes on a router-level center (feature `center`), shared by the security
//! tests: register signed, read a listing entry, expect a 403 envelope, and the
//! victim [`Scene`] every impersonation attempt must leave unchanged.
//!
//! Like the tests that call them, these helpers fail the test (panic) on anything
//! they cannot do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::StatusCode;
use isek::identity::NodeIdentity;
use isek::wire::proof::{ProofRequest, SignedRegisterRequest};
use serde_json::{Value, json};

use crate::router::{Answer, REGISTER, RENEW, TestCenter};

/// Parsed body of an answer.
pub fn parse(answer: &Answer) -> Value {
    serde_json::from_str(&answer.body).unwrap()
}

/// Registers `id` signed by `identity`; returns the lease token.
pub async fn register_signed(
    c: &TestCenter,
    identity: &NodeIdentity,
    id: &str,
    port: u16,
) -> String {
    let body = SignedRegisterRequest::sign(
        identity,
        id,
        "10.0.0.1",
        port,
        json!({"role": "victim", "n": [1, 2.5]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let answer = c
        .post(REGISTER, &serde_json::to_string(&body).unwrap())
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let v = parse(&answer);
    assert_eq!(v["code"], 200);
    assert_eq!(
        v["message"],
        format!("Node '{id}' registered successfully.")
    );
    let token = v["data"]["lease_token"].as_str().unwrap().to_owned();
    // 32 random bytes, base64url without padding.
    assert_eq!(token.len(), 43);
    token
}

/// The listing entry of `id` without its `expires_at`.
pub async fn entry(c: &TestCenter, id: &str) -> Option<Value> {
    let v = parse(&c.list().await);
    let mut node = v["data"]["available_nodes"].get(id)?.clone();
    node.as_object_mut().unwrap().remove("expires_at");
    Some(node)
}

/// Asserts a 403 envelope whose message contains `needle`.
#[track_caller]
pub fn assert_forbidden(answer: &Answer, needle: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let v = parse(answer);
    assert_eq!(v["code"], 403);
    assert_eq!(v["data"], Value::Null);
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{message:?} should contain {needle:?}"
    );
}

/// The victim: a signed node, its snapshot, and the attacker's material.
pub struct Scene {
    /// The center.
    pub c: TestCenter,
    /// The victim's key.
    pub owner: NodeIdentity,
    /// The victim's lease token.
    pub token: String,
    /// Its listing entry (no `expires_at`).
    pub entry: Value,
}

impl Scene {
    /// A 30 s lease center with the victim registered, signed.
    pub async fn new() -> Self {
        let c = TestCenter::with_ttl(Duration::from_secs(30)).await;
        let owner = NodeIdentity::generate();
        let token = register_signed(&c, &owner, "victim", 9000).await;
        let entry = entry(&c, "victim").await.unwrap();
        Self {
            c,
            owner,
            token,
            entry,
        }
    }

    /// The victim is still registered, unchanged, owned by the same key.
    pub async fn assert_unchanged(&self, after: &str) {
        assert_eq!(
            entry(&self.c, "victim").await.as_ref(),
            Some(&self.entry),
            "victim changed after {after}"
        );
        let owner = self.c.center.owner_of("victim").unwrap();
        assert_eq!(owner.key(), self.owner.public_key(), "after {after}");
    }

    /// POSTs `body` as JSON to `path`.
    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> Answer {
        self.c
            .post(path, &serde_json::to_string(body).unwrap())
            .await
    }
}

/// A signed registration body of `id` by `identity` (op proof made now), as JSON text.
pub fn signed_body(identity: &NodeIdentity, id: &str, port: u16) -> String {
    let metadata = json!({"role": "victim"}).as_object().unwrap().clone();
    let body = SignedRegisterRequest::sign(identity, id, "10.0.0.1", port, metadata);
    serde_json::to_string(&body).unwrap()
}

/// The `node_info_sha256` of a signed register body (the digest its op proof covers).
pub fn digest_of(body: &Value) -> String {
    let metadata = body["metadata"].as_object().cloned().unwrap_or_default();
    let node_info = isek::wire::proof::registration_node_info(
        body["node_id"].as_str().unwrap(),
        body["host"].as_str().unwrap(),
        u16::try_from(body["port"].as_u64().unwrap()).unwrap(),
        body["public_key"].as_str().unwrap(),
        &metadata,
    );
    isek::wire::proof::node_info_digest(&isek::wire::proof::registration_bytes(&node_info))
}

/// POSTs a register body; returns the lease token of a 200.
pub async fn register_body(c: &TestCenter, body: &str) -> String {
    let a = c.post(REGISTER, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    parse(&a)["data"]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Renews `id` with `token`.
pub async fn renew_with_token(c: &TestCenter, id: &str, token: &str) -> Answer {
    let body = serde_json::to_string(&ProofRequest::with_token(id, token)).unwrap();
    c.post(RENEW, &body).await
}
