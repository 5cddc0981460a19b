//! Every row of `shared/spec/center_responses.txt`, in the order it was captured, and
//! every bad-input class: status, envelope and exact message; success bodies byte for
//! byte (only `expires_at` values masked).

use axum::body::Body;
use axum::http::{Method, StatusCode};
use isek_center::{Config, Limits};

use isek_testkit::router::{
    DEREGISTER, LIST, REGISTER, RENEW, TestCenter, mask_expires_at, unix_now,
};

const REQUIRED: &str = "'node_id', 'host', and 'port' are required fields.";
const PORT_INT: &str = "'port' must be an integer.";
const MUST_BE_JSON: &str = "Request body must be JSON.";
const NODE_ID_REQUIRED: &str = "'node_id' is required.";

/// The capture, row by row. Where the original accepted bad input or answered HTML,
/// the expected answer is our 400 envelope instead.
#[tokio::test]
async fn center_responses_rows_in_capture_order() {
    let c = TestCenter::in_memory().await;

    // === register: success (72 bytes)
    let a = c
        .post(
            REGISTER,
            r#"{"node_id": "n1", "host": "127.0.0.1", "port": 9000, "metadata": {"name": "agent-1", "role": "planner"}}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        "{\"code\":200,\"data\":null,\"message\":\"Node 'n1' registered successfully.\"}\n"
    );
    assert_eq!(a.body.len(), 72);
    assert_eq!(a.headers["content-type"], "application/json");

    // === register: missing field (no port)
    c.post(REGISTER, r#"{"node_id": "n2", "host": "127.0.0.1"}"#)
        .await
        .assert_envelope(400, REQUIRED);
    // === register: port as string
    c.post(
        REGISTER,
        r#"{"node_id": "n3", "host": "127.0.0.1", "port": "9000"}"#,
    )
    .await
    .assert_envelope(400, PORT_INT);
    // === renew: unknown node (78 bytes)
    let a = c.post(RENEW, r#"{"node_id": "nope"}"#).await;
    assert_eq!(
        a.body,
        "{\"code\":404,\"data\":null,\"message\":\"Node 'nope' not found for lease renewal.\"}\n"
    );
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // === deregister: unknown node (79 bytes)
    let a = c.post(DEREGISTER, r#"{"node_id": "nope"}"#).await;
    assert_eq!(
        a.body,
        "{\"code\":404,\"data\":null,\"message\":\"Node 'nope' not found for deregistration.\"}\n"
    );
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // === available_nodes (n1 registered): 194 bytes with a 18-character expires_at
    let before = unix_now();
    let a = c.list().await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    let (masked, values) = mask_expires_at(&a.body);
    let (fixture, _) = mask_expires_at(
        "{\"code\":200,\"data\":{\"available_nodes\":{\"n1\":{\"expires_at\":1795681547.9381578,\"host\":\"127.0.0.1\",\"metadata\":{\"name\":\"agent-1\",\"role\":\"planner\"},\"node_id\":\"n1\",\"port\":9000}}},\"message\":\"success\"}\n",
    );
    assert_eq!(masked, fixture);
    // A 30 s lease, as float Unix seconds.
    assert!(
        values[0] > before + 28.0 && values[0] < unix_now() + 31.0,
        "{values:?}"
    );

    // === renew: known node (79 bytes)
    let a = c.post(RENEW, r#"{"node_id": "n1"}"#).await;
    assert_eq!(
        a.body,
        "{\"code\":200,\"data\":null,\"message\":\"Lease for node 'n1' renewed successfully.\"}\n"
    );
    // === renew: missing node_id
    c.post(RENEW, r#"{"x": 1}"#)
        .await
        .assert_envelope(400, NODE_ID_REQUIRED);
    // === register: port 0 (falsy -> treated as missing)
    c.post(REGISTER, r#"{"node_id": "n4", "host": "h", "port": 0}"#)
        .await
        .assert_envelope(400, REQUIRED);
    // === register: empty host string (falsy -> missing)
    c.post(REGISTER, r#"{"node_id": "n4", "host": "", "port": 1}"#)
        .await
        .assert_envelope(400, REQUIRED);
    // === register: port as float 9000.0
    c.post(
        REGISTER,
        r#"{"node_id": "n5", "host": "h", "port": 9000.0}"#,
    )
    .await
    .assert_envelope(400, PORT_INT);
    // === register: port true (the original accepted it): rejected
    c.post(
        REGISTER,
        r#"{"node_id": "nbool", "host": "h", "port": true}"#,
    )
    .await
    .assert_envelope(400, PORT_INT);
    // === register: negative port (the original accepted it): rejected naming 'port'
    c.post(REGISTER, r#"{"node_id": "nneg", "host": "h", "port": -5}"#)
        .await
        .assert_bad_request_naming("'port'");
    // === register: metadata null -> stored as {}
    c.post(
        REGISTER,
        r#"{"node_id": "nmeta", "host": "h", "port": 1, "metadata": null}"#,
    )
    .await
    .assert_envelope(200, "Node 'nmeta' registered successfully.");
    // === register: metadata non-object (the original stored it): rejected
    c.post(
        REGISTER,
        r#"{"node_id": "nmeta2", "host": "h", "port": 1, "metadata": "free text"}"#,
    )
    .await
    .assert_bad_request_naming("'metadata'");
    // === register: extra unknown fields ignored (76 bytes)
    let a = c
        .post(
            REGISTER,
            r#"{"node_id": "nextra", "host": "h", "port": 1, "foo": 1}"#,
        )
        .await;
    assert_eq!(
        a.body,
        "{\"code\":200,\"data\":null,\"message\":\"Node 'nextra' registered successfully.\"}\n"
    );

    // === available_nodes (after the edge registrations): the fixture minus the
    // entries we rejected (nbool, nmeta2, nneg).
    let a = c.list().await;
    let (masked, values) = mask_expires_at(&a.body);
    assert_eq!(
        masked,
        concat!(
            "{\"code\":200,\"data\":{\"available_nodes\":{",
            "\"n1\":{\"expires_at\":X,\"host\":\"127.0.0.1\",\"metadata\":{\"name\":\"agent-1\",\"role\":\"planner\"},\"node_id\":\"n1\",\"port\":9000},",
            "\"nextra\":{\"expires_at\":X,\"host\":\"h\",\"metadata\":{},\"node_id\":\"nextra\",\"port\":1},",
            "\"nmeta\":{\"expires_at\":X,\"host\":\"h\",\"metadata\":{},\"node_id\":\"nmeta\",\"port\":1}",
            "}},\"message\":\"success\"}\n"
        )
    );
    assert_eq!(values.len(), 3);

    // === register: empty object {} (falsy)
    c.post(REGISTER, "{}")
        .await
        .assert_envelope(400, MUST_BE_JSON);
    // === register: no Content-Type header (the original: 415 HTML)
    c.call(
        Method::POST,
        REGISTER,
        None,
        r#"{"node_id": "n6", "host": "h", "port": 1}"#,
    )
    .await
    .assert_bad_request_naming("Content-Type");
    // === register: Content-Type text/plain (the original: 415 HTML)
    c.call(
        Method::POST,
        REGISTER,
        Some("text/plain"),
        r#"{"node_id": "n6", "host": "h", "port": 1}"#,
    )
    .await
    .assert_bad_request_naming("Content-Type");
    // === register: invalid JSON (the original: 400 HTML)
    c.post(REGISTER, r#"{"node_id": "#)
        .await
        .assert_bad_request_naming("not valid JSON");
    // === register: JSON array body (the original: 500 HTML)
    c.post(REGISTER, "[1, 2]")
        .await
        .assert_bad_request_naming("JSON object");
    // === register: JSON null body
    c.post(REGISTER, "null")
        .await
        .assert_envelope(400, MUST_BE_JSON);
    // === deregister: known node (nextra), 78 bytes
    let a = c.post(DEREGISTER, r#"{"node_id": "nextra"}"#).await;
    assert_eq!(
        a.body,
        "{\"code\":200,\"data\":null,\"message\":\"Node 'nextra' deregistered successfully.\"}\n"
    );
    assert_eq!(a.status, StatusCode::OK);
    // === deregister: missing node_id
    c.post(DEREGISTER, r#"{"a": 1}"#)
        .await
        .assert_envelope(400, NODE_ID_REQUIRED);
    // === GET on POST route: JSON 405 keeping an Allow header
    let a = c.call(Method::GET, REGISTER, None, Body::empty()).await;
    a.assert_envelope(405, "The method is not allowed for the requested URL.");
    assert!(
        a.headers["allow"].to_str().unwrap().contains("POST"),
        "{:?}",
        a.headers
    );
    // === unknown path: JSON 404
    c.call(Method::GET, "/isek_center/nope", None, Body::empty())
        .await
        .assert_envelope(404, "The requested URL was not found on the server.");
    // === HEAD available_nodes: 200, same length as GET, empty body
    let get = c.list().await;
    let head = c.call(Method::HEAD, LIST, None, Body::empty()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "");
    assert_eq!(head.headers["content-type"], "application/json");
    if let Some(len) = head.headers.get("content-length") {
        assert_eq!(len.to_str().unwrap(), get.body.len().to_string());
    }
    // === register: node_id as integer 123 (the original accepted it, then broke its
    // listing with a 500): rejected naming 'node_id'
    c.post(REGISTER, r#"{"node_id": 123, "host": "h", "port": 1}"#)
        .await
        .assert_envelope(400, "'node_id' must be a string.");
    // === available_nodes still answers 200
    assert_eq!(c.list().await.status, StatusCode::OK);
    // === renew: node_id as integer 123
    c.post(RENEW, r#"{"node_id": 123}"#)
        .await
        .assert_envelope(400, "'node_id' must be a string.");
}

#[tokio::test]
async fn port_must_be_an_integer_in_range() {
    let c = TestCenter::in_memory().await;
    for port in ["true", "9000.0", "\"9000\"", "[1]", "{\"a\": 1}", "1e3"] {
        let body = format!(r#"{{"node_id": "n", "host": "h", "port": {port}}}"#);
        c.post(REGISTER, &body).await.assert_envelope(400, PORT_INT);
    }
    for port in [
        "-1",
        "65536",
        "70000",
        "18446744073709551615",
        "-9223372036854775808",
    ] {
        let body = format!(r#"{{"node_id": "n", "host": "h", "port": {port}}}"#);
        c.post(REGISTER, &body)
            .await
            .assert_envelope(400, "'port' must be between 1 and 65535.");
    }
    // Falsy ports keep the original's message.
    for port in ["0", "false", "null", "0.0", "\"\""] {
        let body = format!(r#"{{"node_id": "n", "host": "h", "port": {port}}}"#);
        c.post(REGISTER, &body).await.assert_envelope(400, REQUIRED);
    }
    for port in ["1", "65535"] {
        let body = format!(r#"{{"node_id": "n{port}", "host": "h", "port": {port}}}"#);
        assert_eq!(c.post(REGISTER, &body).await.status, StatusCode::OK);
    }
    assert_eq!(c.listed_ids().await, ["n1", "n65535"]);
}

#[tokio::test]
async fn missing_or_falsy_fields_keep_the_original_messages() {
    let c = TestCenter::in_memory().await;
    for body in [
        r#"{"host": "h", "port": 1}"#,
        r#"{"node_id": "n", "port": 1}"#,
        r#"{"node_id": "n", "host": "h"}"#,
        r#"{"node_id": "", "host": "h", "port": 1}"#,
        r#"{"node_id": null, "host": "h", "port": 1}"#,
        r#"{"node_id": "n", "host": null, "port": 1}"#,
        r#"{"foo": 1}"#,
    ] {
        c.post(REGISTER, body).await.assert_envelope(400, REQUIRED);
    }
    for body in ["{}", "null", "[]", "\"\"", "0", "false"] {
        c.post(REGISTER, body)
            .await
            .assert_envelope(400, MUST_BE_JSON);
        c.post(RENEW, body).await.assert_envelope(400, MUST_BE_JSON);
        c.post(DEREGISTER, body)
            .await
            .assert_envelope(400, MUST_BE_JSON);
    }
    for body in [r#"{"node_id": ""}"#, r#"{"node_id": null}"#, r#"{"a": 1}"#] {
        c.post(RENEW, body)
            .await
            .assert_envelope(400, NODE_ID_REQUIRED);
        c.post(DEREGISTER, body)
            .await
            .assert_envelope(400, NODE_ID_REQUIRED);
    }
}

#[tokio::test]
async fn non_string_fields_are_named() {
    let c = TestCenter::in_memory().await;
    for id in ["123", "true", "[\"a\"]", "{\"a\": 1}", "1.5"] {
        let body = format!(r#"{{"node_id": {id}, "host": "h", "port": 1}}"#);
        c.post(REGISTER, &body)
            .await
            .assert_envelope(400, "'node_id' must be a string.");
        let body = format!(r#"{{"node_id": {id}}}"#);
        c.post(RENEW, &body)
            .await
            .assert_envelope(400, "'node_id' must be a string.");
        c.post(DEREGISTER, &body)
            .await
            .assert_envelope(400, "'node_id' must be a string.");
    }
    c.post(REGISTER, r#"{"node_id": "n", "host": 5, "port": 1}"#)
        .await
        .assert_envelope(400, "'host' must be a string.");
    for metadata in ["\"free text\"", "[1, 2]", "5", "true"] {
        let body = format!(r#"{{"node_id": "n", "host": "h", "port": 1, "metadata": {metadata}}}"#);
        c.post(REGISTER, &body)
            .await
            .assert_envelope(400, "'metadata' must be a JSON object.");
    }
    assert!(c.listed_ids().await.is_empty(), "nothing was registered");
}

#[tokio::test]
async fn node_id_and_host_limits() {
    let c = TestCenter::in_memory().await;
    let bad_ids = [
        "x".repeat(257),
        "a/b".to_owned(),
        "a\nb".to_owned(),
        "tab\there".to_owned(),
        "nul\u{0}".to_owned(),
        "c1\u{85}".to_owned(),
    ];
    for id in &bad_ids {
        let body = serde_json::json!({"node_id": id, "host": "h", "port": 1}).to_string();
        c.post(REGISTER, &body)
            .await
            .assert_bad_request_naming("'node_id'");
        let body = serde_json::json!({ "node_id": id }).to_string();
        c.post(RENEW, &body)
            .await
            .assert_bad_request_naming("'node_id'");
        c.post(DEREGISTER, &body)
            .await
            .assert_bad_request_naming("'node_id'");
    }
    // 256 bytes of UTF-8 and non-ASCII ids are fine.
    let long = "x".repeat(256);
    assert_eq!(c.register(&long).await.status, StatusCode::OK);
    let a = c.register("agent-é-😀").await;
    assert_eq!(
        a.body,
        "{\"code\":200,\"data\":null,\"message\":\"Node 'agent-\\u00e9-\\ud83d\\ude00' registered successfully.\"}\n"
    );
    assert_eq!(c.renew("agent-é-😀").await.status, StatusCode::OK);

    let body = serde_json::json!({"node_id": "h254", "host": "h".repeat(254), "port": 1});
    c.post(REGISTER, &body.to_string())
        .await
        .assert_bad_request_naming("'host'");
    let body = serde_json::json!({"node_id": "h253", "host": "h".repeat(253), "port": 1});
    assert_eq!(
        c.post(REGISTER, &body.to_string()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn body_and_metadata_size_limits() {
    let limits = Limits {
        max_body_bytes: 1024,
        max_metadata_bytes: 100,
        ..Limits::default()
    };
    let c = TestCenter::with_config(Config {
        limits,
        ..Config::default()
    })
    .await;
    let big = serde_json::json!({"node_id": "n", "host": "h", "port": 1, "pad": "x".repeat(2000)});
    // Without a Content-Length header (streamed body) ...
    c.post(REGISTER, &big.to_string())
        .await
        .assert_envelope(413, "Request body exceeds the limit of 1024 bytes.");
    // ... and with one.
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(REGISTER)
        .header("content-type", "application/json")
        .header("content-length", big.to_string().len())
        .body(Body::from(big.to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(c.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let meta = |n: usize| {
        serde_json::json!({"node_id": "m", "host": "h", "port": 1, "metadata": {"k": "v".repeat(n)}})
            .to_string()
    };
    // {"k":"vvv..."} is 8 bytes plus the value.
    assert_eq!(c.post(REGISTER, &meta(92)).await.status, StatusCode::OK);
    c.post(REGISTER, &meta(93))
        .await
        .assert_bad_request_naming("'metadata'");
}

#[tokio::test]
async fn json_content_types_and_metadata_normalisation() {
    let c = TestCenter::in_memory().await;
    for (i, ct) in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.isek+json",
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"node_id": "c{i}", "host": "h", "port": 1}}"#);
        let a = c.call(Method::POST, REGISTER, Some(ct), body).await;
        assert_eq!(a.status, StatusCode::OK, "{ct}: {}", a.body);
    }
    // Metadata comes back as Flask writes it: keys sorted at every depth, compact,
    // non-ASCII escaped, Python number formats.
    let body = r#"{"node_id": "m", "host": "h", "port": 1, "metadata": {"z": {"b": 1e16, "a": 0.5}, "name": "é", "list": [1, "x", null]}}"#;
    assert_eq!(c.post(REGISTER, body).await.status, StatusCode::OK);
    let list = c.list().await.body;
    assert!(
        list.contains(r#""m":{"expires_at":"#)
            && list.contains(r#","host":"h","metadata":{"list":[1,"x",null],"name":"\u00e9","z":{"a":0.5,"b":1e+16}},"node_id":"m","port":1}"#),
        "{list}"
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json() {
    let c = TestCenter::in_memory().await;
    // (`/` itself redirects to the dashboard: tests/ui.rs.)
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/isek_center/nope"),
        (Method::GET, "/isek_center/register/extra"),
        (Method::DELETE, "/anything"),
    ] {
        c.call(method, path, None, Body::empty())
            .await
            .assert_envelope(404, "The requested URL was not found on the server.");
    }
    for (method, path, allowed) in [
        (Method::GET, RENEW, "POST"),
        (Method::PUT, DEREGISTER, "POST"),
        (Method::POST, LIST, "GET"),
        (Method::DELETE, LIST, "GET"),
    ] {
        let a = c.call(method, path, None, Body::empty()).await;
        a.assert_envelope(405, "The method is not allowed for the requested URL.");
        assert!(a.headers["allow"].to_str().unwrap().contains(allowed));
    }
}

#[tokio::test]
async fn register_replaces_and_deregister_removes() {
    let c = TestCenter::in_memory().await;
    assert_eq!(c.register("a").await.status, StatusCode::OK);
    let first = c.center.revision();
    let body = r#"{"node_id": "a", "host": "other", "port": 2, "metadata": {"v": 2}}"#;
    assert_eq!(c.post(REGISTER, body).await.status, StatusCode::OK);
    assert!(c.center.revision() > first, "an update is a change");
    let list = c.list().await.body;
    assert!(
        list.contains(r#""host":"other","metadata":{"v":2},"node_id":"a","port":2"#),
        "{list}"
    );
    assert_eq!(c.deregister("a").await.status, StatusCode::OK);
    assert_eq!(c.deregister("a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.renew("a").await.status, StatusCode::NOT_FOUND);
    assert!(c.listed_ids().await.is_empty());
}
