//! The `--scale` suite of issue 14: a center holding a million nodes, each figure
//! measured in the same run as the bare axum baseline, printed as one table with the
//! machine's load average.
//!
//! Phases, in order:
//! 1. register `nodes` on a fresh center, fsync-durable (rate);
//! 2. renew over all of them, distinct ids in a shuffled order, at each connection
//!    count, interleaved round by round with the baseline (ratio, p99);
//! 3. `available_nodes` and `/v1/nodes` at `nodes`: time to first byte of one listing
//!    alone, then of `list_streams` listings streaming at once while renewals run
//!    (their p99), with the center's RSS sampled every 50 ms (peak);
//! 4. restart with `nodes` stored: time from spawn to a 200 from `/readyz`;
//! 5. mass expiry, for each count in `lapse`: that many nodes lapse at one instant (a
//!    restart gives every stored node the same fresh deadline) while `renewers` other
//!    nodes renew; renew p99 and errors, when the lapsed nodes are gone from listings,
//!    from the store (`isek_expire_total`), and how many deletes a watcher saw;
//! 6. watchers: for each count in `watchers`, that many `/v1/watch` streams while
//!    `change_rate` changes/s are made; the center's CPU per change and per delivered
//!    event, and its memory per watcher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BenchError;
use crate::load::{LoadSpec, Scenario};
use crate::suite::{
    Row, ServerProcess, cpu_time, describe, load_average, measure, median_ratio, ms, peak_rss_kib,
    rss_kib,
};

/// Everything the scale suite needs to know.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// The `isek` binary whose `center` subcommand is measured.
    pub isek: PathBuf,
    /// The `isek-bench` binary, started again as the baseline server process.
    pub bench_exe: PathBuf,
    /// Where data dirs and server logs go (on disk, so fsync is real).
    pub work_dir: PathBuf,
    /// Nodes of the main center (1,000,000 for the figures).
    pub nodes: u64,
    /// Length of each measured load.
    pub duration: Duration,
    /// Connection counts of the renew loads.
    pub connections: Vec<usize>,
    /// Interleaved renew rounds per connection count.
    pub rounds: usize,
    /// Connections of the register loads.
    pub register_connections: usize,
    /// Listings streaming at once in phase 3.
    pub list_streams: usize,
    /// Node counts that lapse at one instant in phase 5 ("" to skip).
    pub lapse: Vec<u64>,
    /// Nodes that keep renewing while the others lapse.
    pub renewers: u64,
    /// Lease length of the mass-expiry center (long enough to restart and settle).
    pub lapse_ttl: Duration,
    /// Watcher counts of phase 6 ("" to skip).
    pub watchers: Vec<usize>,
    /// Changes per second made while the watchers listen.
    pub change_rate: f64,
    /// Metadata size of every registered node.
    pub metadata_bytes: usize,
}

/// The `--data-dir` center arguments (with `{addr}` for the listen address).
fn center_args<'a>(data_dir: &'a str, ttl: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "center",
        "--listen",
        "{addr}",
        "--data-dir",
        data_dir,
        "--lease-ttl",
        ttl,
    ];
    args.extend_from_slice(extra);
    args
}

/// MiB of a KiB figure.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One GET over a fresh connection: status and whole body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), BenchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| BenchError::Connect { addr, source })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|error| BenchError::Process(format!("handshake with {addr}: {error}")))?;
    let driver = tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::new())?;
    let answer = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    }
    .await
    .map_err(|error| BenchError::Process(format!("GET {path} from {addr}: {error}")));
    driver.abort();
    answer
}

/// Polls `/readyz` every 10 ms until it answers 200 (at most `limit`).
async fn wait_readyz(server: &mut ServerProcess, limit: Duration) -> Result<(), BenchError> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if !server.running() {
            return Err(BenchError::Process(
                "the center exited while starting".into(),
            ));
        }
        if let Ok((StatusCode::OK, _)) = get(server.addr(), "/readyz").await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(BenchError::Process(format!(
        "/readyz not 200 within {limit:?}"
    )))
}

/// Samples VmRSS of `pid` every 50 ms until stopped; the largest sample.
struct RssSampler {
    /// Set to end the sampling.
    stop: Arc<AtomicBool>,
    /// Largest VmRSS seen, in KiB.
    peak: Arc<AtomicU64>,
    /// The sampling task.
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Self { stop, peak, task }
    }

    /// Stops sampling; the peak in KiB.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// What one change-stream client counted.
