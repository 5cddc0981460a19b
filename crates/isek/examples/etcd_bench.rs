//! Measures `EtcdRegistry` on a real etcd: registering and listing 1,000 nodes (with
//! signature verification), where a registration's round trips go, and refresh
//! throughput for 10,000 leases from one process beside etcd's own keep-alive rate
//! (the same client, one multiplexed stream, the same number in flight), with ratios.
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

    // Where a registration's round trips go: the same number of each raw call,
    // sequentially (a lease grant and a put are each one raft write, with an fsync).
    let mut client = reg.client().clone();
    let d = run(nodes, 1, |_| {
        let mut client = client.clone();
        async move {
            client.lease_grant(60, None).await.unwrap();
        }
    })
    .await;
    println!("raw: lease grant x{nodes} sequential    {}", rate(nodes, d));
    let d = run(nodes, 1, |i| {
        let mut client = client.clone();
        async move {
            let key = format!("/bench-raw/k{i}");
            let txn = etcd_client::Txn::new()
                .when([etcd_client::Compare::create_revision(
                    key.as_str(),
                    etcd_client::CompareOp::Equal,
                    0,
                )])
                .and_then([etcd_client::TxnOp::put(key.as_str(), "v", None)]);
            client.txn(txn).await.unwrap();
        }
    })
    .await;
    println!("raw: txn put x{nodes} sequential        {}", rate(nodes, d));
    let d = run(nodes, 1, |i| {
        let mut client = client.clone();
        async move {
            client.get(format!("/bench-raw/k{i}"), None).await.unwrap();
        }
    })
    .await;
    println!("raw: get x{nodes} sequential            {}", rate(nodes, d));

    // A registration's two writes, one after the other, then sent together with a
    // lease id chosen here (what `register_node` does); counts how often the put
    // overtook the grant ("requested lease not found") and had to be sent again.
    let put_on = |key: String, lease: i64| {
        etcd_client::Txn::new()
            .when([etcd_client::Compare::create_revision(
                key.as_str(),
                etcd_client::CompareOp::Equal,
                0,
            )])
            .and_then([etcd_client::TxnOp::put(
                key.as_str(),
                "v",
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )])
    };
    let d = run(nodes, 1, |i| {
        let mut client = client.clone();
        async move {
            let lease = client.lease_grant(60, None).await.unwrap().id();
            client
                .txn(put_on(format!("/bench-raw/s{i}"), lease))
                .await
                .unwrap();
        }
    })
    .await;
    println!("raw: grant, then txn x{nodes}          {}", rate(nodes, d));
    let overtaken = std::sync::atomic::AtomicUsize::new(0);
    let d = run(nodes, 1, |i| {
        let (mut grant_client, mut txn_client) = (client.clone(), client.clone());
        let overtaken = &overtaken;
        async move {
            let lease = 1_000_000_000 + i as i64;
            let options = etcd_client::LeaseGrantOptions::new().with_id(lease);
            let key = format!("/bench-raw/c{i}");
            let (granted, put) = tokio::join!(
                grant_client.lease_grant(60, Some(options)),
                txn_client.txn(put_on(key.clone(), lease))
            );
            granted.unwrap();
            if put.is_err() {
                overtaken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                txn_client.txn(put_on(key, lease)).await.unwrap();
            }
        }
    })
    .await;
    println!(
        "raw: grant + txn together x{nodes}     {}  (txn overtook the grant {} times)",
        rate(nodes, d),
        overtaken.load(std::sync::atomic::Ordering::Relaxed)
    );

    // Keep-alive throughput: L nodes registered by this process, each refreshed
    // through the registry (one shared keep-alive stream; the key is read again only
    // when etcd changed since it was last seen). Round 0 follows the registrations,
    // so every key is read once; later rounds are keep-alives only.
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
    let ids: Vec<i64> = {
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_keys_only();
        let resp = client.get("/bench-leases/", Some(options)).await.unwrap();
        resp.kvs().iter().map(|kv| kv.lease()).collect()
    };
    assert_eq!(ids.len(), leases);
    let mut best = [f64::MAX; 2];
    for conc in [concurrency, 4 * concurrency] {
        for round in 0..3 {
            let d = run(leases, conc, |i| {
                let reg = reg.clone();
                async move { reg.lease_refresh(&format!("n{i}")).await.unwrap() }
            })
            .await;
            println!(
                "lease_refresh {leases} conc {conc:<4} round {round} {}",
                rate(leases, d)
            );
            if round > 0 {
                best[0] = best[0].min(d.as_secs_f64());
            }
            // Interleaved: etcd's own keep-alive rate, same leases, same client, one
            // multiplexed stream with the same number in flight.
            let d = raw_multiplexed(&client, &ids, conc).await;
            println!(
                "raw keep-alive {leases} conc {conc:<4} one stream {}",
                rate(leases, d)
            );
            best[1] = best[1].min(d.as_secs_f64());
        }
        println!(
            "ratio registry/raw keep-alive at conc {conc}: {:.2} (best steady rounds: {:.0}/s vs {:.0}/s)",
            best[1] / best[0],
            leases as f64 / best[0],
            leases as f64 / best[1]
        );
        best = [f64::MAX; 2];
    }
    println!(
        "keep-alives in flight after the runs: {}",
        reg.keep_alives_in_flight()
    );
    // From another registry instance with the same identity: the lease is found on
    // the key (read + verify + keep-alive), then cached.
    let cold = Arc::new(connect("bench-leases").await.unwrap());
    for label in ["uncached", "cached  "] {
        let d = run(leases, concurrency, |i| {
            let reg = cold.clone();
            async move { reg.lease_refresh(&format!("n{i}")).await.unwrap() }
        })
        .await;
        println!(
            "lease_refresh {leases} other instance {label} {}",
            rate(leases, d)
        );
    }

    // For comparison with the old design: one keep-alive stream opened per refresh.
    let sample = &ids[..ids.len().min(2000)];
    let d = run(sample.len(), concurrency, |i| {
        let mut client = client.clone();
        let id = sample[i];
        async move {
            client.lease_keep_alive(id).await.unwrap();
        }
    })
    .await;
    println!(
        "raw: one keep-alive stream per refresh on {} leases {}",
        sample.len(),
        rate(sample.len(), d)
    );
}

/// etcd's own keep-alive rate: every id once over one `LeaseKeepAlive` stream, at most
/// `window` requests awaiting their answer.
async fn raw_multiplexed(client: &etcd_client::Client, ids: &[i64], window: usize) -> Duration {
    let mut lc = client.lease_client();
    let (mut keeper, mut stream) = lc.keep_alive(ids[0]).await.unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(window));
    let n = ids.len();
    let reader = {
        let slots = slots.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                let answer = stream.message().await.unwrap().unwrap();
                assert!(answer.ttl() > 0);
                slots.add_permits(1);
            }
        })
    };
    let start = Instant::now();
    for &id in ids {
        slots.acquire().await.unwrap().forget();
        keeper.id = id;
        keeper.keep_alive().await.unwrap();
    }
    reader.await.unwrap();
    start.elapsed()
}
