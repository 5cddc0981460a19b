//! The node runtime through real faults, with real processes: `isek center`, `isek
//! run` nodes and `isek watch` watchers as children of the test, signalled with
//! kill(1) (`-9`, `-STOP`/`-CONT`, `-TERM`, `-INT`).
//!
//! - A center killed with `kill -9` and restarted empty on the same address: every
//!   node registers again, and a watcher converges to the truth.
//! - A center frozen longer than the TTL, then resumed: every node notices the lost
//!   lease, registers again, and the listing holds each node once.
//! - A node killed with `kill -9` leaves at its lease deadline, not before; one stopped
//!   with SIGTERM is gone from the listing as soon as its process exited.
//! - `isek watch` prints the current set, joins, updates and leaves.
//! - `isek run` refused for good exits 1 with one line on stderr; started before its
//!   center, it registers once the center is up.
//!
//! Leases are 2 s so the faults play out in a few seconds. Every wait is bounded (a
//! hang fails the test with the children's output); nothing asserts on elapsed time,
//! only on order (a leave is never seen before the lease deadline).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isek::{IsekCenterRegistry, Metadata, NodeInfo, Registry};
use serde_json::Value;

/// Path of the binary under test.
const ISEK: &str = env!("CARGO_BIN_EXE_isek");

/// Lease length of the centers and nodes, in seconds.
const TTL: &str = "2";

/// Longest wait for anything a test expects to happen (a process line, a listing).
/// Recovery itself takes about TTL/3 plus backoff; the rest is slack for a loaded
/// machine.
const WAIT: Duration = Duration::from_secs(20);

/// One line a child wrote to stdout, with the wall-clock time the test read it.
struct Line {
    /// When the test received the line (after the child wrote it).
    at: SystemTime,
    /// The line without its line break.
    text: String,
}

/// A child `isek` process; killed (SIGKILL) and reaped on drop.
struct Proc {
    /// What the process is, for failure messages.
    name: String,
    /// The child; `None` once reaped.
    child: Option<Child>,
    /// Stdout lines as they arrive.
    lines: mpsc::Receiver<Line>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
    /// Everything written to stderr so far.
    stderr: Arc<Mutex<String>>,
    /// The thread copying stderr, joined once the process exited so that `stderr` is
    /// complete.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `isek <args>` without `ISEK_CENTER` or `RUST_LOG` from the environment.
    fn spawn(name: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(ISEK)
            .args(args)
            .env_remove("ISEK_CENTER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn isek");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let out_pipe = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(out_pipe).lines() {
                let Ok(text) = text else { break };
                let line = Line {
                    at: SystemTime::now(),
                    text,
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_owned(),
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// What the process wrote so far, for failure messages.
    fn transcript(&self) -> String {
        format!(
            "{} stdout:\n{}\n{} stderr:\n{}",
            self.name,
            self.seen.join("\n"),
            self.name,
            self.stderr.lock().unwrap()
        )
    }

    /// The next stdout line matching `wanted`, skipping others; `None` if the process
    /// closed stdout or `WAIT` passed first.
    fn try_line(&mut self, wanted: impl Fn(&str) -> bool) -> Option<Line> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.text.clone());
            if wanted(&line.text) {
                return Some(line);
            }
        }
    }

    /// The next stdout line matching `wanted`; fails the test if none comes.
    fn line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> Line {
        match self.try_line(wanted) {
            Some(line) => line,
            None => panic!("no line {what}\n{}", self.transcript()),
        }
    }

