//! The load generator: N keep-alive HTTP/1.1 connections, each sending one request at a
//! time as fast as the server answers, until a duration or a request count runs out.
//!
//! Each connection is one task that polls its hyper connection and its request loop
//! together (no extra task hop per request), so the tool takes as little of the CPU it
//! shares with the server as a Rust client can.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use isek::Metadata;
use isek::wire::center::{
    AVAILABLE_NODES_PATH, NODES_PATH, NodeIdRequest, REGISTER_PATH, RENEW_PATH, RegisterRequest,
};
use tokio::net::TcpStream;

use crate::BenchError;
use crate::latency::Histogram;

/// Which call a load run repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `POST /isek_center/renew` for node ids cycling through `0..nodes`.
    Renew,
    /// `POST /isek_center/register` with ids `first_id..`, each id once (mod `nodes`).
    Register,
    /// `GET /isek_center/available_nodes`.
    List,
    /// `GET /v1/nodes` (every live node, with revision and epoch).
    Nodes,
}

impl Scenario {
    /// Lowercase name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Renew => "renew",
            Scenario::Register => "register",
            Scenario::List => "list",
            Scenario::Nodes => "nodes",
        }
    }
}

/// Everything that defines one load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server under load (only 127.0.0.1 targets are meant).
    pub addr: SocketAddr,
    /// The call to repeat.
    pub scenario: Scenario,
    /// Concurrent keep-alive connections (each has one request in flight).
    pub connections: usize,
    /// Stop sending new requests after this long (None: only `requests` bounds the run).
    pub duration: Option<Duration>,
    /// Stop after this many requests in total (None: only `duration` bounds the run).
    pub requests: Option<u64>,
    /// Node ids are `{prefix}-{n}`: so runs can target the nodes another run registered.
    pub prefix: String,
    /// Ids wrap around at this count (renew cycles over the registered nodes).
    pub nodes: u64,
    /// First id number a register run uses, so successive runs add new nodes.
    pub first_id: u64,
    /// Approximate serialized size of each registered node's metadata.
    pub metadata_bytes: usize,
    /// A request that takes longer counts as failed and ends its connection.
    pub timeout: Duration,
    /// Send `Accept-Encoding: gzip, deflate`, as Python's requests (and so every
    /// unchanged ISEK node) does.
    pub accept_gzip: bool,
    /// Open loop: request N is due at `N / rate` seconds after the start (over all
    /// connections), and its latency counts from then, so a stalled server shows
    /// (no coordinated omission). None: closed loop, each connection as fast as it can.
    pub rate: Option<f64>,
    /// Renew ids in a pseudo-random order that still visits each of `0..nodes` once
    /// per pass (a multiplicative permutation), instead of counting up: at a million
    /// nodes, consecutive renewals then touch unrelated parts of the lease table.
    pub shuffle: bool,
}

impl LoadSpec {
    /// A spec with the defaults the CLI uses, for `scenario` against `addr`.
    pub fn new(addr: SocketAddr, scenario: Scenario) -> Self {
        Self {
            addr,
            scenario,
            connections: 64,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            prefix: "bench".to_owned(),
            nodes: 10_000,
            first_id: 0,
            metadata_bytes: 100,
            timeout: Duration::from_secs(10),
            accept_gzip: false,
            rate: None,
            shuffle: false,
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The call that was repeated.
    pub scenario: Scenario,
    /// Connections that were opened.
    pub connections: usize,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests answered with another status, timed out, or lost with their connection.
    pub failed: u64,
    /// Response body bytes received (list answers grow with the node count).
    pub body_bytes: u64,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every answered request (failed ones included).
    pub latency: Histogram,
    /// Time from sending each answered request to the first byte of its body (to the
    /// end of the answer when it has none): what a streamed listing improves.
    pub first_byte: Histogram,
    /// First failure seen, to tell the user why requests failed.
    pub first_error: Option<String>,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// One human-readable line: throughput and p50/p90/p99/max latency.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut line = format!(
            "{:<8} conns={:<4} ok={:<9} failed={:<6} {:>10.0} req/s  p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms  ({:.1}s, {:.1} MB body)",
            self.scenario.name(),
            self.connections,
            self.ok,
            self.failed,
            self.throughput(),
            ms(self.latency.percentile(0.50)),
            ms(self.latency.percentile(0.90)),
            ms(self.latency.percentile(0.99)),
            ms(self.latency.max()),
            self.elapsed.as_secs_f64(),
            self.body_bytes as f64 / 1e6,
        );
        if let Some(error) = &self.first_error {
            line.push_str(&format!("  first error: {error}"));
        }
        line
    }
}

