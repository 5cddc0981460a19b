//! Center security (issue 4), replay: a signed registration is the etcd entry,
//! readable by anyone, so its op proof must make a copy useless (verbatim replays,
//! replays after deregistration, expiry or a restart, proofs by another key), and
//! listings and the watch stream never expose signatures or tokens.
//! Ownership is in `security.rs`, hostile input in `hostile.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::{Method, Request, StatusCode};
use isek::identity::NodeIdentity;
use isek::wire::proof::{
    DEREGISTER_OP, ProofRequest, REGISTER_OP, RENEW_OP, SignedRegisterRequest, next_timestamp,
    operation_bytes, register_operation_bytes,
};
use isek_center::Config;
use isek_testkit::router::{DEREGISTER, REGISTER, RENEW, TestCenter};
use isek_testkit::signed::{
    Scene, assert_forbidden, digest_of, entry, register_body, renew_with_token, signed_body,
};
use serde_json::{Value, json};
use tower::ServiceExt;

#[tokio::test]
async fn a_captured_signed_registration_replayed_verbatim_is_refused() {
    let c = TestCenter::with_ttl(Duration::from_secs(30)).await;
    let owner = NodeIdentity::generate();
    let captured = signed_body(&owner, "victim", 9000);
    let token = register_body(&c, &captured).await;
    let before = entry(&c, "victim").await.unwrap();

    // Verbatim, while the owner is alive: no fresh token for the replayer.
    let a = c.post(REGISTER, &captured).await;
    assert_forbidden(&a, "replayed");
    assert!(!a.body.contains("lease_token"));
    assert_eq!(entry(&c, "victim").await.as_ref(), Some(&before));
    assert_eq!(
        c.center.owner_of("victim").unwrap().key(),
        owner.public_key()
    );
    renew_with_token(&c, "victim", &token)
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");

    // The owner moves (new address, new token); the old registration, which would
    // restore the old address, is refused too.
    let moved = signed_body(&owner, "victim", 9001);
    let new_token = register_body(&c, &moved).await;
    assert_forbidden(&c.post(REGISTER, &captured).await, "replayed");
    assert_forbidden(&c.post(REGISTER, &moved).await, "replayed");
    assert_eq!(entry(&c, "victim").await.unwrap()["port"], 9001);
    renew_with_token(&c, "victim", &new_token)
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");
}

#[tokio::test]
async fn a_replay_after_deregistration_or_expiry_is_refused() {
    // Deregistered (by token: no signed op after the registration itself).
    let c = TestCenter::with_ttl(Duration::from_secs(30)).await;
    let owner = NodeIdentity::generate();
    let captured = signed_body(&owner, "gone", 1);
    let token = register_body(&c, &captured).await;
    let body = serde_json::to_string(&ProofRequest::with_token("gone", &token)).unwrap();
    c.post(DEREGISTER, &body)
        .await
        .assert_envelope(200, "Node 'gone' deregistered successfully.");
    assert_forbidden(&c.post(REGISTER, &captured).await, "replayed");
    assert!(entry(&c, "gone").await.is_none());

    // Deregistered by a signed op: its signature cannot be replayed either, and the
    // registration before it still is refused.
    let captured = signed_body(&owner, "signed-gone", 1);
    register_body(&c, &captured).await;
    let deregister = ProofRequest::signed(&owner, DEREGISTER_OP, "signed-gone", next_timestamp());
    let deregister = serde_json::to_string(&deregister).unwrap();
    c.post(DEREGISTER, &deregister)
        .await
        .assert_envelope(200, "Node 'signed-gone' deregistered successfully.");
    assert_forbidden(&c.post(REGISTER, &captured).await, "replayed");
    assert!(entry(&c, "signed-gone").await.is_none());
    // The owner itself, signing afresh, gets its id back.
    register_body(&c, &signed_body(&owner, "signed-gone", 2)).await;

    // Expired (TTL 1 s): the id is free, but not for a copy of its registration.
    let c = TestCenter::with_ttl(Duration::from_secs(1)).await;
    let captured = signed_body(&owner, "expired", 1);
    register_body(&c, &captured).await;
    for _ in 0..200 {
        if c.listed_ids().await.is_empty() && c.center.get("expired").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.listed_ids().await.is_empty(), "the lease never ran out");
    assert_forbidden(&c.post(REGISTER, &captured).await, "replayed");
    assert!(entry(&c, "expired").await.is_none());
    register_body(&c, &signed_body(&owner, "expired", 2)).await;
}

