//! Center security (issue 4), ownership: signed registrations, lease tokens,
//! owner-only renew, overwrite and deregister, compatibility mode,
//! `require_signatures`, the admin token, owners across a restart, and the Rust
//! client's signing.
//!
//! Every impersonation attempt must be refused with 403 AND leave the victim
//! registered and unchanged (listing entry and owner key checked after each one).
//! Replay is in `replay.rs`; hostile input, limits and TLS in `hostile.rs`; the shared
//! helpers in `isek_testkit::signed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::{Method, Request, StatusCode};
use isek::identity::NodeIdentity;
use isek::wire::proof::{
    DEREGISTER_OP, ProofRequest, RENEW_OP, SignedRegisterRequest, next_timestamp, node_info_digest,
    register_operation_bytes,
};
use isek_center::Config;
use isek_center::Security;
use isek_testkit::center::ServedCenter;
use isek_testkit::router::{Answer, DEREGISTER, REGISTER, RENEW, TestCenter};
use isek_testkit::signed::{Scene, assert_forbidden, entry, parse, register_signed};
use serde_json::json;

#[tokio::test]
async fn impersonation_attempts_are_refused_and_leave_the_victim_unchanged() {
    let s = Scene::new().await;
    let attacker = NodeIdentity::generate();
    // After every timestamp this process signed so far (the victim's registration
    // included); Unix milliseconds.
    let now = next_timestamp();

    for (path, op) in [(RENEW, RENEW_OP), (DEREGISTER, DEREGISTER_OP)] {
        // No proof at all (the original protocol).
        let a = s.post(path, &json!({"node_id": "victim"})).await;
        assert_forbidden(&a, "'lease_token' or a 'signature'");
        s.assert_unchanged(&format!("{op} without proof")).await;

        // Another key's fresh signature.
        let a = s
            .post(path, &ProofRequest::signed(&attacker, op, "victim", now))
            .await;
        assert_forbidden(&a, "does not verify");
        s.assert_unchanged(&format!("{op} signed by another key"))
            .await;

        // A wrong token (also: a token of another node).
        let a = s
            .post(path, &ProofRequest::with_token("victim", "not-the-token"))
            .await;
        assert_forbidden(&a, "'lease_token'");
        s.assert_unchanged(&format!("{op} with a wrong token"))
            .await;

        // The owner's signature, but stale or from the future (margins well beyond
        // the 30 s window, so the clock ticking during the test changes nothing), or
        // in seconds instead of milliseconds.
        for ts in [now - 45_000, now - 3_600_000, now + 45_000, 0, now / 1000] {
            let a = s
                .post(path, &ProofRequest::signed(&s.owner, op, "victim", ts))
                .await;
            assert_forbidden(&a, "from the center's clock");
            s.assert_unchanged(&format!("{op} with timestamp {ts}"))
                .await;
        }

        // The owner's signature over another operation or another node.
        let other_op = if op == RENEW_OP {
            DEREGISTER_OP
        } else {
            RENEW_OP
        };
        let mut wrong = ProofRequest::signed(&s.owner, other_op, "victim", now);
        wrong.node_id = "victim".into();
        let a =
            s.c.post(path, &serde_json::to_string(&wrong).unwrap())
                .await;
        assert_forbidden(&a, "does not verify");
        let mut moved = ProofRequest::signed(&s.owner, op, "someone-else", now);
        moved.node_id = "victim".into();
        let a = s.post(path, &moved).await;
        assert_forbidden(&a, "does not verify");
        s.assert_unchanged(&format!("{op} with a signature for something else"))
            .await;
    }

    // A replayed signature: the owner's renew is accepted once, never again; an
    // older timestamp is refused too.
    let genuine = ProofRequest::signed(&s.owner, RENEW_OP, "victim", now + 1);
    assert_eq!(s.post(RENEW, &genuine).await.status, StatusCode::OK);
    let a = s.post(RENEW, &genuine).await;
    assert_forbidden(&a, "replayed");
    let older = ProofRequest::signed(&s.owner, RENEW_OP, "victim", now);
    assert_forbidden(&s.post(RENEW, &older).await, "replayed");
    let old_deregister = ProofRequest::signed(&s.owner, DEREGISTER_OP, "victim", now);
    assert_forbidden(&s.post(DEREGISTER, &old_deregister).await, "replayed");
    s.assert_unchanged("replayed signatures").await;

    // Overwrites: unsigned, signed by another key, signed with a bad signature, and a
    // signature over other content.
    let unsigned = json!({"node_id": "victim", "host": "evil", "port": 6666});
    assert_forbidden(&s.post(REGISTER, &unsigned).await, "needs a signature");
    s.assert_unchanged("unsigned overwrite").await;
    let other = SignedRegisterRequest::sign(&attacker, "victim", "evil", 6666, Default::default());
    assert_forbidden(&s.post(REGISTER, &other).await, "another key");
    s.assert_unchanged("overwrite by another key").await;
    let mut forged =
        SignedRegisterRequest::sign(&s.owner, "victim", "10.0.0.1", 9000, Default::default());
    forged.host = "evil".into();
    assert_forbidden(&s.post(REGISTER, &forged).await, "does not verify");
    s.assert_unchanged("overwrite with a forged signature")
        .await;
    let mut claimed = other.clone();
    claimed.public_key = s.owner.public_key().to_base64().to_owned();
    assert_forbidden(&s.post(REGISTER, &claimed).await, "does not verify");
    s.assert_unchanged("overwrite claiming the owner's key")
        .await;

    // The owner's token still works after all of that.
    let a = s
        .post(RENEW, &ProofRequest::with_token("victim", &s.token))
        .await;
    a.assert_envelope(200, "Lease for node 'victim' renewed successfully.");
}