/// What one connection measured.
#[derive(Debug, Default)]
struct ConnectionStats {
    /// 2xx answers.
    ok: u64,
    /// Everything else.
    failed: u64,
    /// Response body bytes.
    body_bytes: u64,
    /// Per-request latency.
    latency: Histogram,
    /// Per-request time to the first body byte.
    first_byte: Histogram,
    /// First failure on this connection.
    first_error: Option<String>,
}

impl ConnectionStats {
    /// Counts one failure, keeping the first reason.
    fn fail(&mut self, reason: String) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(reason);
        }
    }
}

/// Builds the request bodies of a run (shared by all its connections).
#[derive(Debug)]
struct RequestFactory {
    /// The call to build.
    scenario: Scenario,
    /// Node id prefix.
    prefix: String,
    /// Ids wrap at this count.
    nodes: u64,
    /// Offset added to register ids.
    first_id: u64,
    /// Metadata every registered node carries.
    metadata: Metadata,
    /// `Host` header value.
    host: String,
    /// Whether to send `Accept-Encoding: gzip, deflate`.
    accept_gzip: bool,
    /// Multiplier of the id permutation (coprime with `nodes`), or None: in order.
    stride: Option<u64>,
}

impl RequestFactory {
    /// A factory for `spec`, with metadata padded to about `spec.metadata_bytes`.
    fn new(spec: &LoadSpec) -> Self {
        let mut metadata = Metadata::new();
        metadata.insert("name".to_owned(), "bench-agent".into());
        metadata.insert("role".to_owned(), "load".into());
        // `{"name":"bench-agent","role":"load","pad":""}` is 45 bytes.
        let pad = spec.metadata_bytes.saturating_sub(45);
        metadata.insert("pad".to_owned(), "x".repeat(pad).into());
        Self {
            scenario: spec.scenario,
            prefix: spec.prefix.clone(),
            nodes: spec.nodes.max(1),
            first_id: spec.first_id,
            metadata,
            host: spec.addr.to_string(),
            accept_gzip: spec.accept_gzip,
            stride: spec.shuffle.then(|| stride_for(spec.nodes.max(1))),
        }
    }

    /// The node number of the `sequence`-th renewal.
    fn renew_number(&self, sequence: u64) -> u64 {
        let index = sequence % self.nodes;
        match self.stride {
            // A bijection of 0..nodes, since gcd(stride, nodes) = 1.
            Some(stride) => {
                ((u128::from(index) * u128::from(stride)) % u128::from(self.nodes)) as u64
            }
            None => index,
        }
    }

    /// The `sequence`-th request of the run.
    fn build(&self, sequence: u64) -> Result<Request<Full<Bytes>>, BenchError> {
        let (method, path, body) = match self.scenario {
            Scenario::Renew => {
                let node_id = format!("{}-{}", self.prefix, self.renew_number(sequence));
                let body = serde_json::to_vec(&NodeIdRequest { node_id })?;
                (Method::POST, RENEW_PATH, Bytes::from(body))
            }
            Scenario::Register => {
                let number = self.first_id + sequence % self.nodes;
                let body = serde_json::to_vec(&RegisterRequest {
                    node_id: format!("{}-{number}", self.prefix),
                    host: "127.0.0.1".to_owned(),
                    port: 9000 + (number % 50_000) as u16,
                    metadata: self.metadata.clone(),
                })?;
                (Method::POST, REGISTER_PATH, Bytes::from(body))
            }
            Scenario::List => (Method::GET, AVAILABLE_NODES_PATH, Bytes::new()),
            Scenario::Nodes => (Method::GET, NODES_PATH, Bytes::new()),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        if self.accept_gzip {
            builder = builder.header(header::ACCEPT_ENCODING, "gzip, deflate");
        }
        Ok(builder.body(Full::new(body))?)
    }
}

/// A multiplier coprime with `nodes` and far from 1, so that consecutive sequence
/// numbers map to node numbers spread over the whole range.
fn stride_for(nodes: u64) -> u64 {
    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    // The golden ratio of the range, then the next number coprime with it.
    let mut stride = ((nodes as f64) * 0.618_033_988_7) as u64 | 1;
    while gcd(stride, nodes) != 1 {
        stride += 1;
    }
    stride.max(1)
}

/// Shared state of a run: the bounds and the request counter.
#[derive(Debug)]
struct RunBounds {
    /// Sequence number of the next request (also the count of requests started).
    next: AtomicU64,
    /// No request starts once `next` reaches this.
    limit: u64,
    /// No request starts after this instant.
    deadline: Option<Instant>,
    /// When the run started (open loop: request N is due at `started + N / rate`).
    started: Instant,
    /// Requests per second of an open-loop run.
    rate: Option<f64>,
}

impl RunBounds {
    /// The next sequence number, or None when the run is over.
    fn take(&self) -> Option<u64> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return None;
        }
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        (sequence < self.limit).then_some(sequence)
    }

    /// When request `sequence` is due (now, in a closed-loop run).
    fn due(&self, sequence: u64) -> Instant {
        match self.rate {
            Some(rate) if rate > 0.0 => {
                self.started + Duration::from_secs_f64(sequence as f64 / rate)
            }
            _ => Instant::now(),
        }
    }
}