#[tokio::test]
async fn a_signed_registration_needs_an_op_proof_by_the_same_key() {
    let s = Scene::new().await;
    let attacker = NodeIdentity::generate();
    for id in ["victim", "free"] {
        // The etcd entry alone (node_info signature, no op proof): 403 saying so.
        let full: Value = serde_json::from_str(&signed_body(&s.owner, id, 9000)).unwrap();
        for missing in [
            &["timestamp", "op_signature"][..],
            &["op_signature"],
            &["timestamp"],
        ] {
            let mut body = full.clone();
            for field in missing {
                body.as_object_mut().unwrap().remove(*field);
            }
            let a = s.c.post(REGISTER, &body.to_string()).await;
            assert_forbidden(&a, "needs an op proof");
            s.assert_unchanged(&format!("{id} without {missing:?}"))
                .await;
        }

        // An op proof by another key (over the right op, id and timestamp).
        let mut body = full.clone();
        let timestamp = body["timestamp"].as_u64().unwrap();
        body["op_signature"] = json!(
            attacker
                .sign(&operation_bytes(REGISTER_OP, id, timestamp))
                .to_base64()
        );
        assert_forbidden(&s.c.post(REGISTER, &body.to_string()).await, "op signature");
        // The owner's op proof for another op, node, time or record, or without the
        // record's digest.
        let digest = digest_of(&full);
        for bytes in [
            operation_bytes(RENEW_OP, id, timestamp),
            operation_bytes(REGISTER_OP, id, timestamp),
            register_operation_bytes("someone-else", timestamp, &digest),
            register_operation_bytes(id, timestamp + 1, &digest),
            register_operation_bytes(id, timestamp, &"0".repeat(64)),
        ] {
            let mut body = full.clone();
            body["op_signature"] = json!(s.owner.sign(&bytes).to_base64());
            assert_forbidden(&s.c.post(REGISTER, &body.to_string()).await, "op signature");
        }
        // A timestamp outside the window (correctly signed by the owner).
        let stale = SignedRegisterRequest::sign_at(
            &s.owner,
            id,
            "10.0.0.1",
            9000,
            Default::default(),
            next_timestamp() - 45_000,
        );
        assert_forbidden(&s.post(REGISTER, &stale).await, "from the center's clock");
        // Malformed op proofs are 400s naming the field.
        let mut body = full.clone();
        body["timestamp"] = json!("soon");
        s.c.post(REGISTER, &body.to_string())
            .await
            .assert_bad_request_naming("'timestamp'");
        let mut body = full;
        body["op_signature"] = json!("AAAA");
        s.c.post(REGISTER, &body.to_string())
            .await
            .assert_bad_request_naming("'op_signature'");
        s.assert_unchanged(&format!("{id}: bad op proofs")).await;
    }
    assert_eq!(s.c.listed_ids().await, vec!["victim".to_owned()]);
    renew_with_token(&s.c, "victim", &s.token)
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");
}

#[tokio::test]
async fn a_refused_registration_does_not_move_the_owners_replay_horizon() {
    // Another key signs a registration of the victim far ahead in time (inside the
    // window): refused for ownership, it must not make the owner's next ops "replays".
    let s = Scene::new().await;
    let attacker = NodeIdentity::generate();
    let ahead = SignedRegisterRequest::sign_at(
        &attacker,
        "victim",
        "evil",
        6666,
        Default::default(),
        next_timestamp() + 25_000,
    );
    assert_forbidden(&s.post(REGISTER, &ahead).await, "another key");
    s.assert_unchanged("a refused registration from the future")
        .await;
    let renew = ProofRequest::signed(&s.owner, RENEW_OP, "victim", next_timestamp());
    s.post(RENEW, &renew)
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");
    register_body(&s.c, &signed_body(&s.owner, "victim", 9000)).await;
}

