//! `GET /openapi.json`: an OpenAPI 3.1 document that describes every endpoint the
//! router serves (the dashboard's static files aside), with the envelope on every
//! error status. schemathesis (`scripts/schemathesis.sh`) checks live answers
//! against it; this keeps the document complete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use isek_center::Config;
use serde_json::Value;
use tower::ServiceExt;

/// GETs `path` from a fresh in-memory center: status, content type, body.
async fn get(path: &str) -> (StatusCode, String, String) {
    let (router, center) = isek_center::app(Config::default()).await.unwrap();
    let response = router
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    center.shutdown().await.unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_endpoint() {
    let (status, content_type, text) = get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/isek_center/register", "post"),
        ("/isek_center/renew", "post"),
        ("/isek_center/deregister", "post"),
        ("/isek_center/available_nodes", "get"),
        ("/v1/nodes", "get"),
        ("/v1/agents", "get"),
        ("/v1/watch", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} undescribed"
        );
    }
    assert_eq!(paths.len(), expected.len(), "{:?}", paths.keys());
}

#[tokio::test]
async fn every_error_status_is_described_with_the_envelope() {
    let (_, _, text) = get("/openapi.json").await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut errors = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let code: u16 = status.parse().unwrap();
                if code < 400 || (path == "/readyz" || path == "/v1/watch") {
                    continue;
                }
                errors += 1;
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                // A 410 is the envelope whose data names the current revision.
                let expected = if code == 410 {
                    "#/components/schemas/GoneAnswer"
                } else {
                    "#/components/schemas/Envelope"
                };
                assert_eq!(schema, expected, "{method} {path} {status}");
            }
        }
    }
    assert!(errors >= 14, "{errors}");
    // The envelope's `data` is exactly null.
    let envelope = &doc["components"]["schemas"]["Envelope"];
    assert_eq!(envelope["properties"]["data"]["type"], "null", "{envelope}");
    let required: Vec<&str> = envelope["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["code", "data", "message"]);
}
