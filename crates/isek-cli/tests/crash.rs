//! Durability of a real `isek center` process: acknowledged writes survive `kill -9`
//! and a clean SIGTERM shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::BTreeMap;

use harness::{CenterProcess, has_files, unix_now};
use isek::{IsekCenterRegistry, Metadata, NodeInfo, Registry};
use serde_json::json;

/// Registrations acknowledged before the crash.
const NODES: usize = 200;
/// Of those, deregistrations acknowledged before the crash.
const REMOVED: usize = 20;

/// Metadata of node `i`, distinct per node.
fn metadata(i: usize) -> Metadata {
    json!({"name": format!("agent-{i}"), "card": {"index": i, "tags": ["x", i % 7]}})
        .as_object()
        .unwrap()
        .clone()
}

/// Registers `NODES` nodes concurrently, then deregisters the first `REMOVED`;
/// every call must be acknowledged.
async fn write_nodes(url: &str) {
    let registry = IsekCenterRegistry::new(url).unwrap();
    let registrations = (0..NODES).map(|i| {
        let registry = registry.clone();
        async move {
            registry
                .register_node(
                    &format!("node-{i:04}"),
                    "10.1.2.3",
                    20_000 + i as u16,
                    metadata(i),
                )
                .await
        }
    });
    for result in futures::future::join_all(registrations).await {
        result.unwrap();
    }
    let removals = (0..REMOVED).map(|i| {
        let registry = registry.clone();
        async move { registry.deregister_node(&format!("node-{i:04}")).await }
    });
    for result in futures::future::join_all(removals).await {
        result.unwrap();
    }
}

/// Lists the center at `url`.
async fn list(url: &str) -> BTreeMap<String, NodeInfo> {
    IsekCenterRegistry::new(url)
        .unwrap()
        .get_available_nodes()
        .await
        .unwrap()
}