#[tokio::test]
async fn the_owner_renews_reregisters_and_deregisters() {
    let s = Scene::new().await;
    // After every timestamp this process signed so far (the victim's registration
    // included); Unix milliseconds.
    let now = next_timestamp();
    s.post(RENEW, &ProofRequest::with_token("victim", &s.token))
        .await
        .assert_envelope(200, "Lease for node 'victim' renewed successfully.");
    s.post(
        RENEW,
        &ProofRequest::signed(&s.owner, RENEW_OP, "victim", now),
    )
    .await
    .assert_envelope(200, "Lease for node 'victim' renewed successfully.");

    // Re-registration by the same key: new token, the old one stops working, the
    // replay horizon carries over.
    let new_token = register_signed(&s.c, &s.owner, "victim", 9001).await;
    assert_ne!(new_token, s.token);
    assert_eq!(entry(&s.c, "victim").await.unwrap()["port"], 9001);
    assert_forbidden(
        &s.post(RENEW, &ProofRequest::with_token("victim", &s.token))
            .await,
        "'lease_token'",
    );
    assert_forbidden(
        &s.post(
            RENEW,
            &ProofRequest::signed(&s.owner, RENEW_OP, "victim", now),
        )
        .await,
        "replayed",
    );
    s.post(DEREGISTER, &ProofRequest::with_token("victim", &new_token))
        .await
        .assert_envelope(200, "Node 'victim' deregistered successfully.");
    assert!(entry(&s.c, "victim").await.is_none());

    // Once gone, the id is free again, for anyone (the original protocol too).
    s.c.register("victim")
        .await
        .assert_envelope(200, "Node 'victim' registered successfully.");

    // Deregistration by signature.
    let key = NodeIdentity::generate();
    register_signed(&s.c, &key, "other", 1).await;
    s.post(
        DEREGISTER,
        &ProofRequest::signed(&key, DEREGISTER_OP, "other", next_timestamp()),
    )
    .await
    .assert_envelope(200, "Node 'other' deregistered successfully.");
    assert!(entry(&s.c, "other").await.is_none());
}

