//! `EtcdRegistry` against a real etcd (started by the testkit on free ports): each test
//! in a namespace of its own on the run's shared etcd, except those that stop, restart
//! or compact etcd or enable auth, which start a server of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::{Error, Metadata, NodeEvent, Registry};
use isek_testkit::etcd::{EtcdNamespace, EtcdServer};
use serde_json::{Value, json};

fn spec() -> Value {
    let path = format!(
        "{}/tests/fixtures/etcd_entries.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn meta(v: Value) -> Metadata {
    v.as_object().unwrap().clone()
}

async fn registry_at(endpoint: String, parent: &str, id: &NodeIdentity) -> EtcdRegistry {
    let config = EtcdConfig::new([endpoint]).parent(parent);
    EtcdRegistry::connect(config, id.clone()).await.unwrap()
}

/// A registry for `id` in the namespace's own parent.
async fn registry(etcd: &EtcdNamespace, id: &NodeIdentity) -> EtcdRegistry {
    registry_at(etcd.endpoint(), etcd.parent(), id).await
}

async fn raw_client(endpoint: String) -> etcd_client::Client {
    etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap()
}

/// Polls `f` until it returns true, at most `limit`: expiry is checked, not its speed.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f().await
}

#[tokio::test]
async fn conformance_suite_passes() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let endpoint = etcd.endpoint();
    let counter = AtomicUsize::new(0);
    isek_testkit::conformance::check_registry(
        isek_testkit::conformance::Deadlines::NotReported,
        |ttl| {
            let parent = etcd.parent_for(&counter.fetch_add(1, Ordering::SeqCst).to_string());
            let config = EtcdConfig::new([endpoint.clone()]).parent(parent).ttl(ttl);
            async move {
                EtcdRegistry::connect(config, NodeIdentity::generate())
                    .await
                    .unwrap()
            }
        },
    )
    .await;
}

#[tokio::test]
async fn original_entries_are_listed_and_verified() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let mut raw = raw_client(etcd.endpoint()).await;
    let spec = spec();
    for sample in spec["samples"].as_object().unwrap().values() {
        let key_hex = sample["key_bytes_hex"].as_str().unwrap();
        let key: Vec<u8> = (0..key_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&key_hex[i..i + 2], 16).unwrap())
            .collect();
        // Captured under the default parent `root`: moved into this test's namespace.
        let key = [etcd.key("").as_bytes(), &key[b"/root/".len()..]].concat();
        raw.put(key, sample["value_exact"].as_str().unwrap(), None)
            .await
            .unwrap();
    }
    let reg = registry(&etcd, &NodeIdentity::generate()).await;
    let nodes = reg.get_available_nodes().await.unwrap();
    // The Latin-1 key (not UTF-8) is skipped, the three others verify.
    let expected = spec["get_available_nodes_result"].as_object().unwrap();
    assert_eq!(
        nodes.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (id, original) in expected {
        let node = &nodes[id];
        assert_eq!(node.host, original["host"].as_str().unwrap());
        assert_eq!(u64::from(node.port), original["port"].as_u64().unwrap());
        assert_eq!(Value::Object(node.metadata.clone()), original["metadata"]);
        assert_eq!(node.public_key.as_deref(), original["public_key"].as_str());
    }
    let listed = reg.list_entries().await.unwrap();
    assert_eq!(listed.len(), 4);
    for entry in &listed {
        assert!(entry.legacy, "{entry:?}");
        if entry.key.ends_with("node-\u{fffd}") {
            assert!(!entry.verified);
            assert!(
                entry.error.as_deref().unwrap().contains("UTF-8"),
                "{entry:?}"
            );
        } else {
            assert!(entry.verified, "{entry:?}");
        }
    }
    // Someone else's (the original registry's) nodes cannot be touched by us.
    assert!(matches!(
        reg.deregister_node("node-a").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        reg.lease_refresh("node-a").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        reg.register_node("node-a", "h", 1, Metadata::new()).await,
        Err(Error::Conflict(_))
    ));
}