/// Checks the listing holds exactly the nodes written by [`write_nodes`].
fn assert_all_present(nodes: &BTreeMap<String, NodeInfo>) {
    assert_eq!(nodes.len(), NODES - REMOVED);
    for i in 0..NODES {
        let id = format!("node-{i:04}");
        if i < REMOVED {
            assert!(
                !nodes.contains_key(&id),
                "{id} was deregistered but came back"
            );
            continue;
        }
        let node = nodes.get(&id).unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(node.host, "10.1.2.3");
        assert_eq!(node.port, 20_000 + i as u16);
        assert_eq!(node.metadata, metadata(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let data_dir = data_dir.to_str().unwrap();

    let mut center = CenterProcess::start(&["--data-dir", data_dir]);
    write_nodes(&center.url).await;
    // The deadlines before the crash: a restored lease must be a new one, later than
    // these (a 30 s lease kept from before also lies in the future).
    let before: BTreeMap<String, f64> = list(&center.url)
        .await
        .into_iter()
        .map(|(id, node)| (id, node.expires_at.unwrap()))
        .collect();
    let status = center.kill_9();
    assert!(!status.success());
    assert!(has_files(dir.path().join("store").as_path()));

    let restart = unix_now();
    let restarted = CenterProcess::start(&["--data-dir", data_dir]);
    let nodes = list(&restarted.url).await;
    assert_all_present(&nodes);
    // Every restored node got a fresh full lease (30 s from its restart, the default
    // TTL), so later than the deadline it had before the crash.
    for (id, node) in &nodes {
        let expires = node.expires_at.unwrap();
        assert!(
            expires > before[id],
            "{id} restored with its old lease: {expires} <= {}",
            before[id]
        );
        assert!(
            expires >= restart + 30.0 - 0.001,
            "{id}: {expires} is not a full lease from the restart at {restart}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();

    let mut center = CenterProcess::start(&["--data-dir", data_dir]);
    write_nodes(&center.url).await;
    let status = center.signal_and_wait("TERM");
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        center.stderr()
    );

    let restarted = CenterProcess::start(&["--data-dir", data_dir]);
    assert_all_present(&list(&restarted.url).await);
}

/// POSTs `body` to `url` + `path`; returns the status and the envelope's message.
async fn post(url: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let envelope: serde_json::Value = response.json().await.unwrap();
    (status, envelope["message"].as_str().unwrap().to_owned())
}

/// A signed node's owner key and its lease token are acknowledged writes too: after
/// `kill -9` and a restart on the same directory, the token still renews, another key
/// still cannot take the node over, and the owner's key still acts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_owner_and_its_lease_token_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let data_dir = data_dir.to_str().unwrap();
    let owner_key = isek::identity::NodeIdentity::generate();

    let mut center = CenterProcess::start(&["--data-dir", data_dir]);
    let owner = IsekCenterRegistry::new(&center.url)
        .unwrap()
        .with_identity(owner_key.clone());
    owner
        .register_node("owned", "10.0.0.1", 9000, Metadata::new())
        .await
        .unwrap();
    let token = owner
        .lease_token("owned")
        .expect("a signed registration's token");
    assert!(!center.kill_9().success());

    let restarted = CenterProcess::start(&["--data-dir", data_dir]);
    let url = restarted.url.as_str();
    // The token from before the crash renews.
    let (status, message) = post(
        url,
        "/isek_center/renew",
        &json!({"node_id": "owned", "lease_token": token}),
    )
    .await;
    assert_eq!(
        (status, message.as_str()),
        (200, "Lease for node 'owned' renewed successfully.")
    );
    // Another token does not.
    let (status, _) = post(
        url,
        "/isek_center/renew",
        &json!({"node_id": "owned", "lease_token": "A".repeat(43)}),
    )
    .await;
    assert_eq!(status, 403);
    // Another key cannot overwrite, renew or deregister it; unsigned calls neither.
    let intruder = IsekCenterRegistry::new(url)
        .unwrap()
        .with_identity(isek::identity::NodeIdentity::generate());
    let refused = intruder
        .register_node("owned", "10.6.6.6", 6666, Metadata::new())
        .await;
    assert!(
        matches!(refused, Err(isek::Error::PermissionDenied(_))),
        "{refused:?}"
    );
    let unsigned = IsekCenterRegistry::new(url).unwrap();
    let refused = unsigned.deregister_node("owned").await;
    assert!(
        matches!(refused, Err(isek::Error::PermissionDenied(_))),
        "{refused:?}"
    );
    let listed = list(url).await;
    assert_eq!(
        (listed["owned"].host.as_str(), listed["owned"].port),
        ("10.0.0.1", 9000)
    );
    // The owner's key (a new client: no token) still acts on it.
    let owner = IsekCenterRegistry::new(url)
        .unwrap()
        .with_identity(owner_key);
    owner.lease_refresh("owned").await.unwrap();
    owner.deregister_node("owned").await.unwrap();
    assert!(list(url).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_from_a_clock_ahead_are_not_replayable_after_kill_9() {
    // Issue 15 item 3: a client clock 20 s ahead signs above the next start's floor;
    // the registration's horizon is stored in its commit, so kill -9 loses nothing.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let data_dir = data_dir.to_str().unwrap();
    let owner = isek::identity::NodeIdentity::generate();
    let registration = serde_json::to_value(isek::wire::proof::SignedRegisterRequest::sign_at(
        &owner,
        "ahead",
        "10.0.0.1",
        9000,
        Metadata::new(),
        isek::wire::proof::unix_millis() + 20_000,
    ))
    .unwrap();

    let mut center = CenterProcess::start(&["--data-dir", data_dir]);
    let (status, body) = post(&center.url, "/isek_center/register", &registration).await;
    assert_eq!(status, 200, "{body}");
    assert!(!center.kill_9().success());

    let restarted = CenterProcess::start(&["--data-dir", data_dir]);
    let (status, body) = post(&restarted.url, "/isek_center/register", &registration).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("replayed"), "{body}");
    assert!(!body.contains("lease_token"), "{body}");
}