#[tokio::test]
async fn a_signed_registration_is_the_etcd_entry_and_accepts_legacy_sha1() {
    let c = TestCenter::in_memory().await;
    let identity = NodeIdentity::generate();
    let metadata = json!({"name": "é", "x": 1.0}).as_object().unwrap().clone();
    let public_key = identity.public_key().to_base64().to_owned();
    let node_info = isek::wire::etcd::node_info_value("n", "h", 7, &public_key, &metadata);
    let bytes = isek::canonical::to_sorted_bytes(&node_info);
    // Legacy SHA-1 (no signature_alg), as the original etcd entries are signed.
    let signature = identity.sign_legacy_sha1(&bytes).unwrap().to_base64();
    // The op proof uses the same algorithm (`signature_alg` covers both signatures).
    let timestamp = next_timestamp();
    let op_signature = identity
        .sign_legacy_sha1(&register_operation_bytes(
            "n",
            timestamp,
            &node_info_digest(&bytes),
        ))
        .unwrap()
        .to_base64();
    let body = json!({"node_id": "n", "host": "h", "port": 7, "metadata": metadata,
        "public_key": public_key, "signature": signature,
        "timestamp": timestamp, "op_signature": op_signature});
    let a = c.post(REGISTER, &body.to_string()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(parse(&a)["data"]["lease_token"].is_string());
    // The same signature claimed as ES256 does not verify.
    let mut es = body.clone();
    es["signature_alg"] = json!("ES256");
    assert_forbidden(&c.post(REGISTER, &es.to_string()).await, "does not verify");
    // Half a proof or garbage is a 400 naming the field.
    let mut half = body.clone();
    half.as_object_mut().unwrap().remove("signature");
    c.post(REGISTER, &half.to_string())
        .await
        .assert_bad_request_naming("'signature'");
    let mut garbage = body.clone();
    garbage["public_key"] = json!("AAAA");
    c.post(REGISTER, &garbage.to_string())
        .await
        .assert_bad_request_naming("'public_key'");
    let mut alg = body;
    alg["signature_alg"] = json!("RS256");
    c.post(REGISTER, &alg.to_string())
        .await
        .assert_bad_request_naming("'signature_alg'");
}

#[tokio::test]
async fn the_unsigned_python_flow_still_works_and_cannot_touch_signed_nodes() {
    let c = TestCenter::with_ttl(Duration::from_secs(30)).await;
    c.register("py")
        .await
        .assert_envelope(200, "Node 'py' registered successfully.");
    c.renew("py")
        .await
        .assert_envelope(200, "Lease for node 'py' renewed successfully.");
    // Anyone may take over an unsigned node, as in the original (also with a key).
    let key = NodeIdentity::generate();
    register_signed(&c, &key, "py", 2).await;
    // ... after which the unsigned client is locked out of it.
    assert_forbidden(&c.renew("py").await, "'lease_token'");
    assert_forbidden(&c.deregister("py").await, "'lease_token'");
    assert_forbidden(&c.register("py").await, "needs a signature");
    c.register("py2")
        .await
        .assert_envelope(200, "Node 'py2' registered successfully.");
    c.deregister("py2")
        .await
        .assert_envelope(200, "Node 'py2' deregistered successfully.");
    c.deregister("py2")
        .await
        .assert_envelope(404, "Node 'py2' not found for deregistration.");
    c.renew("py2")
        .await
        .assert_envelope(404, "Node 'py2' not found for lease renewal.");
}

#[tokio::test]
async fn require_signatures_refuses_unsigned_registrations() {
    let c = TestCenter::with_config(Config {
        security: Security {
            require_signatures: true,
            ..Security::default()
        },
        ..Config::default()
    })
    .await;
    let a = c.register("py").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(parse(&a)["code"], 401);
    assert!(
        parse(&a)["message"]
            .as_str()
            .unwrap()
            .contains("requires signed registrations")
    );
    assert_eq!(c.listed_ids().await, Vec::<String>::new());
    register_signed(&c, &NodeIdentity::generate(), "signed", 1).await;
    assert_eq!(c.listed_ids().await, vec!["signed".to_owned()]);
}

/// A deregister request with an `Authorization` header.
async fn admin_deregister(c: &TestCenter, id: &str, token: &str) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri(DEREGISTER)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(json!({ "node_id": id }).to_string()))
        .unwrap();
    c.send(request).await
}

