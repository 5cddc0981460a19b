//! Center security (issue 4), hostile peers: `max_nodes`, hostile and
//! duplicate-key bodies, TLS end to end and bad TLS files, slow clients cut off.
//! Ownership is in `security.rs`, replay in `replay.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::StatusCode;
use isek::identity::NodeIdentity;
use isek_center::Config;
use isek_testkit::router::{DEREGISTER, REGISTER, RENEW, TestCenter};
use isek_testkit::signed::Scene;
use serde_json::json;

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
