//! A real center for tests (feature `center`): [`ServedCenter`] serves
//! `isek_center::run` on a loopback socket chosen by the OS, stoppable and
//! restartable on the same address, and is a [`Registry`] through its Rust client.
//!
//! The router-level harness (requests without a socket) is [`crate::router`]. Like
//! the tests that call them, these helpers fail the test (panic) on what they cannot do.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use isek::{IsekCenterRegistry, Metadata, NodeInfo, Registry};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::condition::DEADLINE;

/// A center served by `isek_center::run` in a task. Dropping it fires the graceful
/// shutdown (and removes its data directory, when it made one).
pub struct ServedCenter {
    /// Where it listens (fixed at the first start, kept across restarts).
    addr: SocketAddr,
    /// Fires the graceful shutdown.
    shutdown: Option<oneshot::Sender<()>>,
    /// The serving task, with `run`'s result; awaited on stop so the port is free.
    task: Option<JoinHandle<Result<(), String>>>,
    /// A client of this center, for the [`Registry`] impl.
    client: IsekCenterRegistry,
    /// The store's directory, when [`ServedCenter::with_ttl`] made one.
    _dir: Option<tempfile::TempDir>,
}

impl ServedCenter {
    /// Serves `config` on a fresh loopback port chosen by the OS.
    pub async fn start(config: isek_center::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        Self::start_on(listener, config, None)
    }

    /// Serves `config` (plain HTTP) like [`ServedCenter::start`], and returns once the
    /// center answers a listing: its store is open, so a test may then contend with it
    /// (lock its database, say) without racing its start.
    pub async fn start_answering(config: isek_center::Config) -> Self {
        let center = Self::start(config).await;
        let client = center.client.clone();
        crate::condition::wait_until("the center answers a listing", || {
            let client = client.clone();
            async move { client.get_available_nodes().await.is_ok() }
        })
        .await;
        center
    }

    /// Serves a center granting leases of `ttl`; on SQLite in a fresh temporary
    /// directory when `on_disk`, in memory otherwise.
    pub async fn with_ttl(ttl: Duration, on_disk: bool) -> Self {
        let dir = on_disk.then(|| tempfile::tempdir().expect("a temporary directory"));
        let config = isek_center::Config {
            data_dir: dir.as_ref().map(|d| PathBuf::from(d.path())),
            lease_ttl: ttl,
            ..isek_center::Config::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        Self::start_on(listener, config, dir)
    }

    fn start_on(
        listener: TcpListener,
        config: isek_center::Config,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let addr = listener.local_addr().expect("a bound address");
        let client = IsekCenterRegistry::new(format!("http://{addr}")).expect("a center URL");
        let mut center = Self {
            addr,
            shutdown: None,
            task: None,
            client,
            _dir: dir,
        };
        center.serve(listener, config);
        center
    }

    fn serve(&mut self, listener: TcpListener, config: isek_center::Config) {
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = isek_center::run(listener, config, async move {
                let _ = stopped.await;
            })
            .await;
            result.map_err(|e| {
                eprintln!("center failed: {e}");
                e.to_string()
            })
        });
        self.shutdown = Some(shutdown);
        self.task = Some(task);
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}`: the URL of one of its endpoints.
    pub fn url_of(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client of this center (no identity).
    pub fn client(&self) -> &IsekCenterRegistry {
        &self.client
    }

    /// Stops serving and waits until the listener is closed; fails the test if the
    /// center does not stop within [`DEADLINE`] or `run` returned an error.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the center stops although watchers are connected")
                .expect("the center task did not panic")
                .expect("the center ran without error");
        }
    }

    /// Serves `config` again on the same address.
    pub async fn restart(&mut self, config: isek_center::Config) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the same address again");
        self.serve(listener, config);
    }
}

impl Drop for ServedCenter {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[async_trait]
impl Registry for ServedCenter {
    async fn register_node(
        &self,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
    ) -> isek::Result<()> {
        self.client
            .register_node(node_id, host, port, metadata)
            .await
    }

    async fn lease_refresh(&self, node_id: &str) -> isek::Result<()> {
        self.client.lease_refresh(node_id).await
    }

    async fn deregister_node(&self, node_id: &str) -> isek::Result<()> {
        self.client.deregister_node(node_id).await
    }

    async fn get_available_nodes(&self) -> isek::Result<BTreeMap<String, NodeInfo>> {
        self.client.get_available_nodes().await
    }

    /// The center's own `GET /v1/nodes?filter=`, so the conformance suite checks it.
    async fn query(&self, query: &isek::Query) -> isek::Result<isek::Page> {
        self.client.query(query).await
    }
}
