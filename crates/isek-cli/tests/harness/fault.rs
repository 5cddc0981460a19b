//! Children that run a fault scenario: [`Proc`] (any `isek` command, its stdout read
//! line by line with the time each line arrived), [`Center`] (`isek center` with
//! short leases), `isek run` nodes, and the listings and waits the fault tests check.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isek::{IsekCenterRegistry, Metadata, NodeInfo, Registry};
use serde_json::Value;

use super::ISEK;
/// Lease length of the centers and nodes, in seconds.
pub const TTL: &str = "2";

/// Longest wait for anything a test expects to happen (a process line, a listing).
/// Recovery itself takes about TTL/3 plus backoff; the rest is slack for a loaded
/// machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// One line a child wrote to stdout, with the wall-clock time the test read it.
pub struct Line {
    /// When the test received the line (after the child wrote it).
    pub at: SystemTime,
    /// The line without its line break.
    pub text: String,
}

/// A child `isek` process; killed (SIGKILL) and reaped on drop.
pub struct Proc {
    /// What the process is, for failure messages.
    pub name: String,
    /// The child; `None` once reaped.
    pub child: Option<Child>,
    /// Stdout lines as they arrive.
    pub lines: mpsc::Receiver<Line>,
    /// Every stdout line read so far, for failure messages.
    pub seen: Vec<String>,
    /// Everything written to stderr so far.
    pub stderr: Arc<Mutex<String>>,
    /// The thread copying stderr, joined once the process exited so that `stderr` is
    /// complete.
    pub stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `isek <args>` without `ISEK_CENTER` or `RUST_LOG` from the environment.
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(ISEK)
            .args(args)
            .env_remove("ISEK_CENTER")
            .env_remove("ISEK_ADMIN_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn isek");
        let (stderr, stderr_reader) = super::collect_stderr(&mut child);
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
    pub fn transcript(&self) -> String {
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
    pub fn try_line(&mut self, wanted: impl Fn(&str) -> bool) -> Option<Line> {
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
    pub fn line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> Line {
        match self.try_line(wanted) {
            Some(line) => line,
            None => panic!("no line {what}\n{}", self.transcript()),
        }
    }

    /// The next JSON stdout line for which `wanted` holds.
    pub fn json_line(
        &mut self,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> (SystemTime, Value) {
        let line = self.line(what, |text| {
            serde_json::from_str::<Value>(text).is_ok_and(|v| wanted(&v))
        });
        (line.at, serde_json::from_str(&line.text).unwrap())
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` ("KILL", "STOP", "CONT", "TERM", "INT") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
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
    pub fn kill_9(&mut self) {
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
pub struct Center {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` as it announced it.
    pub url: String,
}

impl Center {
    /// Starts a center on `listen` with `store` (`--data-dir DIR` or `--in-memory`)
    /// and lease length `ttl` seconds; `None` if it exits before announcing its address.
    pub fn try_start(listen: &str, ttl: &str, store: &[&str]) -> Option<Center> {
        let mut args = vec!["center", "--listen", listen, "--lease-ttl", ttl];
        args.extend_from_slice(store);
        let mut proc = Proc::spawn("center", &args);
        let line = proc.try_line(|text| text.starts_with("isek center listening on "))?;
        let url = line.text["isek center listening on ".len()..].to_owned();
        Some(Center { proc, url })
    }

    /// Starts a center with lease TTL [`TTL`] on a free loopback port.
    pub fn start(store: &[&str]) -> Center {
        Center::start_with_ttl(TTL, store)
    }

    /// Starts a center with lease length `ttl` seconds on a free loopback port.
    pub fn start_with_ttl(ttl: &str, store: &[&str]) -> Center {
        Center::try_start("127.0.0.1:0", ttl, store).expect("isek center did not start")
    }

    /// Starts a center on the address `url` had (it was freed a moment ago, so retry a
    /// few times in case the port is not yet reusable).
    pub fn restart_at(url: &str, store: &[&str]) -> Center {
        Center::restart_at_with_ttl(url, TTL, store)
    }

    /// [`Center::restart_at`] with lease length `ttl` seconds.
    pub fn restart_at_with_ttl(url: &str, ttl: &str, store: &[&str]) -> Center {
        let listen = url.trim_start_matches("http://");
        for _ in 0..20 {
            if let Some(center) = Center::try_start(listen, ttl, store) {
                return center;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart a center on {listen}");
    }
}

/// `--data-dir <dir>/<name>` arguments.
pub fn data_dir(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--data-dir".to_owned(),
        dir.join(name).to_str().unwrap().to_owned(),
    ]
}

/// Borrowed form of owned arguments.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Lists the center at `url`.
pub fn try_list(url: &str) -> isek::Result<BTreeMap<String, NodeInfo>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { IsekCenterRegistry::new(url)?.get_available_nodes().await })
}

/// Lists the center at `url`, which must answer.
pub fn list(url: &str) -> BTreeMap<String, NodeInfo> {
    try_list(url).unwrap()
}

/// Registers a node directly (lease: the center's TTL).
pub fn register(url: &str, node_id: &str, port: u16) {
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
pub fn eventually(what: &str, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out waiting until {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `isek run` against `url` at 127.0.0.1:`port`, with `--ttl` [`TTL`] and `extra` flags.
pub fn run_node(url: &str, port: u16, extra: &[&str]) -> Proc {
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
pub fn start_nodes(url: &str, first_port: u16, count: u16) -> Vec<(Proc, String)> {
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
pub fn ids(nodes: &[(Proc, String)]) -> BTreeSet<String> {
    nodes.iter().map(|(_, id)| id.clone()).collect()
}

/// Checks the listing holds exactly `nodes`, each at its own port.
pub fn assert_listing_is(url: &str, nodes: &[(Proc, String)], first_port: u16) {
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
pub fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Applies `isek watch --json` lines to a membership set.
pub fn apply_watch_line(members: &mut BTreeSet<String>, text: &str) {
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

/// `isek watch --json --poll-interval 0.2 --center <url>`.
pub fn json_watcher(url: &str) -> Proc {
    Proc::spawn(
        "watch",
        &["watch", "--json", "--poll-interval", "0.2", "--center", url],
    )
}
