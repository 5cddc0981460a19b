//! The node runtime on a real etcd (started by the test on free ports): re-registration
//! after etcd was away longer than the TTL, and a peer view fed by etcd's watch stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::runtime::{Node, NodeState, PeerSource, PeerSync, PeerView, PeerViewConfig};
use isek::{Metadata, NodeInfo, Registry};
use isek_testkit::agents::card;
use isek_testkit::condition::{DEADLINE, wait_state, wait_until};
use isek_testkit::etcd::{EtcdNamespace, EtcdServer};

/// etcd's shortest lease is 2 s with default election settings.
const TTL: Duration = Duration::from_secs(2);

/// A registry acting for a fresh identity, in namespace `parent`.
async fn registry(etcd: &EtcdNamespace) -> Arc<EtcdRegistry> {
    registry_at(&etcd.endpoint(), etcd.parent()).await
}

/// A registry acting for a fresh identity at `endpoint`, in namespace `parent`.
async fn registry_at(endpoint: &str, parent: &str) -> Arc<EtcdRegistry> {
    let config = EtcdConfig::new([endpoint])
        .parent(parent)
        .ttl(TTL)
        .timeout(Duration::from_millis(500));
    Arc::new(
        EtcdRegistry::connect(config, NodeIdentity::generate())
            .await
            .unwrap(),
    )
}

/// The listing; etcd must answer (a failed listing is not an empty one, so a
/// negated `contains_key` cannot pass against an unreachable etcd).
async fn listed(registry: &EtcdRegistry) -> BTreeMap<String, NodeInfo> {
    registry
        .get_available_nodes()
        .await
        .expect("etcd answers the listing")
}

/// For waits across an outage: the listing, empty while etcd does not answer.
async fn listed_once_up(registry: &EtcdRegistry) -> BTreeMap<String, NodeInfo> {
    registry.get_available_nodes().await.unwrap_or_default()
}

#[tokio::test]
async fn a_node_outlives_an_etcd_outage_longer_than_its_ttl() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let node_registry = registry_at(&etcd.endpoint(), "outage").await;
    let observer = registry_at(&etcd.endpoint(), "outage").await;
    let handle = Node::new(node_registry, "127.0.0.1", 9300)
        .node_id("durable")
        .metadata(card("worker"))
        .ttl(TTL)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    assert!(listed(&observer).await.contains_key("durable"));

    etcd.stop();
    wait_state(&handle, "the lease is known lost", |s| {
        matches!(s, NodeState::Lost { .. })
    })
    .await;
    etcd.restart().await.unwrap();
    wait_state(&handle, "registered again", NodeState::is_registered).await;
    wait_until("the node is listed again", || async {
        listed_once_up(&observer).await.contains_key("durable")
    })
    .await;
    handle.shutdown().await.unwrap();
    assert!(!listed(&observer).await.contains_key("durable"));
}

#[tokio::test]
async fn a_peer_view_follows_etcd_through_its_watch_stream() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let view = PeerView::start(
        registry_at(&etcd.endpoint(), "peers").await,
        PeerViewConfig {
            // Polling would take minutes: any change seen proves the stream.
            poll_interval: Duration::from_secs(3600),
            ..PeerViewConfig::default()
        },
    );
    let mut sync = view.sync_changes();
    tokio::time::timeout(DEADLINE, sync.wait_for(|s| *s != PeerSync::Pending))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.sync(),
        PeerSync::Live {
            source: PeerSource::Stream
        }
    );

    let endpoint = etcd.endpoint();
    let start = |id: &'static str, role: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            Node::new(registry_at(&endpoint, "peers").await, "127.0.0.1", 9400)
                .node_id(id)
                .metadata(card(role))
                .ttl(TTL)
                .peer_view(None)
                .start()
                .await
                .unwrap()
        }
    };
    let clean = start("clean", "planner").await;
    let crashed = start("crashed", "worker").await;
    wait_until("both nodes are seen", || async { view.len() == 2 }).await;
    assert!(view.revision() > 0, "etcd numbers its changes");
    let workers = view.find(|n| n.metadata.get("role").and_then(|r| r.as_str()) == Some("worker"));
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].node_id, "crashed");

    // Deregistration is seen at once; a crashed node at its lease deadline.
    clean.shutdown().await.unwrap();
    wait_until("the clean leave is seen", || async {
        view.peer("clean").is_none()
    })
    .await;
    drop(crashed);
    wait_until("the crashed node expires", || async { view.is_empty() }).await;

    // Cut the stream (etcd goes away and comes back): the view converges again.
    etcd.stop();
    etcd.restart().await.unwrap();
    let late = start("late", "reviewer").await;
    wait_until("the view converges after the cut", || async {
        view.peers().keys().map(String::as_str).collect::<Vec<_>>() == ["late"]
    })
    .await;
    late.shutdown().await.unwrap();
    wait_until("the last leave is seen", || async { view.is_empty() }).await;
}

