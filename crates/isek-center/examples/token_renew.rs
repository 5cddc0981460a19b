//! Renew cost of the ownership proofs: unsigned renews vs lease-token renews vs signed
//! renews, against one in-process center on 127.0.0.1, with the same keep-alive load.
//!
//! ```sh
//! cargo run --release -p isek-center --example token_renew -- [SECONDS] [CONNECTIONS]
//! ```
//!
//! Client and server share the machine, so compare the rows, not the absolute rates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isek::identity::NodeIdentity;
use isek::wire::proof::{ProofRequest, RENEW_OP, SignedRegisterRequest};
use isek_center::Config;

/// Nodes per kind.
const NODES: usize = 1_000;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(isek_center::run(
        listener,
        Config::in_memory(Duration::from_secs(3600)),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let register = format!("{base}/isek_center/register");
    let renew = format!("{base}/isek_center/renew");

    let key = NodeIdentity::generate();
    let mut unsigned = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..NODES {
        let id = format!("plain-{i}");
        let body = serde_json::json!({"node_id": id, "host": "h", "port": 1});
        http.post(&register).json(&body).send().await.unwrap();
        unsigned.push(serde_json::to_vec(&serde_json::json!({ "node_id": id })).unwrap());
        let id = format!("signed-{i}");
        let body = SignedRegisterRequest::sign(&key, &id, "h", 1, Default::default());
        let answer: serde_json::Value = http
            .post(&register)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = answer["data"]["lease_token"].as_str().unwrap();
        tokens.push(serde_json::to_vec(&ProofRequest::with_token(&id, token)).unwrap());
    }
    let unsigned = Arc::new(unsigned);
    let tokens = Arc::new(tokens);
    for round in 0..2 {
        for (name, bodies) in [("unsigned", &unsigned), ("token", &tokens)] {
            let rate = load(&http, &renew, Arc::clone(bodies), seconds, connections).await;
            println!("round {round} {name:>8}: {rate:>8.0} renews/s");
        }
    }
    // Signed renews: one signature verification each (timestamps, Unix ms, must
    // increase per node: `next_timestamp` does that within a process).
    let started = Instant::now();
    let mut done = 0u64;
    for i in 0..NODES.min(300) {
        let id = format!("signed-{i}");
        let timestamp = isek::wire::proof::next_timestamp();
        let body = ProofRequest::signed(&key, RENEW_OP, &id, timestamp);
        let status = http.post(&renew).json(&body).send().await.unwrap().status();
        assert_eq!(status, 200);
        done += 1;
    }
    println!(
        "signed (sequential, 1 connection, signing included): {:.0} renews/s",
        done as f64 / started.elapsed().as_secs_f64()
    );
}

/// Renews with `bodies` round-robin on `connections` tasks for `seconds`; req/s.
async fn load(
    http: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    seconds: u64,
    connections: usize,
) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (http, url, bodies, count) = (
            http.clone(),
            url.to_owned(),
            Arc::clone(&bodies),
            Arc::clone(&count),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await;
                count.fetch_add(1, Ordering::Relaxed);
                i += connections;
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
