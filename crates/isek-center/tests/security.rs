//! Center security (issue 4): signed registrations, lease tokens, owner-only renew,
//! overwrite and deregister, replay and timestamp windows, compatibility mode,
//! `require_signatures`, the admin token, `max_nodes`, and hostile bodies.
//!
//! Every impersonation attempt must be refused with 403 AND leave the victim
//! registered and unchanged (listing entry and owner key checked after each one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "center/harness.rs"]
mod harness;

use std::time::Duration;

use axum::http::{Method, Request, StatusCode};
use harness::{DEREGISTER, REGISTER, RENEW, TestCenter};
use isek::identity::NodeIdentity;
use isek::wire::proof::{
    DEREGISTER_OP, ProofRequest, REGISTER_OP, RENEW_OP, SignedRegisterRequest, next_timestamp,
    operation_bytes,
};
use isek_center::Config;
use isek_center::Security;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Parsed body of an answer.
fn parse(answer: &harness::Answer) -> Value {
    serde_json::from_str(&answer.body).unwrap()
}

/// Registers `id` signed by `identity`; returns the lease token.
async fn register_signed(c: &TestCenter, identity: &NodeIdentity, id: &str, port: u16) -> String {
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
async fn entry(c: &TestCenter, id: &str) -> Option<Value> {
    let v = parse(&c.list().await);
    let mut node = v["data"]["available_nodes"].get(id)?.clone();
    node.as_object_mut().unwrap().remove("expires_at");
    Some(node)
}

/// Asserts a 403 envelope whose message contains `needle`.
#[track_caller]
fn assert_forbidden(answer: &harness::Answer, needle: &str) {
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
struct Scene {
    /// The center.
    c: TestCenter,
    /// The victim's key.
    owner: NodeIdentity,
    /// The victim's lease token.
    token: String,
    /// Its listing entry (no `expires_at`).
    entry: Value,
}

impl Scene {
    async fn new() -> Self {
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
    async fn assert_unchanged(&self, after: &str) {
        assert_eq!(
            entry(&self.c, "victim").await.as_ref(),
            Some(&self.entry),
            "victim changed after {after}"
        );
        let owner = self.c.center.owner_of("victim").unwrap();
        assert_eq!(owner.key(), self.owner.public_key(), "after {after}");
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> harness::Answer {
        self.c
            .post(path, &serde_json::to_string(body).unwrap())
            .await
    }
}

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
        .sign_legacy_sha1(&operation_bytes(REGISTER_OP, "n", timestamp))
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
async fn admin_deregister(c: &TestCenter, id: &str, token: &str) -> harness::Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri(DEREGISTER)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(json!({ "node_id": id }).to_string()))
        .unwrap();
    let response = c.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    harness::Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
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
async fn hostile_bodies_get_4xx_envelopes() {
    let c = TestCenter::in_memory().await;
    // 100k-deep arrays and objects: serde_json's recursion limit holds.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.post(REGISTER, &deep)
        .await
        .assert_bad_request_naming("JSON");
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    c.post(RENEW, &deep_obj)
        .await
        .assert_bad_request_naming("JSON");
    let nested_metadata = format!(
        "{{\"node_id\":\"n\",\"host\":\"h\",\"port\":1,\"metadata\":{}1{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    c.post(REGISTER, &nested_metadata)
        .await
        .assert_bad_request_naming("JSON");
    // Huge numbers.
    let huge_port = format!(
        r#"{{"node_id":"n","host":"h","port":1{}}}"#,
        "0".repeat(400)
    );
    c.post(REGISTER, &huge_port)
        .await
        .assert_bad_request_naming("");
    let huge_ts = r#"{"node_id":"n","signature":"AAAA","timestamp":1e400}"#;
    c.post(RENEW, huge_ts).await.assert_bad_request_naming("");
    // Proof fields of the wrong type.
    c.post(RENEW, r#"{"node_id":"n","lease_token":5}"#)
        .await
        .assert_bad_request_naming("'lease_token'");
    c.post(RENEW, r#"{"node_id":"n","signature":"AAAA","timestamp":1}"#)
        .await
        .assert_bad_request_naming("'signature'");
    let key = NodeIdentity::generate();
    let sig = key.sign(b"x").to_base64();
    c.post(
        RENEW,
        &json!({"node_id": "n", "signature": sig, "timestamp": -1}).to_string(),
    )
    .await
    .assert_bad_request_naming("'timestamp'");
    c.post(
        RENEW,
        &json!({"node_id": "n", "signature": sig}).to_string(),
    )
    .await
    .assert_bad_request_naming("'timestamp'");
    assert_eq!(c.listed_ids().await, Vec::<String>::new());
    let listing = c.list().await;
    assert_eq!(listing.status, StatusCode::OK);
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

/// Serves a center on an ephemeral port; returns its URL and the stop handle.
async fn serve(config: Config) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(isek_center::run(listener, config, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

#[tokio::test]
async fn the_rust_client_signs_keeps_its_token_and_falls_back_to_signatures() {
    use isek::{Error, IsekCenterRegistry, Registry};
    let (url, _stop) = serve(Config::default()).await;
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
    let (url, _stop) = serve(Config {
        security: Security::default().with_admin_token("adm"),
        ..Config::default()
    })
    .await;
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

#[tokio::test]
async fn tls_end_to_end_with_a_generated_certificate() {
    use isek::{CenterConfig, Error, IsekCenterRegistry, Registry};
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        tls: Some(isek_center::TlsFiles {
            cert: cert.clone(),
            key,
        }),
        ..Config::default()
    };
    let server = tokio::spawn(isek_center::run(listener, config, async move {
        let _ = stopped.await;
    }));

    for url in [
        format!("https://localhost:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let mut config = CenterConfig::new(&url);
        config.ca_file = Some(cert.clone());
        let client = IsekCenterRegistry::with_config(config)
            .unwrap()
            .with_identity(NodeIdentity::generate());
        client
            .register_node("tls", "10.0.0.1", 443, Default::default())
            .await
            .unwrap();
        assert!(client.lease_token("tls").is_some());
        client.lease_refresh("tls").await.unwrap();
        assert_eq!(client.get_available_nodes().await.unwrap()["tls"].port, 443);
        client.deregister_node("tls").await.unwrap();
    }

    // Without the CA the certificate is not trusted; plain HTTP gets no answer.
    let untrusting = IsekCenterRegistry::new(format!("https://localhost:{port}")).unwrap();
    assert!(matches!(
        untrusting.get_available_nodes().await,
        Err(Error::Unavailable(_))
    ));
    let plain = IsekCenterRegistry::new(format!("http://127.0.0.1:{port}")).unwrap();
    assert!(plain.get_available_nodes().await.is_err());
    // A CA file that is not PEM is a clear error.
    let mut bad = CenterConfig::new(format!("https://localhost:{port}"));
    bad.ca_file = Some(dir.path().join("missing.pem"));
    assert!(matches!(
        IsekCenterRegistry::with_config(bad),
        Err(Error::InvalidArgument(_))
    ));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_tls_files_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        tls: Some(isek_center::TlsFiles {
            cert: cert.clone(),
            key: cert,
        }),
        ..Config::default()
    };
    let error = isek_center::run(listener, config, async {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cert.pem"), "{error}");
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        timeouts: isek_center::Timeouts {
            header_read: Duration::from_millis(300),
            request: Duration::from_millis(300),
            ..Default::default()
        },
        ..Config::default()
    };
    tokio::spawn(isek_center::run(listener, config, async move {
        let _ = stopped.await;
    }));
    // Headers never finished: the connection is closed.
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /isek_center/renew HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), half.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "connection left open");
    // A body that never arrives: 408 envelope.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /isek_center/renew HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("{\"code\":408,"), "{text}");
}

#[tokio::test]
async fn duplicate_keys_are_refused_at_any_depth() {
    let s = Scene::new().await;
    // A signed node cannot be confused by a body with two node ids or two tokens.
    let two_ids = format!(
        r#"{{"node_id":"other","node_id":"victim","lease_token":"{}"}}"#,
        s.token
    );
    s.c.post(DEREGISTER, &two_ids)
        .await
        .assert_bad_request_naming("duplicate key 'node_id'");
    let nested = r#"{"node_id":"n","host":"h","port":1,"metadata":{"a":{"b":1,"b":2}}}"#;
    s.c.post(REGISTER, nested)
        .await
        .assert_bad_request_naming("duplicate key 'b'");
    s.assert_unchanged("duplicate keys").await;
    assert_eq!(s.c.listed_ids().await, vec!["victim".to_owned()]);
}

// ---- Registration replay (a signed registration is the etcd entry, readable by
// anyone: its op proof must make a copy useless) ----

/// A signed registration body of `id` by `identity` (op proof made now), as JSON text.
fn signed_body(identity: &NodeIdentity, id: &str, port: u16) -> String {
    let metadata = json!({"role": "victim"}).as_object().unwrap().clone();
    let body = SignedRegisterRequest::sign(identity, id, "10.0.0.1", port, metadata);
    serde_json::to_string(&body).unwrap()
}

/// POSTs a register body; returns the lease token of a 200.
async fn register_body(c: &TestCenter, body: &str) -> String {
    let a = c.post(REGISTER, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    parse(&a)["data"]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Renews `id` with `token`.
async fn renew_with_token(c: &TestCenter, id: &str, token: &str) -> harness::Answer {
    let body = serde_json::to_string(&ProofRequest::with_token(id, token)).unwrap();
    c.post(RENEW, &body).await
}

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
        // The owner's op proof for another op, node or time.
        for (op, node, ts) in [
            (RENEW_OP, id, timestamp),
            (REGISTER_OP, "someone-else", timestamp),
            (REGISTER_OP, id, timestamp + 1),
        ] {
            let mut body = full.clone();
            body["op_signature"] = json!(s.owner.sign(&operation_bytes(op, node, ts)).to_base64());
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