#[tokio::test]
async fn malformed_entries_are_skipped_not_fatal() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let id = NodeIdentity::generate();
    let reg = registry(&etcd, &id).await;
    reg.register_node("good", "127.0.0.1", 9000, meta(json!({"name": "g"})))
        .await
        .unwrap();
    let good = String::from_utf8(
        raw_client(etcd.endpoint())
            .await
            .get(etcd.key("good"), None)
            .await
            .unwrap()
            .kvs()[0]
            .value()
            .to_vec(),
    )
    .unwrap();
    let mut raw = raw_client(etcd.endpoint()).await;
    let bad: Vec<(&str, String)> = vec![
        ("garbage", "not json {".into()),
        ("array", "[1, 2]".into()),
        ("no-sig", r#"{"node_info": {"node_id": "no-sig", "host": "h", "port": 1, "public_key": "x", "metadata": {}}}"#.into()),
        ("copied", good.clone()),
        ("tampered", good.replace("\"good\"", "\"tampered\"")),
        ("bad-port", good.replace("9000", "70000").replace("\"good\"", "\"bad-port\"")),
    ];
    for (id, value) in &bad {
        raw.put(etcd.key(id), value.as_str(), None).await.unwrap();
    }
    let not_utf8 = [etcd.key("").as_bytes(), b"\xff\xfe"].concat();
    raw.put(not_utf8, good.as_str(), None).await.unwrap();
    let nodes = reg.get_available_nodes().await.unwrap();
    assert_eq!(nodes.keys().collect::<Vec<_>>(), vec!["good"]);
    assert_eq!(
        nodes["good"].public_key.as_deref(),
        Some(id.public_key().to_base64())
    );
    let listed = reg.list_entries().await.unwrap();
    assert_eq!(listed.len(), bad.len() + 2);
    assert_eq!(listed.iter().filter(|e| e.verified).count(), 1);
    assert!(listed.iter().all(|e| e.verified || e.error.is_some()));
    assert!(listed.iter().all(|e| !e.legacy || !e.verified));
    // A corrupt entry at a node's key blocks neither our other nodes nor listing, and
    // is never silently replaced by a registry that does not own it.
    assert!(matches!(
        reg.register_node("garbage", "h", 1, Metadata::new()).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        reg.deregister_node("garbage").await,
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test]
async fn identities_cannot_touch_each_others_nodes() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let alice_id = NodeIdentity::generate();
    let alice = registry(&etcd, &alice_id).await;
    let mallory = registry(&etcd, &NodeIdentity::generate()).await;
    alice
        .register_node("n1", "10.0.0.1", 8000, meta(json!({"owner": "alice"})))
        .await
        .unwrap();
    let err = mallory
        .register_node("n1", "10.6.6.6", 6666, Metadata::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("n1")),
        "{err}"
    );
    assert!(matches!(
        mallory.lease_refresh("n1").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        mallory.deregister_node("n1").await,
        Err(Error::PermissionDenied(_))
    ));
    let nodes = mallory.get_available_nodes().await.unwrap();
    assert_eq!(nodes["n1"].host, "10.0.0.1");
    assert_eq!(
        nodes["n1"].public_key.as_deref(),
        Some(alice_id.public_key().to_base64())
    );
    alice.lease_refresh("n1").await.unwrap();

    // Another process holding alice's key may renew and deregister (it finds the lease
    // on the key).
    let alice_elsewhere = registry(&etcd, &alice_id).await;
    alice_elsewhere.lease_refresh("n1").await.unwrap();
    alice_elsewhere.deregister_node("n1").await.unwrap();
    assert!(matches!(
        alice.lease_refresh("n1").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        alice.deregister_node("n1").await,
        Err(Error::NotFound(_))
    ));
    // Once gone, the id is free for anyone.
    mallory
        .register_node("n1", "10.6.6.6", 6666, Metadata::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn reregistering_replaces_entry_and_lease() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let id = NodeIdentity::generate();
    let reg = registry(&etcd, &id).await;
    let mut raw = raw_client(etcd.endpoint()).await;
    reg.register_node("n", "a", 1, Metadata::new())
        .await
        .unwrap();
    let first_lease = raw.get(etcd.key("n"), None).await.unwrap().kvs()[0].lease();
    // From another instance with the same identity, too.
    let other = registry(&etcd, &id).await;
    other
        .register_node("n", "b", 2, meta(json!({"v": 2})))
        .await
        .unwrap();
    let kv = raw.get(etcd.key("n"), None).await.unwrap().kvs()[0].clone();
    assert_ne!(kv.lease(), first_lease);
    let stored: Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(stored["signature_alg"], "ES256");
    assert_eq!(stored["node_info"]["host"], "b");
    // The old lease was revoked, not left to run out.
    let ttl = raw
        .lease_time_to_live(first_lease, None)
        .await
        .unwrap()
        .ttl();
    assert_eq!(ttl, -1);
    // The first instance's cached lease is gone; it finds the new one on the key.
    reg.lease_refresh("n").await.unwrap();
    let nodes = reg.get_available_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes["n"].port, 2);
}

