//! The node runtime against a real in-process registry: registration, renewal, lease
//! loss, outages, shutdown and the peer view (polling fallback).
//!
//! Outages are made by [`FaultInjector`], a wrapper that makes every call of a real
//! [`MemoryRegistry`] fail with `Unavailable` while switched on; everything else is the
//! real thing. Waits are bounded polls of a condition, never timed assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use isek::runtime::{
    Backoff, Node, NodeState, PeerChange, PeerSource, PeerSync, PeerUpdate, PeerView,
    PeerViewConfig,
};
use isek::{Error, MemoryRegistry, Metadata, NodeInfo, Registry, Result};
use isek_testkit::agents::card;
use isek_testkit::condition::{DEADLINE, record_states, wait_state, wait_until};

/// Fault injection only: forwards to a real [`MemoryRegistry`] unless switched "down"
/// (every call fails as an unreachable registry would), "frozen" (every call hangs, as
/// against a stopped process) or "denied" (every call is refused as unauthorised).
struct FaultInjector {
    /// The real registry behind.
    inner: Arc<MemoryRegistry>,
    /// Whether calls currently fail.
    down: AtomicBool,
    /// Whether calls currently hang.
    frozen: AtomicBool,
    /// Whether calls are currently refused as unauthorised.
    denied: AtomicBool,
}

