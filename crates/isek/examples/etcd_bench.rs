//! Measures `EtcdRegistry` on a real etcd: registering and listing 1,000 nodes (with
//! signature verification), and keep-alive throughput for 10,000 leases from one process.
//!
//! ```text
//! cargo run --release -p isek --example etcd_bench [-- ENDPOINT]
//! ```
//! Without an endpoint it starts its own etcd (testkit harness, temporary data dir).
//! Environment: `NODES` (default 1000), `LEASES` (default 10000), `CONCURRENCY` (64).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::{Metadata, Registry};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn metadata(i: usize) -> Metadata {
    json!({"name": format!("agent-{i}"), "url": format!("http://10.0.{}.{}:8080", i / 256, i % 256),
           "p2p_address": format!("/ip4/10.0.0.1/tcp/{}", 9000 + i), "capabilities": ["chat", "plan"]})
    .as_object()
    .unwrap()
    .clone()
}

/// Runs `op(i)` for i in 0..n with `concurrency` in flight; returns elapsed time.
async fn run<F, Fut>(n: usize, concurrency: usize, op: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(&op)
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>8.1} ms  ({:>8.0}/s)",
        d.as_secs_f64() * 1e3,
        n as f64 / d.as_secs_f64()
    )
}

#[tokio::main]
async fn main() {
    let nodes = env_usize("NODES", 1000);
    let leases = env_usize("LEASES", 10_000);
    let concurrency = env_usize("CONCURRENCY", 64);
    let mut _server = None;
    let endpoint = match std::env::args().nth(1) {
        Some(e) => e,
        None => {
            let server = isek_testkit::etcd::EtcdServer::start().await.unwrap();
            let e = server.endpoint();
            _server = Some(server);
            e
        }
    };
    println!("etcd {endpoint}; nodes {nodes}, leases {leases}, concurrency {concurrency}");
    let id = NodeIdentity::generate();
    let connect = |parent: &str| {
        let config = EtcdConfig::new([endpoint.clone()])
            .parent(parent)
            .timeout(Duration::from_secs(30));
        EtcdRegistry::connect(config, id.clone())
    };

    // Register N nodes: sequentially, then concurrently (fresh parents).
    let reg = Arc::new(connect("bench-seq").await.unwrap());
    let d = run(nodes, 1, |i| {
        let reg = reg.clone();
        async move {
            reg.register_node(&format!("node-{i}"), "10.0.0.1", 9000, metadata(i))
                .await
                .unwrap()
        }
    })
    .await;
    println!("register {nodes} sequential        {}", rate(nodes, d));
    let reg = Arc::new(connect("bench").await.unwrap());
    let d = run(nodes, concurrency, |i| {
        let reg = reg.clone();
        async move {
            reg.register_node(&format!("node-{i}"), "10.0.0.1", 9000, metadata(i))
                .await
                .unwrap()
        }
    })
    .await;
    println!(
        "register {nodes} concurrency {concurrency:<4}  {}",
        rate(nodes, d)
    );

    // List N nodes with verification: the first listing verifies every entry, later
    // ones only entries whose value changed (unchanged values hit the cache). A fresh
    // registry instance measures the cold path again.
    for label in ["instance 1", "instance 2"] {
        let reg = connect("bench").await.unwrap();
        let mut times = Vec::new();
        for _ in 0..6 {
            let start = Instant::now();
            let listed = reg.get_available_nodes().await.unwrap();
            times.push(start.elapsed());
            assert_eq!(listed.len(), nodes);
        }
        let warm = times[1..].iter().min().copied().unwrap_or_default();
        println!(
            "list {nodes} verified ({label}): cold {:.1} ms, warm best {:.1} ms",
            times[0].as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3
        );
    }

    // Keep-alive throughput: L nodes registered by this process, each refreshed once
    // through the registry (cached lease: one keep-alive stream opened per refresh).
    let reg = Arc::new(connect("bench-leases").await.unwrap());
    let d = run(leases, concurrency, |i| {
        let reg = reg.clone();
        async move {
            reg.register_node(&format!("n{i}"), "10.0.0.1", 9000, Metadata::new())
                .await
                .unwrap()
        }
    })
    .await;
    println!("register {leases} (setup)          {}", rate(leases, d));
    for round in 0..2 {
        let d = run(leases, concurrency, |i| {
            let reg = reg.clone();
            async move { reg.lease_refresh(&format!("n{i}")).await.unwrap() }
        })
        .await;
        println!(
            "lease_refresh {leases} round {round}     {}",
            rate(leases, d)
        );
    }
    let d = run(leases, 4 * concurrency, |i| {
        let reg = reg.clone();
        async move { reg.lease_refresh(&format!("n{i}")).await.unwrap() }
    })
    .await;
    println!(
        "lease_refresh {leases} conc {:<4}     {}",
        4 * concurrency,
        rate(leases, d)
    );
    // Same, from another registry instance with the same identity: the lease is found
    // on the key (read + verify + keep-alive).
    let cold = Arc::new(connect("bench-leases").await.unwrap());
    let d = run(leases, concurrency, |i| {
        let reg = cold.clone();
        async move { reg.lease_refresh(&format!("n{i}")).await.unwrap() }
    })
    .await;
    println!("lease_refresh {leases} uncached      {}", rate(leases, d));

    // Breakdown of one refresh on the same 2,000 registered nodes, interleaved so the
    // machine's load affects each alike: the registry's refresh (keep-alive + key check
    // in parallel), a keep-alive alone (stream per call), the key check alone.
    let sample = leases.min(2000);
    let lease_of: Vec<(String, i64)> = {
        let mut kv = reg.client().kv_client();
        let mut out = Vec::new();
        for i in 0..sample {
            let key = format!("/bench-leases/n{i}");
            let resp = kv.get(key.as_str(), None).await.unwrap();
            out.push((key, resp.kvs()[0].lease()));
        }
        out
    };
    let lease_of = &lease_of;
    for round in 0..2 {
        let d = run(sample, concurrency, |i| {
            let reg = reg.clone();
            async move { reg.lease_refresh(&format!("n{i}")).await.unwrap() }
        })
        .await;
        println!(
            "breakdown {round}: registry refresh      {}",
            rate(sample, d)
        );
        let d = run(sample, concurrency, |i| {
            let mut client = reg.client().clone();
            async move {
                client.lease_keep_alive(lease_of[i].1).await.unwrap();
            }
        })
        .await;
        println!(
            "breakdown {round}: keep-alive only       {}",
            rate(sample, d)
        );
        let d = run(sample, concurrency, |i| {
            let mut kv = reg.client().kv_client();
            async move {
                let options = etcd_client::GetOptions::new()
                    .with_keys_only()
                    .with_serializable();
                kv.get(lease_of[i].0.as_str(), Some(options)).await.unwrap();
            }
        })
        .await;
        println!(
            "breakdown {round}: key check only        {}",
            rate(sample, d)
        );
    }

    // Raw etcd-client: one long-lived keeper stream per lease (what a node that keeps
    // its stream open would cost), to compare with a stream per refresh.
    let mut client = reg.client().clone();
    let mut ids = Vec::with_capacity(leases);
    for _ in 0..leases.min(2000) {
        ids.push(client.lease_grant(60, None).await.unwrap().id());
    }
    let d = run(ids.len(), concurrency, |i| {
        let mut client = client.clone();
        let id = ids[i];
        async move {
            client.lease_keep_alive(id).await.unwrap();
        }
    })
    .await;
    println!(
        "raw: one keep-alive stream per refresh on {} leases {}",
        ids.len(),
        rate(ids.len(), d)
    );
    let start = Instant::now();
    let mut keepers = Vec::new();
    for id in &ids {
        keepers.push(client.lease_keep_alive(*id).await.unwrap());
    }
    let open = start.elapsed();
    let start = Instant::now();
    for (keeper, _) in keepers.iter_mut() {
        keeper.keep_alive().await.unwrap();
    }
    for (_, stream) in keepers.iter_mut() {
        stream.message().await.unwrap().unwrap();
    }
    let d = start.elapsed();
    println!(
        "raw: open {} keeper streams {:.1} ms; one keep-alive on each {}",
        ids.len(),
        open.as_secs_f64() * 1e3,
        rate(ids.len(), d)
    );
}
