//! One etcd for every test of a run that does not take etcd away: [`EtcdNamespace`].
//!
//! Starting an etcd costs about 0.65 s, and nextest runs each test in a process of its
//! own, so a per-process server cannot be shared. Instead the first test process that
//! needs etcd starts one for the whole target directory, beside a small keeper (`sh`),
//! and records its endpoint in `<target>/<profile>/isek-shared-etcd/endpoint`; later
//! processes find it there. Every process that uses it holds a shared `flock` on the
//! `users` file until it exits; the keeper stops etcd and removes its data once nobody
//! has held that lock for [`IDLE_CHECKS`] seconds in a row, so no etcd outlives the
//! run by more than a few seconds (under `cargo test` as under nextest). Starting is
//! serialised by an exclusive lock on `start`.
//!
//! Each [`EtcdNamespace`] has a parent id of its own (`parent`, `parent_for`), so tests
//! sharing the server never see each other's keys. Tests that stop, restart or
//! compact etcd, enable auth, read server-wide metrics or count all leases keep an
//! [`EtcdServer`] of their own. Without `flock` (util-linux), or with
//! `ISEK_SHARED_ETCD=0`, every namespace gets its own server instead.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isek::etcd::EtcdConfig;

use super::{EtcdServer, EtcdStartError, PORT_ATTEMPTS, START_TIMEOUT, find_binary, free_port};

/// How many one-second checks in a row must find no user before the keeper stops etcd.
const IDLE_CHECKS: u32 = 3;

/// The keeper: runs etcd (`$3...`) as its child, logging to `$1/etcd.log`; stops it,
/// once no process has held a lock on `$1/users` for `IDLE_CHECKS` checks, under that
/// lock (so no process starts using it meanwhile), and removes the data directory `$2`.
const KEEPER: &str = r#"
dir=$1; data=$2; idle_checks=$3; shift 3
"$@" >>"$dir/etcd.log" 2>&1 </dev/null &
etcd=$!
idle=0
while kill -0 "$etcd" 2>/dev/null; do
    sleep 1
    if flock -n -E 75 "$dir/users" true; then idle=$((idle + 1)); else idle=0; fi
    if [ "$idle" -ge "$idle_checks" ]; then
        if flock -n -E 75 "$dir/users" sh -c 'rm -f "$1/endpoint"; kill "$2"' sh "$dir" "$etcd"; then
            break
        fi
        idle=0
    fi
done
wait "$etcd"
rm -rf "$data"
"#;

/// A key namespace for one test on an etcd it may share with other tests.
pub struct EtcdNamespace {
    /// The client URL.
    endpoint: String,
    /// This namespace's parent id: unique to it.
    parent: String,
    /// The server, when this namespace has one of its own (no sharing possible).
    _own: Option<EtcdServer>,
}

impl std::fmt::Debug for EtcdNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdNamespace")
            .field("endpoint", &self.endpoint)
            .field("parent", &self.parent)
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl EtcdNamespace {
    /// A fresh namespace on the run's shared etcd, started if none runs; on a server of
    /// its own where sharing is impossible or turned off (`ISEK_SHARED_ETCD=0`).
    pub async fn new() -> Result<Self, EtcdStartError> {
        let parent = unique_parent();
        let sharing = std::env::var_os("ISEK_SHARED_ETCD").is_none_or(|v| v != "0");
        if sharing
            && has_flock()
            && let Some(dir) = state_dir()
        {
            let endpoint = tokio::task::spawn_blocking(move || shared_endpoint(&dir))
                .await
                .map_err(|e| EtcdStartError(format!("shared etcd start panicked: {e}")))??;
            return Ok(Self {
                endpoint,
                parent,
                _own: None,
            });
        }
        let own = EtcdServer::start().await?;
        Ok(Self {
            endpoint: own.endpoint(),
            parent,
            _own: Some(own),
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The parent id of this namespace (entries at `/{parent}/{node_id}`), used where a
    /// test would use the default `root`.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// A second parent id inside this namespace, for tests of several parents: distinct
    /// per `name`, and never a prefix-free neighbour of another namespace's.
    pub fn parent_for(&self, name: &str) -> String {
        format!("{}-{name}", self.parent)
    }

    /// The etcd key of `node_id` under [`EtcdNamespace::parent`], for raw clients.
    pub fn key(&self, node_id: &str) -> String {
        format!("/{}/{node_id}", self.parent)
    }

    /// An `EtcdConfig` for this endpoint and parent, to be refined by the test.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new([self.endpoint()]).parent(self.parent.clone())
    }

    /// Whether the server is shared with other tests (not one of this namespace's own).
    pub fn is_shared(&self) -> bool {
        self._own.is_none()
    }
}

/// A parent id no other namespace, in this process or any other, has used.
fn unique_parent() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{:x}p{}n{n}", nanos, std::process::id())
}

/// Whether `flock` (util-linux) is on PATH: the keeper needs it.
fn has_flock() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("flock")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `<target>/<profile>/isek-shared-etcd`, beside the test binary's `deps` directory:
/// one shared etcd per target directory, so separate checkouts do not meet.
fn state_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile = exe.parent()?.parent()?;
    let dir = profile.join("isek-shared-etcd");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// The `users` lock this process holds (shared) until it exits, taken once.
static USERS: OnceLock<File> = OnceLock::new();

/// Opens (creating) a lock file in `dir`.
fn lock_file(dir: &Path, name: &str) -> Result<File, EtcdStartError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .map_err(|e| EtcdStartError(format!("cannot open {}/{name}: {e}", dir.display())))
}

