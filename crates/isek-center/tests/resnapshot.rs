//! The Rust client's change stream after the center told it to resync: a watcher
//! that fell behind (its 4-change buffer overflowed while it did not read) gets a
//! fresh snapshot from `watch_nodes`, then the changes after it, in order and without
//! a gap, until its view holds every node; and it follows on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use isek::{Metadata, NodeEvent, Registry};
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::DEADLINE;
use serde_json::json;

#[tokio::test]
async fn the_client_re_snapshots_after_a_resync_and_follows_on() {
    let center = ServedCenter::start(isek_center::Config {
        watch_buffer: 4,
        watch_keepalive: Duration::from_millis(200),
        ..isek_center::Config::in_memory(Duration::from_secs(30))
    })
    .await;
    let client = center.client().clone();
    let mut stream = client
        .watch_nodes()
        .await
        .unwrap()
        .expect("a change stream");
    let first = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the first snapshot")
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, NodeEvent::Snapshot { .. }),
        "a snapshot first"
    );

    // Not read while the center produces more than the socket buffers, hyper's write
    // buffers and the watcher's 4-change buffer hold: the center tells it to resync.
    // A socket nobody reads keeps its initial receive buffer (loopback autotuning
    // grows it only as the application reads), so 150 changes of 16 KB (2.4 MB) are
    // several times what the path holds; the check after the resync fails the test
    // should they ever all fit.
    let metadata = json!({ "blob": "x".repeat(16 * 1024) })
        .as_object()
        .unwrap()
        .clone();
    let total = 150;
    futures::stream::iter(0..total)
        .for_each_concurrent(32, |i| {
            let client = client.clone();
            let metadata = metadata.clone();
            async move {
                client
                    .register_node(&format!("n{i}"), "h", 9000, metadata)
                    .await
                    .unwrap();
            }
        })
        .await;

    // Reading again: changes (perhaps some) until a second snapshot, which holds every
    // node; changes before it follow each other without a gap.
    let mut last = first.revision();
    let snapshot = loop {
        let event = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("a snapshot after the resync")
            .expect("the stream goes on after a resync")
            .unwrap();
        match event {
            NodeEvent::Snapshot { revision, nodes } => break (revision, nodes),
            other => {
                let revision = other.revision();
                assert_eq!(revision, last + 1, "a gap before the resync");
                last = revision;
            }
        }
    };
    let (revision, nodes) = snapshot;
    assert!(
        last < revision,
        "the watcher never fell behind (it read every change up to {last}): no resync was tested"
    );
    // From the snapshot on, the changes follow without a gap until the view holds
    // every node (a further snapshot, should the watcher fall behind again, replaces
    // the view).
    let mut view = nodes;
    let mut last = revision;
    while view.len() < total {
        let event = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("the changes after the new snapshot")
            .unwrap()
            .unwrap();
        match event {
            NodeEvent::Snapshot { revision, nodes } => {
                last = revision;
                view = nodes;
            }
            NodeEvent::Put { revision, node } => {
                assert_eq!(revision, last + 1, "a gap after the resync");
                last = revision;
                view.insert(node.node_id.clone(), node);
            }
            NodeEvent::Delete { revision, .. } => {
                panic!("only registrations happened, a delete at {revision}")
            }
        }
    }
    // And it follows on.
    client
        .register_node("after", "h", 1, Metadata::new())
        .await
        .unwrap();
    let next = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the change after the snapshot")
        .unwrap()
        .unwrap();
    match next {
        NodeEvent::Put { revision: r, node } => {
            assert_eq!(r, last + 1);
            assert_eq!(node.node_id, "after");
        }
        other => panic!(
            "expected the put of 'after', got revision {}",
            other.revision()
        ),
    }
}
