//! The benchmark suite of issue 2, end to end: starts the baseline and the center as
//! separate processes on free 127.0.0.1 ports, runs the loads, samples RSS from
//! `/proc`, prints a summary table, and kills every process it started.
//!
//! Phases, in order:
//! 1. renew against the baseline (echo, then static), then against a center holding
//!    `list_nodes` registered nodes (same load, same connections);
//! 2. `available_nodes` latency with those nodes registered (few connections, so the
//!    figure is service time, not queueing);
//! 3. durable register throughput on the same center (data dir on disk, many connections);
//! 4. RSS of a fresh center after registering each count in `rss_nodes`.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::BenchError;
use crate::load::{self, LoadReport, LoadSpec, Scenario};

/// Everything the suite needs to know.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The `isek` binary whose `center` subcommand is measured.
    pub isek: PathBuf,
    /// The `isek-bench` binary, started again as the baseline server process.
    pub bench_exe: PathBuf,
    /// Where data dirs and server logs go (on disk, so fsync is real).
    pub work_dir: PathBuf,
    /// Length of each measured load.
    pub duration: Duration,
    /// Unmeasured load before each renew measurement (connections, caches, CPU clocks).
    pub warmup: Duration,
    /// Connections of the renew loads.
    pub connections: usize,
    /// Connections of the register loads (group commit needs many in flight).
    pub register_connections: usize,
    /// Nodes registered before renew and list are measured.
    pub list_nodes: u64,
    /// Connections of the list load.
    pub list_connections: usize,
    /// Node counts at which the RSS of a fresh center is sampled (ascending).
    pub rss_nodes: Vec<u64>,
    /// Run the RSS center with `--in-memory` instead of a data dir.
    pub rss_in_memory: bool,
    /// Metadata size of every registered node.
    pub metadata_bytes: usize,
    /// `wrk` binary for a cross-check of the renew figures (None: skip).
    pub wrk: Option<PathBuf>,
    /// The Lua script wrk runs for renew (bench/renew.lua).
    pub wrk_script: PathBuf,
    /// wrk threads.
    pub wrk_threads: usize,
    /// Interleaved renew rounds (baselines and center alternate; the best round counts).
    pub rounds: usize,
}

/// Port that was free a moment ago (the server binds it right after).
fn free_addr() -> Result<SocketAddr, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A server process the suite started; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// Name in messages.
    name: String,
    /// The process.
    child: Child,
    /// Where it listens.
    addr: SocketAddr,
    /// Its stdout and stderr, for the error message when it dies.
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `program args..` (`{addr}` in an argument is replaced by a free address),
    /// and waits until it accepts connections.
    pub async fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        log_dir: &Path,
    ) -> Result<Self, BenchError> {
        let mut process = Self::spawn(name, program, args, log_dir)?;
        process.wait_ready().await?;
        Ok(process)
    }

    /// Starts `program args..` like [`ServerProcess::start`], without waiting for it
    /// to listen (for timing its start-up).
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        log_dir: &Path,
    ) -> Result<Self, BenchError> {
        let addr = free_addr()?;
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let args: Vec<OsString> = args
            .iter()
            .map(|arg| OsString::from(arg.replace("{addr}", &addr.to_string())))
            .collect();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|error| {
                BenchError::Process(format!("cannot start {}: {error}", program.display()))
            })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            addr,
            log,
        })
    }

    /// Sends SIGTERM and waits (at most `grace`) for the process to exit, then kills
    /// it: returns how long the orderly exit took, or None when it had to be killed.
    pub async fn stop(mut self, grace: Duration) -> Result<Option<Duration>, BenchError> {
        let started = std::time::Instant::now();
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        while started.elapsed() < grace {
            if self.child.try_wait()?.is_some() {
                return Ok(Some(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// The process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (at most 30 s) until the process accepts connections.
    pub async fn wait_ready(&mut self) -> Result<(), BenchError> {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(BenchError::Process(format!(
                    "{} exited with {status} before listening; its output:\n{log}",
                    self.name
                )));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(BenchError::Process(format!(
            "{} does not accept connections on {} after 30 s",
            self.name, self.addr
        )))
    }

    /// Where the process listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resident set size of the process in KiB (VmRSS of /proc/PID/status).
    pub fn rss_kib(&self) -> Result<u64, BenchError> {
        rss_kib(self.child.id())
    }

    /// User + system CPU time the process used so far.
    pub fn cpu_time(&self) -> Result<Duration, BenchError> {
        cpu_time(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    status_kib(pid, "VmRSS:")
}

/// VmHWM (the peak resident set size since the process started) in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, BenchError> {
    status_kib(pid, "VmHWM:")
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::Process(format!("no {field} in /proc/{pid}/status")))
}

/// utime + stime of a process (/proc/PID/stat, in USER_HZ = 100 ticks per second).
pub fn cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let after = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .ok_or_else(|| BenchError::Process(format!("unreadable /proc/{pid}/stat")))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 12 and 13 after the name.
    let ticks = |index: usize| -> u64 {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .unwrap_or(0)
    };
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 10))
}

/// One line of the summary table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// The figure.
    pub result: String,
    /// The goal of issue 2, if any.
    pub goal: String,
    /// "yes", "NO" or empty when there is no goal.
    pub met: String,
}