/// A 30 s lease center holding at most `max_nodes` nodes.
async fn capped(max_nodes: usize) -> TestCenter {
    TestCenter::with_config(Config {
        security: isek_center::Security {
            max_nodes: Some(max_nodes),
            ..isek_center::Security::default()
        },
        ..Config::in_memory(Duration::from_secs(30))
    })
    .await
}

#[tokio::test]
async fn a_registration_refused_as_full_cannot_be_replayed_for_a_token() {
    // Issue 15 item 2: a 503 used to leave the op proof unused, so whoever held a copy
    // could resend it once there was room and get the owner's lease token.
    let c = capped(1).await;
    assert_eq!(c.register("filler").await.status, StatusCode::OK);
    let owner = NodeIdentity::generate();
    let captured = signed_body(&owner, "victim", 9000);
    let a = c.post(REGISTER, &captured).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(c.deregister("filler").await.status, StatusCode::OK);
    // A third party resends the refused registration verbatim: no token.
    let replay = c.post(REGISTER, &captured).await;
    assert_forbidden(&replay, "replayed");
    assert!(!replay.body.contains("lease_token"), "{}", replay.body);
    assert!(entry(&c, "victim").await.is_none());
    // The owner, signing afresh, registers and alone holds the token.
    let token = register_body(&c, &signed_body(&owner, "victim", 9000)).await;
    renew_with_token(&c, "victim", &token)
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");
}

#[tokio::test]
async fn an_op_proof_cannot_be_paired_with_an_older_signed_record() {
    // The older record: the owner's etcd entry (node_info and its signature, which
    // anyone can read), pointing at the old port.
    let c = TestCenter::with_ttl(Duration::from_secs(30)).await;
    let owner = NodeIdentity::generate();
    let old: Value = serde_json::from_str(&signed_body(&owner, "victim", 9000)).unwrap();
    // The owner's new registration (port 9001), captured in flight.
    let new: Value = serde_json::from_str(&signed_body(&owner, "victim", 9001)).unwrap();
    let mut paired = old.clone();
    paired["timestamp"] = new["timestamp"].clone();
    paired["op_signature"] = new["op_signature"].clone();
    let a = c.post(REGISTER, &paired.to_string()).await;
    assert_forbidden(&a, "op signature");
    assert!(!a.body.contains("lease_token"), "{}", a.body);
    assert!(entry(&c, "victim").await.is_none());
    // The failed pairing used nothing up: the owner's registration goes through.
    let token = register_body(&c, &new.to_string()).await;
    assert_eq!(entry(&c, "victim").await.unwrap()["port"], 9001);
    renew_with_token(&c, "victim", &token)
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");
}

#[tokio::test]
async fn a_registration_refused_for_ownership_or_a_look_alike_is_used_up_too() {
    let s = Scene::new().await;
    // Another key's registration of the victim: 403, and no copy of it works later.
    let other = NodeIdentity::generate();
    let hijack = signed_body(&other, "victim", 6666);
    assert_forbidden(&s.c.post(REGISTER, &hijack).await, "another key");
    assert_forbidden(&s.c.post(REGISTER, &hijack).await, "replayed");
    // A look-alike of a live node (409), replayed once that node is gone: refused.
    let look_alike = signed_body(&other, "v\u{456}ctim", 6666); // Cyrillic i
    let a = s.c.post(REGISTER, &look_alike).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    let gone = serde_json::to_string(&ProofRequest::with_token("victim", &s.token)).unwrap();
    s.c.post(DEREGISTER, &gone)
        .await
        .assert_envelope(200, "Node 'victim' deregistered successfully.");
    assert_forbidden(&s.c.post(REGISTER, &look_alike).await, "replayed");
    assert!(s.c.listed_ids().await.is_empty());
}

