//! A real three-member etcd cluster for fault tests, on free loopback ports.
//!
//! The center cluster (issue 10) must survive the loss of an etcd member, of the
//! Raft leader, and a member stopped for longer than a lease. Those are only tested
//! against the real thing: [`EtcdCluster::start`] runs `members` etcd processes
//! (Debian's 3.4) that form one Raft group, each with its own data directory and
//! OS-chosen ports. Any member can be killed (`SIGKILL`), paused (`SIGSTOP`, a slow
//! or partitioned machine), resumed and restarted on the same ports with the same
//! data; [`EtcdCluster::leader`] asks the members (maintenance status) which of them
//! leads now. Everything is stopped and removed on drop.

use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::etcd::{EtcdStartError, find_binary, free_port, healthy};

/// How long the members may take to elect a leader and report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a port race (another process took a port we picked) is retried.
const PORT_ATTEMPTS: usize = 5;
/// Bound on one maintenance-status call.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// One member of an [`EtcdCluster`].
struct Member {
    /// Member name (`m0`, `m1`, ...).
    name: String,
    /// The etcd process while it runs.
    child: Option<Child>,
    /// Whether it is stopped with `SIGSTOP`.
    paused: bool,
    /// Client port on 127.0.0.1.
    client_port: u16,
    /// Peer (Raft) port on 127.0.0.1.
    peer_port: u16,
    /// Plain-HTTP port of `/health` and `/metrics`.
    metrics_port: u16,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Kills the process (continuing it first if paused, so the kill is reaped).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }
}

/// A running etcd cluster of several members on loopback.
pub struct EtcdCluster {
    /// The members, in the order of [`EtcdCluster::endpoints`].
    members: Vec<Member>,
    /// Data directories and logs; removed on drop.
    dir: tempfile::TempDir,
    /// The etcd binary.
    binary: PathBuf,
    /// The `--initial-cluster` value every member starts with.
    initial_cluster: String,
    /// The `--initial-cluster-token`, unique per cluster.
    token: String,
}

impl fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<(String, bool)> = self
            .members
            .iter()
            .map(|m| (m.endpoint(), m.child.is_some()))
            .collect();
        f.debug_struct("EtcdCluster")
            .field("members", &members)
            .finish()
    }
}