impl FaultInjector {
    fn new(inner: Arc<MemoryRegistry>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            denied: AtomicBool::new(false),
        })
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    fn set_denied(&self, denied: bool) {
        self.denied.store(denied, Ordering::SeqCst);
    }

    async fn check(&self) -> Result<()> {
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.denied.load(Ordering::SeqCst) {
            return Err(Error::PermissionDenied(
                "fault injected: access revoked".into(),
            ));
        }
        if self.down.load(Ordering::SeqCst) {
            Err(Error::Unavailable("fault injected: registry down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Registry for FaultInjector {
    async fn register_node(&self, id: &str, host: &str, port: u16, md: Metadata) -> Result<()> {
        self.check().await?;
        self.inner.register_node(id, host, port, md).await
    }
    async fn lease_refresh(&self, node_id: &str) -> Result<()> {
        self.check().await?;
        self.inner.lease_refresh(node_id).await
    }
    async fn deregister_node(&self, node_id: &str) -> Result<()> {
        self.check().await?;
        self.inner.deregister_node(node_id).await
    }
    async fn get_available_nodes(&self) -> Result<BTreeMap<String, NodeInfo>> {
        self.check().await?;
        self.inner.get_available_nodes().await
    }
}

async fn is_listed(registry: &MemoryRegistry, node_id: &str) -> bool {
    registry
        .get_available_nodes()
        .await
        .unwrap()
        .contains_key(node_id)
}

fn fast_poll(exclude: Option<&str>) -> PeerViewConfig {
    PeerViewConfig {
        poll_interval: Duration::from_millis(100),
        exclude: exclude.map(str::to_owned),
        ..PeerViewConfig::default()
    }
}

fn registered_since(state: &NodeState) -> std::time::SystemTime {
    match state {
        NodeState::Registered { since } => *since,
        other => panic!("expected Registered, got {other:?}"),
    }
}

#[tokio::test]
async fn node_is_registered_after_start() {
    let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(2)));
    let handle = Node::new(registry.clone(), "10.0.0.7", 9000)
        .node_id("agent-1")
        .metadata(card("planner"))
        .ttl(Duration::from_secs(2))
        .peer_view(None)
        .start()
        .await
        .unwrap();
    assert!(handle.state().is_registered());
    assert_eq!(handle.node_id(), "agent-1");
    let nodes = registry.get_available_nodes().await.unwrap();
    let entry = &nodes["agent-1"];
    assert_eq!((entry.host.as_str(), entry.port), ("10.0.0.7", 9000));
    assert_eq!(entry.metadata, card("planner"));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn default_node_id_is_random_hex() {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::default());
    let a = Node::new(registry.clone(), "h", 1);
    let b = Node::new(registry, "h", 1);
    assert_eq!(a.id().len(), 32);
    assert!(a.id().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.id(), b.id());
}

#[tokio::test]
async fn renewals_keep_the_node_alive_past_several_ttls() {
    let ttl = Duration::from_secs(2);
    let registry = Arc::new(MemoryRegistry::new(ttl));
    let handle = Node::new(registry.clone(), "127.0.0.1", 9001)
        .node_id("steady")
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    // Watch the entry continuously for three TTLs: it must never lapse.
    let until = tokio::time::Instant::now() + ttl * 3;
    while tokio::time::Instant::now() < until {
        assert!(is_listed(&registry, "steady").await, "lease lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Kept alive by renewals alone: never registered again.
    assert_eq!(registered_since(&handle.state()), since);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lease_dropped_behind_its_back_is_registered_again() {
    let ttl = Duration::from_secs(1);
    let registry = Arc::new(MemoryRegistry::new(ttl));
    let handle = Node::new(registry.clone(), "127.0.0.1", 9002)
        .node_id("phoenix")
        .metadata(card("worker"))
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    let history = record_states(&handle);
    registry.deregister_node("phoenix").await.unwrap();
    assert!(!is_listed(&registry, "phoenix").await);
    wait_until("the node is listed again", || {
        is_listed(&registry, "phoenix")
    })
    .await;
    let state = wait_state(
        &handle,
        "registered again",
        |s| matches!(s, NodeState::Registered { since: again } if *again > since),
    )
    .await;
    assert!(state.is_registered());
    // Registered again with the same entry.
    let nodes = registry.get_available_nodes().await.unwrap();
    assert_eq!(nodes["phoenix"].metadata, card("worker"));
    // "Not found" means register at once, not retry renewals until the TTL runs out.
    let history = history.lock().unwrap().clone();
    assert!(
        !history
            .iter()
            .any(|s| matches!(s, NodeState::Retrying { .. })),
        "{history:?}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_short_outage_is_bridged_by_retries_without_registering_again() {
    let ttl = Duration::from_secs(2);
    let memory = Arc::new(MemoryRegistry::new(ttl));
    let faults = FaultInjector::new(memory.clone());
    let handle = Node::new(faults.clone(), "127.0.0.1", 9003)
        .node_id("patient")
        .ttl(ttl)
        .peer_view(None)
        .backoff(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(100),
        })
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    faults.set_down(true);
    let retrying = wait_state(&handle, "retrying", |s| {
        matches!(s, NodeState::Retrying { .. })
    })
    .await;
    match retrying {
        NodeState::Retrying {
            attempts,
            last_error,
            ..
        } => {
            assert!(attempts >= 1);
            assert!(
                matches!(last_error, Error::Unavailable(_)),
                "{last_error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    faults.set_down(false);
    let state = wait_state(&handle, "registered", NodeState::is_registered).await;
    // The lease never lapsed, so the node renewed rather than registered again.
    assert_eq!(registered_since(&state), since);
    assert!(is_listed(&memory, "patient").await);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_outage_longer_than_the_ttl_loses_the_lease_and_recovers() {
    let ttl = Duration::from_secs(1);
    let memory = Arc::new(MemoryRegistry::new(ttl));
    let faults = FaultInjector::new(memory.clone());
    let handle = Node::new(faults.clone(), "127.0.0.1", 9004)
        .node_id("survivor")
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    faults.set_down(true);
    // The registry expires the entry, and the runtime knows its lease is gone.
    wait_until("the lease expired in the registry", || async {
        !is_listed(&memory, "survivor").await
    })
    .await;
    let lost = wait_state(&handle, "lost", |s| matches!(s, NodeState::Lost { .. })).await;
    match lost {
        NodeState::Lost {
            attempts,
            last_error,
            ..
        } => {
            assert!(attempts >= 1);
            assert!(
                matches!(last_error, Some(Error::Unavailable(_))),
                "{last_error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    faults.set_down(false);
    wait_until("the node is listed again", || {
        is_listed(&memory, "survivor")
    })
    .await;
    let state = wait_state(&handle, "registered", NodeState::is_registered).await;
    assert!(registered_since(&state) > since);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_frozen_registry_is_noticed_through_timeouts() {
    let ttl = Duration::from_secs(1);
    let memory = Arc::new(MemoryRegistry::new(ttl));
    let faults = FaultInjector::new(memory.clone());
    let handle = Node::new(faults.clone(), "127.0.0.1", 9009)
        .node_id("thawed")
        .ttl(ttl)
        .peer_view(None)
        .start()
        .await
        .unwrap();
    let since = registered_since(&handle.state());
    faults.set_frozen(true);
    let lost = wait_state(&handle, "lost", |s| matches!(s, NodeState::Lost { .. })).await;
    match lost {
        NodeState::Lost { last_error, .. } => {
            assert!(
                matches!(&last_error, Some(Error::Unavailable(m)) if m.contains("timed out")),
                "{last_error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    faults.set_frozen(false);
    let state = wait_state(&handle, "registered", NodeState::is_registered).await;
    assert!(registered_since(&state) > since);
    assert!(is_listed(&memory, "thawed").await);

    // Shutting down against a frozen registry ends (with the timeout) instead of hanging.
    faults.set_frozen(true);
    let error = tokio::time::timeout(DEADLINE, handle.shutdown())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert_eq!(handle.state(), NodeState::Stopped);
}

#[tokio::test]
async fn a_refusal_mid_life_stops_the_node_in_failed() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(1)));
    let faults = FaultInjector::new(memory.clone());
    let handle = Node::new(faults.clone(), "127.0.0.1", 9010)
        .node_id("revoked")
        .ttl(Duration::from_secs(1))
        .peer_view(None)
        .start()
        .await
        .unwrap();
    faults.set_denied(true);
    let failed = wait_state(&handle, "failed", |s| matches!(s, NodeState::Failed(_))).await;
    assert!(
        matches!(failed, NodeState::Failed(Error::PermissionDenied(_))),
        "{failed:?}"
    );
    // The keeper gave up: the entry expires rather than being renewed or re-registered.
    wait_until("the entry expired", || async {
        !is_listed(&memory, "revoked").await
    })
    .await;
    faults.set_denied(false);
    // Shutdown still works and finds nothing to remove.
    handle.shutdown().await.unwrap();
    assert_eq!(handle.state(), NodeState::Stopped);
    assert!(!is_listed(&memory, "revoked").await);
}

#[tokio::test]
async fn a_node_started_while_the_registry_is_down_registers_when_it_is_back() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(2)));
    let faults = FaultInjector::new(memory.clone());
    faults.set_down(true);
    let handle = Node::new(faults.clone(), "127.0.0.1", 9005)
        .node_id("early")
        .ttl(Duration::from_secs(2))
        .peer_view(None)
        .start()
        .await
        .unwrap();
    assert!(
        matches!(handle.state(), NodeState::Lost { .. }),
        "{:?}",
        handle.state()
    );
    faults.set_down(false);
    wait_state(&handle, "registered", NodeState::is_registered).await;
    assert!(is_listed(&memory, "early").await);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_registration_is_an_error() {
    let registry = Arc::new(MemoryRegistry::default());
    let error = Node::new(registry.clone(), "127.0.0.1", 0)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    let error = Node::new(registry, "127.0.0.1", 1)
        .node_id("")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
}

#[tokio::test]
async fn shutdown_deregisters_at_once_and_is_idempotent() {
    let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let handle = Node::new(registry.clone(), "127.0.0.1", 9006)
        .node_id("leaver")
        .ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    assert!(is_listed(&registry, "leaver").await);
    handle.shutdown().await.unwrap();
    assert!(!is_listed(&registry, "leaver").await);
    assert_eq!(handle.state(), NodeState::Stopped);
    handle.shutdown().await.unwrap();
    assert_eq!(handle.state(), NodeState::Stopped);
}

#[tokio::test]
async fn shutdown_of_a_node_the_registry_forgot_succeeds() {
    let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let handle = Node::new(registry.clone(), "127.0.0.1", 9007)
        .node_id("forgotten")
        .ttl(Duration::from_secs(30))
        .peer_view(None)
        .start()
        .await
        .unwrap();
    registry.deregister_node("forgotten").await.unwrap();
    handle.shutdown().await.unwrap();
    assert!(!is_listed(&registry, "forgotten").await);
}

#[tokio::test]
async fn shutdown_while_unreachable_reports_the_error() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let faults = FaultInjector::new(memory.clone());
    let handle = Node::new(faults.clone(), "127.0.0.1", 9008)
        .node_id("stranded")
        .ttl(Duration::from_secs(30))
        .peer_view(None)
        .start()
        .await
        .unwrap();
    faults.set_down(true);
    let error = handle.shutdown().await.unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert_eq!(handle.state(), NodeState::Stopped);
}

#[tokio::test]
async fn peer_view_sees_joins_updates_and_leaves() {
    let ttl = Duration::from_secs(1);
    let registry = Arc::new(MemoryRegistry::new(ttl));
    let watcher = Node::new(registry.clone(), "127.0.0.1", 9100)
        .node_id("watcher")
        .ttl(ttl)
        .peer_view(Some(fast_poll(None)))
        .start()
        .await
        .unwrap();
    let view = watcher.peer_view().unwrap();
    let mut changes = view.subscribe();
    let node = |id: &str, role: &str| {
        Node::new(registry.clone(), "127.0.0.1", 9101)
            .node_id(id)
            .metadata(card(role))
            .ttl(ttl)
            .peer_view(None)
    };
    let clean = node("clean", "planner").start().await.unwrap();
    let crashed = node("crashed", "worker").start().await.unwrap();
    wait_until("both peers are seen", || async { view.len() == 2 }).await;
    assert!(view.peer("watcher").is_none(), "a node is not its own peer");
    assert_eq!(view.peer("clean").unwrap().metadata, card("planner"));
    let workers =
        view.find(|info| info.metadata.get("role").and_then(|r| r.as_str()) == Some("worker"));
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].node_id, "crashed");
    assert_eq!(
        view.sync(),
        PeerSync::Live {
            source: PeerSource::Poll
        }
    );
    assert_eq!(view.revision(), 0, "polling knows no revisions");

    // A node re-registering with a new card is an update.
    registry
        .register_node("clean", "127.0.0.1", 9101, card("reviewer"))
        .await
        .unwrap();
    wait_until("the update is seen", || async {
        view.peer("clean")
            .is_some_and(|p| p.metadata == card("reviewer"))
    })
    .await;

    // A clean shutdown is seen as a leave; a crash (no deregister) once the lease expires.
    clean.shutdown().await.unwrap();
    wait_until("the clean leave is seen", || async {
        view.peer("clean").is_none()
    })
    .await;
    drop(crashed);
    wait_until("the crashed peer expires", || async { view.is_empty() }).await;

    let mut seen = Vec::new();
    while seen.len() < 5 {
        match tokio::time::timeout(DEADLINE, changes.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerUpdate::Change(change) => seen.push(change),
            PeerUpdate::Resync(peers) => panic!("unexpected resync {peers:?}"),
        }
    }
    let summary: Vec<(&str, &str)> = seen
        .iter()
        .map(|c| {
            let kind = match c {
                PeerChange::Joined(_) => "joined",
                PeerChange::Updated { .. } => "updated",
                PeerChange::Left(_) => "left",
            };
            (kind, c.node_id())
        })
        .collect();
    let mut joins = summary[..2].to_vec();
    joins.sort();
    assert_eq!(joins, [("joined", "clean"), ("joined", "crashed")]);
    assert_eq!(
        summary[2..],
        [("updated", "clean"), ("left", "clean"), ("left", "crashed")]
    );
    match &seen[2] {
        PeerChange::Updated { previous, current } => {
            assert_eq!(previous.metadata, card("planner"));
            assert_eq!(current.metadata, card("reviewer"));
        }
        other => panic!("{other:?}"),
    }
    watcher.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_may_include_itself_in_its_view() {
    let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let handle = Node::new(registry, "127.0.0.1", 9200)
        .node_id("narcissus")
        .include_self(true)
        .peer_view(Some(fast_poll(None)))
        .start()
        .await
        .unwrap();
    let view = handle.peer_view().unwrap();
    wait_until("the node sees itself", || async {
        view.peer("narcissus").is_some()
    })
    .await;
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn standalone_peer_view_resyncs_after_an_outage() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let faults = FaultInjector::new(memory.clone());
    memory
        .register_node("stays", "h", 1, Metadata::new())
        .await
        .unwrap();
    memory
        .register_node("goes", "h", 2, Metadata::new())
        .await
        .unwrap();
    let view = PeerView::start(faults.clone(), fast_poll(None));
    wait_until("the view is live", || async { view.len() == 2 }).await;

    faults.set_down(true);
    let mut sync = view.sync_changes();
    tokio::time::timeout(
        DEADLINE,
        sync.wait_for(|s| matches!(s, PeerSync::Stale { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    // While stale, the view keeps the last known peers.
    assert_eq!(view.len(), 2);
    memory.deregister_node("goes").await.unwrap();
    memory
        .register_node("new", "h", 3, Metadata::new())
        .await
        .unwrap();

    faults.set_down(false);
    wait_until("the view converges", || async {
        view.peers().keys().map(String::as_str).collect::<Vec<_>>() == ["new", "stays"]
    })
    .await;
    tokio::time::timeout(
        DEADLINE,
        sync.wait_for(|s| matches!(s, PeerSync::Live { .. })),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn a_lagging_subscriber_is_resynced() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let config = PeerViewConfig {
        channel_capacity: 1,
        ..fast_poll(None)
    };
    let view = PeerView::start(memory.clone(), config);
    let (initial, mut subscription) = view.subscribe_with_peers();
    assert!(initial.is_empty());
    for port in 1..=5 {
        memory
            .register_node(&format!("n{port}"), "h", port, Metadata::new())
            .await
            .unwrap();
    }
    wait_until("the view has every node", || async { view.len() == 5 }).await;
    // Five joins into a buffer of one: the subscriber is told to resync, with the truth.
    match tokio::time::timeout(DEADLINE, subscription.recv())
        .await
        .unwrap()
    {
        Some(PeerUpdate::Resync(peers)) => assert_eq!(peers, view.peers()),
        other => panic!("expected a resync, got {other:?}"),
    }
    drop(view);
    // Once the view is gone, the subscription ends instead of hanging.
    let end = tokio::time::timeout(DEADLINE, subscription.recv())
        .await
        .unwrap();
    assert_eq!(end, None);
}

#[tokio::test]
async fn a_frozen_registry_makes_the_view_stale_until_it_thaws() {
    let memory = Arc::new(MemoryRegistry::new(Duration::from_secs(30)));
    let faults = FaultInjector::new(memory.clone());
    memory
        .register_node("a", "h", 1, Metadata::new())
        .await
        .unwrap();
    let view = PeerView::start(
        faults.clone(),
        PeerViewConfig {
            call_timeout: Duration::from_millis(200),
            ..fast_poll(None)
        },
    );
    wait_until("the view is live", || async { view.len() == 1 }).await;
    faults.set_frozen(true);
    let mut sync = view.sync_changes();
    let stale = tokio::time::timeout(
        DEADLINE,
        sync.wait_for(|s| matches!(s, PeerSync::Stale { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    match stale {
        PeerSync::Stale { last_error, .. } => {
            assert!(
                matches!(&last_error, Error::Unavailable(m) if m.contains("timed out")),
                "{last_error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    memory
        .register_node("b", "h", 2, Metadata::new())
        .await
        .unwrap();
    faults.set_frozen(false);
    wait_until("the view converges", || async { view.len() == 2 }).await;
}
