//! `isek-bench`: load tool for the Isek Center.
//!
//! - `isek-bench load --url http://127.0.0.1:PORT --scenario renew|register|list ...`
//!   drives one load and prints throughput and p50/p90/p99/max latency.
//! - `isek-bench baseline --listen 127.0.0.1:0` serves the bare axum renew route.
//! - `isek-bench center --listen 127.0.0.1:0 [--data-dir DIR | --in-memory]` runs the
//!   real center (`isek_center::run`) in this binary, for when `isek center` is missing.
//! - `isek-bench suite [--isek target/release/isek]` runs every measurement of issue 2
//!   (used by `scripts/bench.sh`).
//! - `isek-bench scale [--nodes 1000000]` runs the million-node suite of issue 14
//!   (`scripts/bench.sh --scale`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use isek_bench::baseline::{self, BaselineMode};
use isek_bench::load::{self, LoadSpec, Scenario};
use isek_bench::scale::{self, ScaleConfig};
use isek_bench::suite::{self, SuiteConfig};

/// Command line of `isek-bench`.
#[derive(Debug, Parser)]
#[command(version, about = "Load tool for the Isek Center")]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Drive one load against a server and print throughput and latency percentiles.
    Load(LoadArgs),
    /// Serve the bare axum renew route (the baseline) until SIGINT/SIGTERM.
    Baseline(BaselineArgs),
    /// Run the real center (isek_center::run) until SIGINT/SIGTERM.
    Center(CenterArgs),
    /// Run every measurement of issue 2 and print a summary table.
    Suite(SuiteArgs),
    /// Run the million-node measurements of issue 14 and print a summary table.
    Scale(ScaleArgs),
}

/// Options of `load`.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Server to load (http://127.0.0.1:PORT; only loopback targets are accepted).
    #[arg(long)]
    url: String,
    /// Call to repeat.
    #[arg(long, value_enum, default_value_t = Scenario::Renew)]
    scenario: Scenario,
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Seconds to run (default 10 unless --requests is given).
    #[arg(long, short = 'd')]
    duration: Option<f64>,
    /// Total requests to send.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Node ids are PREFIX-N.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// N wraps at this count (renew cycles over the nodes a register run created).
    #[arg(long, default_value_t = 10_000)]
    nodes: u64,
    /// First N of a register run.
    #[arg(long, default_value_t = 0)]
    first_id: u64,
    /// Approximate serialized metadata size of registered nodes.
    #[arg(long, default_value_t = 100)]
    metadata_bytes: usize,
    /// Runtime worker threads of the load generator (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Send `Accept-Encoding: gzip, deflate` (as Python's requests, so every unchanged
    /// ISEK node, does).
    #[arg(long)]
    gzip: bool,
    /// Open loop at this many requests per second in total (latency counted from each
    /// request's due time); default: every connection as fast as it can.
    #[arg(long)]
    rate: Option<f64>,
    /// Renew the ids in a shuffled order (each of 0..nodes once per pass).
    #[arg(long)]
    shuffle: bool,
}

/// Options of `baseline`.
#[derive(Debug, Args)]
struct BaselineArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// echo: parse the body and answer for that node; static: fixed answer.
    #[arg(long, value_enum, default_value_t = BaselineMode::Echo)]
    mode: BaselineMode,
}

/// Options of `center` (the same flags as `isek center`).
#[derive(Debug, Args)]
struct CenterArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory of the on-disk store.
    #[arg(
        long,
        conflicts_with = "in_memory",
        required_unless_present = "in_memory"
    )]
    data_dir: Option<PathBuf>,
    /// Keep nodes in memory only.
    #[arg(long)]
    in_memory: bool,
    /// Lease length in seconds.
    #[arg(long, default_value_t = 30.0)]
    lease_ttl: f64,
}

