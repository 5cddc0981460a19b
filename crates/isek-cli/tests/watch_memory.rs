//! Change-stream readers that never read, against a real `isek center` with 100,000
//! nodes: 40 times, one node is registered and a watch is opened with a 4 KiB receive
//! buffer that is never read. Each watch starts at another revision; the center must
//! not pin a rendered snapshot per watcher (the center's resident memory stays within
//! 100 MB of its idle figure), and it must cut the watchers whose sockets do not drain
//! (`--write-timeout`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::CenterProcess;
use isek_center::{Center, Config, NodeRecord, Register};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Nodes in the store.
const NODES: usize = 100_000;

/// Watchers that never read.
const WATCHERS: usize = 40;

/// Most the center's resident memory may grow over its idle figure.
const BUDGET_MIB: f64 = 100.0;

/// Resident memory of process `pid` in MiB (`VmRSS` of /proc/PID/status).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Registers [`NODES`] nodes (agent-like metadata, hour-long leases) into a store in
/// `dir` through the in-process center API, then closes it.
async fn fill_store(dir: &std::path::Path) {
    let config = Config {
        lease_ttl: Duration::from_secs(3600),
        ..Config::on_disk(dir)
    };
    let center = Center::start(config).await.unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let center = center.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= NODES {
                    return;
                }
                let metadata = format!(
                    r#"{{"name":"agent-{i:08}","role":"worker","url":"http://10.1.{}.{}:8080/a2a","v":1}}"#,
                    (i / 256) % 256,
                    i % 256
                );
                let record = NodeRecord::new("10.1.2.3", 9000, &metadata);
                center
                    .register(Register::by_operator(format!("node-{i:08}"), record))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    center.shutdown().await.unwrap();
}

/// The `isek_watchers` gauge of the center at `url`.
async fn watchers(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("isek_watchers "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no isek_watchers in /metrics"))
}

/// Opens `GET /v1/watch` on a socket with a 4 KiB receive buffer, never read.
async fn stalled_watch(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/watch HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_watchers_that_never_read_stay_within_100_mb_and_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    fill_store(dir.path()).await;
    let center = CenterProcess::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--lease-ttl",
        "3600",
        "--write-timeout",
        "15",
    ]);
    let url = center.url.clone();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let client = reqwest::Client::new();
    let idle = rss_mib(center.pid());

    let mut sockets = Vec::new();
    let opening = std::time::Instant::now();
    for i in 0..WATCHERS {
        let status = client
            .post(format!("{url}/isek_center/register"))
            .json(&serde_json::json!({"node_id": format!("late-{i}"), "host": "10.9.9.9", "port": 9000}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        sockets.push(stalled_watch(addr).await);
    }
    // Every watcher has its starting frames (the snapshot is taken when the stream
    // opens, before its answer).
    isek_testkit::condition::wait_until("every watcher counted", || async {
        watchers(&url).await == u64::try_from(WATCHERS).unwrap()
    })
    .await;
    let open = rss_mib(center.pid());
    eprintln!("{WATCHERS} watchers open in {:?}", opening.elapsed());
    eprintln!(
        "{NODES} nodes: idle rss {idle:.1} MiB, with {WATCHERS} stalled watchers {open:.1} MiB (+{:.1})",
        open - idle
    );
    assert!(
        open - idle <= BUDGET_MIB,
        "rss grew from {idle:.1} MiB to {open:.1} MiB with {WATCHERS} stalled watchers"
    );
    // Their sockets never drain: each is cut at the write timeout.
    isek_testkit::condition::wait_until("the stalled watchers cut", || async {
        watchers(&url).await == 0
    })
    .await;
    eprintln!("after the cut: rss {:.1} MiB", rss_mib(center.pid()));
    drop(sockets);
}
