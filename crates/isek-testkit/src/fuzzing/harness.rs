//! In-memory centers behind their real router, one per [`Settings`], shared by every
//! input of a fuzzing process (or of one test).
//!
//! Each center runs with small [`LIMITS`] so that inputs of a few KiB reach every size
//! check, and one-hour leases so nothing expires during a run. Between inputs its
//! state is put back to exactly its two residents, [`UNSIGNED_ID`] and [`SIGNED_ID`]
//! (owned by a key nobody outside this module holds, with no lease token), so every
//! input sees the same center and a crash reproduces from its input alone.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use isek::identity::NodeIdentity;
use isek_center::record::Owner;
use isek_center::{Center, Config, Deregister, Limits, NodeRecord, Register, Security, app};
use tokio::runtime::Runtime;
use tower::ServiceExt;

use super::input::ADMIN_TOKEN;

/// The unsigned node every center holds between inputs (the `center_responses.txt`
/// samples use this id).
pub const UNSIGNED_ID: &str = "n1";

/// The signed node every center holds between inputs: only the admin token may
/// remove it, nothing the fuzzer can send may change it.
pub const SIGNED_ID: &str = "s1";

/// How many nodes a center holds between inputs.
pub const RESIDENTS: usize = 2;

/// Limits small enough for libFuzzer's default input sizes.
pub const LIMITS: Limits = Limits {
    max_body_bytes: 2048,
    max_metadata_bytes: 256,
    max_node_id_bytes: 16,
    max_host_bytes: 32,
};

/// The security settings of one fuzzed center.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// An admin token ([`ADMIN_TOKEN`]) is configured.
    pub admin_token: bool,
    /// `--require-signatures`.
    pub require_signatures: bool,
    /// `--max-nodes`.
    pub max_nodes: Option<usize>,
}

impl Settings {
    /// Bit 0: admin token; bit 1: require signatures; bits 2-3: no node cap, a cap
    /// the residents fill, a cap with room for one more node, no cap.
    pub fn decode(byte: u8) -> Self {
        Self {
            admin_token: byte & 1 != 0,
            require_signatures: byte & 0b10 != 0,
            max_nodes: match (byte >> 2) & 0b11 {
                1 => Some(RESIDENTS),
                2 => Some(RESIDENTS + 1),
                _ => None,
            },
        }
    }

    /// The slot of these settings among the process's centers.
    fn slot(self) -> usize {
        let cap = match self.max_nodes {
            None => 0,
            Some(RESIDENTS) => 1,
            Some(_) => 2,
        };
        usize::from(self.admin_token) | usize::from(self.require_signatures) << 1 | cap << 2
    }

    /// The center's configuration.
    pub fn config(self) -> Config {
        let mut security = Security {
            require_signatures: self.require_signatures,
            max_nodes: self.max_nodes,
            ..Security::default()
        };
        if self.admin_token {
            security = security.with_admin_token(ADMIN_TOKEN);
        }
        Config {
            limits: LIMITS,
            security,
            ..Config::in_memory(Duration::from_secs(3600))
        }
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

/// A center, its router and the runtime that drives them.
pub struct Harness {
    /// Current-thread runtime: the center's tasks run only while a request is being
    /// driven, so inputs cannot interleave.
    runtime: Runtime,
    /// The real router of the center.
    router: Router,
    /// The same center, for oracles and for restoring the state between inputs.
    center: Center,
    /// What it was started with.
    settings: Settings,
}

/// The record [`UNSIGNED_ID`] always has between inputs.
pub fn unsigned_record() -> NodeRecord {
    NodeRecord::new("127.0.0.1", 9000, r#"{"name":"agent-1","role":"planner"}"#)
}

/// The record [`SIGNED_ID`] always has between inputs, with its owner.
pub fn signed_record() -> NodeRecord {
    static OWNER: OnceLock<Arc<Owner>> = OnceLock::new();
    let owner = OWNER.get_or_init(|| {
        let identity = NodeIdentity::generate();
        Arc::new(Owner::new(identity.public_key().clone(), None))
    });
    NodeRecord::new("10.0.0.1", 7000, r#"{"role":"victim"}"#).with_owner(Some(Arc::clone(owner)))
}

/// Whether `id`'s record in `center` is `expected`, owner included.
fn intact(center: &Center, id: &str, expected: &NodeRecord) -> bool {
    center
        .get(id)
        .is_some_and(|(record, _)| record == *expected)
}

impl Harness {
    /// The process-wide center with `settings` (started on first use).
    pub fn get(settings: Settings) -> &'static Self {
        static HARNESSES: [OnceLock<Harness>; 12] = [const { OnceLock::new() }; 12];
        HARNESSES[settings.slot()].get_or_init(|| Self::start(settings))
    }

    /// Starts a center with `settings` holding its residents.
    fn start(settings: Settings) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let (router, center) = runtime
            .block_on(app(settings.config()))
            .unwrap_or_else(|e| panic!("center: {e}"));
        let harness = Self {
            runtime,
            router,
            center,
            settings,
        };
        harness.restore(None);
        harness
    }

    /// The center, for oracles.
    pub fn center(&self) -> &Center {
        &self.center
    }

    /// What the center was started with.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Whether `id` is a resident and its record is still the one it started with.
    pub fn resident_intact(&self, id: &str) -> bool {
        match id {
            UNSIGNED_ID => intact(&self.center, id, &unsigned_record()),
            SIGNED_ID => intact(&self.center, id, &signed_record()),
            _ => false,
        }
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
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("response body: {e}"))
                .to_vec();
            Answer {
                status,
                content_type,
                body,
            }
        })
    }

    /// Puts the center back to holding exactly its residents with their records:
    /// removes `registered` (a node an input added) and registers a resident again
    /// (as the operator) when an input removed or replaced it.
    pub fn restore(&self, registered: Option<&str>) {
        self.block_on(async {
            if let Some(id) = registered.filter(|id| ![UNSIGNED_ID, SIGNED_ID].contains(id)) {
                let removed = self.center.deregister(Deregister::by_operator(id)).await;
                assert!(
                    matches!(removed, Ok(true)),
                    "deregister of a node just registered: {removed:?}"
                );
            }
            for (id, record) in [
                (UNSIGNED_ID, unsigned_record()),
                (SIGNED_ID, signed_record()),
            ] {
                if !intact(&self.center, id, &record) {
                    let put = self
                        .center
                        .register(Register::by_operator(id, record))
                        .await;
                    assert!(put.is_ok(), "re-register resident {id}: {put:?}");
                }
            }
        });
        assert_eq!(
            self.center.live_count(),
            RESIDENTS,
            "the center holds more or less than its residents"
        );
    }
}
