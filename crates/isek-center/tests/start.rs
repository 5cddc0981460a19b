//! What a center promises from the moment `app`/`Center::start` returns: a node that
//! signs its registration right then is accepted, however fast the start was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use isek::identity::NodeIdentity;
use isek::wire::proof::SignedRegisterRequest;
use isek_center::Config;
use serde_json::Map;
use tower::ServiceExt;

/// The replay floor is the center's start (Unix ms) and only later timestamps pass.
/// An in-memory center starts well within one millisecond, so a registration signed
/// right after the start used to carry the floor's own millisecond and get a 403
/// "not newer than" (two CI failures in `security.rs`). Many starts make that
/// coincidence near-certain on the old code.
#[tokio::test]
async fn a_registration_signed_right_after_the_start_is_accepted() {
    let identity = NodeIdentity::generate();
    for round in 0..200 {
        let (router, center) = isek_center::app(Config::default()).await.unwrap();
        let body = SignedRegisterRequest::sign(&identity, "n", "127.0.0.1", 1, Map::new());
        let request = Request::post("/isek_center/register")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_string(&body).unwrap()))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let text = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "round {round}: {}",
            String::from_utf8_lossy(&text)
        );
        center.shutdown().await.unwrap();
    }
}
