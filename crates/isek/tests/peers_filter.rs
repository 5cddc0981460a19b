//! A `PeerView` with a filter holds only the peers that match: a peer that
//! starts matching joins, one that stops matching leaves, exactly once each,
//! through a real `MemoryRegistry` and its change stream.

use std::sync::Arc;
use std::time::Duration;

use isek::filter::Filter;
use isek::runtime::PeerUpdate;
use isek::{MemoryRegistry, Metadata, PeerChange, PeerView, PeerViewConfig, Registry};

const DEADLINE: Duration = Duration::from_secs(10);

fn role(role: &str) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.insert("role".into(), role.into());
    metadata
}

/// The next change: (kind, node id, role).
async fn next(
    subscription: &mut isek::runtime::PeerSubscription,
) -> (&'static str, String, String) {
    let update = tokio::time::timeout(DEADLINE, subscription.recv()).await;
    let Ok(Some(PeerUpdate::Change(change))) = update else {
        unreachable!("expected a change, got {update:?}")
    };
    let (kind, node) = match change {
        PeerChange::Joined(node) => ("joined", node),
        PeerChange::Left(node) => ("left", node),
        PeerChange::Updated { current, .. } => ("updated", current),
    };
    let role = node
        .metadata
        .get("role")
        .and_then(|r| r.as_str())
        .unwrap_or("")
        .to_owned();
    (kind, node.node_id, role)
}

#[tokio::test]
async fn peers_move_in_and_out_of_a_filtered_view() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let Ok(filter) = Filter::compile(r#"metadata.role == "planner""#) else {
        unreachable!("compiles")
    };
    let view = PeerView::start(
        memory.clone(),
        PeerViewConfig {
            filter: Some(filter),
            poll_interval: Duration::from_millis(50),
            ..PeerViewConfig::default()
        },
    );
    let mut changes = view.subscribe();
    let register = |id: &'static str, r: &'static str| {
        let memory = memory.clone();
        async move { memory.register_node(id, "127.0.0.1", 9000, role(r)).await }
    };
    assert!(register("a", "planner").await.is_ok());
    assert!(register("b", "critic").await.is_ok());
    assert_eq!(
        next(&mut changes).await,
        ("joined", "a".to_owned(), "planner".to_owned())
    );
    assert!(register("b", "planner").await.is_ok());
    assert_eq!(
        next(&mut changes).await,
        ("joined", "b".to_owned(), "planner".to_owned())
    );
    assert!(register("a", "critic").await.is_ok());
    // The leave carries the last entry that matched.
    assert_eq!(
        next(&mut changes).await,
        ("left", "a".to_owned(), "planner".to_owned())
    );
    assert!(register("a", "executor").await.is_ok());
    assert!(memory.deregister_node("b").await.is_ok());
    assert_eq!(
        next(&mut changes).await,
        ("left", "b".to_owned(), "planner".to_owned())
    );
    assert_eq!(view.peers().len(), 0);
}