#[tokio::test]
async fn admin_deregisters_any_node_only_with_the_configured_token() {
    let c = TestCenter::with_config(Config {
        security: Security::default().with_admin_token("s3cret-admin\n"),
        ..Config::default()
    })
    .await;
    register_signed(&c, &NodeIdentity::generate(), "signed", 1).await;
    assert_forbidden(
        &admin_deregister(&c, "signed", "wrong").await,
        "'lease_token'",
    );
    assert_forbidden(&c.deregister("signed").await, "'lease_token'");
    assert!(entry(&c, "signed").await.is_some());
    admin_deregister(&c, "signed", "s3cret-admin")
        .await
        .assert_envelope(200, "Node 'signed' deregistered successfully.");
    assert!(entry(&c, "signed").await.is_none());

    // Without a configured token there is no admin: the header changes nothing.
    let plain = TestCenter::in_memory().await;
    register_signed(&plain, &NodeIdentity::generate(), "signed", 1).await;
    assert_forbidden(
        &admin_deregister(&plain, "signed", "").await,
        "'lease_token'",
    );
    assert_forbidden(
        &admin_deregister(&plain, "signed", "s3cret-admin").await,
        "'lease_token'",
    );
    assert!(entry(&plain, "signed").await.is_some());
}

#[tokio::test]
async fn max_nodes_refuses_new_ids_with_503_but_not_reregistrations() {
    let c = TestCenter::with_config(Config {
        security: Security {
            max_nodes: Some(2),
            ..Security::default()
        },
        ..Config::default()
    })
    .await;
    c.register("a")
        .await
        .assert_envelope(200, "Node 'a' registered successfully.");
    c.register("b")
        .await
        .assert_envelope(200, "Node 'b' registered successfully.");
    c.register("c")
        .await
        .assert_envelope(503, "center is full (2 nodes)");
    c.register("a")
        .await
        .assert_envelope(200, "Node 'a' registered successfully.");
    c.deregister("b")
        .await
        .assert_envelope(200, "Node 'b' deregistered successfully.");
    c.register("c")
        .await
        .assert_envelope(200, "Node 'c' registered successfully.");
    assert_eq!(c.listed_ids().await, vec!["a".to_owned(), "c".to_owned()]);
}