    /// The next JSON stdout line for which `wanted` holds.
    fn json_line(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> (SystemTime, Value) {
        let line = self.line(what, |text| {
            serde_json::from_str::<Value>(text).is_ok_and(|v| wanted(&v))
        });
        (line.at, serde_json::from_str(&line.text).unwrap())
    }

    /// Process id.
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` ("KILL", "STOP", "CONT", "TERM", "INT") with kill(1).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                // Collect what it printed before exiting (the pipes close with it).
                while let Ok(line) = self.lines.recv_timeout(WAIT) {
                    self.seen.push(line.text);
                }
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().unwrap();
                }
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit\n{}", self.name, self.transcript());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` and reap.
    fn kill_9(&mut self) {
        self.signal("KILL");
        let status = self.wait();
        assert!(!status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `isek center`.
struct Center {
    /// The process.
    proc: Proc,
    /// `http://127.0.0.1:PORT` as it announced it.
    url: String,
}

impl Center {
    /// Starts a center on `listen` with `store` (`--data-dir DIR` or `--in-memory`)
    /// and lease length `ttl` seconds; `None` if it exits before announcing its address.
    fn try_start(listen: &str, ttl: &str, store: &[&str]) -> Option<Center> {
        let mut args = vec!["center", "--listen", listen, "--lease-ttl", ttl];
        args.extend_from_slice(store);
        let mut proc = Proc::spawn("center", &args);
        let line = proc.try_line(|text| text.starts_with("isek center listening on "))?;
        let url = line.text["isek center listening on ".len()..].to_owned();
        Some(Center { proc, url })
    }

    /// Starts a center with lease TTL [`TTL`] on a free loopback port.
    fn start(store: &[&str]) -> Center {
        Center::start_with_ttl(TTL, store)
    }

    /// Starts a center with lease length `ttl` seconds on a free loopback port.
    fn start_with_ttl(ttl: &str, store: &[&str]) -> Center {
        Center::try_start("127.0.0.1:0", ttl, store).expect("isek center did not start")
    }

    /// Starts a center on the address `url` had (it was freed a moment ago, so retry a
    /// few times in case the port is not yet reusable).
    fn restart_at(url: &str, store: &[&str]) -> Center {
        let listen = url.trim_start_matches("http://");
        for _ in 0..20 {
            if let Some(center) = Center::try_start(listen, TTL, store) {
                return center;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart a center on {listen}");
    }
}

/// `--data-dir <dir>/<name>` arguments.
fn data_dir(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--data-dir".to_owned(),
        dir.join(name).to_str().unwrap().to_owned(),
    ]
}

/// Borrowed form of owned arguments.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Lists the center at `url`.
fn try_list(url: &str) -> isek::Result<BTreeMap<String, NodeInfo>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { IsekCenterRegistry::new(url)?.get_available_nodes().await })
}

/// Lists the center at `url`, which must answer.
fn list(url: &str) -> BTreeMap<String, NodeInfo> {
    try_list(url).unwrap()
}

/// Registers a node directly (lease: the center's TTL).
fn register(url: &str, node_id: &str, port: u16) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async {
            IsekCenterRegistry::new(url)?
                .register_node(node_id, "127.0.0.1", port, Metadata::new())
                .await
        })
        .unwrap();
}

/// Polls `check` every 50 ms until it holds; fails the test after [`WAIT`].
fn eventually(what: &str, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out waiting until {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `isek run` against `url` at 127.0.0.1:`port`, with `--ttl` [`TTL`] and `extra` flags.
fn run_node(url: &str, port: u16, extra: &[&str]) -> Proc {
    let port = port.to_string();
    let mut args = vec![
        "run",
        "--center",
        url,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--ttl",
        TTL,
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&format!("node on port {port}"), &args)
}

/// Starts `count` nodes with random ids; returns them with their ids once each one
/// reported itself registered.
fn start_nodes(url: &str, first_port: u16, count: u16) -> Vec<(Proc, String)> {
    (0..count)
        .map(|i| {
            let mut node = run_node(url, first_port + i, &[]);
            let line = node.line("registered", |text| text.starts_with("registered "));
            let id = line.text.split(' ').nth(1).unwrap().to_owned();
            assert_eq!(
                line.text,
                format!("registered {id} 127.0.0.1:{}", first_port + i)
            );
            (node, id)
        })
        .collect()
}

/// Ids of `nodes`.
fn ids(nodes: &[(Proc, String)]) -> BTreeSet<String> {
    nodes.iter().map(|(_, id)| id.clone()).collect()
}

/// Checks the listing holds exactly `nodes`, each at its own port.
fn assert_listing_is(url: &str, nodes: &[(Proc, String)], first_port: u16) {
    let listed = list(url);
    assert_eq!(listed.len(), nodes.len(), "{listed:?}");
    for (i, (_, id)) in nodes.iter().enumerate() {
        let node = listed
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing: {listed:?}"));
        assert_eq!(node.port, first_port + i as u16);
    }
}

/// `now` as float Unix seconds.
fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Applies `isek watch --json` lines to a membership set.
fn apply_watch_line(members: &mut BTreeSet<String>, text: &str) {
    let Ok(event) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let id = || event["node"]["node_id"].as_str().unwrap().to_owned();
    match event["event"].as_str() {
        Some("join") | Some("update") => {
            members.insert(id());
        }
        Some("leave") => {
            members.remove(&id());
        }
        _ => {}
    }
}

#[test]
fn center_killed_and_restarted_empty_gets_every_node_back() {
    let dir = tempfile::tempdir().unwrap();
    let first = data_dir(dir.path(), "first");
    let mut center = Center::start(&strs(&first));
    let url = center.url.clone();
    let nodes = start_nodes(&url, 9100, 3);
    let expected = ids(&nodes);
    assert_eq!(expected.len(), 3, "node ids are not distinct");
    let mut watcher = Proc::spawn(
        "watch",
        &[
            "watch",
            "--json",
            "--poll-interval",
            "0.2",
            "--center",
            &url,
        ],
    );
    let mut members = BTreeSet::new();
    loop {
        let line = watcher.line("live", |_| true);
        if line.text.contains(r#""event":"live""#) {
            break;
        }
        apply_watch_line(&mut members, &line.text);
    }
    assert_eq!(members, expected);
    assert_listing_is(&url, &nodes, 9100);

    center.proc.kill_9();
    // Another data dir: the new center knows nothing of the nodes.
    let second = data_dir(dir.path(), "second");
    let restarted = Center::restart_at(&url, &strs(&second));
    assert_eq!(restarted.url, url);
    let outage_over = Instant::now();

    // Each node noticed (a failed call or NotFound) and registered again: a second
    // `registered` line, for the lease the new center granted.
    let mut nodes = nodes;
    for (node, id) in &mut nodes {
        let again = format!("registered {id} ");
        node.line("registered again", |text| text.starts_with(&again));
    }
    eventually(
        "the restarted center lists every node",
        || {
            try_list(&url)
                .is_ok_and(|listed| listed.keys().cloned().collect::<BTreeSet<_>>() == expected)
        },
        || format!("{:?}", try_list(&url)),
    );
    eprintln!(
        "every node back {:?} after the center came back",
        outage_over.elapsed()
    );
    assert_listing_is(&url, &nodes, 9100);
    // The node processes kept their ids (no duplicates under new ids).
    for (node, id) in &nodes {
        assert!(
            node.seen
                .iter()
                .all(|line| line.split(' ').nth(1) == Some(id)),
            "{}",
            node.transcript()
        );
    }

    // The watcher converges to the truth after the cut.
    let deadline = Instant::now() + WAIT;
    while members != expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match watcher.lines.recv_timeout(left) {
            Ok(line) => {
                apply_watch_line(&mut members, &line.text);
                watcher.seen.push(line.text);
            }
            Err(_) => panic!("watcher did not converge\n{}", watcher.transcript()),
        }
    }
}

#[test]
fn center_frozen_longer_than_the_ttl_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = data_dir(dir.path(), "store");
    let center = Center::start(&strs(&store));
    let url = center.url.clone();
    let mut nodes = start_nodes(&url, 9200, 3);
    let expected = ids(&nodes);
    assert_eq!(expected.len(), 3);

    center.proc.signal("STOP");
    // Calls time out; once a TTL passed since the last success each node knows its
    // lease lapsed.
    for (node, id) in &mut nodes {
        let lost = format!("lost {id} ");
        node.line("lost", |text| text.starts_with(&lost));
    }
    center.proc.signal("CONT");
    let resumed = Instant::now();

    for (node, id) in &mut nodes {
        let again = format!("registered {id} ");
        node.line("registered again", |text| text.starts_with(&again));
    }
    eprintln!(
        "every node registered again {:?} after the center resumed",
        resumed.elapsed()
    );
    eventually(
        "the resumed center lists every node",
        || {
            try_list(&url)
                .is_ok_and(|listed| listed.keys().cloned().collect::<BTreeSet<_>>() == expected)
        },
        || format!("{:?}", try_list(&url)),
    );
    // Exactly one entry per node process, at its own address.
    assert_listing_is(&url, &nodes, 9200);
}

#[test]
fn killed_node_leaves_at_its_deadline_and_stopped_node_at_once() {
    let center = Center::start(&["--in-memory"]);
    let url = center.url.clone();
    let mut watcher = Proc::spawn(
        "watch",
        &[
            "watch",
            "--json",
            "--poll-interval",
            "0.2",
            "--center",
            &url,
        ],
    );
    watcher.json_line("live", |v| v["event"] == "live");
    let mut victim = run_node(&url, 9300, &["--node-id", "victim"]);
    let mut quitter = run_node(&url, 9301, &["--node-id", "quitter", "--json"]);
    victim.line("registered", |text| {
        text == "registered victim 127.0.0.1:9300"
    });
    quitter.json_line("registered", |v| {
        v["state"] == "registered" && v["node_id"] == "quitter" && v["since"].is_f64()
    });
    // Both may join in one poll, in either order.
    let mut joined = BTreeSet::new();
    while joined.len() < 2 {
        let (_, join) = watcher.json_line("join", |v| v["event"] == "join");
        joined.insert(join["node"]["node_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        joined,
        BTreeSet::from(["quitter".to_owned(), "victim".to_owned()])
    );

    // Crash: no deregistration, the entry stays until its lease runs out.
    let deadline_before_kill = list(&url)["victim"].expires_at.unwrap();
    victim.kill_9();
    let (seen_at, leave) = watcher.json_line("victim leaves", |v| {
        v["event"] == "leave" && v["node"]["node_id"] == "victim"
    });
    // The lease deadline only moves later with renewals, and listings may show a
    // deadline older than the real one, never a later one: so the leave cannot be
    // seen before either deadline (the watcher's last known one is there when it
    // polls; a change stream's entries may not carry one).
    // (A few milliseconds of slack for the float conversions on both sides.)
    let last_known_deadline = leave["node"]["expires_at"]
        .as_f64()
        .unwrap_or(deadline_before_kill)
        .max(deadline_before_kill);
    assert!(
        unix(seen_at) + 0.005 >= last_known_deadline,
        "victim seen leaving at {} before its lease deadline {last_known_deadline}",
        unix(seen_at)
    );
    assert!(!list(&url).contains_key("victim"));

    // Clean stop: deregistered before the process exits.
    quitter.signal("TERM");
    let status = quitter.wait();
    assert!(status.success(), "{status}\n{}", quitter.transcript());
    let last: Value = serde_json::from_str(quitter.seen.last().unwrap()).unwrap();
    assert_eq!(
        last,
        serde_json::json!({"state": "stopped", "node_id": "quitter"})
    );
    assert!(
        !list(&url).contains_key("quitter"),
        "quitter still listed after a clean exit"
    );
    assert!(
        quitter.stderr.lock().unwrap().is_empty(),
        "{}",
        quitter.transcript()
    );
    watcher.json_line("quitter leaves", |v| {
        v["event"] == "leave" && v["node"]["node_id"] == "quitter"
    });

    watcher.signal("INT");
    let status = watcher.wait();
    assert!(status.success(), "{status}\n{}", watcher.transcript());
}

#[test]
fn watch_prints_the_current_set_then_joins_updates_and_leaves() {
    // A long lease: the nodes registered directly are not renewed.
    let center = Center::start_with_ttl("30", &["--in-memory"]);
    let url = center.url.clone();
    register(&url, "early", 7000);
    let mut watcher = Proc::spawn(
        "watch",
        &["watch", "--poll-interval", "0.2", "--center", &url],
    );
    watcher.line("current set", |text| text == "+ early 127.0.0.1:7000");
    // Polling today; the center's change stream once the client has it.
    watcher.line("live", |text| {
        text == "# live (polling), 1 nodes" || text == "# live (change stream), 1 nodes"
    });
    // Nothing else was printed in between.
    assert_eq!(watcher.seen.len(), 2, "{}", watcher.transcript());

    let mut late = run_node(&url, 7001, &["--node-id", "late"]);
    late.line("registered", |text| text.starts_with("registered late "));
    watcher.line("join", |text| text == "+ late 127.0.0.1:7001");
    register(&url, "early", 7002);
    watcher.line("update", |text| text == "~ early 127.0.0.1:7002 (address)");

    late.signal("INT");
    assert!(late.wait().success(), "{}", late.transcript());
    assert_eq!(late.seen.last().map(String::as_str), Some("stopped late"));
    watcher.line("leave", |text| text == "- late");

    watcher.signal("TERM");
    let status = watcher.wait();
    assert!(status.success(), "{status}\n{}", watcher.transcript());
    assert!(
        watcher.stderr.lock().unwrap().is_empty(),
        "{}",
        watcher.transcript()
    );
}

#[test]
fn run_refused_for_good_fails_and_run_before_the_center_waits_for_it() {
    let center = Center::start(&["--in-memory"]);
    let mut refused = run_node(&center.url, 9400, &["--node-id", "a/b"]);
    let status = refused.wait();
    assert_eq!(status.code(), Some(1), "{}", refused.transcript());
    assert!(refused.seen.is_empty(), "{}", refused.transcript());
    let stderr = refused.stderr.lock().unwrap().clone();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: the registry refused node 'a/b': invalid argument:"),
        "{stderr:?}"
    );

    // A node started while its center is down keeps trying, and registers once the
    // center is up.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let mut early = run_node(&url, 9401, &["--node-id", "early-bird"]);
    early.line("lost", |text| {
        text.starts_with("lost early-bird (attempt 1): unavailable")
    });
    let late_center = Center::restart_at(&url, &["--in-memory"]);
    early.line("registered", |text| {
        text == "registered early-bird 127.0.0.1:9401"
    });
    assert!(list(&late_center.url).contains_key("early-bird"));
    let mut orphan = run_node(&url, 9402, &["--node-id", "orphan"]);
    orphan.line("registered", |text| text.starts_with("registered orphan "));
    early.signal("TERM");
    assert!(early.wait().success(), "{}", early.transcript());
    assert_eq!(
        early.seen.last().map(String::as_str),
        Some("stopped early-bird")
    );
    // Retries were reported on stdout, nothing on stderr.
    assert!(
        early.stderr.lock().unwrap().is_empty(),
        "{}",
        early.transcript()
    );
    assert_eq!(list(&url).keys().collect::<Vec<_>>(), ["orphan"]);

    // A node that cannot deregister at shutdown says so: exit 1, one line on stderr.
    let mut late_center = late_center;
    late_center.proc.kill_9();
    orphan.signal("TERM");
    let status = orphan.wait();
    assert_eq!(status.code(), Some(1), "{}", orphan.transcript());
    let stderr = orphan.stderr.lock().unwrap().clone();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: cannot deregister node 'orphan' (its entry expires with its lease): unavailable:"),
        "{stderr:?}"
    );
}

/// Lists the etcd at `endpoint` through the library (any identity may read).
fn etcd_list(endpoint: &str) -> BTreeMap<String, NodeInfo> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = isek::etcd::EtcdConfig::new([endpoint]);
        let reader =
            isek::etcd::EtcdRegistry::connect(config, isek::identity::NodeIdentity::generate())
                .await
                .unwrap();
        reader.get_available_nodes().await.unwrap()
    })
}