impl Row {
    /// A row without goal.
    pub(crate) fn info(metric: impl Into<String>, result: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            result: result.into(),
            goal: String::new(),
            met: String::new(),
        }
    }

    /// A row with a goal and whether it was met.
    pub(crate) fn goal(
        metric: impl Into<String>,
        result: impl Into<String>,
        goal: impl Into<String>,
        met: bool,
    ) -> Self {
        Self {
            metric: metric.into(),
            result: result.into(),
            goal: goal.into(),
            met: if met { "yes" } else { "NO" }.to_owned(),
        }
    }
}

/// Renders rows as an aligned text table.
pub fn render_table(rows: &[Row]) -> String {
    let headers = ["measurement", "result", "goal", "met"];
    let cells: Vec<[&str; 4]> = rows
        .iter()
        .map(|row| [&*row.metric, &*row.result, &*row.goal, &*row.met])
        .collect();
    let mut widths = headers.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let format_line = |line: [&str; 4]| -> String {
        let mut out = String::from("|");
        for (cell, width) in line.iter().zip(widths) {
            out.push_str(&format!(" {cell:<width$} |"));
        }
        out.push('\n');
        out
    };
    let mut table = format_line(headers);
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    table.push_str(&format_line([&rule[0], &rule[1], &rule[2], &rule[3]]));
    for line in cells {
        table.push_str(&format_line(line));
    }
    table
}

/// Milliseconds with three decimals.
pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// "N req/s (p50 .. p99 .. max ..)" of a report.
pub(crate) fn describe(report: &LoadReport) -> String {
    let mut text = format!(
        "{:.0} req/s, p50 {} p90 {} p99 {} max {}",
        report.throughput(),
        ms(report.latency.percentile(0.5)),
        ms(report.latency.percentile(0.9)),
        ms(report.latency.percentile(0.99)),
        ms(report.latency.max()),
    );
    if report.failed > 0 {
        text.push_str(&format!(", {} FAILED", report.failed));
    }
    text
}

/// A load report with the server CPU it cost.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// What the load generator saw.
    pub(crate) report: LoadReport,
    /// Server CPU time (user + system) per successful request, in microseconds.
    pub(crate) cpu_per_request: Option<f64>,
}