/// Runs the load described by `spec` and returns what it measured.
///
/// Fails only when the spec is unbounded or no connection could be opened; request
/// failures are counted in the report.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, BenchError> {
    if spec.duration.is_none() && spec.requests.is_none() {
        return Err(BenchError::Unbounded);
    }
    if spec.connections == 0 {
        return Err(BenchError::Invalid(
            "connections must be at least 1".to_owned(),
        ));
    }
    let factory = Arc::new(RequestFactory::new(spec));
    // Open every connection before the clock starts.
    let mut streams = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let stream = TcpStream::connect(spec.addr)
            .await
            .map_err(|source| BenchError::Connect {
                addr: spec.addr,
                source,
            })?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let started = Instant::now();
    let bounds = Arc::new(RunBounds {
        next: AtomicU64::new(0),
        limit: spec.requests.unwrap_or(u64::MAX),
        deadline: spec.duration.map(|duration| started + duration),
        started,
        rate: spec.rate,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for stream in streams {
        let factory = Arc::clone(&factory);
        let bounds = Arc::clone(&bounds);
        let timeout = spec.timeout;
        tasks.spawn(drive_connection(stream, factory, bounds, timeout));
    }
    let mut report = LoadReport {
        scenario: spec.scenario,
        connections: spec.connections,
        ok: 0,
        failed: 0,
        body_bytes: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(),
        first_byte: Histogram::new(),
        first_error: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let stats = match joined {
            Ok(stats) => stats,
            Err(error) => {
                report.failed += 1;
                report.first_error.get_or_insert(error.to_string());
                continue;
            }
        };
        report.ok += stats.ok;
        report.failed += stats.failed;
        report.body_bytes += stats.body_bytes;
        report.latency.merge(&stats.latency);
        report.first_byte.merge(&stats.first_byte);
        if report.first_error.is_none() {
            report.first_error = stats.first_error;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One connection: sends requests one after the other until the run's bounds stop it
/// or the connection fails.
async fn drive_connection(
    stream: TcpStream,
    factory: Arc<RequestFactory>,
    bounds: Arc<RunBounds>,
    timeout: Duration,
) -> ConnectionStats {
    let mut stats = ConnectionStats::default();
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(error) => {
                stats.fail(format!("handshake: {error}"));
                return stats;
            }
        };
    let requests = async {
        while let Some(sequence) = bounds.take() {
            let request = match factory.build(sequence) {
                Ok(request) => request,
                Err(error) => {
                    stats.fail(error.to_string());
                    break;
                }
            };
            // Open loop: wait until the request is due; its latency counts from then.
            let started = bounds.due(sequence);
            tokio::time::sleep_until(started.into()).await;
            let outcome = tokio::time::timeout(timeout, exchange(&mut sender, request)).await;
            stats.latency.record(started.elapsed());
            match outcome {
                Ok(Ok((status, bytes, first_byte))) => {
                    stats
                        .first_byte
                        .record(first_byte.saturating_duration_since(started));
                    stats.body_bytes += bytes;
                    if status.is_success() {
                        stats.ok += 1;
                    } else {
                        stats.fail(format!("HTTP {status}"));
                    }
                }
                Ok(Err(error)) => {
                    stats.fail(format!("request: {error}"));
                    break;
                }
                Err(_) => {
                    stats.fail(format!("no answer within {timeout:?}"));
                    break;
                }
            }
        }
        // Dropping the sender lets the connection future finish.
        drop(sender);
    };
    let (_, ()) = tokio::join!(connection, requests);
    stats
}

/// Sends one request and reads its whole response body.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, u64, Instant), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    let mut first_byte = None;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if !data.is_empty() {
                first_byte.get_or_insert_with(Instant::now);
            }
            bytes += data.len() as u64;
        }
    }
    Ok((status, bytes, first_byte.unwrap_or_else(Instant::now)))
}