/// Options of `suite`.
#[derive(Debug, Args)]
struct SuiteArgs {
    /// The `isek` binary whose `center` is measured (default: this binary's own
    /// `center` subcommand, the same `isek_center::run`).
    #[arg(long)]
    isek: Option<PathBuf>,
    /// Directory for data dirs and server logs (default: a fresh temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Seconds of each measured load.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds of unmeasured warm-up before each renew measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connections of the renew loads.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections of the register loads.
    #[arg(long, default_value_t = 256)]
    register_connections: usize,
    /// Nodes registered before renew and list are measured.
    #[arg(long, default_value_t = 10_000)]
    list_nodes: u64,
    /// Connections of the list load.
    #[arg(long, default_value_t = 1)]
    list_connections: usize,
    /// Node counts at which RSS is sampled, comma-separated ("" to skip).
    #[arg(long, default_value = "100000,1000000", value_delimiter = ',')]
    rss_nodes: Vec<String>,
    /// Run the RSS center with --in-memory instead of a data dir.
    #[arg(long)]
    rss_in_memory: bool,
    /// Approximate serialized metadata size of registered nodes.
    #[arg(long, default_value_t = 100)]
    metadata_bytes: usize,
    /// Also measure renew with this wrk binary (e.g. /usr/bin/wrk).
    #[arg(long)]
    wrk: Option<PathBuf>,
    /// The wrk Lua script for renew.
    #[arg(long, default_value = "bench/renew.lua")]
    wrk_script: PathBuf,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Interleaved renew rounds (baselines and center alternate; best round counts).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Options of `scale`.
#[derive(Debug, Args)]
struct ScaleArgs {
    /// The `isek` binary whose `center` is measured (default: beside this binary).
    #[arg(long)]
    isek: Option<PathBuf>,
    /// Directory for data dirs and server logs (default: a fresh temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Nodes of the main center.
    #[arg(long, default_value_t = 1_000_000)]
    nodes: u64,
    /// Seconds of each measured load.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Connection counts of the renew loads, comma-separated.
    #[arg(long, default_value = "64,256", value_delimiter = ',')]
    connections: Vec<usize>,
    /// Interleaved baseline/center renew rounds per connection count.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections of the register loads.
    #[arg(long, default_value_t = 256)]
    register_connections: usize,
    /// Listings streaming at once while renewals run.
    #[arg(long, default_value_t = 10)]
    list_streams: usize,
    /// Node counts that lapse at one instant, comma-separated ("" to skip).
    #[arg(long, default_value = "100000,500000", value_delimiter = ',')]
    lapse: Vec<String>,
    /// Nodes that keep renewing while the others lapse.
    #[arg(long, default_value_t = 1000)]
    renewers: u64,
    /// Lease seconds of the mass-expiry center.
    #[arg(long, default_value_t = 20.0)]
    lapse_ttl: f64,
    /// Watcher counts, comma-separated ("" to skip).
    #[arg(long, default_value = "0,100,1000", value_delimiter = ',')]
    watchers: Vec<String>,
    /// Changes per second while the watchers listen.
    #[arg(long, default_value_t = 5000.0)]
    change_rate: f64,
    /// Approximate serialized metadata size of registered nodes.
    #[arg(long, default_value_t = 100)]
    metadata_bytes: usize,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Parses a comma-separated list of counts, skipping empty items.
fn counts<T: std::str::FromStr>(values: &[String], flag: &str) -> anyhow::Result<Vec<T>> {
    values
        .iter()
        .filter(|value| !value.trim().is_empty())
        .map(|value| {
            value
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: not a count: {value}"))
        })
        .collect()
}

/// A temporary work directory unless one is given; the guard keeps it alive.
fn work_dir(given: &Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(dir) => Ok((dir.clone(), None)),
        None => {
            let dir = tempfile::Builder::new().prefix("isek-bench-").tempdir()?;
            Ok((dir.path().to_path_buf(), Some(dir)))
        }
    }
}

/// `scale`.
fn run_scale(args: ScaleArgs) -> anyhow::Result<()> {
    let bench_exe = std::env::current_exe().context("cannot find this executable")?;
    let isek = args
        .isek
        .clone()
        .unwrap_or_else(|| bench_exe.with_file_name("isek"));
    if !isek.is_file() {
        bail!(
            "no isek binary at {} (build it or pass --isek)",
            isek.display()
        );
    }
    let (work_dir, _guard) = work_dir(&args.work_dir)?;
    let config = ScaleConfig {
        isek,
        bench_exe,
        work_dir,
        nodes: args.nodes.max(1),
        duration: seconds(args.duration, "--duration")?,
        connections: args.connections,
        rounds: args.rounds,
        register_connections: args.register_connections,
        list_streams: args.list_streams.max(1),
        lapse: counts(&args.lapse, "--lapse")?,
        renewers: args.renewers.max(1),
        lapse_ttl: seconds(args.lapse_ttl, "--lapse-ttl")?,
        watchers: counts(&args.watchers, "--watchers")?,
        change_rate: args.change_rate,
        metadata_bytes: args.metadata_bytes,
    };
    eprintln!("work dir: {}", config.work_dir.display());
    let rows = runtime(args.threads)?.block_on(scale::run(&config))?;
    print!("{}", suite::render_table(&rows));
    Ok(())
}

/// Seconds as a Duration, rejecting negative or absurd values.
fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    if !(0.0..=86_400.0).contains(&value) {
        bail!("{what} must be between 0 and 86400 seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

/// A tokio runtime with `threads` workers (1: current-thread, the cheapest for a client).
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(runtime)
}

/// The loopback address of an `http://127.0.0.1:PORT` URL.
fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url must start with http://, got {url}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("--url must be http://IP:PORT, got {url}"))?;
    if !addr.ip().is_loopback() {
        bail!("only loopback targets are allowed, got {addr}");
    }
    Ok(addr)
}

/// `load`.
fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let addr = loopback_addr(&args.url)?;
    let duration = match (args.duration, args.requests) {
        (Some(value), _) => Some(seconds(value, "--duration")?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let spec = LoadSpec {
        connections: args.connections,
        duration,
        requests: args.requests,
        prefix: args.prefix,
        nodes: args.nodes,
        first_id: args.first_id,
        metadata_bytes: args.metadata_bytes,
        accept_gzip: args.gzip,
        rate: args.rate,
        shuffle: args.shuffle,
        ..LoadSpec::new(addr, args.scenario)
    };
    let report = runtime(args.threads)?.block_on(load::run(&spec))?;
    println!("{}", report.summary());
    if report.ok == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// `baseline`.
fn run_baseline(args: BaselineArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the baseline only listens on loopback, got {}", args.listen);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("{}", listener.local_addr()?);
        baseline::serve(listener, args.mode, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// `center`.
fn run_center(args: CenterArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "this benchmark center only listens on loopback, got {}",
            args.listen
        );
    }
    let config = isek_center::Config {
        data_dir: if args.in_memory { None } else { args.data_dir },
        lease_ttl: seconds(args.lease_ttl, "--lease-ttl")?,
        ..isek_center::Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("{}", listener.local_addr()?);
        isek_center::run(listener, config, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// `suite`.
fn run_suite(args: SuiteArgs) -> anyhow::Result<()> {
    let bench_exe = std::env::current_exe().context("cannot find this executable")?;
    let isek = match args.isek {
        Some(path) => path,
        None => bench_exe.with_file_name("isek"),
    };
    if !isek.is_file() {
        bail!(
            "no isek binary at {} (build it or pass --isek)",
            isek.display()
        );
    }
    let mut rss_nodes = Vec::new();
    for value in args
        .rss_nodes
        .iter()
        .filter(|value| !value.trim().is_empty())
    {
        let count: u64 = value
            .trim()
            .parse()
            .with_context(|| format!("--rss-nodes: not a count: {value}"))?;
        rss_nodes.push(count);
    }
    rss_nodes.sort_unstable();
    // Keep the temporary directory alive for the whole run; it is removed at the end.
    let temporary = match &args.work_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("isek-bench-").tempdir()?),
    };
    let work_dir = match (&args.work_dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.path().to_path_buf(),
        (None, None) => bail!("no work directory"),
    };
    let config = SuiteConfig {
        isek,
        bench_exe,
        work_dir,
        duration: seconds(args.duration, "--duration")?,
        warmup: seconds(args.warmup, "--warmup")?,
        connections: args.connections,
        register_connections: args.register_connections,
        list_nodes: args.list_nodes,
        list_connections: args.list_connections,
        rss_nodes,
        rss_in_memory: args.rss_in_memory,
        metadata_bytes: args.metadata_bytes,
        wrk: args.wrk,
        wrk_script: args.wrk_script,
        wrk_threads: args.wrk_threads,
        rounds: args.rounds,
    };
    eprintln!("work dir: {}", config.work_dir.display());
    let rows = runtime(args.threads)?.block_on(suite::run(&config))?;
    print!("{}", suite::render_table(&rows));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(args) => run_load(args),
        Command::Baseline(args) => run_baseline(args),
        Command::Center(args) => run_center(args),
        Command::Suite(args) => run_suite(args),
        Command::Scale(args) => run_scale(args),
    }
}
