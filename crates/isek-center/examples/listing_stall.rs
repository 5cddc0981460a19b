//! How much a full listing stalls renewals, in-process (issue 9: `/v1/nodes` and the
//! `available_nodes` rebuild used to render every node while holding the state lock).
//!
//! `cargo run --release -p isek-center --example listing_stall -- 1000000 [ROUNDS]`
//! registers N nodes in memory, then renews node ids round-robin on one thread and
//! records each renewal's latency: first with nothing else running (`idle`), then
//! while another thread renders `GET /v1/nodes` bodies back to back (`listing`).
//! Prints p50/p99/max of both and the listing time, all from this one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use isek_center::{Center, Config, NodeRecord, Register, Renew};

/// p50, p99 and max of `samples` (sorted here), in microseconds.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    format!(
        "p50 {:.1} us  p99 {:.1} us  max {:.1} us  ({} renewals)",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

/// Renews ids round-robin until `stop`, returning each renewal's latency.
fn renew_until(center: &Center, n: usize, stop: &AtomicBool) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("node-{:08}", i % n);
        let t = Instant::now();
        let renewed = center.renew(Renew::by_operator(id));
        samples.push(t.elapsed());
        assert!(matches!(renewed, Ok(true)));
        i += 1;
    }
    samples
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let center = Center::start(Config {
        lease_ttl: Duration::from_secs(3600),
        ..Config::in_memory(Duration::from_secs(3600))
    })
    .await?;
    let mut tasks = Vec::new();
    for w in 0..256 {
        let center = center.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(256) {
                let metadata = format!(
                    r#"{{"name":"agent-{i:08}","role":"worker","url":"http://10.1.{}.{}:8080/a2a","v":1}}"#,
                    (i / 256) % 256,
                    i % 256
                );
                let record = NodeRecord::new("10.1.2.3", 9000, &metadata);
                center
                    .register(Register::by_operator(format!("node-{i:08}"), record))
                    .await?;
            }
            Ok::<_, isek_center::WriteError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!("{n} nodes registered");

    // Idle: renewals alone, for as long as the listing phase will take.
    let t = Instant::now();
    let body = center.nodes_body();
    let listing = t.elapsed();
    println!(
        "one /v1/nodes body: {} bytes in {:.1} ms",
        body.len(),
        listing.as_secs_f64() * 1e3
    );
    drop(body);
    let phase = listing * u32::try_from(rounds)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut idle = std::thread::scope(|s| {
        let worker = s.spawn(|| renew_until(&center, n, &stop));
        std::thread::sleep(phase);
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap_or_default()
    });
    stop.store(false, Ordering::Relaxed);
    let mut busy = std::thread::scope(|s| {
        let worker = s.spawn(|| renew_until(&center, n, &stop));
        for _ in 0..rounds {
            std::hint::black_box(center.nodes_body());
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap_or_default()
    });
    println!("idle:    {}", summary(&mut idle));
    println!("listing: {}", summary(&mut busy));
    center.shutdown().await?;
    Ok(())
}