/// `a / b`, or 0 when `b` is 0.
fn ratio_of(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Median over rounds of `numerators[i] / denominators[i]` (0 when there is none).
pub(crate) fn median_ratio(numerators: &[f64], denominators: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = numerators
        .iter()
        .zip(denominators)
        .map(|(a, b)| ratio_of(*a, *b))
        .filter(|ratio| ratio.is_finite())
        .collect();
    if ratios.is_empty() {
        return 0.0;
    }
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    if ratios.len() % 2 == 1 {
        ratios[middle]
    } else {
        (ratios[middle - 1] + ratios[middle]) / 2.0
    }
}

/// Throughput of the best round (0 when there was none).
fn best_throughput(best: &Option<Measured>) -> f64 {
    best.as_ref()
        .map_or(0.0, |measured| measured.report.throughput())
}

/// "N.N us/req" or "?".
fn cpu_text(measured: &Measured) -> String {
    measured
        .cpu_per_request
        .map_or_else(|| "?".to_owned(), |us| format!("{us:.1} us/req"))
}

/// Runs one load, printing its summary line (and server CPU per request) on stderr.
pub(crate) async fn measure(
    label: &str,
    spec: &LoadSpec,
    server: Option<&ServerProcess>,
) -> Result<Measured, BenchError> {
    let cpu_before = server.map(ServerProcess::cpu_time).transpose()?;
    let report = load::run(spec).await?;
    let mut line = format!("[{label}] {}", report.summary());
    let mut cpu_per_request = None;
    if let (Some(server), Some(before)) = (server, cpu_before) {
        let used = server.cpu_time()?.saturating_sub(before);
        let per_request = used.as_secs_f64() * 1e6 / report.ok.max(1) as f64;
        cpu_per_request = Some(per_request);
        line.push_str(&format!(
            "  server CPU {:.2}s = {per_request:.1} us/req",
            used.as_secs_f64()
        ));
    }
    eprintln!("{line}");
    Ok(Measured {
        report,
        cpu_per_request,
    })
}

/// What a wrk run printed on its `ISEK_WRK` line.
#[derive(Debug, Clone, Default)]
struct WrkFigures {
    /// Completed requests.
    requests: f64,
    /// Socket and HTTP errors.
    errors: f64,
    /// Requests per second.
    rps: f64,
    /// Latency percentiles in microseconds.
    p50_us: f64,
    /// 99th percentile.
    p99_us: f64,
}

/// Runs wrk with the renew script against `addr`.
async fn wrk_renew(
    config: &SuiteConfig,
    wrk: &Path,
    addr: SocketAddr,
    prefix: &str,
) -> Result<WrkFigures, BenchError> {
    let seconds = config.duration.as_secs().max(1);
    let output = tokio::process::Command::new(wrk)
        .arg(format!(
            "-t{}",
            config.wrk_threads.clamp(1, config.connections)
        ))
        .arg(format!("-c{}", config.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&config.wrk_script)
        .arg(format!("http://{addr}"))
        .arg("--")
        .arg(config.list_nodes.to_string())
        .arg(prefix)
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("ISEK_WRK "))
        .ok_or_else(|| {
            BenchError::Process(format!(
                "wrk printed no ISEK_WRK line: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        })?;
    let mut figures = WrkFigures::default();
    for pair in line.split_whitespace() {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        match key {
            "requests" => figures.requests = value,
            "errors" => figures.errors = value,
            "rps" => figures.rps = value,
            "p50_us" => figures.p50_us = value,
            "p99_us" => figures.p99_us = value,
            _ => {}
        }
    }
    eprintln!("[wrk {addr}] {line}");
    Ok(figures)
}

/// Runs the whole suite and returns the summary rows.
pub async fn run(config: &SuiteConfig) -> Result<Vec<Row>, BenchError> {
    std::fs::create_dir_all(&config.work_dir)?;
    let mut rows = vec![Row::info(
        "load average at start (1/5/15 min)",
        load_average(),
    )];
    let prefix = "bench";
    let renew_spec = |addr: SocketAddr, duration: Duration| LoadSpec {
        connections: config.connections,
        duration: Some(duration),
        requests: None,
        nodes: config.list_nodes,
        prefix: prefix.to_owned(),
        metadata_bytes: config.metadata_bytes,
        ..LoadSpec::new(addr, Scenario::Renew)
    };

    // Phase 1: renew against the baselines and the center, interleaved in rounds so
    // that noise from other processes on the machine hits all of them alike; the best
    // round of each counts.
    let baseline_echo = ServerProcess::start(
        "baseline-echo",
        &config.bench_exe,
        &["baseline", "--listen", "{addr}", "--mode", "echo"],
        &config.work_dir,
    )
    .await?;
    let baseline_static = ServerProcess::start(
        "baseline-static",
        &config.bench_exe,
        &["baseline", "--listen", "{addr}", "--mode", "static"],
        &config.work_dir,
    )
    .await?;
    let data_dir = config.work_dir.join("center-data");
    let data_dir_arg = data_dir.to_string_lossy().into_owned();
    let center = ServerProcess::start(
        "center",
        &config.isek,
        &[
            "center",
            "--listen",
            "{addr}",
            "--data-dir",
            &data_dir_arg,
            "--lease-ttl",
            "86400",
        ],
        &config.work_dir,
    )
    .await?;
    let populate = LoadSpec {
        connections: config.register_connections,
        duration: None,
        requests: Some(config.list_nodes),
        nodes: config.list_nodes,
        prefix: prefix.to_owned(),
        metadata_bytes: config.metadata_bytes,
        ..LoadSpec::new(center.addr(), Scenario::Register)
    };
    let populated = measure("populate", &populate, Some(&center)).await?;
    if populated.report.failed > 0 {
        return Err(BenchError::Process(format!(
            "registering {} nodes failed: {}",
            config.list_nodes,
            populated.report.summary()
        )));
    }
    let targets = [
        ("bare axum baseline (echo)", &baseline_echo),
        ("bare axum baseline (static)", &baseline_static),
        ("center", &center),
    ];
    let mut best: Vec<Option<Measured>> = vec![None, None, None];
    let mut best_wrk: Vec<Option<WrkFigures>> = vec![None, None, None];
    // Per target, per round: throughput, server CPU per request, wrk throughput.
    let mut history: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut cpu_history: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut wrk_history: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for (_, server) in &targets {
        load::run(&renew_spec(server.addr(), config.warmup)).await?;
    }
    for round in 1..=config.rounds.max(1) {
        for (index, (name, server)) in targets.iter().enumerate() {
            let measured = measure(
                &format!("round {round} renew {name}"),
                &renew_spec(server.addr(), config.duration),
                Some(server),
            )
            .await?;
            history[index].push(measured.report.throughput());
            cpu_history[index].push(measured.cpu_per_request.unwrap_or(f64::NAN));
            let slot = &mut best[index];
            if slot
                .as_ref()
                .is_none_or(|old| measured.report.throughput() > old.report.throughput())
            {
                *slot = Some(measured);
            }
            if let Some(wrk) = &config.wrk {
                let figures = wrk_renew(config, wrk, server.addr(), prefix).await?;
                wrk_history[index].push(figures.rps);
                let slot = &mut best_wrk[index];
                if slot.as_ref().is_none_or(|old| figures.rps > old.rps) {
                    *slot = Some(figures);
                }
            }
        }
    }
    let rounds = config.rounds.max(1);
    for ((name, _), measured) in targets.iter().zip(&best) {
        if let Some(measured) = measured {
            rows.push(Row::info(
                format!(
                    "renew, {name}, {} conns, best of {rounds}",
                    config.connections
                ),
                format!(
                    "{}, server CPU {}",
                    describe(&measured.report),
                    cpu_text(measured)
                ),
            ));
        }
    }
    let center_failed = best[2].as_ref().is_none_or(|ours| ours.report.failed > 0);
    for (index, name) in ["echo", "static"].iter().enumerate() {
        let ratio = median_ratio(&history[2], &history[index]);
        rows.push(Row::goal(
            format!("renew throughput, center / baseline ({name}), median of per-round ratios"),
            format!(
                "{:.1} % (best-of ratio {:.1} %)",
                ratio * 100.0,
                ratio_of(best_throughput(&best[2]), best_throughput(&best[index])) * 100.0
            ),
            ">= 80 %",
            ratio >= 0.8 && !center_failed,
        ));
        rows.push(Row::info(
            format!("renew CPU efficiency, baseline ({name}) us/req / center us/req, median"),
            format!(
                "{:.1} %",
                median_ratio(&cpu_history[index], &cpu_history[2]) * 100.0
            ),
        ));
    }
    for ((name, _), figures) in targets.iter().zip(&best_wrk) {
        if let Some(figures) = figures {
            rows.push(Row::info(
                format!("renew, {name}, wrk, best of {rounds}"),
                format!(
                    "{:.0} req/s, p50 {:.3} ms p99 {:.3} ms, {} errors",
                    figures.rps,
                    figures.p50_us / 1e3,
                    figures.p99_us / 1e3,
                    figures.errors
                ),
            ));
        }
    }
    if config.wrk.is_some() {
        let wrk_failed = best_wrk[2].as_ref().is_none_or(|ours| ours.errors != 0.0);
        for (index, name) in ["echo", "static"].iter().enumerate() {
            let ratio = median_ratio(&wrk_history[2], &wrk_history[index]);
            rows.push(Row::goal(
                format!(
                    "renew throughput, center / baseline ({name}), wrk, median of per-round ratios"
                ),
                format!("{:.1} %", ratio * 100.0),
                ">= 80 %",
                ratio >= 0.8 && !wrk_failed,
            ));
        }
    }

    // Phase 2: list latency with `list_nodes` nodes.
    let list = LoadSpec {
        connections: config.list_connections,
        duration: Some(config.duration),
        ..LoadSpec::new(center.addr(), Scenario::List)
    };
    let report = measure("list", &list, Some(&center)).await?.report;
    let p50 = report.latency.percentile(0.5);
    rows.push(Row::goal(
        format!(
            "available_nodes p50, {} nodes, {} conn(s)",
            config.list_nodes, config.list_connections
        ),
        format!(
            "{} ({}, {} KB/answer)",
            ms(p50),
            describe(&report),
            report.body_bytes / report.ok.max(1) / 1000
        ),
        "<= 2 ms",
        p50 <= Duration::from_millis(2) && report.failed == 0 && report.ok > 0,
    ));

    // Phase 3: durable registers of new nodes, best of `rounds`.
    let mut best_register: Option<Measured> = None;
    for round in 1..=rounds {
        let register = LoadSpec {
            connections: config.register_connections,
            duration: Some(config.duration),
            requests: None,
            nodes: u64::MAX,
            prefix: format!("durable{round}"),
            metadata_bytes: config.metadata_bytes,
            ..LoadSpec::new(center.addr(), Scenario::Register)
        };
        let measured =
            measure(&format!("round {round} register"), &register, Some(&center)).await?;
        if best_register
            .as_ref()
            .is_none_or(|old| measured.report.throughput() > old.report.throughput())
        {
            best_register = Some(measured);
        }
    }
    let Some(registered) = best_register else {
        return Err(BenchError::Invalid("no register round ran".to_owned()));
    };
    let report = registered.report.clone();
    rows.push(Row::goal(
        format!(
            "register, fsync-durable (data dir), {} conns, best of {rounds}",
            config.register_connections
        ),
        describe(&report),
        ">= 10000 req/s",
        report.throughput() >= 10_000.0 && report.failed == 0,
    ));
    rows.push(Row::info("register, server CPU", cpu_text(&registered)));
    rows.push(Row::info(
        "center RSS after the above",
        format!("{:.1} MiB", center.rss_kib()? as f64 / 1024.0),
    ));
    drop(center);

    // Phase 4: RSS at each node count, on a fresh center.
    if !config.rss_nodes.is_empty() {
        let rss_dir = config.work_dir.join("rss-data");
        let rss_dir_arg = rss_dir.to_string_lossy().into_owned();
        let mut args = vec!["center", "--listen", "{addr}", "--lease-ttl", "86400"];
        if config.rss_in_memory {
            args.push("--in-memory");
        } else {
            args.extend(["--data-dir", &rss_dir_arg]);
        }
        let center =
            ServerProcess::start("center-rss", &config.isek, &args, &config.work_dir).await?;
        rows.push(Row::info(
            "center RSS, empty",
            format!("{:.1} MiB", center.rss_kib()? as f64 / 1024.0),
        ));
        let mut registered = 0u64;
        for &target in &config.rss_nodes {
            if target <= registered {
                continue;
            }
            let spec = LoadSpec {
                connections: config.register_connections,
                duration: None,
                requests: Some(target - registered),
                nodes: u64::MAX,
                first_id: registered,
                prefix: "rss".to_owned(),
                metadata_bytes: config.metadata_bytes,
                ..LoadSpec::new(center.addr(), Scenario::Register)
            };
            let report = measure(&format!("rss populate to {target}"), &spec, Some(&center))
                .await?
                .report;
            registered = target;
            // Let the center settle (snapshot rebuilds, writer queue) before sampling.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mib = center.rss_kib()? as f64 / 1024.0;
            let store = if config.rss_in_memory {
                "in-memory"
            } else {
                "data dir"
            };
            let metric = format!(
                "center RSS, {target} nodes x {} B metadata ({store})",
                config.metadata_bytes
            );
            let result = format!(
                "{mib:.1} MiB ({:.0} B/node; loaded at {:.0} req/s{})",
                mib * 1024.0 * 1024.0 / target as f64,
                report.throughput(),
                if report.failed > 0 {
                    format!(", {} FAILED", report.failed)
                } else {
                    String::new()
                }
            );
            if target >= 1_000_000 {
                let met = mib <= 512.0 * target as f64 / 1_000_000.0 && report.failed == 0;
                rows.push(Row::goal(metric, result, "1M <= 512 MiB", met));
            } else {
                rows.push(Row::info(metric, result));
            }
        }
    }
    rows.push(Row::info(
        "load average at end (1/5/15 min)",
        load_average(),
    ));
    Ok(rows)
}

/// The first three fields of /proc/loadavg: how busy the shared machine was, since
/// other processes take CPU from both the server and the load generator.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            Row::info("a", "1"),
            Row::goal("longer metric", "2", ">= 1", true),
        ];
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines.iter().all(|line| line.len() == lines[0].len()),
            "{table}"
        );
        assert!(lines[3].contains("| yes |"), "{table}");
    }

    #[test]
    fn median_ratio_pairs_rounds() {
        assert_eq!(median_ratio(&[8.0, 9.0, 1.0], &[10.0, 10.0, 10.0]), 0.8);
        assert_eq!(median_ratio(&[1.0, 3.0], &[1.0, 1.0]), 2.0);
        assert_eq!(median_ratio(&[], &[]), 0.0);
        assert_eq!(median_ratio(&[1.0], &[0.0]), 0.0);
    }

    #[test]
    fn own_process_has_rss_and_cpu() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap_or(0) > 0);
        assert!(cpu_time(pid).is_ok());
    }
}
