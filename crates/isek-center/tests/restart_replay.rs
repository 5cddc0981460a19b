//! Replay after a restart (issue 15 item 3): a client whose clock runs ahead signs
//! with timestamps above the next start's floor, so those signatures used to be
//! replayable once after a restart. The center now stores the horizon of every
//! registration (accepted or refused) and signed deregistration in the same group
//! commit as the row, and restores it at start. The `kill -9` case is in
//! `isek-cli/tests/crash.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use axum::http::StatusCode;
use isek::identity::NodeIdentity;
use isek::wire::proof::{DEREGISTER_OP, ProofRequest, SignedRegisterRequest, unix_millis};
use isek_center::{Config, Security};
use isek_testkit::router::{DEREGISTER, REGISTER, TestCenter};
use isek_testkit::signed::{assert_forbidden, entry, register_body};

/// How far ahead the client's clock runs (inside the 30 s window).
const AHEAD_MS: u64 = 20_000;

/// A registration of `id` signed by `owner` with a clock `ahead_ms` fast, as JSON.
fn ahead(owner: &NodeIdentity, id: &str, port: u16, ahead_ms: u64) -> String {
    let body = SignedRegisterRequest::sign_at(
        owner,
        id,
        "10.0.0.1",
        port,
        Default::default(),
        unix_millis() + ahead_ms,
    );
    serde_json::to_string(&body).unwrap()
}

/// A center on `dir` holding at most `max_nodes`.
async fn on_disk(dir: &Path, max_nodes: Option<usize>) -> TestCenter {
    TestCenter::with_config(Config {
        security: Security {
            max_nodes,
            ..Security::default()
        },
        ..Config::on_disk(dir)
    })
    .await
}

#[tokio::test]
async fn signatures_from_a_clock_ahead_are_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let owner = NodeIdentity::generate();
    let kept = ahead(&owner, "kept", 1, AHEAD_MS);
    let gone = ahead(&owner, "gone", 2, AHEAD_MS);
    let full = ahead(&owner, "refused", 3, AHEAD_MS);
    {
        let c = on_disk(dir.path(), Some(2)).await;
        register_body(&c, &kept).await;
        register_body(&c, &gone).await;
        // Deregistered by a signature (also from the clock ahead).
        let deregister =
            ProofRequest::signed(&owner, DEREGISTER_OP, "gone", unix_millis() + AHEAD_MS + 1);
        let deregister = serde_json::to_string(&deregister).unwrap();
        c.post(DEREGISTER, &deregister)
            .await
            .assert_envelope(200, "Node 'gone' deregistered successfully.");
        // Refused: full (the filler takes the second slot).
        assert_eq!(c.register("filler").await.status, StatusCode::OK);
        let a = c.post(REGISTER, &full).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        c.center.shutdown().await.unwrap();
    }
    let c = on_disk(dir.path(), None).await;
    let before = entry(&c, "kept").await.unwrap();
    // Each is newer than the new start's floor, and refused all the same.
    for (body, what) in [(&kept, "kept"), (&gone, "gone"), (&full, "refused as full")] {
        let a = c.post(REGISTER, body).await;
        assert_forbidden(&a, "replayed");
        assert!(!a.body.contains("lease_token"), "{what}: {}", a.body);
    }
    assert_eq!(entry(&c, "kept").await.as_ref(), Some(&before));
    assert!(entry(&c, "gone").await.is_none());
    assert!(entry(&c, "refused").await.is_none());
    // The owner, signing afresh (its clock still ahead), goes on.
    register_body(&c, &ahead(&owner, "gone", 2, AHEAD_MS + 2)).await;
    register_body(&c, &ahead(&owner, "refused", 3, AHEAD_MS + 2)).await;
    c.center.shutdown().await.unwrap();
}