#[tokio::test]
async fn parents_are_isolated_namespaces() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let id = NodeIdentity::generate();
    let a = registry_at(etcd.endpoint(), &etcd.parent_for("team-a"), &id).await;
    let b = registry_at(
        etcd.endpoint(),
        &etcd.parent_for("team-b"),
        &NodeIdentity::generate(),
    )
    .await;
    let prefix_of_a = registry_at(etcd.endpoint(), &etcd.parent_for("team"), &id).await;
    a.register_node("n", "a", 1, Metadata::new()).await.unwrap();
    b.register_node("n", "b", 2, Metadata::new()).await.unwrap();
    b.register_node("only-b", "b", 3, Metadata::new())
        .await
        .unwrap();
    let in_a = a.get_available_nodes().await.unwrap();
    let in_b = b.get_available_nodes().await.unwrap();
    assert_eq!(in_a.keys().collect::<Vec<_>>(), vec!["n"]);
    assert_eq!(in_a["n"].host, "a");
    assert_eq!(in_b.keys().collect::<Vec<_>>(), vec!["n", "only-b"]);
    assert!(prefix_of_a.get_available_nodes().await.unwrap().is_empty());
    assert!(matches!(
        a.lease_refresh("only-b").await,
        Err(Error::NotFound(_))
    ));
    a.deregister_node("n").await.unwrap();
    assert_eq!(b.get_available_nodes().await.unwrap().len(), 2);
}

#[tokio::test]
async fn unrefreshed_node_expires_after_its_ttl() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let id = NodeIdentity::generate();
    let config = etcd.config().ttl(Duration::from_secs(2));
    let reg = EtcdRegistry::connect(config, id).await.unwrap();
    reg.register_node("kept", "h", 1, Metadata::new())
        .await
        .unwrap();
    reg.register_node("dropped", "h", 2, Metadata::new())
        .await
        .unwrap();
    // Renews "kept" until told to stop; a failed renewal panics the task, and the
    // test awaits it at the end, so that panic fails the test (an aborted task's is lost).
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let refresher = {
        let reg = reg.clone();
        tokio::spawn(async move {
            loop {
                reg.lease_refresh("kept").await.unwrap();
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        })
    };
    let gone = eventually(Duration::from_secs(15), || async {
        !reg.get_available_nodes()
            .await
            .unwrap()
            .contains_key("dropped")
    })
    .await;
    assert!(gone, "node without refresh did not expire");
    assert!(
        reg.get_available_nodes()
            .await
            .unwrap()
            .contains_key("kept")
    );
    assert!(matches!(
        reg.lease_refresh("dropped").await,
        Err(Error::NotFound(_))
    ));
    // Err if the task already ended (panicked): the await below reports how.
    let _ = stop.send(());
    refresher.await.expect("every renewal of 'kept' succeeded");
    // Registering again after expiry works.
    reg.register_node("dropped", "h", 2, Metadata::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_arguments_are_rejected() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let reg = registry(&etcd, &NodeIdentity::generate()).await;
    for (id, host, port) in [("", "h", 1), ("a/b", "h", 1), ("n", "", 1), ("n", "h", 0)] {
        assert!(
            matches!(
                reg.register_node(id, host, port, Metadata::new()).await,
                Err(Error::InvalidArgument(_))
            ),
            "{id:?} {host:?} {port}"
        );
    }
    // Look-alike ids: the error names the problem and shows the id escaped.
    for (id, needle) in [
        ("cafe\u{301}", "normalization form C"),
        ("n1\u{200b}", "U+200B"),
        ("n\u{202e}1", "U+202E"),
    ] {
        match reg.register_node(id, "h", 1, Metadata::new()).await {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains(needle), "{id:?}: {message}");
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
    let config = EtcdConfig::new([etcd.endpoint()]).parent("a/b");
    assert!(matches!(
        EtcdRegistry::connect(config, NodeIdentity::generate()).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        EtcdConfig::from_endpoint_list(" , "),
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_naming_the_endpoint() {
    // A port nothing listens on: bind it, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = EtcdConfig::new([endpoint.clone()]).timeout(Duration::from_millis(500));
    let outcome = match EtcdRegistry::connect(config, NodeIdentity::generate()).await {
        Err(e) => Err(e),
        Ok(reg) => reg.register_node("n", "h", 1, Metadata::new()).await,
    };
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains(&endpoint)),
        "{err}"
    );
}

#[tokio::test]
async fn stopped_etcd_is_unavailable_then_recovers() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let id = NodeIdentity::generate();
    let config = EtcdConfig::new([etcd.endpoint()]).timeout(Duration::from_millis(500));
    let reg = EtcdRegistry::connect(config, id).await.unwrap();
    reg.register_node("n", "h", 1, Metadata::new())
        .await
        .unwrap();
    etcd.stop();
    let err = reg.get_available_nodes().await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains(&etcd.endpoint())),
        "{err}"
    );
    assert!(matches!(
        reg.lease_refresh("n").await,
        Err(Error::Unavailable(_))
    ));
    etcd.restart().await.unwrap();
    let back = eventually(Duration::from_secs(15), || async {
        reg.lease_refresh("n").await.is_ok()
    })
    .await;
    assert!(back, "registry did not recover after etcd restarted");
    assert!(reg.get_available_nodes().await.unwrap().contains_key("n"));
}

