//! Measures how fast a registration reaches a [`PeerView`] fed by etcd's watch stream.
//!
//! Starts a private etcd on free ports (the test harness's), follows it with a peer
//! view, registers nodes one by one and times, for each, the moment the view's
//! subscriber sees it join, measured from the start and from the return of the
//! registration call (the entry may be visible before the answer arrives). Prints
//! p50 / p99 / max. Run:
//!
//! ```sh
//! cargo run --release -p isek --example runtime_propagation -- [COUNT]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::runtime::{PeerChange, PeerUpdate, PeerView, PeerViewConfig};
use isek::{Metadata, Registry};
use isek_testkit::etcd::EtcdServer;
use tokio::time::Instant;

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("COUNT must be a number"))
        .unwrap_or(500);
    let etcd = EtcdServer::start().await.expect("start etcd");
    let connect = || async {
        let config = EtcdConfig::new([etcd.endpoint()])
            .parent("bench")
            .ttl(Duration::from_secs(60));
        Arc::new(
            EtcdRegistry::connect(config, NodeIdentity::generate())
                .await
                .unwrap(),
        )
    };
    let view = PeerView::start(connect().await, PeerViewConfig::default());
    let mut subscription = view.subscribe();
    let mut sync = view.sync_changes();
    sync.wait_for(|s| matches!(s, isek::runtime::PeerSync::Live { .. }))
        .await
        .unwrap();

    // The subscriber timestamps every join as it arrives.
    let seen = tokio::spawn(async move {
        let mut seen = HashMap::new();
        while seen.len() < count {
            match subscription.recv().await {
                Some(PeerUpdate::Change(PeerChange::Joined(node))) => {
                    seen.insert(node.node_id, Instant::now());
                }
                Some(_) => {}
                None => break,
            }
        }
        seen
    });

    let writer = connect().await;
    let mut registered = HashMap::new();
    for i in 0..count {
        let id = format!("n{i}");
        let start = Instant::now();
        writer
            .register_node(&id, "127.0.0.1", 9000, Metadata::new())
            .await
            .unwrap();
        registered.insert(id, (start, Instant::now()));
        // Spread registrations out so each is measured alone, as a peer would see it.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .expect("every join seen")
        .unwrap();
    let report = |name: &str, mut latencies: Vec<Duration>| {
        latencies.sort();
        let at = |q: f64| {
            let rank = (latencies.len() as f64 * q).ceil() as usize;
            latencies[rank.clamp(1, latencies.len()) - 1]
        };
        println!(
            "etcd watch -> PeerView, {count} registrations, from {name}: p50 {:?}  p99 {:?}  max {:?}",
            at(0.50),
            at(0.99),
            latencies[latencies.len() - 1]
        );
    };
    report(
        "register call start",
        registered
            .iter()
            .map(|(id, (start, _))| seen[id].saturating_duration_since(*start))
            .collect(),
    );
    report(
        "register call return",
        registered
            .iter()
            .map(|(id, (_, done))| seen[id].saturating_duration_since(*done))
            .collect(),
    );
}