#[tokio::test]
async fn an_id_held_by_another_identity_is_refused_and_a_deleted_entry_comes_back() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let owner_identity = NodeIdentity::generate();
    let config = etcd.config().ttl(TTL).timeout(Duration::from_millis(500));
    let owner = Arc::new(
        EtcdRegistry::connect(config.clone(), owner_identity.clone())
            .await
            .unwrap(),
    );
    let handle = Node::new(owner, "127.0.0.1", 9500)
        .node_id("taken")
        .ttl(TTL)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = match handle.state() {
        NodeState::Registered { since } => since,
        other => panic!("{other:?}"),
    };

    // Another identity cannot take the id: start fails instead of fighting over it.
    let intruder = registry(&etcd).await;
    let error = Node::new(intruder.clone(), "127.0.0.1", 9501)
        .node_id("taken")
        .ttl(TTL)
        .peer_view(None)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, isek::Error::Conflict(_)), "{error:?}");

    // The owner's other process (same identity) removes the entry: the node comes back.
    let other_process = EtcdRegistry::connect(config, owner_identity).await.unwrap();
    other_process.deregister_node("taken").await.unwrap();
    wait_state(
        &handle,
        "registered again",
        |s| matches!(s, NodeState::Registered { since: again } if *again > since),
    )
    .await;
    wait_until("the entry is back", || async {
        listed(&intruder).await.contains_key("taken")
    })
    .await;
    handle.shutdown().await.unwrap();
    assert!(!listed(&intruder).await.contains_key("taken"));
}

/// Metadata with an A2A card whose skills have these ids.
fn skills(ids: &[&str]) -> Metadata {
    let skills: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": id, "description": id, "tags": []}))
        .collect();
    let mut metadata = Metadata::new();
    metadata.insert("agent_card".into(), serde_json::json!({ "skills": skills }));
    metadata
}

#[tokio::test]
async fn a_filtered_peer_view_on_etcd_evaluates_the_filter_on_the_client() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let filter =
        isek::filter::Filter::compile(r#""web-search" in metadata.agent_card.skills.map(s, s.id)"#)
            .unwrap();
    let view = PeerView::start(
        registry(&etcd).await,
        PeerViewConfig {
            filter: Some(filter),
            poll_interval: Duration::from_secs(3600),
            ..PeerViewConfig::default()
        },
    );
    let searcher = registry(&etcd).await;
    let coder = registry(&etcd).await;
    searcher
        .register_node(
            "searcher",
            "127.0.0.1",
            9500,
            skills(&["web-search", "code"]),
        )
        .await
        .unwrap();
    coder
        .register_node("coder", "127.0.0.1", 9501, skills(&["code"]))
        .await
        .unwrap();
    wait_until("the searcher is seen", || async {
        view.peer("searcher").is_some()
    })
    .await;
    assert!(view.peer("coder").is_none());
    // Registered again without the skill, the searcher leaves; with it, the coder joins.
    searcher
        .register_node("searcher", "127.0.0.1", 9500, skills(&["code"]))
        .await
        .unwrap();
    coder
        .register_node("coder", "127.0.0.1", 9501, skills(&["web-search"]))
        .await
        .unwrap();
    wait_until("the filtered view swapped them", || async {
        view.peers().keys().map(String::as_str).collect::<Vec<_>>() == ["coder"]
    })
    .await;
}