#[derive(Debug, Default)]
pub struct WatchCounts {
    /// Frames of any kind (events and keep-alives).
    pub frames: AtomicU64,
    /// `put` events.
    pub puts: AtomicU64,
    /// `delete` events.
    pub deletes: AtomicU64,
    /// `resync` events (the center cut the stream: the watcher lagged).
    pub resyncs: AtomicU64,
    /// Body bytes.
    pub bytes: AtomicU64,
    /// Set when the stream ended (or never started).
    pub ended: AtomicBool,
}

/// Reads one `/v1/watch` stream (HTTP/1.0, so the body is the raw event stream)
/// until it ends or the task is aborted, counting frames by kind into `counts`.
pub async fn watch(addr: SocketAddr, path: String, counts: Arc<WatchCounts>) {
    let result = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buffer = vec![0u8; 64 * 1024];
        // Skip the head: until the first "\r\n\r\n".
        let mut head = Vec::new();
        let mut body_start = None;
        while body_start.is_none() {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buffer[..read]);
            body_start = head.windows(4).position(|w| w == b"\r\n\r\n");
            if head.len() > 64 * 1024 {
                return Ok(());
            }
        }
        let start = body_start.unwrap_or(0) + 4;
        if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
            return Ok(());
        }
        let mut frames = FrameCounter::default();
        frames.feed(&head[start..], &counts);
        loop {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                return Ok(());
            }
            frames.feed(&buffer[..read], &counts);
        }
    }
    .await;
    let _: std::io::Result<()> = result;
    counts.ended.store(true, Ordering::Relaxed);
}

/// Splits an event stream into frames (each ends with an empty line) and tells their
/// kind from the eighth byte of `event: KIND`, without buffering the frames.
#[derive(Debug, Default)]
struct FrameCounter {
    /// Bytes of the current frame seen so far.
    position: usize,
    /// Its first byte (`e` for an event, `:` for a comment).
    first: u8,
    /// Whether the previous byte was a newline.
    newline: bool,
}

