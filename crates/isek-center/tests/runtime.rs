//! The node runtime (`isek::runtime`) against a real center served on a loopback
//! socket: renewals, a center that goes away and comes back on the same address
//! (empty, or with its store), shutdown, and a peer view of the center.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use isek::runtime::{Node, NodeState, PeerChange, PeerSync, PeerUpdate, PeerView, PeerViewConfig};
use isek::{IsekCenterRegistry, Registry};
use isek_testkit::agents::card;
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::{DEADLINE, record_states, wait_state, wait_until};

fn client(center: &ServedCenter) -> Arc<IsekCenterRegistry> {
    Arc::new(IsekCenterRegistry::new(center.url()).unwrap())
}

async fn is_listed(registry: &IsekCenterRegistry, node_id: &str) -> bool {
    registry
        .get_available_nodes()
        .await
        .is_ok_and(|nodes| nodes.contains_key(node_id))
}

fn registered_since(state: &NodeState) -> std::time::SystemTime {
    match state {
        NodeState::Registered { since } => *since,
        other => panic!("expected Registered, got {other:?}"),
    }
}

#[tokio::test]
async fn renewals_keep_a_node_alive_on_the_center() {
    let ttl = Duration::from_secs(2);
    let center = ServedCenter::start(isek_center::Config::in_memory(ttl)).await;
    let observer = client(&center);
    let handle = Node::new(client(&center), "127.0.0.1", 9500)
        .node_id("steady")
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    let until = tokio::time::Instant::now() + ttl * 3;
    while tokio::time::Instant::now() < until {
        assert!(is_listed(&observer, "steady").await, "lease lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered_since(&handle.state()), since);
    handle.shutdown().await.unwrap();
    assert!(!is_listed(&observer, "steady").await);
}

#[tokio::test]
async fn a_node_is_back_after_the_center_restarts_empty() {
    let ttl = Duration::from_secs(2);
    let mut center = ServedCenter::start(isek_center::Config::in_memory(ttl)).await;
    let observer = client(&center);
    let handle = Node::new(client(&center), "127.0.0.1", 9501)
        .node_id("phoenix")
        .metadata(card("worker"))
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    let history = record_states(&handle);

    // The center goes away: renewals fail (connection refused).
    center.stop().await;
    wait_state(&handle, "renewals fail", |s| !s.is_registered()).await;
    // It comes back on the same address, having lost every node.
    center.restart(isek_center::Config::in_memory(ttl)).await;
    wait_until("the node is listed again", || {
        is_listed(&observer, "phoenix")
    })
    .await;
    let state = wait_state(
        &handle,
        "registered again",
        |s| matches!(s, NodeState::Registered { since: again } if *again > since),
    )
    .await;
    assert!(state.is_registered());
    let nodes = observer.get_available_nodes().await.unwrap();
    assert_eq!(nodes["phoenix"].metadata, card("worker"));
    let history = history.lock().unwrap().clone();
    assert!(
        !history.iter().any(|s| matches!(s, NodeState::Failed(_))),
        "{history:?}"
    );
    handle.shutdown().await.unwrap();
    assert!(!is_listed(&observer, "phoenix").await);
}

#[tokio::test]
async fn a_node_survives_a_center_outage_longer_than_its_ttl_on_disk() {
    let ttl = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    let config = || isek_center::Config {
        data_dir: Some(PathBuf::from(dir.path())),
        lease_ttl: ttl,
        ..isek_center::Config::default()
    };
    let mut center = ServedCenter::start(config()).await;
    let observer = client(&center);
    let handle = Node::new(client(&center), "127.0.0.1", 9502)
        .node_id("durable")
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    center.stop().await;
    let lost = wait_state(&handle, "the lease is known lost", |s| {
        matches!(s, NodeState::Lost { .. })
    })
    .await;
    match lost {
        NodeState::Lost {
            attempts,
            last_error,
            ..
        } => {
            assert!(attempts >= 1);
            assert!(
                matches!(last_error, Some(isek::Error::Unavailable(_))),
                "{last_error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    center.restart(config()).await;
    wait_state(&handle, "registered again", NodeState::is_registered).await;
    wait_until("the node is listed again", || {
        is_listed(&observer, "durable")
    })
    .await;
    handle.shutdown().await.unwrap();
    assert!(!is_listed(&observer, "durable").await);
}

#[tokio::test]
async fn a_peer_view_of_the_center_converges() {
    let ttl = Duration::from_secs(1);
    let center = ServedCenter::start(isek_center::Config::in_memory(ttl)).await;
    let view = PeerView::start(
        client(&center),
        PeerViewConfig {
            poll_interval: Duration::from_millis(100),
            ..PeerViewConfig::default()
        },
    );
    let mut changes = view.subscribe();
    let start = |id: &'static str, role: &'static str| {
        Node::new(client(&center), "127.0.0.1", 9600)
            .node_id(id)
            .metadata(card(role))
            .ttl(ttl)
            .peer_view(None)
            .start()
    };
    let clean = start("clean", "planner").await.unwrap();
    let crashed = start("crashed", "worker").await.unwrap();
    wait_until("both nodes are seen", || async { view.len() == 2 }).await;
    assert!(
        matches!(view.sync(), PeerSync::Live { .. }),
        "{:?}",
        view.sync()
    );
    assert_eq!(view.peer("clean").unwrap().metadata, card("planner"));
    let workers = view.find(|n| n.metadata.get("role").and_then(|r| r.as_str()) == Some("worker"));
    assert_eq!(workers.len(), 1);

    clean.shutdown().await.unwrap();
    wait_until("the clean leave is seen", || async {
        view.peer("clean").is_none()
    })
    .await;
    drop(crashed);
    wait_until("the crashed node expires", || async { view.is_empty() }).await;

    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        match tokio::time::timeout(DEADLINE, changes.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerUpdate::Change(PeerChange::Joined(n)) => kinds.push(format!("+{}", n.node_id)),
            PeerUpdate::Change(PeerChange::Left(n)) => kinds.push(format!("-{}", n.node_id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    kinds[..2].sort();
    assert_eq!(kinds, ["+clean", "+crashed", "-clean", "-crashed"]);
}