#[tokio::test]
async fn signatures_made_before_a_restart_are_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let owner = NodeIdentity::generate();
    let (registration, renew, gone_registration, token) = {
        let c = TestCenter::with_config(Config::on_disk(dir.path())).await;
        let registration = signed_body(&owner, "kept", 1);
        let token = register_body(&c, &registration).await;
        // A signed renew, accepted (its timestamp lives in memory only).
        let renew = serde_json::to_string(&ProofRequest::signed(
            &owner,
            RENEW_OP,
            "kept",
            next_timestamp(),
        ))
        .unwrap();
        c.post(RENEW, &renew)
            .await
            .assert_envelope(200, "Lease for node 'kept' renewed successfully.");
        // A node deregistered before the restart: gone from the store too.
        let gone_registration = signed_body(&owner, "gone", 2);
        let gone_token = register_body(&c, &gone_registration).await;
        let body = serde_json::to_string(&ProofRequest::with_token("gone", &gone_token)).unwrap();
        c.post(DEREGISTER, &body)
            .await
            .assert_envelope(200, "Node 'gone' deregistered successfully.");
        c.center.shutdown().await.unwrap();
        (registration, renew, gone_registration, token)
    };

    let c = TestCenter::with_config(Config::on_disk(dir.path())).await;
    let kept = entry(&c, "kept").await.unwrap();
    // Replays of pre-restart signatures, within the window: all refused.
    assert_forbidden(
        &c.post(REGISTER, &registration).await,
        "before this center started",
    );
    assert_forbidden(&c.post(RENEW, &renew).await, "before this center started");
    assert_forbidden(
        &c.post(REGISTER, &gone_registration).await,
        "before this center started",
    );
    assert!(entry(&c, "gone").await.is_none());
    assert_eq!(entry(&c, "kept").await.as_ref(), Some(&kept));
    assert_eq!(c.center.owner_of("kept").unwrap().key(), owner.public_key());
    // The owner's token (stored as a hash) and fresh signatures still work.
    renew_with_token(&c, "kept", &token)
        .await
        .assert_envelope(200, "Lease for node 'kept' renewed successfully.");
    let fresh = ProofRequest::signed(&owner, RENEW_OP, "kept", next_timestamp());
    c.post(RENEW, &serde_json::to_string(&fresh).unwrap())
        .await
        .assert_envelope(200, "Lease for node 'kept' renewed successfully.");
    register_body(&c, &signed_body(&owner, "gone", 3)).await;
    c.center.shutdown().await.unwrap();
}

/// Reads a watch response body until it has `needle` (or ends); returns what was read.
async fn read_watch_until(c: &TestCenter, path: &str, needle: &str) -> String {
    use http_body_util::BodyExt as _;
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = c.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains(needle) {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("the stream stalled");
        let Some(frame) = frame else { break };
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    text
}

#[tokio::test]
async fn listings_and_the_watch_stream_never_expose_signatures_or_tokens() {
    let c = TestCenter::with_ttl(Duration::from_secs(30)).await;
    let owner = NodeIdentity::generate();
    let body = signed_body(&owner, "secretive", 7);
    let token = register_body(&c, &body).await;
    let sent: Value = serde_json::from_str(&body).unwrap();
    let secrets = [
        token.clone(),
        sent["signature"].as_str().unwrap().to_owned(),
        sent["op_signature"].as_str().unwrap().to_owned(),
        owner.public_key().to_base64().to_owned(),
    ];
    let nodes = c
        .call(Method::GET, "/v1/nodes", None, axum::body::Body::empty())
        .await;
    assert_eq!(nodes.status, StatusCode::OK);
    let listing = c.list().await;
    // Backlog (puts since revision 0) and snapshot streams.
    let backlog = read_watch_until(
        &c,
        &format!("/v1/watch?since=0&epoch={}", c.center.epoch()),
        "secretive",
    )
    .await;
    let snapshot = read_watch_until(&c, "/v1/watch", "secretive").await;
    for (name, text) in [
        ("/v1/nodes", &nodes.body),
        ("available_nodes", &listing.body),
        ("watch backlog", &backlog),
        ("watch snapshot", &snapshot),
    ] {
        assert!(text.contains("secretive"), "{name}: {text}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{name} leaks {secret}");
        }
        for field in [
            "signature",
            "lease_token",
            "token",
            "public_key",
            "timestamp",
        ] {
            assert!(!text.contains(field), "{name} has '{field}': {text}");
        }
    }
}