impl EtcdCluster {
    /// Starts a cluster of `members` etcd processes (3 for the fault tests) on free
    /// loopback ports and waits until every member reports healthy (a leader exists).
    pub async fn start(members: usize) -> Result<Self, EtcdStartError> {
        if members == 0 {
            return Err(EtcdStartError("a cluster needs at least one member".into()));
        }
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("isek-etcd-cluster-")
            .tempdir()
            .map_err(|e| EtcdStartError(format!("cannot create a data directory: {e}")))?;
        let token = dir.path().file_name().map_or_else(
            || "isek-test".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut cluster = Self {
            members: Vec::new(),
            dir,
            binary,
            initial_cluster: String::new(),
            token,
        };
        let mut last_error = EtcdStartError("etcd cluster did not start".into());
        for _ in 0..PORT_ATTEMPTS {
            cluster.kill_all();
            let _ = std::fs::remove_dir_all(cluster.dir.path().join("data"));
            let mut ports = Vec::with_capacity(members * 3);
            while ports.len() < members * 3 {
                let port = free_port()?;
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            cluster.members = (0..members)
                .map(|i| Member {
                    name: format!("m{i}"),
                    child: None,
                    paused: false,
                    client_port: ports[3 * i],
                    peer_port: ports[3 * i + 1],
                    metrics_port: ports[3 * i + 2],
                })
                .collect();
            cluster.initial_cluster = cluster
                .members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let mut spawned = Ok(());
            for i in 0..members {
                if let Err(e) = cluster.spawn(i) {
                    spawned = Err(e);
                    break;
                }
            }
            let started = match spawned {
                Ok(()) => cluster.wait_healthy((0..members).collect()).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = e,
            }
        }
        cluster.kill_all();
        Err(last_error)
    }

    /// The client URLs of every member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The client URLs joined with commas, as `--etcd A,B,C` takes them.
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    /// How many members the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never: `start` refuses zero).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether member `i` runs (paused counts as running).
    pub fn is_running(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.child.is_some())
    }

    /// Kills member `i` with `SIGKILL`; its data stays for [`EtcdCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(member) = self.members.get_mut(i) {
            member.kill();
        }
    }

    /// Stops member `i` with `SIGSTOP`: it holds its sockets but answers nothing,
    /// like a machine that froze or lost the network.
    pub fn pause(&mut self, i: usize) -> Result<(), EtcdStartError> {
        self.signal(i, rustix::process::Signal::STOP)?;
        if let Some(member) = self.members.get_mut(i) {
            member.paused = true;
        }
        Ok(())
    }

    /// Continues a member stopped by [`EtcdCluster::pause`].
    pub fn resume(&mut self, i: usize) -> Result<(), EtcdStartError> {
        self.signal(i, rustix::process::Signal::CONT)?;
        if let Some(member) = self.members.get_mut(i) {
            member.paused = false;
        }
        Ok(())
    }

    /// Starts member `i` again (killing it first if it runs) on the same ports with
    /// the same data, and waits until it reports healthy (it rejoined a leader).
    pub async fn restart(&mut self, i: usize) -> Result<(), EtcdStartError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(vec![i]).await
    }

    /// The index of the member that leads now, as the running members report it
    /// (maintenance status); `None` while there is no leader or no member answers.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::with_capacity(self.members.len());
        let mut leader = None;
        for member in &self.members {
            if member.child.is_none() || member.paused {
                ids.push(None);
                continue;
            }
            match status(&member.endpoint()).await {
                Some((id, lead)) => {
                    ids.push(Some(id));
                    if lead != 0 {
                        leader = Some(lead);
                    }
                }
                None => ids.push(None),
            }
        }
        let leader = leader?;
        ids.iter().position(|id| *id == Some(leader))
    }

    /// Waits (up to the start timeout) until some member leads, and returns it.
    pub async fn wait_leader(&self) -> Result<usize, EtcdStartError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(EtcdStartError(format!(
                    "no etcd leader after {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, i: usize, signal: rustix::process::Signal) -> Result<(), EtcdStartError> {
        let pid = self
            .members
            .get(i)
            .and_then(|m| m.child.as_ref())
            .and_then(|c| i32::try_from(c.id()).ok())
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| EtcdStartError(format!("etcd member {i} is not running")))?;
        rustix::process::kill_process(pid, signal)
            .map_err(|e| EtcdStartError(format!("cannot signal etcd member {i}: {e}")))
    }

    fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{i}.log"))
    }

    /// The last lines of member `i`'s log, for error messages.
    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Spawns member `i` (not waiting for it).
    fn spawn(&mut self, i: usize) -> Result<(), EtcdStartError> {
        let data = self.dir.path().join("data").join(format!("m{i}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| EtcdStartError(format!("cannot open etcd log: {e}")))?;
        let log_err = log
            .try_clone()
            .map_err(|e| EtcdStartError(format!("cannot open etcd log: {e}")))?;
        let member = self
            .members
            .get(i)
            .ok_or_else(|| EtcdStartError(format!("no etcd member {i}")))?;
        let client = member.endpoint();
        let peer = member.peer_url();
        let child = Command::new(&self.binary)
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                member.metrics_port
            ))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            // Loopback: elect quickly, so fault tests do not wait out WAN timings.
            .arg("--heartbeat-interval=100")
            .arg("--election-timeout=1000")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| EtcdStartError(format!("cannot run {}: {e}", self.binary.display())))?;
        if let Some(member) = self.members.get_mut(i) {
            member.child = Some(child);
            member.paused = false;
        }
        Ok(())
    }

    /// Waits until each member of `which` reports healthy; fails if one exits.
    async fn wait_healthy(&mut self, mut which: Vec<usize>) -> Result<(), EtcdStartError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !which.is_empty() {
            for &i in &which {
                let exited = self
                    .members
                    .get_mut(i)
                    .and_then(|m| m.child.as_mut())
                    .map(|c| c.try_wait());
                if let Some(Ok(Some(status))) = exited {
                    if let Some(member) = self.members.get_mut(i) {
                        member.child = None;
                    }
                    return Err(EtcdStartError(format!(
                        "etcd member {i} exited with {status}:\n{}",
                        self.log_tail(i)
                    )));
                }
            }
            let mut still = Vec::with_capacity(which.len());
            for &i in &which {
                let port = self.members.get(i).map_or(0, |m| m.metrics_port);
                if !healthy(port).await {
                    still.push(i);
                }
            }
            which = still;
            if which.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let tails: Vec<String> = which.iter().map(|&i| self.log_tail(i)).collect();
                return Err(EtcdStartError(format!(
                    "etcd members {which:?} not healthy after {START_TIMEOUT:?}:\n{}",
                    tails.join("\n")
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// `(member id, leader id)` from the maintenance status of the member at `endpoint`.
async fn status(endpoint: &str) -> Option<(u64, u64)> {
    let ask = async {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(STATUS_TIMEOUT)
            .with_timeout(STATUS_TIMEOUT);
        let mut client = etcd_client::Client::connect([endpoint], Some(options)).await?;
        let status = client.status().await?;
        let id = status.header().map_or(0, |h| h.member_id());
        Ok::<_, etcd_client::Error>((id, status.leader()))
    };
    match tokio::time::timeout(STATUS_TIMEOUT, ask).await {
        Ok(Ok(answer)) => Some(answer),
        _ => None,
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if member.paused {
                let pid = member
                    .child
                    .as_ref()
                    .and_then(|c| i32::try_from(c.id()).ok())
                    .and_then(rustix::process::Pid::from_raw);
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
                }
            }
        }
        self.kill_all();
    }
}
