//! A real etcd server for tests, on free loopback ports, stopped on drop.
//!
//! Tests of the etcd backend talk to the real thing (Debian's `etcd-server` 3.4, the
//! version the original ISEK was captured against), never a mock. Each [`EtcdServer`]
//! gets its own data directory and ports, so tests run in parallel and never touch a
//! system etcd on 2379. [`EtcdServer::stop`] and [`EtcdServer::restart`] let fault
//! tests take it away and bring it back on the same endpoint with the same data.
//! Tests that do neither take an [`EtcdNamespace`] instead: a parent id of their own on
//! one etcd shared by the whole run (`shared`).

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod shared;

pub use shared::EtcdNamespace;

/// How long a fresh etcd may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a port race (another process took a port we picked) is retried.
const PORT_ATTEMPTS: usize = 5;

/// Why an etcd server could not be started.
#[derive(Debug)]
pub struct EtcdStartError(pub(crate) String);

impl fmt::Display for EtcdStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EtcdStartError {}

/// A running (or stopped, restartable) single-member etcd.
pub struct EtcdServer {
    /// The etcd process while it runs.
    child: Option<Child>,
    /// Data directory and log file; removed on drop.
    dir: tempfile::TempDir,
    /// The etcd binary used, to restart the same one.
    binary: PathBuf,
    /// Client port on 127.0.0.1.
    client_port: u16,
    /// Peer port on 127.0.0.1 (unused by tests, but etcd needs one).
    peer_port: u16,
    /// Plain-HTTP port of `/health` and `/metrics` (also when clients use TLS).
    metrics_port: u16,
    /// Certificate and key files when clients must use TLS (`https://` endpoint).
    tls: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdServer")
            .field("endpoint", &self.endpoint())
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// The etcd binary: `$ISEK_ETCD_BIN`, else `etcd` on PATH, else Debian's location.
pub(crate) fn find_binary() -> Result<PathBuf, EtcdStartError> {
    if let Some(path) = std::env::var_os("ISEK_ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(path) = on_path {
        return Ok(path);
    }
    let debian = Path::new("/usr/bin/etcd");
    if debian.is_file() {
        return Ok(debian.to_owned());
    }
    Err(EtcdStartError(
        "etcd is not installed: run the test command from the README (it installs Debian's \
         etcd-server), or set ISEK_ETCD_BIN to an etcd 3.4+ binary"
            .into(),
    ))
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, EtcdStartError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EtcdStartError(format!("cannot find a free port: {e}")))
}

impl EtcdServer {
    /// Starts etcd on free loopback ports in a fresh temporary data directory and waits
    /// until it reports healthy.
    pub async fn start() -> Result<Self, EtcdStartError> {
        Self::start_with(None).await
    }

    /// Like [`EtcdServer::start`], serving clients over TLS with the PEM certificate
    /// chain `cert_pem` and key `key_pem` (its endpoint is `https://127.0.0.1:PORT`).
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Self, EtcdStartError> {
        Self::start_with(Some((cert_pem, key_pem))).await
    }

    async fn start_with(tls: Option<(&str, &str)>) -> Result<Self, EtcdStartError> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("isek-etcd-")
            .tempdir()
            .map_err(|e| EtcdStartError(format!("cannot create a data directory: {e}")))?;
        let tls = match tls {
            Some((cert, key)) => {
                let files = (dir.path().join("server.crt"), dir.path().join("server.key"));
                std::fs::write(&files.0, cert)
                    .and_then(|()| std::fs::write(&files.1, key))
                    .map_err(|e| EtcdStartError(format!("cannot write the TLS files: {e}")))?;
                Some(files)
            }
            None => None,
        };
        let mut server = Self {
            child: None,
            dir,
            binary,
            client_port: 0,
            peer_port: 0,
            metrics_port: 0,
            tls,
        };
        let mut last_error = EtcdStartError("etcd did not start".into());
        for _ in 0..PORT_ATTEMPTS {
            server.client_port = free_port()?;
            server.peer_port = free_port()?;
            server.metrics_port = free_port()?;
            let ports = [server.client_port, server.peer_port, server.metrics_port];
            if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
                continue;
            }
            match server.launch().await {
                Ok(()) => return Ok(server),
                // Most likely a port taken between our probe and etcd's bind: retry
                // with new ports and a clean data directory.
                Err(e) => {
                    last_error = e;
                    let _ = std::fs::remove_dir_all(server.data_dir());
                }
            }
        }
        Err(last_error)
    }

    /// The client URL, e.g. `http://127.0.0.1:41234` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills etcd (SIGKILL) and waits for it; the data directory stays for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same endpoint with the same data, and waits until healthy.
    pub async fn restart(&mut self) -> Result<(), EtcdStartError> {
        self.stop();
        self.launch().await
    }

    /// Where etcd keeps its data.
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// etcd's log file.
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last lines of etcd's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Spawns etcd on the current ports and waits for `/health`.
    async fn launch(&mut self) -> Result<(), EtcdStartError> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| EtcdStartError(format!("cannot open etcd log: {e}")))?;
        let log_err = log
            .try_clone()
            .map_err(|e| EtcdStartError(format!("cannot open etcd log: {e}")))?;
        let mut command = Command::new(&self.binary);
        if let Some((cert, key)) = &self.tls {
            command
                .arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()));
        }
        let child = command
            .arg("--name=isek-test")
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ))
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=isek-test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                EtcdStartError(format!(
                    "cannot run {}: {e} (run the README test command to install etcd-server)",
                    self.binary.display()
                ))
            })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EtcdStartError(format!(
                    "etcd exited with {status} while starting on {client}:\n{}",
                    self.log_tail()
                )));
            }
            if healthy(self.metrics_port).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                self.stop();
                return Err(EtcdStartError(format!(
                    "etcd on {client} not healthy after {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl EtcdServer {
    /// The sum of every sample of the Prometheus metric `name` (e.g.
    /// `grpc_server_started_total`) whose labels contain each of `labels` (e.g.
    /// `grpc_method="LeaseKeepAlive"`), from etcd's `/metrics`: lets tests observe what
    /// the server saw, such as how many keep-alive streams a client opened.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> Result<f64, EtcdStartError> {
        let body = http_get(self.metrics_port, "/metrics")
            .await
            .map_err(|e| EtcdStartError(format!("cannot read etcd metrics: {e}")))?;
        let mut total = 0.0;
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, label_set) = series.split_once('{').unwrap_or((series, ""));
            if metric == name && labels.iter().all(|l| label_set.contains(l)) {
                total += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        Ok(total)
    }
}

/// `GET path` on etcd's client port (plain HTTP/1.0), the whole response as text.
async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer within 5 s")))
}

/// Whether etcd on `port` answers `GET /health` with `"health":"true"`.
pub(crate) async fn healthy(port: u16) -> bool {
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(true))
    )
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
