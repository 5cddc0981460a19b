//! [`Center`]: the registry core shared by every request, and its lifecycle.
//!
//! State lives in one [`LeaseTable`] (node records and their leases) behind a
//! `std::sync::Mutex` held for microseconds and never across an `.await`:
//!
//! - **renew** touches only the lease table: no store write, no snapshot rebuild;
//! - **register / deregister** go through the store writer ([`crate::writer`]), which
//!   commits them durably (grouped), then applies them to the table in commit order
//!   and only then answers;
//! - **expiry**: the reaper (`reaper`) collects leases that ran out and hands
//!   them to the writer, which deletes them from the store and the table;
//! - **listing** is served from a cached body (`snapshot`).
//!
//! Every change (register, update, deregister, expiry) gets the next value of a
//! monotonically increasing revision, the basis of a future change stream.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use isek::wire::center::NODES_PATH;

use crate::config::Config;
use crate::dirlock::DirLock;
use crate::error::{Error, Result};
use crate::feed::{Feed, Resync, WatchStart};
use crate::lease::LeaseTable;
use crate::ownership::{Guard, Horizons, Owner};
use crate::snapshot::SnapshotCache;
use crate::store::Store;
use crate::writer::{WriteError, WriteOp};

/// What the center keeps about one node besides its id and lease: compact, because a
/// million of them must fit in a few hundred MiB. Host and metadata share one
/// allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The host followed by the metadata object as Flask-compatible compact JSON
    /// text (ready to splice into listings and to store, never re-parsed).
    text: Box<str>,
    /// Length of the host prefix of `text` in bytes (hosts are at most 253 bytes).
    host_len: u32,
    /// Where peers reach the node (1..=65535).
    port: u16,
    /// Who owns the node when it was registered with a signature (`None`: unsigned,
    /// anyone may act on it as in the original protocol).
    owner: Option<Arc<Owner>>,
}

impl NodeRecord {
    /// A record from its parts (`metadata` must already be compact JSON object text).
    pub fn new(host: &str, port: u16, metadata: &str) -> Self {
        let mut text = String::with_capacity(host.len() + metadata.len());
        text.push_str(host);
        text.push_str(metadata);
        Self {
            text: text.into_boxed_str(),
            host_len: u32::try_from(host.len()).unwrap_or(u32::MAX),
            port,
            owner: None,
        }
    }

    /// The same record owned by `owner` (a signed registration).
    pub fn with_owner(mut self, owner: Option<Arc<Owner>>) -> Self {
        self.owner = owner;
        self
    }

    /// The owner of a signed registration.
    pub fn owner(&self) -> Option<&Arc<Owner>> {
        self.owner.as_ref()
    }

    /// Where peers reach the node.
    pub fn host(&self) -> &str {
        self.text.get(..self.host_len as usize).unwrap_or("")
    }

    /// Where peers reach the node.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metadata object as compact JSON text.
    pub fn metadata(&self) -> &str {
        self.text.get(self.host_len as usize..).unwrap_or("{}")
    }
}

/// The mutable registry state.
#[derive(Debug)]
pub(crate) struct State {
    /// Every node with its lease, sorted by id.
    pub leases: LeaseTable<NodeRecord>,
    /// Revision of the last change applied.
    pub revision: u64,
    /// The change log of `GET /v1/watch`.
    pub feed: Feed,
}

impl State {
    /// Numbers a registration (or replacement) of `id` and logs it; returns its revision.
    pub fn log_put(&mut self, id: &str, record: &NodeRecord) -> u64 {
        self.revision += 1;
        self.feed.put(self.revision, id, record);
        self.revision
    }

    /// Numbers the departure of `id` (`reason`: `deregister` or `expire`) and logs it.
    pub fn log_delete(&mut self, id: &str, reason: &str) -> u64 {
        self.revision += 1;
        self.feed.delete(self.revision, id, reason);
        self.revision
    }
}

