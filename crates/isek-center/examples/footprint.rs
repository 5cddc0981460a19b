//! Memory footprint and listing cost of a center with many nodes, in-process.
//!
//! `cargo run --release -p isek-center --example footprint -- 1000000 [DATA_DIR]`
//! registers N nodes (about 100 bytes of metadata each) through the store writer,
//! then prints the process RSS and how long a cold and a warm listing take.
//! Without DATA_DIR the center runs in memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isek_center::{Center, Config, NodeRecord};

/// Resident set size of this process in MiB, from /proc.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let data_dir = args.next().map(PathBuf::from);
    let config = Config {
        data_dir,
        lease_ttl: Duration::from_secs(3600),
        ..Config::default()
    };
    println!("start: rss {:.1} MiB", rss_mib());
    let t = Instant::now();
    let center = Center::start(config).await?;
    println!(
        "started (store loaded) in {:.2} s: {} nodes, rss {:.1} MiB",
        t.elapsed().as_secs_f64(),
        center.live_count(),
        rss_mib()
    );
    let started = Instant::now();
    let workers = 512;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let center = center.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, isek_center::WriteError>(());
                }
                let metadata = format!(
                    r#"{{"name":"agent-{i:08}","role":"worker","url":"http://10.1.{}.{}:8080/a2a","v":1}}"#,
                    (i / 256) % 256,
                    i % 256
                );
                let record = NodeRecord::new("10.1.2.3", 9000, &metadata);
                center
                    .register(isek_center::Register::by_operator(format!("node-{i:08}"), record))
                    .await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    println!(
        "registered {n} in {:.2} s ({:.0}/s): rss {:.1} MiB",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        rss_mib()
    );
    let t = Instant::now();
    let body = center.available_nodes_body();
    println!(
        "cold listing: {} bytes in {:.2} ms: rss {:.1} MiB",
        body.len(),
        t.elapsed().as_secs_f64() * 1e3,
        rss_mib()
    );
    let t = Instant::now();
    let warm = 1000;
    for _ in 0..warm {
        std::hint::black_box(center.available_nodes_body());
    }
    println!(
        "warm listing: {:.3} us each",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(warm)
    );
    drop(body);
    center.shutdown().await?;
    Ok(())
}
