//! [`Center`]: the registry service shared by every request, and its lifecycle.
//!
//! State lives in one [`crate::lease::LeaseTable`] (node records and their leases) behind a
//! `std::sync::Mutex` held for microseconds and never across an `.await`:
//!
//! - **renew** touches only the lease table: no store write, no snapshot rebuild;
//! - **register / deregister** go through the store writer ([`crate::writer`]), which
//!   commits them durably (grouped), then applies them to the table in commit order
//!   and only then answers;
//! - **expiry**: the reaper (`reaper`) collects leases that ran out and hands
//!   them to the writer, which deletes them from the store and the table;
//! - **listing** is rendered in chunks while sent, from one shared copy of the live
//!   nodes (`snapshot`).
//!
//! Every change (register, update, deregister, expiry) gets the next value of a
//! monotonically increasing revision, the basis of the change stream.
//!
//! Level 3: it composes the layers below (state, store, writer, reaper, streams) and
//! offers typed methods ([`Center::register`], [`Center::renew`],
//! [`Center::deregister`], listings, `Center::watch`) taking [`crate::command`]
//! values. It knows no HTTP type: `http` parses requests into commands and maps the
//! answers to statuses.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use isek::filter::Filter;
use isek::wire::center::NODES_PATH;
use isek::wire::proof::{DEREGISTER_OP, RENEW_OP, TIMESTAMP_WINDOW_MS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::command::{Collection, Deregister, Query, Register, Renew};
use crate::config::Config;
use crate::cursor::{Cursors, Pinned, node_info};
use crate::dirlock::DirLock;
use crate::error::{Error, Result};
use crate::feed::{Feed, Resync, WatchStart};
use crate::metrics::Metrics;
use crate::policy::{Guard, Horizons, Proof, Refusal, RefusalKind, Signer};
use crate::record::{NodeRecord, Owner};
use crate::render::{ListingKind, Members};
use crate::reserve::DiskReserve;
use crate::snapshot::{Listing, SnapshotCache};
use crate::state::{Core, ScopedFrom, State};
use crate::store::Store;
use crate::writer::{WriteError, WriteOp};

/// The background tasks of a running center, joined on shutdown.
#[derive(Debug)]
struct Tasks {
    /// The reaper task.
    reaper: JoinHandle<()>,
    /// The follower of a shared store (etcd) and the lease holder election, if the
    /// center runs on one.
    follower: Option<(JoinHandle<()>, JoinHandle<()>)>,
    /// Fires when the writer thread has drained its queue, closed the store and
    /// released the data directory's lock (which that thread owns, so the directory
    /// is never free while SQLite still has it open, however the center ends).
    writer_done: oneshot::Receiver<Result<()>>,
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
    /// Background tasks, taken by the first shutdown, which holds this lock until the
    /// store is closed: a concurrent `shutdown` waits for it instead of returning early.
    tasks: tokio::sync::Mutex<Option<Tasks>>,
    /// The configuration the center runs with.
    config: Config,
    /// The open cursors of paged queries (held only to look one up or open one,
    /// never while a page is evaluated).
    cursors: Mutex<Cursors>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Last handle gone without shutdown: stop the reaper; the writer ends when
        // the sender (dropped with us) closes its queue, and only then releases the
        // data directory.
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
        if let Some(cluster) = &config.cluster {
            return Self::start_shared(cluster.clone(), config).await;
        }
        let data_dir = config.data_dir.clone();
        let cache_kib = config.sqlite_cache_kib;
        let reserve_bytes = config.disk_reserve_bytes;
        let (dir_lock, store, loaded) = tokio::task::spawn_blocking(move || {
            let dir_lock = data_dir.as_deref().map(DirLock::acquire).transpose()?;
            let store = Store::open(data_dir.as_deref(), cache_kib)?;
            let reserve = data_dir
                .as_deref()
                .and_then(|dir| DiskReserve::open(dir, reserve_bytes));
            let loaded = store.load()?;
            let oldest = crate::policy::unix_now().saturating_sub(TIMESTAMP_WINDOW_MS);
            let horizons = store.load_horizons(oldest)?;
            Ok::<_, Error>((dir_lock, store, (loaded, horizons, reserve)))
        })
        .await
        .map_err(|e| Error::Task(format!("store loader: {e}")))??;
        let (loaded, stored_horizons, reserve) = loaded;
        // A store of its own: this center numbers the loaded nodes 1..n.
        let loaded: Vec<_> = loaded
            .into_iter()
            .zip(1..)
            .map(|((id, record), generation)| (id, record, generation))
            .collect();

        // Taken after the store is loaded: every signature accepted by an earlier run
        // (whose nodes were just loaded) was made before it, or is in the stored
        // horizons (see `Horizons::new`).
        let start_ms = crate::policy::unix_now();
        let horizons = Horizons::new(start_ms);
        for (id, key, last) in &stored_horizons {
            horizons.restore(id, key, *last);
        }
        let count = loaded.len();
        let state = loaded_state(&config, loaded, 0);
        log_start(config.data_dir.as_deref(), count, config.lease_ttl);

        let epoch = crate::feed::new_epoch();
        Self::launch(
            config,
            Launch {
                state,
                epoch,
                horizons,
                store,
                dir_lock,
                reserve,
                follow: None,
                start_ms,
            },
        )
        .await
    }

    /// Starts a center of a cluster sharing one registry in etcd: loads every node at
    /// one revision (each with a fresh full lease), derives the epoch from the etcd
    /// cluster id and the prefix (the same on every center, so `since=REV` resumes
    /// anywhere), and follows the prefix from that revision.
    async fn start_shared(cluster: crate::config::ClusterStore, config: Config) -> Result<Self> {
        let etcd = crate::store::etcd::Etcd::connect(&cluster.etcd, &cluster.prefix).await?;
        let loaded = etcd.load().await?;
        let count = loaded.nodes.len();
        let state = loaded_state(&config, loaded.nodes, loaded.revision);
        tracing::info!(
            etcd = %cluster.etcd.endpoints.join(","),
            prefix = %cluster.prefix,
            loaded = count,
            revision = loaded.revision,
            lease_ttl_s = config.lease_ttl.as_secs_f64(),
            "center store on etcd; loaded nodes get a fresh lease"
        );
        let epoch = crate::feed::shared_epoch(loaded.cluster_id, &cluster.prefix);
        let secret = etcd.secret(&random_id()?).await?;
        let start_ms = crate::policy::unix_now();
        Self::launch(
            config,
            Launch {
                state,
                epoch,
                horizons: Horizons::new(start_ms),
                store: Store::etcd(etcd.clone()),
                dir_lock: None,
                reserve: None,
                follow: Some(Follow {
                    etcd,
                    revision: loaded.revision,
                    secret,
                    me: random_id()?,
                    url: cluster.advertise.clone().unwrap_or_default(),
                    holder_ttl: cluster.holder_ttl,
                }),
                start_ms,
            },
        )
        .await
    }

    /// Spawns the workers around a loaded state and hands out the center.
    async fn launch(config: Config, launch: Launch) -> Result<Self> {
        let Launch {
            state,
            epoch,
            horizons,
            store,
            dir_lock,
            reserve,
            follow,
            start_ms,
        } = launch;
        let cursors = Cursors::new(
            epoch,
            config.discovery.max_cursors,
            config.discovery.cursor_ttl,
        );
        let core = Core::new(
            state,
            SnapshotCache::new(config.snapshot_max_age),
            epoch,
            horizons,
        );
        let core = Arc::new(match &follow {
            Some(follow) => core.with_cluster(follow.secret.clone()),
            None => core,
        });
        let (tx, rx) = mpsc::channel(config.write_queue.max(1));
        let writer_done = crate::writer::spawn(
            store,
            dir_lock,
            Arc::clone(&core),
            rx,
            config.max_batch,
            config.security.max_nodes,
            reserve,
        )?;
        let (stop, stop_rx) = watch::channel(false);
        let follower = follow.map(|follow| {
            let holder = tokio::spawn(crate::holder::run(
                Arc::clone(&core),
                follow.etcd.clone(),
                follow.me,
                follow.url,
                follow.holder_ttl,
                stop_rx.clone(),
            ));
            let follower = tokio::spawn(crate::follower::run(
                Arc::clone(&core),
                follow.etcd,
                follow.revision,
                stop_rx.clone(),
            ));
            (follower, holder)
        });
        let reaper = tokio::spawn(crate::reaper::run(
            Arc::clone(&core),
            tx.downgrade(),
            stop_rx,
            config.expiry_guard_gap().map(|gap| gap / 4),
        ));
        // The floor refuses its own millisecond too (a signature made in it may predate
        // the start), so hand the center out only once that millisecond is over: a
        // node signing as soon as `start` returns is then always newer than the floor.
        // Bounded, so a wall clock stepped back cannot hold the start.
        let give_up = Instant::now() + Duration::from_millis(20);
        while crate::policy::unix_now() <= start_ms && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                writes: Mutex::new(Some(tx)),
                stop,
                tasks: tokio::sync::Mutex::new(Some(Tasks {
                    reaper,
                    follower,
                    writer_done,
                })),
                config,
                cursors: Mutex::new(cursors),
            }),
        })
    }

    /// The configuration this center runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Where the handlers, the transport and the workers record their figures.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.inner.core.metrics()
    }

    /// Brings the gauges read at scrape time up to date (node counts, store size),
    /// before [`Metrics::registry`] is encoded. Takes the state lock for a moment and
    /// reads two file sizes.
    pub fn refresh_metrics(&self) {
        let (signed, unsigned) = self.inner.core.lock().signed_and_unsigned();
        let metrics = self.metrics();
        metrics.set_nodes(signed, unsigned);
        if let Some(dir) = &self.inner.config.data_dir {
            let db = dir.join(crate::store::DB_FILE);
            let wal = dir.join(format!("{}-wal", crate::store::DB_FILE));
            let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
            metrics.set_store_bytes(size(&db) + size(&wal));
        }
    }

    /// Whether the center can take writes now: the writer is running and the store
    /// commits a probe write within `within`. `Err` says why not (the readiness
    /// probe's 503).
    pub async fn ready(&self, within: Duration) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        let probe = self.write(WriteOp::Probe { reply }, answer);
        match tokio::time::timeout(within, probe).await {
            Ok(answer) => answer,
            Err(_) => Err(WriteError::Unavailable(format!(
                "the store did not take a write within {} ms",
                within.as_millis()
            ))),
        }
    }

    /// A sender to the writer, or why there is none.
    fn writer(&self) -> Result<mpsc::Sender<WriteOp>, WriteError> {
        self.inner
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(WriteError::ShuttingDown)
    }

    /// Sends `op` to the writer and waits for its answer on `answer`.
    async fn write<T>(
        &self,
        op: WriteOp,
        answer: oneshot::Receiver<Result<T, WriteError>>,
    ) -> Result<T, WriteError> {
        self.writer()?
            .send(op)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Registers (or replaces) a node durably and starts its lease; returns once the
    /// registration is committed to the store and visible, with the fresh lease token
    /// of a signed registration. A signed registration's op-proof timestamp is
    /// accepted first (window, no replay, per id and key), so whatever the answer,
    /// a copy of this registration is refused from now on; the ownership check (may
    /// this request replace the live node's owner?) runs in the writer together with
    /// the write it allows.
    pub async fn register(&self, request: Register) -> Result<Option<String>, WriteError> {
        let Register {
            node_id,
            record,
            signer,
            operator,
        } = request;
        let (record, guard, token, horizon) = match signer {
            Some(Signer { key, timestamp }) => {
                self.inner.core.horizons().accept(
                    &node_id,
                    &key,
                    timestamp,
                    crate::policy::unix_now(),
                )?;
                let (owner, token) = crate::policy::new_owner(key.clone())?;
                (
                    record.with_owner(Some(owner)),
                    Guard::Key(key.clone()),
                    Some(token),
                    Some((key, timestamp)),
                )
            }
            None if operator => (record, Guard::Admin, None, None),
            None if self.config().security.require_signatures => {
                return Err(WriteError::Refused(Refusal::new(
                    RefusalKind::SignatureRequired,
                    "This center requires signed registrations: add 'public_key' and 'signature' (see isek register --identity).",
                )));
            }
            None => (record, Guard::Unsigned, None, None),
        };
        let signed = token.is_some();
        let (reply, answer) = oneshot::channel();
        let id: Arc<str> = Arc::from(node_id);
        let op = WriteOp::Put {
            id: Arc::clone(&id),
            record,
            guard,
            horizon,
            reply,
        };
        let written = self.write(op, answer).await;
        // The audit trail: who was registered, and whether it was accepted (never the
        // token or a signature).
        match &written {
            Ok(()) => tracing::info!(node_id = %id, signed, operator, outcome = "ok", "register"),
            Err(e) => {
                tracing::info!(node_id = %id, signed, operator, outcome = outcome_of(e), error = %e, "register")
            }
        }
        written?;
        Ok(token)
    }

    /// Extends the lease of a live node to now + TTL if the request proves ownership:
    /// `Ok(false)` when it is unknown or expired. Touches only the lease table (no
    /// store write, no snapshot rebuild); a token check is a hash comparison under the
    /// table lock, a signature is verified before it is taken.
    pub fn renew(&self, request: Renew) -> Result<bool, Refusal> {
        let id = request.node_id.as_str();
        let guard = if request.operator {
            Guard::Admin
        } else {
            self.guard_for(RENEW_OP, id, request.proof)?
        };
        let now = Instant::now();
        let mut state = self.inner.core.lock();
        let Some(entry) = state.leases().get(id, now) else {
            return Ok(false);
        };
        guard.check_act(id, entry.value.owner().map(Arc::as_ref))?;
        let key = Arc::clone(entry.id);
        let renewed = state.renew(id, now);
        drop(state);
        if renewed && !self.inner.core.note_renewed(&key) {
            tracing::warn!(node_id = %id, "the batch of renewals for the other centers is full; this one is not forwarded");
        }
        Ok(renewed)
    }

    /// Applies renewals another center of the cluster accepted (`POST` from a peer,
    /// checked by `http`); how many ids were known here.
    pub fn apply_renewals<'a>(&self, ids: impl Iterator<Item = &'a str>) -> usize {
        self.inner.core.lock().renew_forwarded(ids, Instant::now())
    }

    /// The ids renewed on this center since the last call, to forward to the others.
    pub fn take_renewed(&self) -> Vec<Arc<str>> {
        self.inner.core.take_renewed()
    }

    /// The URLs of the other centers of the cluster (none when not in one).
    pub fn peer_urls(&self) -> Vec<String> {
        self.inner.core.peer_urls()
    }

    /// The secret the centers of a cluster prove themselves to each other with.
    pub fn cluster_secret(&self) -> Option<&str> {
        self.inner.core.cluster_secret()
    }

    /// Whether this center is its cluster's lease holder now (it alone expires).
    pub fn is_lease_holder(&self) -> bool {
        self.inner.core.is_holder(Instant::now())
    }

    /// Removes a live node durably if the request proves ownership (checked by the
    /// writer together with the delete); `Ok(false)` if it is unknown or expired.
    pub async fn deregister(&self, request: Deregister) -> Result<bool, WriteError> {
        let id = request.node_id.clone();
        let operator = request.operator;
        let removed = self.remove(request).await;
        // The audit trail; `operator`: done with the admin token.
        match &removed {
            Ok(true) => tracing::info!(node_id = %id, operator, outcome = "ok", "deregister"),
            Ok(false) => {
                tracing::info!(node_id = %id, operator, outcome = "not_found", "deregister")
            }
            Err(e) => {
                tracing::info!(node_id = %id, operator, outcome = outcome_of(e), error = %e, "deregister")
            }
        }
        removed
    }

    /// The deregistration itself (see [`Center::deregister`]).
    async fn remove(&self, request: Deregister) -> Result<bool, WriteError> {
        let id = request.node_id.as_str();
        let signed_at = match &request.proof {
            Proof::Signature { timestamp, .. } => Some(*timestamp),
            Proof::None | Proof::Token(_) => None,
        };
        let guard = if request.operator {
            Guard::Admin
        } else {
            self.guard_for(DEREGISTER_OP, id, request.proof)?
        };
        if !self.is_live(id) {
            return Ok(false);
        }
        // A signed deregistration's timestamp is stored with the delete (no replay
        // after a restart either).
        let horizon = match (&guard, signed_at) {
            (Guard::Key(key), Some(timestamp)) => Some((key.clone(), timestamp)),
            _ => None,
        };
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Delete {
            id: Arc::from(id),
            guard,
            horizon,
            reply,
        };
        self.write(op, answer).await
    }

    /// Turns the proof of a renew or deregister (`op`) into a guard: a signature is
    /// verified with the node's key and its timestamp accepted (window, no replay).
    fn guard_for(&self, op: &str, id: &str, proof: Proof) -> Result<Guard, Refusal> {
        match proof {
            Proof::None => Ok(Guard::Unsigned),
            Proof::Token(hash) => Ok(Guard::Token(hash)),
            Proof::Signature {
                signature,
                alg,
                timestamp,
            } => {
                // An unknown or unsigned node: nothing to verify against; the act is
                // then as good as unsigned (404 or the original behaviour).
                let Some(owner) = self.owner_of(id) else {
                    return Ok(Guard::Unsigned);
                };
                crate::policy::verify_act(
                    op,
                    id,
                    &owner,
                    &signature,
                    alg,
                    timestamp,
                    self.inner.core.horizons(),
                )
            }
        }
    }

    /// The owner of the live node `id`, if it has one.
    pub fn owner_of(&self, id: &str) -> Option<Arc<Owner>> {
        let now = Instant::now();
        let state = self.inner.core.lock();
        state
            .leases()
            .get(id, now)
            .and_then(|e| e.value.owner().cloned())
    }

    /// Whether `id` is registered and its lease has not run out.
    pub fn is_live(&self, id: &str) -> bool {
        let now = Instant::now();
        self.inner.core.lock().leases().is_live(id, now)
    }

    /// The record and lease deadline of a live node.
    pub fn get(&self, id: &str) -> Option<(NodeRecord, Instant)> {
        let now = Instant::now();
        let state = self.inner.core.lock();
        state
            .leases()
            .get(id, now)
            .map(|e| (e.value.clone(), e.deadline))
    }

    /// Number of live nodes (walks the table: for tests and tools, not hot paths).
    pub fn live_count(&self) -> usize {
        let now = Instant::now();
        self.inner.core.lock().leases().live(now).count()
    }

    /// The full `GET available_nodes` response body, rendered from the shared
    /// listing ([`Center::listing`]) in one piece: for tests and tools; the handler
    /// streams it instead. Blocks like [`Center::listing`].
    pub fn available_nodes_body(&self) -> Bytes {
        let listing = self.listing();
        Bytes::from(
            crate::render::Chunks::new(Arc::clone(listing.members()), ListingKind::AvailableNodes)
                .collect::<Vec<_>>()
                .concat(),
        )
    }

    /// The current listing of the live nodes, shared by `available_nodes` and
    /// `/v1/nodes` and by every caller until the next rebuild (see
    /// [`crate::snapshot`]): the copy of the nodes each caller renders in chunks, its
    /// build number (for `ETag`s: with [`Center::epoch`] it names those bytes) and the
    /// compressed `available_nodes` body. A rebuild copies every live node under the
    /// state lock (tens of ms at 1M): call it where blocking is fine (the handlers use
    /// `spawn_blocking`).
    pub fn listing(&self) -> Arc<Listing> {
        let core = &self.inner.core;
        core.snapshot().listing(core.revision(), |now| {
            let wall = SystemTime::now();
            // Copied under the lock, rendered after it (see `State::live_copy`).
            let copy = core.lock().live_copy(now);
            Members {
                nodes: copy.nodes,
                revision: copy.revision,
                now,
                wall,
            }
        })
    }

    /// The compressed `available_nodes` body of `listing`: rendered and compressed
    /// once per listing, by the first caller, and shared. Blocks for as long as that
    /// takes (about a second at 1M): the handler calls it on a blocking thread.
    pub fn available_nodes_gzip(listing: &Listing) -> Option<Bytes> {
        listing.compressed(|members| {
            crate::encoding::gzip_chunks(crate::render::Chunks::new(
                Arc::clone(members),
                ListingKind::AvailableNodes,
            ))
            .ok()
        })
    }

    /// Revision of the last change (register, update, deregister, expiry).
    pub fn revision(&self) -> u64 {
        self.inner.core.revision()
    }

    /// Incarnation of this center (random per start): change-stream revisions are only
    /// comparable within one epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.core.epoch()
    }

    /// The `GET /v1/nodes` body: every live node with the revision it shows and the
    /// epoch, rendered from the shared listing in one piece (for tests and tools; the
    /// handler streams it). Blocks like [`Center::listing`].
    pub fn nodes_body(&self) -> Bytes {
        let now = Instant::now();
        let core = &self.inner.core;
        // Copied under the lock, rendered after it (see `State::live_copy`).
        let (copy, guarded) = {
            let state = core.lock();
            (state.live_copy(now), state.guarded(now))
        };
        let wall = crate::policy::unix_now() as f64 / 1000.0;
        let guarded: Vec<_> = guarded
            .into_iter()
            .map(|(id, until)| {
                (
                    id,
                    wall + until.saturating_duration_since(now).as_secs_f64(),
                )
            })
            .collect();
        let live = copy.nodes.iter().map(|(id, r, _)| (&**id, r));
        let body = crate::render::nodes_body(
            live,
            copy.nodes.len(),
            core.epoch(),
            copy.revision,
            &guarded,
        );
        Bytes::from(body)
    }

    /// The answer of a filtered or paged listing: one page of the matching live
    /// nodes, sorted by id, with the revision all pages of the query show, the plan
    /// (`index` or `scan`) and the cursor of the next page. The first page copies the
    /// candidates under the state lock (in proportion to the candidates of an index
    /// plan) and evaluates them after releasing it: call it where blocking is fine
    /// (the handlers use `spawn_blocking`).
    pub fn query(&self, query: Query) -> Result<Bytes, QueryError> {
        let discovery = &self.inner.config.discovery;
        let limit = query.limit.unwrap_or(discovery.max_page);
        let now = Instant::now();
        let cursors = || {
            self.inner
                .cursors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let (serial, offset, pinned) = match &query.cursor {
            Some(token) => {
                let found = {
                    let mut table = cursors();
                    table.parse(token).and_then(|(serial, offset)| {
                        Some((serial, offset, table.get(serial, now)?))
                    })
                };
                let Some((serial, offset, pinned)) = found else {
                    return Err(QueryError::Gone {
                        revision: self.revision(),
                    });
                };
                let asked = query.asked.as_deref();
                if pinned.collection != query.collection
                    || (asked.is_some() && asked != pinned.asked.as_deref())
                {
                    return Err(QueryError::OtherFilter);
                }
                (Some(serial), offset, pinned)
            }
            None => (None, 0, Arc::new(self.pin(query, now))),
        };
        let page = crate::cursor::page(&pinned, offset, limit);
        let token = match (page.next, serial) {
            (None, None) => None,
            (None, Some(serial)) => {
                cursors().close(serial);
                None
            }
            (Some(next), Some(serial)) => Some(cursors().token(serial, next)),
            (Some(next), None) => {
                let mut table = cursors();
                let serial = table
                    .open(Arc::clone(&pinned), now)
                    .map_err(|full| QueryError::TooManyCursors { max: full.max })?;
                Some(table.token(serial, next))
            }
        };
        let nodes = page.matches.iter().filter_map(|at| {
            let (id, record) = pinned.nodes.get(*at)?;
            Some((&**id, record))
        });
        let (epoch, revision, plan) = (self.epoch(), pinned.revision, pinned.plan.as_str());
        let count = page.matches.len();
        let token = token.as_deref();
        let body = match pinned.collection {
            Collection::Nodes => {
                crate::render::page_body(nodes, count, epoch, revision, plan, token)
            }
            Collection::Agents => {
                crate::render::agents_body(nodes, count, epoch, revision, plan, token)
            }
        };
        Ok(Bytes::from(body))
    }

    /// The candidates of `query`'s filter (every live node without one), copied
    /// under the state lock and sorted by id after it.
    fn pin(&self, query: Query, now: Instant) -> Pinned {
        let plan = query
            .filter
            .as_ref()
            .map_or(isek::filter::Plan::Scan, |f| f.plan().clone());
        let (plan, copy) = self.inner.core.lock().candidates(&plan, now);
        let mut nodes: Vec<(Arc<str>, NodeRecord)> =
            copy.nodes.into_iter().map(|(id, r, _)| (id, r)).collect();
        if !nodes.is_sorted_by(|a, b| a.0 <= b.0) {
            nodes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Pinned {
            collection: query.collection,
            asked: query.asked,
            filter: query.filter,
            plan,
            revision: copy.revision,
            nodes,
        }
    }

    /// Where a new watcher starts: after `since` (of `epoch`, which it needs) from the
    /// change log, or from a snapshot of the live nodes; subscribed to later changes
    /// atomically with that starting point. `Err` when `since` cannot be resumed.
    ///
    /// With `filter`, a scoped start: the snapshot holds only the matching nodes
    /// (the filter's index candidates are copied under the state lock and evaluated
    /// after it, so call it where blocking is fine), and the missed changes are
    /// scoped like the live ones (see `feed::Change::scoped`).
    pub(crate) fn watch(
        &self,
        since: Option<(u64, Option<u64>)>,
        filter: Option<&Filter>,
    ) -> Result<WatchStart, Resync> {
        let now = Instant::now();
        let core = &self.inner.core;
        let keepalive = self.inner.config.watch_keepalive;
        let mut state = core.lock();
        let hello = crate::render::hello_frame(core.epoch(), state.revision(), keepalive);
        let since = self.resume_point(since, state.revision())?;
        let Some(filter) = filter else {
            return state.watch_start(since, now, hello);
        };
        let start = state.scoped_watch_start(since, filter.plan(), now);
        drop(state);
        let start = start?;
        let mut initial = vec![hello];
        match start.from {
            ScopedFrom::Candidates(mut nodes) => {
                nodes.retain(|(id, record, _)| filter.matches(&node_info(id, record)));
                if !nodes.is_sorted_by(|a, b| a.0 <= b.0) {
                    nodes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                }
                let live = nodes.iter().map(|(id, record, _)| (&**id, record));
                initial.push(crate::render::snapshot_frame(
                    live,
                    nodes.len(),
                    start.revision,
                ));
            }
            ScopedFrom::Changes(changes) => {
                initial.extend(changes.iter().filter_map(|c| c.scoped(filter)));
            }
        }
        Ok(WatchStart {
            initial,
            live: start.live,
            after: start.revision,
        })
    }

    /// The revision a watcher resumes after (`None`: it starts from a snapshot), or
    /// why it cannot: a `since` without its epoch, or of another epoch.
    fn resume_point(
        &self,
        since: Option<(u64, Option<u64>)>,
        revision: u64,
    ) -> Result<Option<u64>, Resync> {
        let core = &self.inner.core;
        match since {
            // A revision means nothing without its epoch: resuming in whatever epoch
            // is current would hand a client that missed a restart a silent gap.
            Some((since, None)) => Err(Resync {
                revision,
                message: format!(
                    "since={since} needs the epoch it belongs to (&epoch=E, from the hello event or {NODES_PATH}); re-list from {NODES_PATH}"
                ),
            }),
            Some((_, Some(epoch))) if epoch != core.epoch() => Err(Resync {
                revision,
                message: format!(
                    "epoch {epoch} is not this center's (it restarted; epoch {}); re-list from {NODES_PATH}",
                    core.epoch()
                ),
            }),
            since => Ok(since.map(|(since, _)| since)),
        }
    }

    /// The body stream of a watcher starting at `start`, scoped by `filter` if any,
    /// holding `slot` (its admission) while it lives; with `stall`, released when
    /// its body goes unpolled that long with changes pending (see [`crate::stream`]).
    pub(crate) fn watch_body(
        &self,
        start: WatchStart,
        filter: Option<Filter>,
        slot: Box<dyn Send + Sync + 'static>,
        stall: Option<Duration>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
        let core = &self.inner.core;
        let streams = crate::stream::Streams {
            keepalive: self.inner.config.watch_keepalive,
            closed: core.watchers_closed(),
            revision: core.revision_handle(),
            metrics: Arc::clone(core.metrics()),
            stall,
        };
        crate::stream::watch_stream(start, filter, streams, slot)
    }

    /// Ends every change stream now and refuses none later (new ones end at once
    /// after their initial frames): called when the server starts shutting down.
    pub fn close_watchers(&self) {
        self.inner.core.close_watchers();
    }

    /// Stops the reaper, lets queued writes finish, and closes the store. Writes
    /// arriving afterwards fail with [`WriteError::ShuttingDown`]. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        // Held to the end, so a second caller returns only once the store is closed.
        let mut slot = self.inner.tasks.lock().await;
        let Some(tasks) = slot.take() else {
            return Ok(());
        };
        self.close_watchers();
        let _ = self.inner.stop.send(true);
        let reaper = tasks.reaper.await;
        if let Some((follower, holder)) = tasks.follower {
            let _ = follower.await;
            let _ = holder.await;
        }
        // Dropping the last strong sender lets the writer drain and exit.
        drop(
            self.inner
                .writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        // The writer closes the store, then releases the directory, then answers.
        let writer = tasks
            .writer_done
            .await
            .map_err(|_| Error::Task("store writer ended without reporting".into()))?;
        reaper.map_err(|e| Error::Task(format!("reaper: {e}")))?;
        tracing::info!("center stopped; store closed");
        writer
    }
}

/// A random id (a lease token's 256 bits, base64url).
fn random_id() -> Result<String> {
    crate::policy::new_token()
        .map(|(token, _)| token)
        .map_err(|refusal| Error::Task(refusal.to_string()))
}

/// What a center on a shared store follows and takes part in.
struct Follow {
    /// The store.
    etcd: crate::store::etcd::Etcd,
    /// The revision loaded.
    revision: u64,
    /// The cluster's secret.
    secret: String,
    /// This center's id in the cluster (random per start).
    me: String,
    /// Where the other centers reach this one.
    url: String,
    /// The lease holder election's TTL.
    holder_ttl: Duration,
}

/// The state of a center starting with `loaded` at `revision`, as `config` says.
fn loaded_state(config: &Config, loaded: Vec<(Arc<str>, NodeRecord, u64)>, revision: u64) -> State {
    let skeletons = config.security.confusable_ids == crate::config::ConfusableIds::Refuse;
    let mut state = State::load(
        config.lease_ttl,
        Instant::now(),
        loaded,
        revision,
        skeletons,
        |revision| {
            Feed::new(
                revision,
                config.watch_history,
                config.watch_history_bytes,
                config.watch_buffer,
            )
        },
    );
    if let Some(gap) = config.expiry_guard_gap() {
        state.guard_gaps(gap);
    }
    state
}

/// What [`Center::launch`] starts the workers around.
struct Launch {
    /// The loaded state.
    state: State,
    /// The epoch revisions belong to.
    epoch: u64,
    /// The replay horizons, restored.
    horizons: Horizons,
    /// The store the writer commits to.
    store: Store,
    /// The data directory's lock (SQLite), handed to the writer.
    dir_lock: Option<DirLock>,
    /// The disk reserve (SQLite).
    reserve: Option<DiskReserve>,
    /// A shared store to follow, from the revision loaded.
    follow: Option<Follow>,
    /// When the horizons' floor was taken (Unix ms).
    start_ms: u64,
}

/// Why a filtered or paged listing has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The cursor is unknown, finished, expired or from an earlier run: start over
    /// without it. `revision` is the center's current one.
    #[error("the cursor is unknown or expired; start the query over without 'cursor'")]
    Gone {
        /// The center's current revision.
        revision: u64,
    },
    /// The query names another filter than the one its cursor was opened with.
    #[error("'filter' differs from the filter of this cursor's first page")]
    OtherFilter,
    /// The answer needs a cursor and `max` are open.
    #[error("too many open cursors ({max}); retry later")]
    TooManyCursors {
        /// The limit (`--max-cursors`).
        max: usize,
    },
}

/// The `outcome` of a failed write in the audit trail (the same words as the
/// `outcome` label of the metrics).
fn outcome_of(error: &WriteError) -> &'static str {
    match error {
        WriteError::Refused(refusal) => match refusal.kind {
            RefusalKind::Forbidden | RefusalKind::SignatureRequired => "denied",
            RefusalKind::LookAlike => "invalid",
            RefusalKind::Full | RefusalKind::Unavailable => "unavailable",
        },
        WriteError::Unavailable(_) | WriteError::ShuttingDown => "unavailable",
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