/// Collects events until `pred` holds for the view built from them (bounded wait).
async fn next_event(stream: &mut isek::NodeEventStream) -> NodeEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("no watch event within 20 s")
        .expect("watch stream ended")
        .expect("watch stream error")
}

fn apply(view: &mut BTreeMap<String, isek::NodeInfo>, event: &NodeEvent) {
    match event {
        NodeEvent::Snapshot { nodes, .. } => *view = nodes.clone(),
        NodeEvent::Put { node, .. } => {
            view.insert(node.node_id.clone(), node.clone());
        }
        NodeEvent::Delete { node_id, .. } => {
            view.remove(node_id);
        }
    }
}

#[tokio::test]
async fn watch_streams_changes_and_survives_restart_and_compaction() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let id = NodeIdentity::generate();
    let config = EtcdConfig::new([etcd.endpoint()]).timeout(Duration::from_secs(1));
    let reg = EtcdRegistry::connect(config, id).await.unwrap();
    reg.register_node("before", "h", 1, Metadata::new())
        .await
        .unwrap();

    let mut stream = reg.watch_nodes().await.unwrap().expect("etcd can watch");
    let first = next_event(&mut stream).await;
    let NodeEvent::Snapshot { nodes, revision } = &first else {
        panic!("first event must be a snapshot: {first:?}")
    };
    assert_eq!(nodes.keys().collect::<Vec<_>>(), vec!["before"]);
    let mut last = *revision;
    let mut view = BTreeMap::new();
    apply(&mut view, &first);

    reg.register_node("a", "h", 2, Metadata::new())
        .await
        .unwrap();
    let event = next_event(&mut stream).await;
    assert!(
        matches!(&event, NodeEvent::Put { node, .. } if node.node_id == "a"),
        "{event:?}"
    );
    assert!(event.revision() > last);
    last = event.revision();
    apply(&mut view, &event);

    // An invalid entry written by someone else is not a node.
    let mut raw = raw_client(etcd.endpoint()).await;
    raw.put("/root/junk", "junk", None).await.unwrap();
    reg.deregister_node("before").await.unwrap();
    let event = next_event(&mut stream).await;
    assert!(
        matches!(&event, NodeEvent::Delete { node_id, .. } if node_id == "before"),
        "{event:?}"
    );
    assert!(event.revision() > last);
    last = event.revision();
    apply(&mut view, &event);

    // etcd goes away and comes back; changes made meanwhile (after restart) arrive once.
    etcd.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.restart().await.unwrap();
    let writer = registry_at(etcd.endpoint(), "root", reg.identity()).await;
    writer
        .register_node("b", "h", 3, Metadata::new())
        .await
        .unwrap();
    loop {
        let event = next_event(&mut stream).await;
        assert!(
            event.revision() > last || matches!(event, NodeEvent::Snapshot { .. }),
            "{event:?}"
        );
        last = event.revision();
        apply(&mut view, &event);
        if view.contains_key("b") {
            break;
        }
    }
    assert_eq!(view.keys().collect::<Vec<_>>(), vec!["a", "b"]);

    // A watcher resuming from a compacted revision gets a fresh snapshot.
    writer
        .register_node("c", "h", 4, Metadata::new())
        .await
        .unwrap();
    let revision = raw
        .get("/root/c", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    raw.compact(revision, None).await.unwrap();
    let mut resumed = reg.watch_from(Some(2));
    let event = next_event(&mut resumed).await;
    let NodeEvent::Snapshot { nodes, .. } = &event else {
        panic!("expected a snapshot after compaction: {event:?}")
    };
    assert_eq!(nodes.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn refresh_notices_a_key_deleted_or_replaced_behind_its_back() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let reg = registry(&etcd, &NodeIdentity::generate()).await;
    let mut raw = raw_client(etcd.endpoint()).await;
    reg.register_node("node-a", "h", 1, Metadata::new())
        .await
        .unwrap();
    reg.lease_refresh("node-a").await.unwrap();
    // An operator deletes the key (the lease stays): the node must learn it is gone.
    raw.delete(etcd.key("node-a"), None).await.unwrap();
    assert!(matches!(
        reg.lease_refresh("node-a").await,
        Err(Error::NotFound(_))
    ));
    reg.register_node("node-a", "h", 1, Metadata::new())
        .await
        .unwrap();
    reg.lease_refresh("node-a").await.unwrap();
    // An original Python registry (no ownership checks) overwrites it with its own entry.
    let spec = spec();
    let original = spec["samples"]["ascii"]["value_exact"].as_str().unwrap();
    raw.put(etcd.key("node-a"), original, None).await.unwrap();
    assert!(matches!(
        reg.lease_refresh("node-a").await,
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test]
async fn credentials_reach_an_etcd_with_auth_enabled() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut raw = raw_client(etcd.endpoint()).await;
    raw.role_add("root").await.unwrap();
    raw.user_add("root", "root-pw", None).await.unwrap();
    raw.user_grant_role("root", "root").await.unwrap();
    raw.auth_enable().await.unwrap();

    let config = EtcdConfig::new([etcd.endpoint()]).credentials("root", "root-pw");
    let reg = EtcdRegistry::connect(config, NodeIdentity::generate())
        .await
        .unwrap();
    reg.register_node("n", "h", 1, Metadata::new())
        .await
        .unwrap();
    reg.lease_refresh("n").await.unwrap();
    assert_eq!(reg.get_available_nodes().await.unwrap().len(), 1);

    let wrong = EtcdConfig::new([etcd.endpoint()]).credentials("root", "nope");
    let err = EtcdRegistry::connect(wrong, NodeIdentity::generate())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PermissionDenied(_) | Error::InvalidArgument(_)),
        "{err}"
    );
    let anonymous = registry_at(etcd.endpoint(), "root", &NodeIdentity::generate()).await;
    let err = anonymous.get_available_nodes().await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
}