#[tokio::test]
async fn owners_survive_a_restart_and_schema_1_stores_still_load() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A store written by the schema-1 center.
        let conn =
            rusqlite::Connection::open(dir.path().join(isek_center::store::DB_FILE)).unwrap();
        conn.execute_batch(
            r#"CREATE TABLE nodes (node_id TEXT PRIMARY KEY NOT NULL, host TEXT NOT NULL,
                   port INTEGER NOT NULL, metadata TEXT NOT NULL) WITHOUT ROWID;
               INSERT INTO nodes VALUES ('old', 'h', 5, '{"a":1}');
               PRAGMA user_version = 1;"#,
        )
        .unwrap();
    }
    let key = NodeIdentity::generate();
    let token = {
        let c = TestCenter::with_config(Config::on_disk(dir.path())).await;
        assert_eq!(c.listed_ids().await, vec!["old".to_owned()]);
        assert!(c.center.owner_of("old").is_none());
        let token = register_signed(&c, &key, "signed", 1).await;
        c.center.shutdown().await.unwrap();
        token
    };
    let c = TestCenter::with_config(Config::on_disk(dir.path())).await;
    assert_eq!(
        c.listed_ids().await,
        vec!["old".to_owned(), "signed".to_owned()]
    );
    assert_eq!(c.center.owner_of("signed").unwrap().key(), key.public_key());
    assert_forbidden(&c.renew("signed").await, "'lease_token'");
    assert_forbidden(&c.register("signed").await, "needs a signature");
    let body = serde_json::to_string(&ProofRequest::with_token("signed", &token)).unwrap();
    c.post(RENEW, &body)
        .await
        .assert_envelope(200, "Lease for node 'signed' renewed successfully.");
    c.renew("old")
        .await
        .assert_envelope(200, "Lease for node 'old' renewed successfully.");
    c.center.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_rust_client_signs_keeps_its_token_and_falls_back_to_signatures() {
    use isek::{Error, IsekCenterRegistry, Registry};
    let center = ServedCenter::start(Config::default()).await;
    let url = center.url();
    let identity = NodeIdentity::generate();
    let owner = IsekCenterRegistry::new(&url)
        .unwrap()
        .with_identity(identity.clone());
    owner
        .register_node("n", "127.0.0.1", 9000, Default::default())
        .await
        .unwrap();
    assert_eq!(owner.lease_token("n").unwrap().len(), 43);
    owner.lease_refresh("n").await.unwrap();

    // Without proof, or with another key, nothing works on it.
    let unsigned = IsekCenterRegistry::new(&url).unwrap();
    let thief = IsekCenterRegistry::new(&url)
        .unwrap()
        .with_identity(NodeIdentity::generate());
    assert!(matches!(
        unsigned.lease_refresh("n").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        unsigned.deregister_node("n").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        unsigned
            .register_node("n", "evil", 1, Default::default())
            .await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        thief.deregister_node("n").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        thief
            .register_node("n", "evil", 1, Default::default())
            .await,
        Err(Error::PermissionDenied(_))
    ));
    assert_eq!(
        unsigned.get_available_nodes().await.unwrap()["n"].host,
        "127.0.0.1"
    );

    // Another process with the same key has no token: it signs, twice in a second.
    let other_process = IsekCenterRegistry::new(&url)
        .unwrap()
        .with_identity(identity.clone());
    assert!(other_process.lease_token("n").is_none());
    other_process.lease_refresh("n").await.unwrap();
    other_process.lease_refresh("n").await.unwrap();
    // The token holder is unaffected.
    owner.lease_refresh("n").await.unwrap();
    owner.deregister_node("n").await.unwrap();
    assert!(owner.lease_token("n").is_none());
    assert!(unsigned.get_available_nodes().await.unwrap().is_empty());

    // Another process with the key re-registers (new token): the first client's
    // token is refused, and it falls back to a signature by itself.
    let key = NodeIdentity::generate();
    let first = IsekCenterRegistry::new(&url)
        .unwrap()
        .with_identity(key.clone());
    let second = IsekCenterRegistry::new(&url).unwrap().with_identity(key);
    first
        .register_node("m", "h", 1, Default::default())
        .await
        .unwrap();
    second
        .register_node("m", "h", 2, Default::default())
        .await
        .unwrap();
    assert_ne!(first.lease_token("m"), second.lease_token("m"));
    first.lease_refresh("m").await.unwrap();
    second.deregister_node("m").await.unwrap();

    // An unsigned client keeps the original protocol.
    unsigned
        .register_node("py", "h", 1, Default::default())
        .await
        .unwrap();
    unsigned.lease_refresh("py").await.unwrap();
    unsigned.deregister_node("py").await.unwrap();
}

#[tokio::test]
async fn the_rust_client_uses_the_admin_path() {
    use isek::{Error, IsekCenterRegistry, Registry};
    let center = ServedCenter::start(Config {
        security: Security::default().with_admin_token("adm"),
        ..Config::default()
    })
    .await;
    let url = center.url();
    let owner = IsekCenterRegistry::new(&url)
        .unwrap()
        .with_identity(NodeIdentity::generate());
    owner
        .register_node("n", "h", 1, Default::default())
        .await
        .unwrap();
    let admin = IsekCenterRegistry::new(&url).unwrap();
    assert!(matches!(
        admin.admin_deregister("n", "nope").await,
        Err(Error::PermissionDenied(_))
    ));
    admin.admin_deregister("n", "adm").await.unwrap();
    assert!(admin.get_available_nodes().await.unwrap().is_empty());
}
