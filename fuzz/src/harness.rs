//! One in-memory center behind its real router, and the decoding of fuzz input into
//! an HTTP request for it.
//!
//! Input layout: byte 0 picks the request shape, the rest is the body.
//! - bits 0-1: endpoint (register, renew, deregister, `GET register` = 405);
//! - bits 2-4: `Content-Type` (see [`CONTENT_TYPES`]; index 7 = no header);
//! - bit 5: send a correct `Content-Length` header.
//!
//! The center runs with small [`Limits`] so that inputs of a few KiB reach every size
//! check, and a one-hour lease so nothing expires during a run. Between inputs the
//! state is put back to exactly one node, [`RESIDENT_ID`], so every input sees the
//! same center (a crash reproduces from its input alone).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use http_body_util::BodyExt;
use isek_center::{Center, Config, Limits, NodeRecord, app};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// The node the center always holds between inputs, so renew and deregister can hit
/// a live node (the `center_responses.txt` samples use this id).
pub const RESIDENT_ID: &str = "n1";

/// Limits small enough for libFuzzer's default input sizes.
pub const LIMITS: Limits = Limits {
    max_body_bytes: 2048,
    max_metadata_bytes: 256,
    max_node_id_bytes: 16,
    max_host_bytes: 32,
};

/// `Content-Type` values the selector byte chooses from; `None` = no header.
pub const CONTENT_TYPES: [Option<&[u8]>; 8] = [
    Some(b"application/json"),
    Some(b"application/json; charset=utf-8"),
    Some(b"APPLICATION/JSON"),
    Some(b"application/vnd.isek+json"),
    Some(b"text/plain"),
    Some(b"application/jsonx"),
    Some(b"application/json;\xff"),
    None,
];

/// Which endpoint an input targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /isek_center/register`.
    Register,
    /// `POST /isek_center/renew`.
    Renew,
    /// `POST /isek_center/deregister`.
    Deregister,
    /// `GET /isek_center/register`: must be a 405 envelope whatever the body.
    WrongMethod,
}

/// A decoded fuzz input.
#[derive(Debug, Clone)]
pub struct FuzzRequest<'a> {
    /// Target endpoint.
    pub endpoint: Endpoint,
    /// `Content-Type` header value, if any.
    pub content_type: Option<&'static [u8]>,
    /// Whether to send `Content-Length`.
    pub content_length: bool,
    /// The body bytes.
    pub body: &'a [u8],
}

impl<'a> FuzzRequest<'a> {
    /// Splits the selector byte from the body; `None` for empty input.
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&selector, body) = data.split_first()?;
        let endpoint = match selector & 0b11 {
            0 => Endpoint::Register,
            1 => Endpoint::Renew,
            2 => Endpoint::Deregister,
            _ => Endpoint::WrongMethod,
        };
        Some(Self {
            endpoint,
            content_type: CONTENT_TYPES[usize::from((selector >> 2) & 0b111)],
            content_length: selector & 0b10_0000 != 0,
            body,
        })
    }

    /// The HTTP request.
    pub fn to_http(&self) -> Request<Body> {
        let (method, path) = match self.endpoint {
            Endpoint::Register => (Method::POST, "/isek_center/register"),
            Endpoint::Renew => (Method::POST, "/isek_center/renew"),
            Endpoint::Deregister => (Method::POST, "/isek_center/deregister"),
            Endpoint::WrongMethod => (Method::GET, "/isek_center/register"),
        };
        let mut request = Request::new(Body::from(self.body.to_vec()));
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().unwrap_or_default();
        if let Some(ct) = self.content_type {
            if let Ok(value) = HeaderValue::from_bytes(ct) {
                request.headers_mut().insert(header::CONTENT_TYPE, value);
            }
        }
        if self.content_length {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        request
    }
}

/// An answer: status, `Content-Type`, body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header, if any.
    pub content_type: Option<Vec<u8>>,
    /// Full body.
    pub body: Vec<u8>,
}

/// The runtime, router and center shared by every input of one fuzzing process.
pub struct Harness {
    /// Current-thread runtime: the center's writer and reaper tasks run only while
    /// a request is being driven, so inputs cannot interleave.
    runtime: Runtime,
    /// The real router of the center.
    router: Router,
    /// The same center, for oracles and for restoring the state between inputs.
    center: Center,
}

/// The record [`RESIDENT_ID`] always has between inputs.
pub fn resident_record() -> NodeRecord {
    NodeRecord::new("127.0.0.1", 9000, r#"{"name":"agent-1","role":"planner"}"#)
}

impl Harness {
    /// The process-wide harness (started on first use).
    pub fn get() -> &'static Self {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            let config = Config {
                limits: LIMITS,
                ..Config::in_memory(Duration::from_secs(3600))
            };
            let (router, center) = runtime
                .block_on(app(config))
                .unwrap_or_else(|e| panic!("center: {e}"));
            let harness = Harness {
                runtime,
                router,
                center,
            };
            harness.restore(None);
            harness
        })
    }

    /// The center, for oracles.
    pub fn center(&self) -> &Center {
        &self.center
    }

    /// Runs `future` to completion on the harness runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Sends one request through the router and collects the answer.
    pub fn send(&self, request: Request<Body>) -> Answer {
        self.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|e| match e {});
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes().to_vec());
            let body = response
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|e| panic!("response body: {e}"))
                .to_bytes()
                .to_vec();
            Answer {
                status,
                content_type,
                body,
            }
        })
    }

    /// Puts the center back to holding exactly [`RESIDENT_ID`] with its record:
    /// removes `registered` (a node an input added) and re-registers the resident
    /// node when an input removed or replaced it.
    pub fn restore(&self, registered: Option<&str>) {
        self.block_on(async {
            if let Some(id) = registered.filter(|id| *id != RESIDENT_ID) {
                let removed = self
                    .center
                    .deregister(isek_center::Deregister::by_operator(id))
                    .await;
                assert!(
                    matches!(removed, Ok(true)),
                    "deregister of a node just registered: {removed:?}"
                );
            }
            let intact = self
                .center
                .get(RESIDENT_ID)
                .is_some_and(|(record, _)| record == resident_record());
            if !intact {
                let put = self
                    .center
                    .register(isek_center::Register::by_operator(
                        RESIDENT_ID,
                        resident_record(),
                    ))
                    .await;
                assert!(put.is_ok(), "re-register resident: {put:?}");
            }
        });
        assert_eq!(
            self.center.live_count(),
            1,
            "center holds more than the resident"
        );
    }
}