#[test]
fn etcd_restarted_under_running_nodes_they_come_back() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut etcd = runtime
        .block_on(isek_testkit::etcd::EtcdServer::start())
        .unwrap();
    let endpoint = etcd.endpoint();
    let mut watcher = Proc::spawn("watch", &["watch", "--json", "--etcd", &endpoint]);
    // etcd pushes changes: no polling.
    watcher.json_line("live", |v| v["event"] == "live" && v["source"] == "stream");
    let mut nodes: Vec<(Proc, String)> = (0..2u16)
        .map(|i| {
            let id = format!("etcd-node-{i}");
            let mut node = Proc::spawn(
                &id,
                &[
                    "run",
                    "--etcd",
                    &endpoint,
                    "--node-id",
                    &id,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &(9500 + i).to_string(),
                    "--ttl",
                    TTL,
                ],
            );
            node.line("registered", |text| {
                text.starts_with(&format!("registered {id} "))
            });
            (node, id)
        })
        .collect();
    let expected = ids(&nodes);
    let mut members = BTreeSet::new();
    while members != expected {
        let line = watcher.line("join", |_| true);
        apply_watch_line(&mut members, &line.text);
    }
    let listed = etcd_list(&endpoint);
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for node in listed.values() {
        assert!(node.public_key.is_some(), "{node:?} is not signed");
    }

    // Crash etcd (SIGKILL; its data stays) and bring it back on the same endpoint.
    etcd.stop();
    for (node, id) in &mut nodes {
        let trouble = [format!("retrying {id} "), format!("lost {id} ")];
        node.line("trouble", |text| {
            trouble.iter().any(|t| text.starts_with(t))
        });
    }
    runtime.block_on(etcd.restart()).unwrap();
    for (node, id) in &mut nodes {
        let again = format!("registered {id} ");
        node.line("registered again", |text| text.starts_with(&again));
    }
    eventually(
        "etcd lists every node again",
        || {
            etcd_list(&endpoint)
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
                == expected
        },
        || format!("{:?}", etcd_list(&endpoint)),
    );

    // The watcher converges after its stream was cut.
    let deadline = Instant::now() + WAIT;
    while members != expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match watcher.lines.recv_timeout(left) {
            Ok(line) => {
                apply_watch_line(&mut members, &line.text);
                watcher.seen.push(line.text);
            }
            Err(_) => panic!("watcher did not converge\n{}", watcher.transcript()),
        }
    }

    // A clean stop deregisters: gone from etcd once the process exited, and the
    // watcher sees it leave.
    let (mut first, first_id) = nodes.remove(0);
    first.signal("TERM");
    assert!(first.wait().success(), "{}", first.transcript());
    assert!(!etcd_list(&endpoint).contains_key(&first_id));
    watcher.json_line("leave", |v| {
        v["event"] == "leave" && v["node"]["node_id"] == first_id.as_str()
    });
}

#[test]
fn run_ttl_flags_must_agree() {
    // Checked before anything is contacted: nothing listens on this endpoint.
    let output = Command::new(ISEK)
        .args([
            "run",
            "--etcd",
            "http://127.0.0.1:1",
            "--host",
            "h",
            "--port",
            "1",
        ])
        .args(["--ttl", "2", "--lease-ttl", "3"])
        .env_remove("ISEK_CENTER")
        .env_remove("ISEK_ETCD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: --ttl and --lease-ttl disagree (2s vs 3s); give one\n"
    );
}