impl FrameCounter {
    /// Counts the frames that end in `bytes`.
    fn feed(&mut self, bytes: &[u8], counts: &WatchCounts) {
        counts
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        for &byte in bytes {
            match self.position {
                0 => self.first = byte,
                7 if self.first == b'e' => {
                    let counter = match byte {
                        b'p' => Some(&counts.puts),
                        b'd' => Some(&counts.deletes),
                        b'r' => Some(&counts.resyncs),
                        _ => None,
                    };
                    if let Some(counter) = counter {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
            if byte == b'\n' && self.newline {
                counts.frames.fetch_add(1, Ordering::Relaxed);
                self.position = 0;
                self.newline = false;
                continue;
            }
            self.newline = byte == b'\n';
            self.position += 1;
        }
    }
}

/// Epoch and revision of a center, from a one-node page of `/v1/nodes`.
async fn epoch_and_revision(addr: SocketAddr) -> Result<(u64, u64), BenchError> {
    let (status, body) = get(addr, "/v1/nodes?limit=1").await?;
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    let field = |name: &str| value["data"][name].as_u64();
    match (status, field("epoch"), field("revision")) {
        (StatusCode::OK, Some(epoch), Some(revision)) => Ok((epoch, revision)),
        _ => Err(BenchError::Process(format!(
            "/v1/nodes?limit=1 answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}

/// `isek_expire_total{outcome="ok"}` from `/metrics`: expired leases the store forgot.
async fn expired_in_store(addr: SocketAddr) -> Result<u64, BenchError> {
    let (_, body) = get(addr, "/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("isek_expire_total{outcome=\"ok\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

/// Registers `count` nodes `prefix-0..` at `connections` connections; fails if any failed.
async fn populate(
    config: &ScaleConfig,
    server: &ServerProcess,
    prefix: &str,
    count: u64,
    label: &str,
) -> Result<crate::suite::Measured, BenchError> {
    let spec = LoadSpec {
        connections: config.register_connections,
        duration: None,
        requests: Some(count),
        nodes: u64::MAX,
        prefix: prefix.to_owned(),
        metadata_bytes: config.metadata_bytes,
        ..LoadSpec::new(server.addr(), Scenario::Register)
    };
    let measured = measure(label, &spec, Some(server)).await?;
    if measured.report.failed > 0 {
        return Err(BenchError::Process(format!(
            "{label}: {}",
            measured.report.summary()
        )));
    }
    Ok(measured)
}

/// Runs the scale suite and returns the summary rows.
pub async fn run(config: &ScaleConfig) -> Result<Vec<Row>, BenchError> {
    std::fs::create_dir_all(&config.work_dir)?;
    let mut rows = vec![Row::info(
        "load average at start (1/5/15 min)",
        load_average(),
    )];
    let n = config.nodes;
    let data_dir = config.work_dir.join("scale-data");
    let data_dir_arg = data_dir.to_string_lossy().into_owned();
    let baseline = ServerProcess::start(
        "scale-baseline",
        &config.bench_exe,
        &["baseline", "--listen", "{addr}", "--mode", "echo"],
        &config.work_dir,
    )
    .await?;
    let center_args = center_args(&data_dir_arg, "86400", &[]);
    let center =
        ServerProcess::start("scale-center", &config.isek, &center_args, &config.work_dir).await?;

    // Phase 1: register from empty.
    let registered = populate(config, &center, "scale", n, &format!("register {n}")).await?;
    let report = &registered.report;
    rows.push(Row::goal(
        format!(
            "register {n} from empty, fsync-durable, {} conns",
            config.register_connections
        ),
        format!(
            "{}, server CPU {:.1} us/req",
            describe(report),
            registered.cpu_per_request.unwrap_or(f64::NAN)
        ),
        ">= 30000 req/s",
        report.throughput() >= 30_000.0,
    ));
    rows.push(Row::info(
        format!("center RSS after registering {n}"),
        format!("{:.1} MiB", mib(center.rss_kib()?)),
    ));

    // Phase 2: renew over every id, shuffled, against the baseline and the center.
    let renew = |addr: SocketAddr, connections: usize| LoadSpec {
        connections,
        duration: Some(config.duration),
        requests: None,
        nodes: n,
        prefix: "scale".to_owned(),
        shuffle: true,
        ..LoadSpec::new(addr, Scenario::Renew)
    };
    for &connections in &config.connections {
        let (mut ours, mut theirs, mut p99s, mut base_p99s) = (vec![], vec![], vec![], vec![]);
        let mut failed = 0;
        for round in 1..=config.rounds.max(1) {
            let base = measure(
                &format!("round {round} renew baseline c={connections}"),
                &renew(baseline.addr(), connections),
                Some(&baseline),
            )
            .await?;
            let mine = measure(
                &format!("round {round} renew center c={connections}"),
                &renew(center.addr(), connections),
                Some(&center),
            )
            .await?;
            theirs.push(base.report.throughput());
            ours.push(mine.report.throughput());
            base_p99s.push(base.report.latency.percentile(0.99));
            p99s.push(mine.report.latency.percentile(0.99));
            failed += mine.report.failed;
        }
        let ratio = median_ratio(&ours, &theirs);
        let worst = p99s.iter().max().copied().unwrap_or_default();
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        rows.push(Row::goal(
            format!("renew {n} distinct ids shuffled, {connections} conns: center / baseline (median of rounds)"),
            format!(
                "{:.1} % ({:.0} vs {:.0} req/s){}",
                ratio * 100.0,
                median(&ours),
                median(&theirs),
                if failed > 0 { format!(", {failed} FAILED") } else { String::new() }
            ),
            ">= 90 %",
            ratio >= 0.9 && failed == 0,
        ));
        rows.push(Row::goal(
            format!("renew p99, {connections} conns, worst round (baseline's)"),
            format!(
                "{} ({})",
                ms(worst),
                ms(base_p99s.iter().max().copied().unwrap_or_default())
            ),
            "<= 20 ms",
            worst <= Duration::from_millis(20),
        ));
    }
    drop(baseline);

    // Phase 3: listings at n: alone, then `list_streams` at once with renewals.
    let before_listings = center.rss_kib()?;
    let mut peak_rss = before_listings;
    for scenario in [Scenario::List, Scenario::Nodes] {
        let path = match scenario {
            Scenario::List => "available_nodes",
            _ => "/v1/nodes",
        };
        let alone = LoadSpec {
            connections: 1,
            duration: None,
            requests: Some(3),
            ..LoadSpec::new(center.addr(), scenario)
        };
        let alone = measure(&format!("{path} alone"), &alone, Some(&center)).await?;
        let streams = LoadSpec {
            connections: config.list_streams,
            duration: Some(config.duration),
            ..LoadSpec::new(center.addr(), scenario)
        };
        let sampler = RssSampler::start(center.pid());
        let renewing = renew(center.addr(), 64);
        let (list_label, renew_label) = (
            format!("{path} x{}", config.list_streams),
            format!("renew during {path}"),
        );
        let (listed, renewed) = tokio::join!(
            measure(&list_label, &streams, Some(&center)),
            measure(&renew_label, &renewing, None),
        );
        let (listed, renewed) = (listed?.report, renewed?.report);
        let sampled = sampler.finish().await;
        peak_rss = peak_rss.max(sampled);
        let first = alone.report.first_byte.max();
        let first_busy = listed.first_byte.percentile(0.99);
        rows.push(Row::goal(
            format!("{path} at {n}: time to first byte, alone (max of 3)"),
            format!(
                "{} (whole answer {}, {:.0} MB)",
                ms(first),
                ms(alone.report.latency.max()),
                alone.report.body_bytes as f64 / 3e6
            ),
            "<= 50 ms",
            first <= Duration::from_millis(50) && alone.report.failed == 0,
        ));
        rows.push(Row::goal(
            format!(
                "{path} at {n}, {} streaming at once: time to first byte p99",
                config.list_streams
            ),
            format!(
                "{} ({} answers, whole answer p50 {}{})",
                ms(first_busy),
                listed.ok,
                ms(listed.latency.percentile(0.5)),
                if listed.failed > 0 {
                    format!(", {} FAILED", listed.failed)
                } else {
                    String::new()
                }
            ),
            "<= 50 ms",
            first_busy <= Duration::from_millis(50) && listed.failed == 0,
        ));
        let p99 = renewed.latency.percentile(0.99);
        rows.push(Row::goal(
            format!(
                "renew p99 while {} {path} stream, 64 conns",
                config.list_streams
            ),
            describe(&renewed),
            "<= 20 ms",
            p99 <= Duration::from_millis(20) && renewed.failed == 0,
        ));
        rows.push(Row::info(
            format!("center RSS while {path} streamed (max of 50 ms samples)"),
            format!("{:.1} MiB", mib(sampled)),
        ));
    }
    let hwm = peak_rss_kib(center.pid())?;
    rows.push(Row::goal(
        format!("center peak RSS at {n}, listings included"),
        format!(
            "{:.1} MiB sampled ({:.1} MiB before the listings; VmHWM {:.1} MiB, registration included)",
            mib(peak_rss),
            mib(before_listings),
            mib(hwm)
        ),
        "<= 512 MiB",
        mib(peak_rss) <= 512.0,
    ));

    // Phase 4: restart with n stored.
    let stopped = center.stop(Duration::from_secs(60)).await?;
    let spawned = Instant::now();
    let mut center = ServerProcess::spawn(
        "scale-restart",
        &config.isek,
        &center_args,
        &config.work_dir,
    )?;
    wait_readyz(&mut center, Duration::from_secs(120)).await?;
    let ready = spawned.elapsed();
    rows.push(Row::goal(
        format!("restart with {n} stored: spawn to /readyz 200"),
        format!(
            "{} (orderly shutdown before: {})",
            ms(ready),
            stopped.map_or_else(|| "killed after 60 s".to_owned(), ms)
        ),
        "<= 2000 ms",
        ready <= Duration::from_secs(2),
    ));
    rows.push(Row::info(
        format!("center RSS after restart with {n}"),
        format!("{:.1} MiB", mib(center.rss_kib()?)),
    ));
    drop(center);
    let _ = std::fs::remove_dir_all(&data_dir);

    // Phase 5: mass expiry.
    for &lapse in &config.lapse {
        mass_expiry(config, lapse, &mut rows).await?;
    }

    // Phase 6: watchers.
    if !config.watchers.is_empty() {
        watchers(config, &mut rows).await?;
    }
    rows.push(Row::info(
        "load average at end (1/5/15 min)",
        load_average(),
    ));
    Ok(rows)
}

/// Phase 5 for one count: `lapse` nodes lapse at one instant while `renewers` renew.
async fn mass_expiry(
    config: &ScaleConfig,
    lapse: u64,
    rows: &mut Vec<Row>,
) -> Result<(), BenchError> {
    let dir = config.work_dir.join(format!("lapse-{lapse}"));
    let dir_arg = dir.to_string_lossy().into_owned();
    let long = center_args(&dir_arg, "86400", &[]);
    let center = ServerProcess::start("lapse-load", &config.isek, &long, &config.work_dir).await?;
    populate(
        config,
        &center,
        "lapse",
        lapse,
        &format!("register {lapse} to lapse"),
    )
    .await?;
    populate(
        config,
        &center,
        "live",
        config.renewers,
        "register the renewers",
    )
    .await?;
    center.stop(Duration::from_secs(60)).await?;
    // Restarted with a short lease: every stored node gets the same deadline, about
    // `lapse_ttl` after the rows are loaded (between spawn and ready).
    let ttl = format!("{}", config.lapse_ttl.as_secs_f64());
    let short = center_args(&dir_arg, &ttl, &[]);
    let spawned = Instant::now();
    let mut center = ServerProcess::spawn("lapse", &config.isek, &short, &config.work_dir)?;
    wait_readyz(&mut center, Duration::from_secs(120)).await?;
    let ready = Instant::now();
    let addr = center.addr();
    let (epoch, revision) = epoch_and_revision(addr).await?;
    let counts = Arc::new(WatchCounts::default());
    let watcher = tokio::spawn(watch(
        addr,
        format!("/v1/watch?since={revision}&epoch={epoch}"),
        Arc::clone(&counts),
    ));
    let window = config.lapse_ttl + Duration::from_secs(8);
    let renewing = LoadSpec {
        connections: 16,
        duration: Some(window.saturating_sub(ready.elapsed())),
        nodes: config.renewers,
        prefix: "live".to_owned(),
        rate: Some(2.0 * config.renewers as f64),
        ..LoadSpec::new(addr, Scenario::Renew)
    };
    // The first and the last lapsing node: an index lookup, not a scan.
    let probe = format!(
        "/v1/nodes?filter=node_id%20in%20%5B%22lapse-0%22%2C%22lapse-{}%22%5D",
        lapse.saturating_sub(1)
    );
    let polls = async {
        let (mut listed_gone, mut store_gone, mut first_delete, mut all_deletes) =
            (None, None, None, None);
        while ready.elapsed() < window + Duration::from_secs(5) {
            if listed_gone.is_none()
                && let Ok((StatusCode::OK, body)) = get(addr, &probe).await
                && body.windows(10).any(|w| w == b"\"nodes\":{}")
            {
                listed_gone = Some(ready.elapsed());
            }
            if store_gone.is_none() && expired_in_store(addr).await? >= lapse {
                store_gone = Some(ready.elapsed());
            }
            let deletes = counts.deletes.load(Ordering::Relaxed);
            if first_delete.is_none() && deletes > 0 {
                first_delete = Some(ready.elapsed());
            }
            if all_deletes.is_none() && deletes >= lapse {
                all_deletes = Some(ready.elapsed());
            }
            if listed_gone.is_some() && store_gone.is_some() && all_deletes.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok::<_, BenchError>((listed_gone, store_gone, first_delete, all_deletes))
    };
    let label = format!("renew while {lapse} lapse");
    let (renewed, polled) = tokio::join!(measure(&label, &renewing, Some(&center)), polls);
    let (renewed, (listed_gone, store_gone, first_delete, all_deletes)) =
        (renewed?.report, polled?);
    watcher.abort();
    let deadline = config.lapse_ttl;
    let after = |at: Option<Duration>| {
        at.map_or_else(
            || "never".to_owned(),
            |at| {
                format!(
                    "{:+.0} ms",
                    (at.as_secs_f64() - deadline.as_secs_f64()) * 1e3
                )
            },
        )
    };
    let p99 = renewed.latency.percentile(0.99);
    rows.push(Row::goal(
        format!(
            "mass expiry {lapse}: renew p99 of {} others, errors",
            config.renewers
        ),
        describe(&renewed),
        "<= 20 ms, 0 errors",
        p99 <= Duration::from_millis(20) && renewed.failed == 0,
    ));
    let store_late = store_gone.map(|at| at.saturating_sub(deadline));
    rows.push(Row::goal(
        format!("mass expiry {lapse}: gone from listings / from the store, after ready+TTL"),
        format!(
            "listings {}, store {} (first delete event {}; ready {} after spawn, so the deadline is up to that much earlier)",
            after(listed_gone),
            after(store_gone),
            after(first_delete),
            ms(ready.duration_since(spawned))
        ),
        "store <= 2 s",
        store_late.is_some_and(|late| late <= Duration::from_secs(2)),
    ));
    let deletes = counts.deletes.load(Ordering::Relaxed);
    rows.push(Row::goal(
        format!("mass expiry {lapse}: deletes seen by a watcher"),
        format!(
            "{deletes} of {lapse}, all by {}, {} resyncs",
            after(all_deletes),
            counts.resyncs.load(Ordering::Relaxed)
        ),
        "all",
        deletes >= lapse,
    ));
    drop(center);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Phase 6: watchers at each count while changes flow at `change_rate`.
async fn watchers(config: &ScaleConfig, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let dir = config.work_dir.join("watch-data");
    let dir_arg = dir.to_string_lossy().into_owned();
    let most = config.watchers.iter().max().copied().unwrap_or(0) + 16;
    let most = most.to_string();
    let args = center_args(
        &dir_arg,
        "86400",
        &[
            "--max-watchers",
            &most,
            "--max-watchers-per-ip",
            &most,
            "--max-connections",
            "20000",
        ],
    );
    let center =
        ServerProcess::start("watch-center", &config.isek, &args, &config.work_dir).await?;
    let addr = center.addr();
    let ids = 100;
    populate(config, &center, "w", ids, "register the changing nodes").await?;
    for &count in &config.watchers {
        let rss_before = center.rss_kib()?;
        let all: Vec<Arc<WatchCounts>> = (0..count).map(|_| Arc::default()).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for counts in &all {
            tasks.spawn(watch(addr, "/v1/watch".to_owned(), Arc::clone(counts)));
        }
        // Connected: hello and snapshot received by every watcher (bounded wait).
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60)
            && all
                .iter()
                .any(|c| c.frames.load(Ordering::Relaxed) < 2 && !c.ended.load(Ordering::Relaxed))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connected = all
            .iter()
            .filter(|c| !c.ended.load(Ordering::Relaxed))
            .count();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_connected = center.rss_kib()?;
        let changes = LoadSpec {
            connections: 32,
            duration: Some(config.duration),
            nodes: ids,
            prefix: "w".to_owned(),
            rate: Some(config.change_rate),
            metadata_bytes: config.metadata_bytes,
            ..LoadSpec::new(addr, Scenario::Register)
        };
        let cpu_before = cpu_time(center.pid())?;
        let sampler = RssSampler::start(center.pid());
        let changed = measure(&format!("changes with {count} watchers"), &changes, None)
            .await?
            .report;
        // Let the streams drain what was queued, then count.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu = cpu_time(center.pid())?.saturating_sub(cpu_before);
        let rss_peak = sampler.finish().await;
        let delivered: u64 = all.iter().map(|c| c.puts.load(Ordering::Relaxed)).sum();
        let resyncs: u64 = all.iter().map(|c| c.resyncs.load(Ordering::Relaxed)).sum();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let expected = changed.ok * count as u64;
        let per_change = cpu.as_secs_f64() * 1e6 / changed.ok.max(1) as f64;
        let per_event = if delivered > 0 {
            format!("{:.2} us", cpu.as_secs_f64() * 1e6 / delivered as f64)
        } else {
            "-".to_owned()
        };
        rows.push(Row::info(
            format!(
                "{count} watchers ({connected} connected), {:.0} changes/s asked",
                config.change_rate
            ),
            format!(
                "{:.0} changes/s made; center CPU {per_change:.1} us/change, {per_event}/delivered event; delivered {delivered} of {expected}, {resyncs} resyncs; register p99 {}",
                changed.throughput(),
                ms(changed.latency.percentile(0.99))
            ),
        ));
        if count > 0 {
            rows.push(Row::info(
                format!("{count} watchers: center memory per watcher"),
                format!(
                    "{:.1} KiB connected and idle, {:.1} KiB peak while changes flowed",
                    rss_connected.saturating_sub(rss_before) as f64 / count as f64,
                    rss_peak.saturating_sub(rss_before) as f64 / count as f64
                ),
            ));
        }
        // Closed streams leave the center before the next count.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(center);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_reads() {
        let counts = WatchCounts::default();
        let mut counter = FrameCounter::default();
        let stream = b"event: hello\ndata: {}\n\nevent: put\nid: 1\ndata: {}\n\n: keep-alive\n\nevent: delete\nid: 2\ndata: {}\n\nevent: resync\ndata: {}\n\n";
        for chunk in stream.chunks(5) {
            counter.feed(chunk, &counts);
        }
        assert_eq!(counts.frames.load(Ordering::Relaxed), 5);
        assert_eq!(counts.puts.load(Ordering::Relaxed), 1);
        assert_eq!(counts.deletes.load(Ordering::Relaxed), 1);
        assert_eq!(counts.resyncs.load(Ordering::Relaxed), 1);
    }
}