/// What the HTTP handlers, the writer, the reaper and the snapshot share.
#[derive(Debug)]
pub(crate) struct Core {
    /// The registry state.
    state: Mutex<State>,
    /// Copy of `state.revision`, readable without the lock (snapshot freshness).
    pub revision: AtomicU64,
    /// Wakes the reaper when a deadline earlier than the one it sleeps for appears.
    pub reaper_wake: Notify,
    /// The cached `available_nodes` body.
    pub snapshot: SnapshotCache,
    /// Incarnation of this center: revisions are only comparable within one epoch.
    pub epoch: u64,
    /// Turns true at shutdown: every change stream ends, so a graceful shutdown does
    /// not wait for watchers that never hang up.
    pub watchers_closed: watch::Sender<bool>,
    /// Newest accepted signed-op timestamp per node id (no replay), refusing anything
    /// signed before this center started.
    pub horizons: Horizons,
}

impl Core {
    /// Locks the state. A poisoned lock only means a panic elsewhere mid-update; the
    /// table is still a valid table, so keep serving.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The background tasks of a running center, joined on shutdown.
#[derive(Debug)]
struct Tasks {
    /// The reaper task.
    reaper: JoinHandle<()>,
    /// Fires when the writer thread has drained its queue and closed the store.
    writer_done: oneshot::Receiver<Result<()>>,
    /// The data directory's lock, released once the store is closed.
    dir_lock: Option<DirLock>,
}

/// Shared part of every [`Center`] handle.
#[derive(Debug)]
struct Inner {
    /// The registry core.
    core: Arc<Core>,
    /// The only strong sender to the store writer; taken out on shutdown so the writer
    /// ends once in-flight writes are done.
    writes: Mutex<Option<mpsc::Sender<WriteOp>>>,
    /// Tells the reaper to stop.
    stop: watch::Sender<bool>,
    /// Background tasks, taken by the first shutdown.
    tasks: tokio::sync::Mutex<Option<Tasks>>,
    /// The configuration the center runs with.
    config: Config,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Last handle gone without shutdown: stop the reaper; the writer ends when
        // the sender (dropped with us) closes its queue.
        let _ = self.stop.send(true);
    }
}

/// A running registry: cheap to clone, shared by the HTTP handlers.
#[derive(Debug, Clone)]
pub struct Center {
    /// Shared state and task handles.
    inner: Arc<Inner>,
}

impl Center {
    /// Opens the store, loads every stored node with a fresh full lease, and starts
    /// the store writer and the reaper. Needs a Tokio runtime.
    pub async fn start(config: Config) -> Result<Self> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        let cache_kib = config.sqlite_cache_kib;
        let (dir_lock, store, loaded) = tokio::task::spawn_blocking(move || {
            let dir_lock = data_dir.as_deref().map(DirLock::acquire).transpose()?;
            let store = Store::open(data_dir.as_deref(), cache_kib)?;
            let loaded = store.load()?;
            Ok::<_, Error>((dir_lock, store, loaded))
        })
        .await
        .map_err(|e| Error::Task(format!("store loader: {e}")))??;

        // Taken after the store is loaded: every signature accepted by an earlier run
        // (whose nodes were just loaded) was made before it (see `Horizons::new`).
        let start_ms = crate::ownership::unix_now();
        let now = Instant::now();
        let mut leases = LeaseTable::new(config.lease_ttl, now);
        let mut revision = 0;
        let count = loaded.len();
        for (id, record) in loaded {
            revision += 1;
            leases.insert(id, record, revision, now);
        }
        log_start(config.data_dir.as_deref(), count, config.lease_ttl);

