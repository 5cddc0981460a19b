//! A center behind its router, without a socket (feature `center`): requests through
//! `oneshot`, answers with status, headers and raw body, and the envelope checks the
//! handler and security tests share.
//!
//! Like the tests that call them, these helpers fail the test (panic) on anything
//! they cannot do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use isek_center::{Center, Config};
use tower::ServiceExt;

/// One answer: status, headers and the raw body text.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: String,
}

impl Answer {
    /// Asserts status, envelope code and exact message of a `data: null` envelope.
    #[track_caller]
    pub fn assert_envelope(&self, status: u16, message: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let expected = isek_center::render::envelope_without_data(status, message);
        assert_eq!(self.body, expected);
        assert_eq!(self.headers["content-type"], "application/json");
    }

    /// Asserts a 400 envelope whose message mentions `needle`.
    #[track_caller]
    pub fn assert_bad_request_naming(&self, needle: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "body: {}", self.body);
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        assert_eq!(v["code"], 400);
        assert_eq!(v["data"], serde_json::Value::Null);
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} should name {needle}");
        assert!(self.body.ends_with("}\n"));
    }
}

/// A center and its router.
pub struct TestCenter {
    /// The router under test.
    pub router: Router,
    /// The center behind it.
    pub center: Center,
}

impl TestCenter {
    /// An in-memory center with default settings.
    pub async fn in_memory() -> Self {
        Self::with_config(Config::default()).await
    }

    /// An in-memory center with a short TTL.
    pub async fn with_ttl(ttl: Duration) -> Self {
        Self::with_config(Config::in_memory(ttl)).await
    }

    /// A center with `config`.
    pub async fn with_config(config: Config) -> Self {
        let (router, center) = isek_center::app(config).await.unwrap();
        Self { router, center }
    }

    /// Sends one request.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    /// Sends a request built by the test (headers of its own, e.g. `authorization`).
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// POSTs a JSON body.
    pub async fn post(&self, path: &str, body: &str) -> Answer {
        self.call(
            Method::POST,
            path,
            Some("application/json"),
            body.to_owned(),
        )
        .await
    }

    /// Registers `id` with host `h`, port 1.
    pub async fn register(&self, id: &str) -> Answer {
        let body = serde_json::json!({"node_id": id, "host": "h", "port": 1}).to_string();
        self.post(REGISTER, &body).await
    }

    /// Renews `id`.
    pub async fn renew(&self, id: &str) -> Answer {
        let body = serde_json::json!({ "node_id": id }).to_string();
        self.post(RENEW, &body).await
    }

    /// Deregisters `id`.
    pub async fn deregister(&self, id: &str) -> Answer {
        let body = serde_json::json!({ "node_id": id }).to_string();
        self.post(DEREGISTER, &body).await
    }

    /// Registers `node` (id, host, port and metadata) unsigned.
    pub async fn register_node(&self, node: &isek::NodeInfo) -> Answer {
        let body = serde_json::json!({
            "node_id": node.node_id,
            "host": node.host,
            "port": node.port,
            "metadata": node.metadata,
        });
        self.post(REGISTER, &body.to_string()).await
    }

    /// GETs `path` (query included).
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, Body::empty()).await
    }

    /// GETs `path` with the query parameters `params`, URL-encoded.
    pub async fn get_with(&self, path: &str, params: &[(&str, &str)]) -> Answer {
        let mut query = String::new();
        for (key, value) in params {
            query.push(if query.is_empty() { '?' } else { '&' });
            query.push_str(key);
            query.push('=');
            query.extend(form_urlencoded::byte_serialize(value.as_bytes()));
        }
        self.get(&format!("{path}{query}")).await
    }

    /// GETs the listing.
    pub async fn list(&self) -> Answer {
        self.call(Method::GET, LIST, None, Body::empty()).await
    }

    /// Ids in the listing, in body order.
    pub async fn listed_ids(&self) -> Vec<String> {
        let answer = self.list().await;
        assert_eq!(answer.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        v["data"]["available_nodes"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
}

/// Register path.
pub const REGISTER: &str = "/isek_center/register";
/// Renew path.
pub const RENEW: &str = "/isek_center/renew";
/// Deregister path.
pub const DEREGISTER: &str = "/isek_center/deregister";
/// Listing path.
pub const LIST: &str = "/isek_center/available_nodes";

/// `body` with every `"expires_at":<number>` value replaced by `X`, and the values.
pub fn mask_expires_at(body: &str) -> (String, Vec<f64>) {
    let key = "\"expires_at\":";
    let mut out = String::new();
    let mut values = Vec::new();
    let mut rest = body;
    while let Some(pos) = rest.find(key) {
        out.push_str(&rest[..pos + key.len()]);
        rest = &rest[pos + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-')))
            .unwrap_or(rest.len());
        values.push(rest[..end].parse().unwrap());
        out.push('X');
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, values)
}

/// Now in Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
