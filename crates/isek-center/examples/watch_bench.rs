//! Measures the center's change stream: how fast a registration reaches a peer, and
//! how many bytes watching peers receive compared with polling the full list.
//!
//! - `latency [COUNT]` (default 1000): a center on a temporary data dir (durable
//!   commits), a [`PeerView`] following it through `GET /v1/watch`; registers COUNT
//!   nodes one by one and times, for each, the moment the view's subscriber sees it
//!   join, from the start and from the return of the registration call. Prints
//!   p50 / p99 / max.
//! - `fanout [NODES] [PEERS] [SECS]` (default 10000 100 60): registers NODES nodes,
//!   opens PEERS raw change streams, then renews every node every 5 s (as the
//!   original ISEK does) for SECS seconds and counts the bytes the peers receive in
//!   that window; compares with PEERS peers polling the full `available_nodes` body
//!   (measured) every 5 s.
//!
//! ```sh
//! cargo run --release -p isek-center --example watch_bench -- latency 1000
//! cargo run --release -p isek-center --example watch_bench -- fanout 10000 100 60
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use isek::runtime::{PeerChange, PeerSource, PeerSync, PeerUpdate, PeerView, PeerViewConfig};
use isek::{IsekCenterRegistry, Metadata, Registry};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Starts a center on a loopback port; returns its URL (the center runs until exit).
async fn start_center(config: isek_center::Config) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        isek_center::run(listener, config, std::future::pending())
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// A typical agent card (about 200 bytes).
fn card(i: usize) -> Metadata {
    json!({
        "name": format!("agent-{i}"),
        "url": format!("http://10.0.{}.{}:8080/a2a", i / 250, i % 250),
        "p2p_address": format!("/ip4/10.0.{}.{}/tcp/9000/p2p/12D3KooWabcdefghijklmnopqrstuvwxyz{i}", i / 250, i % 250),
        "role": "worker"
    })
    .as_object()
    .unwrap()
    .clone()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn latency(count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = start_center(isek_center::Config::on_disk(dir.path())).await;
    let view = PeerView::start(
        Arc::new(IsekCenterRegistry::new(&url).unwrap()),
        PeerViewConfig::default(),
    );
    let mut subscription = view.subscribe();
    view.sync_changes()
        .wait_for(|s| {
            *s == PeerSync::Live {
                source: PeerSource::Stream,
            }
        })
        .await
        .unwrap();
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
    let writer = IsekCenterRegistry::new(&url).unwrap();
    let mut registered = HashMap::new();
    for i in 0..count {
        let id = format!("n{i}");
        let start = Instant::now();
        writer
            .register_node(&id, "127.0.0.1", 9000, card(i))
            .await
            .unwrap();
        registered.insert(id, (start, Instant::now()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .expect("every join seen")
        .unwrap();
    let (mut from_start, mut from_ack) = (Vec::new(), Vec::new());
    for (id, (start, acked)) in &registered {
        let at = seen[id];
        from_start.push(at.saturating_duration_since(*start));
        from_ack.push(at.saturating_duration_since(*acked));
    }
    from_start.sort();
    from_ack.sort();
    println!("center change stream propagation, {count} registrations (durable store):");
    for (name, v) in [
        ("from register call start", &from_start),
        ("from register answer", &from_ack),
    ] {
        println!(
            "  {name:26} p50 {}  p99 {}  max {}",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap())
        );
    }
}

async fn fanout(nodes: usize, peers: usize, secs: u64) {
    let url = start_center(isek_center::Config::in_memory(Duration::from_secs(30))).await;
    let client = IsekCenterRegistry::new(&url).unwrap();
    let ids: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    futures::future::join_all((0..16).map(|w| {
        let client = client.clone();
        let ids = ids.clone();
        async move {
            for (i, id) in ids.iter().enumerate().skip(w).step_by(16) {
                client
                    .register_node(id, "10.0.0.1", 9000, card(i))
                    .await
                    .unwrap();
            }
        }
    }))
    .await;
    let list_body = reqwest::get(format!("{url}/isek_center/available_nodes"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len() as u64;

    // Peers: raw streams, counting body bytes; the window starts after the snapshots.
    let counting = Arc::new(AtomicU64::new(0));
    let snapshot_bytes = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(peers);
    for _ in 0..peers {
        let url = url.clone();
        let counting = Arc::clone(&counting);
        let snapshot_bytes = Arc::clone(&snapshot_bytes);
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut response = reqwest::get(format!("{url}/v1/watch")).await.unwrap();
            let mut initial = 0u64;
            let mut text = Vec::new();
            // Until the snapshot is complete.
            while let Some(chunk) = response.chunk().await.unwrap() {
                initial += chunk.len() as u64;
                text.extend_from_slice(&chunk);
                if text.windows(15).any(|w| w == b"event: snapshot") && text.ends_with(b"\n\n") {
                    break;
                }
            }
            snapshot_bytes.fetch_add(initial, Ordering::Relaxed);
            let _ = ready.send(()).await;
            while let Ok(Some(chunk)) = response.chunk().await {
                counting.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..peers {
        ready_rx.recv().await.unwrap();
    }
    counting.store(0, Ordering::Relaxed);

    // Steady renewals: every node every 5 s, spread over 16 workers.
    let renewals = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let client = client.clone();
            let ids = ids.clone();
            let renewals = Arc::clone(&renewals);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    if Instant::now() >= deadline {
                        return;
                    }
                    for id in ids.iter().skip(w).step_by(16) {
                        client.lease_refresh(id).await.unwrap();
                        renewals.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep_until(deadline).await;
    let streamed = counting.load(Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    for r in readers {
        r.abort();
    }
    let polls_per_peer = secs / 5;
    let polled = list_body * peers as u64 * polls_per_peer;
    println!(
        "{nodes} nodes renewing every 5 s for {secs} s ({} renewals), {peers} peers:",
        renewals.load(Ordering::Relaxed)
    );
    println!(
        "  change stream: {streamed} bytes to all peers in the window (keep-alives only: renewals are not changes)"
    );
    println!(
        "  one-time snapshots on connect: {} bytes ({} per peer)",
        snapshot_bytes.load(Ordering::Relaxed),
        snapshot_bytes.load(Ordering::Relaxed) / peers as u64
    );
    println!(
        "  polling every 5 s: list body {list_body} bytes x {peers} peers x {polls_per_peer} polls = {polled} bytes ({:.1} MB/min)",
        polled as f64 / 1e6 * 60.0 / secs as f64
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map(|a| a.parse().expect("a number"))
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("latency") | None => latency(num(1, 1000) as usize).await,
        Some("fanout") => fanout(num(1, 10_000) as usize, num(2, 100) as usize, num(3, 60)).await,
        Some(other) => {
            panic!("unknown mode {other}: latency [COUNT] | fanout [NODES] [PEERS] [SECS]")
        }
    }
}