        let core = Arc::new(Core {
            state: Mutex::new(State {
                leases,
                revision,
                feed: Feed::new(
                    revision,
                    config.watch_history,
                    config.watch_history_bytes,
                    config.watch_buffer,
                ),
            }),
            revision: AtomicU64::new(revision),
            reaper_wake: Notify::new(),
            snapshot: SnapshotCache::new(config.snapshot_max_age),
            epoch: crate::feed::new_epoch(),
            watchers_closed: watch::channel(false).0,
            horizons: Horizons::new(start_ms),
        });
        let (tx, rx) = mpsc::channel(config.write_queue.max(1));
        let writer_done = crate::writer::spawn(
            store,
            Arc::clone(&core),
            rx,
            config.max_batch,
            config.security.max_nodes,
        )?;
        let (stop, stop_rx) = watch::channel(false);
        let reaper = tokio::spawn(crate::reaper::run(
            Arc::clone(&core),
            tx.downgrade(),
            stop_rx,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                writes: Mutex::new(Some(tx)),
                stop,
                tasks: tokio::sync::Mutex::new(Some(Tasks {
                    reaper,
                    writer_done,
                    dir_lock,
                })),
                config,
            }),
        })
    }

    /// The configuration this center runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The shared core (ownership checks lock it directly).
    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    /// A sender to the writer, or why there is none.
    pub(crate) fn writer(&self) -> Result<mpsc::Sender<WriteOp>, WriteError> {
        self.inner
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(WriteError::ShuttingDown)
    }

    /// Registers (or replaces) `id` durably and starts its lease; returns once the
    /// registration is committed to the store and visible. No ownership check (an
    /// in-process caller is the operator); HTTP requests go through
    /// [`Center::register_guarded`].
    pub async fn register(&self, id: &str, record: NodeRecord) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Put {
            id: Arc::from(id),
            record,
            guard: Guard::Admin,
            timestamp: None,
            reply,
        };
        self.writer()?
            .send(op)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Extends the lease of a live node to now + TTL; false if unknown or expired.
    /// No ownership check; HTTP requests go through [`Center::renew_guarded`].
    pub fn renew(&self, id: &str) -> bool {
        let now = Instant::now();
        self.inner.core.lock().leases.renew(id, now)
    }

    /// Removes a live node durably; `Ok(false)` if it is unknown or expired. No
    /// ownership check; HTTP requests go through [`Center::deregister_guarded`].
    pub async fn deregister(&self, id: &str) -> Result<bool, WriteError> {
        if !self.is_live(id) {
            return Ok(false);
        }
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Delete {
            id: Arc::from(id),
            guard: Guard::Admin,
            reply,
        };
        self.writer()?
            .send(op)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Whether `id` is registered and its lease has not run out.
    pub fn is_live(&self, id: &str) -> bool {
        let now = Instant::now();
        self.inner.core.lock().leases.is_live(id, now)
    }

    /// The record and lease deadline of a live node.
    pub fn get(&self, id: &str) -> Option<(NodeRecord, Instant)> {
        let now = Instant::now();
        let state = self.inner.core.lock();
        state
            .leases
            .get(id, now)
            .map(|e| (e.value.clone(), e.deadline))
    }

    /// Number of live nodes (walks the table: for tests and tools, not hot paths).
    pub fn live_count(&self) -> usize {
        let now = Instant::now();
        self.inner.core.lock().leases.live(now).count()
    }

    /// The full `GET available_nodes` response body, from the snapshot cache.
    pub fn available_nodes_body(&self) -> Bytes {
        self.inner.core.snapshot.body(&self.inner.core)
    }

    /// Revision of the last change (register, update, deregister, expiry).
    pub fn revision(&self) -> u64 {
        self.inner.core.revision.load(Ordering::Acquire)
    }

    /// Incarnation of this center (random per start): change-stream revisions are only
    /// comparable within one epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.core.epoch
    }

    /// The `GET /v1/nodes` body: every live node with the current revision and epoch.
    pub fn nodes_body(&self) -> Bytes {
        let now = Instant::now();
        let core = &self.inner.core;
        let state = core.lock();
        let mut out = String::with_capacity(96 + state.leases.len() * 128);
        let _ = write!(
            out,
            "{{\"code\":200,\"data\":{{\"epoch\":{},\"nodes\":",
            core.epoch
        );
        crate::feed::write_nodes(&mut out, &state.leases, now);
        let _ = writeln!(
            out,
            ",\"revision\":{}}},\"message\":\"success\"}}",
            state.revision
        );
        drop(state);
        Bytes::from(out)
    }

    /// Where a new watcher starts: after `since` (of `epoch`, when given) from the
    /// change log, or from a snapshot of the live nodes; subscribed to later changes
    /// atomically with that starting point. `Err` when `since` cannot be resumed.
    pub(crate) fn watch(&self, since: Option<(u64, Option<u64>)>) -> Result<WatchStart, Resync> {
        let now = Instant::now();
        let core = &self.inner.core;
        let keepalive = self.inner.config.watch_keepalive;
        let mut state = core.lock();
        let hello = crate::feed::hello_frame(core.epoch, state.revision, keepalive);
        match since {
            None => {
                let State {
                    leases,
                    revision,
                    feed,
                } = &mut *state;
                let snapshot = feed.snapshot(*revision, || {
                    crate::feed::snapshot_frame(leases, *revision, now)
                });
                Ok(WatchStart {
                    initial: vec![hello, snapshot],
                    live: feed.subscribe(),
                    after: *revision,
                })
            }
            Some((_, Some(epoch))) if epoch != core.epoch => Err(Resync {
                revision: state.revision,
                message: format!(
                    "epoch {epoch} is not this center's (it restarted; epoch {}); re-list from {NODES_PATH}",
                    core.epoch
                ),
            }),
            Some((since, _)) => {
                let (backlog, live) = state.feed.resume(since, state.revision)?;
                let mut initial = Vec::with_capacity(backlog.len() + 1);
                initial.push(hello);
                initial.extend(backlog);
                Ok(WatchStart {
                    initial,
                    live,
                    after: state.revision,
                })
            }
        }
    }

    /// The body stream of a watcher starting at `start` (see [`crate::feed`]).
    pub(crate) fn watch_body(
        &self,
        start: WatchStart,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
        crate::feed::watch_stream(
            start,
            self.inner.config.watch_keepalive,
            Arc::clone(&self.inner.core),
        )
    }

    /// Ends every change stream now and refuses none later (new ones end at once
    /// after their initial frames): called when the server starts shutting down.
    pub fn close_watchers(&self) {
        self.inner.core.watchers_closed.send_replace(true);
    }

    /// Stops the reaper, lets queued writes finish, and closes the store. Writes
    /// arriving afterwards fail with [`WriteError::ShuttingDown`]. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let Some(tasks) = self.inner.tasks.lock().await.take() else {
            return Ok(());
        };
        self.close_watchers();
        let _ = self.inner.stop.send(true);
        let reaper = tasks.reaper.await;
        // Dropping the last strong sender lets the writer drain and exit.
        drop(
            self.inner
                .writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let writer = tasks
            .writer_done
            .await
            .map_err(|_| Error::Task("store writer ended without reporting".into()))?;
        // The store is closed: another center may use the directory now.
        if let Some(lock) = tasks.dir_lock {
            lock.release();
        }
        reaper.map_err(|e| Error::Task(format!("reaper: {e}")))?;
        tracing::info!("center stopped; store closed");
        writer
    }
}

/// One structured log line describing how the center starts.
fn log_start(data_dir: Option<&Path>, loaded: usize, ttl: Duration) {
    match data_dir {
        Some(dir) => tracing::info!(
            data_dir = %dir.display(),
            loaded,
            lease_ttl_s = ttl.as_secs_f64(),
            "center store opened; loaded nodes get a fresh lease"
        ),
        None => tracing::info!(
            lease_ttl_s = ttl.as_secs_f64(),
            "center running in memory (nothing survives a restart)"
        ),
    }
}