/// The endpoint of the shared etcd in `dir`, started if none runs (blocking).
fn shared_endpoint(dir: &Path) -> Result<String, EtcdStartError> {
    if USERS.get().is_none() {
        // Registered as a user before looking, so the keeper cannot stop the server
        // between the look and the first request.
        let users = lock_file(dir, "users")?;
        users
            .lock_shared()
            .map_err(|e| EtcdStartError(format!("cannot lock {}/users: {e}", dir.display())))?;
        let _ = USERS.set(users);
    }
    let start = lock_file(dir, "start")?;
    start
        .lock()
        .map_err(|e| EtcdStartError(format!("cannot lock {}/start: {e}", dir.display())))?;
    if let Some(endpoint) = running(dir) {
        return Ok(endpoint);
    }
    let endpoint = launch(dir)?;
    // `start` is unlocked when it is dropped, after the endpoint file is in place.
    drop(start);
    Ok(endpoint)
}

/// The recorded endpoint, if its etcd still runs and is healthy.
fn running(dir: &Path) -> Option<String> {
    let record = std::fs::read_to_string(dir.join("endpoint")).ok()?;
    let mut fields = record.split_whitespace();
    let (endpoint, metrics_port, data) = (fields.next()?, fields.next()?, fields.next()?);
    let metrics_port: u16 = metrics_port.parse().ok()?;
    // Healthy on that port is not enough: after a crash another etcd may have it.
    if !Path::new(data).is_dir() {
        return None;
    }
    healthy(metrics_port).then(|| endpoint.to_owned())
}

/// Whether etcd on `port` answers `GET /health` with `"health":"true"` (blocking).
fn healthy(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let check = || -> std::io::Result<bool> {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(String::from_utf8_lossy(&response).contains("\"health\":\"true\""))
    };
    check().unwrap_or(false)
}

/// Kills the process group `pgid` (a keeper and its etcd) with SIGKILL.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts a keeper and its etcd on free ports and records the endpoint.
fn launch(dir: &Path) -> Result<String, EtcdStartError> {
    let binary = find_binary()?;
    let mut last_error = EtcdStartError("the shared etcd did not start".into());
    for _ in 0..PORT_ATTEMPTS {
        let ports = [free_port()?, free_port()?, free_port()?];
        if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
            continue;
        }
        let [client_port, peer_port, metrics_port] = ports;
        // Removed by the keeper once etcd has exited.
        let data_parent = tempfile::Builder::new()
            .prefix("isek-shared-etcd-")
            .tempdir()
            .map_err(|e| EtcdStartError(format!("cannot create a data directory: {e}")))?
            .keep();
        let data = data_parent.join("data");
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut keeper = Command::new("sh");
        keeper
            .arg("-c")
            .arg(KEEPER)
            .arg("sh")
            .arg(dir)
            .arg(&data_parent)
            .arg(IDLE_CHECKS.to_string())
            .arg(&binary)
            .arg("--name=isek-shared")
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{metrics_port}"
            ))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=isek-shared={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            // No pipe of the test's: nextest would wait for it and call the test leaky.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a signal to the test's group does not reach it, and
        // it outlives the process that started it.
        std::os::unix::process::CommandExt::process_group(&mut keeper, 0);
        let mut child = keeper.spawn().map_err(|e| {
            EtcdStartError(format!("cannot run sh for the shared etcd keeper: {e}"))
        })?;
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let started = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(EtcdStartError(format!(
                    "the shared etcd exited with {status} while starting on {client} (log: {}/etcd.log)",
                    dir.display()
                )));
            }
            if healthy(metrics_port) {
                break Ok(());
            }
            if std::time::Instant::now() > deadline {
                kill_group(child.id());
                let _ = child.wait();
                break Err(EtcdStartError(format!(
                    "the shared etcd on {client} not healthy after {START_TIMEOUT:?} (log: {}/etcd.log)",
                    dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match started {
            Ok(()) => {
                let record = format!("{client} {metrics_port} {}\n", data.display());
                let tmp = dir.join(format!("endpoint.{}", std::process::id()));
                std::fs::write(&tmp, record)
                    .and_then(|()| std::fs::rename(&tmp, dir.join("endpoint")))
                    .map_err(|e| EtcdStartError(format!("cannot record the endpoint: {e}")))?;
                return Ok(client);
            }
            // Most likely a port taken between our probe and etcd's bind.
            Err(e) => {
                last_error = e;
                let _ = std::fs::remove_dir_all(&data_parent);
            }
        }
    }
    Err(last_error)
}