#[tokio::test]
async fn refresh_refuses_a_key_rewritten_on_its_own_lease() {
    // `put --ignore-lease` (or a put naming our lease id, which any reader can see)
    // replaces the entry but leaves the key on our lease: the key is no longer ours,
    // whatever lease it is on.
    let etcd = EtcdNamespace::new().await.unwrap();
    let reg = registry(&etcd, &NodeIdentity::generate()).await;
    let mut raw = raw_client(etcd.endpoint()).await;
    let spec = spec();
    let original = spec["samples"]["ascii"]["value_exact"].as_str().unwrap();
    reg.register_node("node-a", "h", 1, Metadata::new())
        .await
        .unwrap();
    reg.lease_refresh("node-a").await.unwrap();
    let ignore = etcd_client::PutOptions::new().with_ignore_lease();
    raw.put(etcd.key("node-a"), original, Some(ignore))
        .await
        .unwrap();
    let err = reg.lease_refresh("node-a").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied(_)), "{err}");

    reg.register_node("node-b", "h", 1, Metadata::new())
        .await
        .unwrap();
    reg.lease_refresh("node-b").await.unwrap();
    let lease = raw.get(etcd.key("node-b"), None).await.unwrap().kvs()[0].lease();
    let same_lease = etcd_client::PutOptions::new().with_lease(lease);
    raw.put(etcd.key("node-b"), original, Some(same_lease))
        .await
        .unwrap();
    let err = reg.lease_refresh("node-b").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
    // Asked again (nothing cached any more), still refused.
    let again = reg.lease_refresh("node-b").await.unwrap_err();
    assert!(matches!(again, Error::PermissionDenied(_)), "{again}");
}
