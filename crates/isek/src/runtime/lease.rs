//! [`Node`]: keeps one node registered through faults, until it shuts down.
//!
//! The original ISEK node renewed every 5 s, swallowed every error and never
//! registered again, so a center restart or a network cut longer than the TTL made it
//! disappear for good while it kept running. Here a background task renews at a third
//! of the TTL (with jitter, so thousands of nodes do not renew in lockstep) and reacts
//! to what went wrong, as the [`Error`] variants say:
//!
//! - [`Error::NotFound`]: the registry forgot the lease (restart, expiry): register again
//!   at once.
//! - [`Error::Unavailable`], [`Error::Backend`] or a call that timed out: retry with capped
//!   exponential [`Backoff`]; if more than a TTL passed since the last success, the lease
//!   has lapsed, so register instead of renewing.
//! - [`Error::PermissionDenied`], [`Error::InvalidArgument`], [`Error::Conflict`]: retrying
//!   cannot help (wrong key, bad entry, the id belongs to someone else): stop in
//!   [`NodeState::Failed`].
//!
//! Every transition is published on a `tokio::sync::watch` channel ([`NodeHandle::states`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::backoff::Backoff;
use super::entropy::{random_between, random_node_id};
use super::health::{Health, HealthCheck};
use super::peers::{PeerView, PeerViewConfig};
use crate::registry::DEFAULT_TTL;
use crate::{Error, Metadata, Registry, Result};

/// Where a running node stands with its registry.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    /// The node holds a live lease.
    Registered {
        /// When the registration this lease belongs to succeeded.
        since: SystemTime,
    },
    /// Renewals fail but the lease should still be alive (less than a TTL since the last
    /// success); retrying with backoff.
    Retrying {
        /// When the failures began.
        since: SystemTime,
        /// Consecutive failed attempts.
        attempts: u32,
        /// The latest failure.
        last_error: Error,
    },
    /// The node is not registered (never was yet, the registry forgot it, or its lease
    /// lapsed); registering again.
    Lost {
        /// When the lease was lost: its deadline if it ran out unrenewed, the moment the
        /// registry said it was gone, or the start if the node never registered.
        since: SystemTime,
        /// Consecutive failed attempts to register again (0 while the first is under way).
        attempts: u32,
        /// Why the lease is lost or the latest failure to register again.
        last_error: Option<Error>,
    },
    /// The agent's health check ([`super::health`]) failed too many times in a row:
    /// the node deregistered and stopped renewing; it registers again when a check
    /// passes.
    Unhealthy {
        /// When the node withdrew.
        since: SystemTime,
        /// Consecutive failed checks.
        failures: u32,
        /// Why the last check failed.
        last_error: String,
    },
    /// [`NodeHandle::shutdown`] ran: the node deregistered (or tried) and stopped.
    Stopped,
    /// The registry refused the node for good; the task stopped. See the module docs.
    Failed(Error),
}

impl NodeState {
    /// Whether the node currently holds a lease.
    pub fn is_registered(&self) -> bool {
        matches!(self, NodeState::Registered { .. })
    }
}

/// Whether retrying after `error` cannot help.
fn is_fatal(error: &Error) -> bool {
    matches!(
        error,
        Error::PermissionDenied(_) | Error::InvalidArgument(_) | Error::Conflict(_)
    )
}

/// Runs `call` with a deadline, turning a timeout into [`Error::Unavailable`].
async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    match timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::Unavailable(format!(
            "{what} timed out after {limit:?}"
        ))),
    }
}

/// A node to register and keep alive: configure it, then [`Node::start`] it.
///
/// ```no_run
/// # async fn demo() -> isek::Result<()> {
/// use std::sync::Arc;
/// use isek::runtime::Node;
///
/// let registry = Arc::new(isek::MemoryRegistry::default());
/// let handle = Node::new(registry, "127.0.0.1", 8080).node_id("agent-1").start().await?;
/// let peers = handle.peer_view().map(|view| view.peers());
/// handle.shutdown().await?;
/// # let _ = peers; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    /// The registry the node lives in; its backend holds any signing identity.
    registry: Arc<dyn Registry>,
    /// Id under which the node registers (random hex unless set).
    node_id: String,
    /// Host where peers reach the node.
    host: String,
    /// Port where peers reach the node.
    port: u16,
    /// The node's agent card.
    metadata: Metadata,
    /// Lease length the registry grants; renewals happen every third of it.
    ttl: Duration,
    /// Retry policy while the registry is unavailable (its max is capped at TTL/3).
    backoff: Backoff,
    /// Longest wait for one registry call; `None` means TTL/3, at most 10 s.
    call_timeout: Option<Duration>,
    /// How the handle follows the peers; `None` to not follow them.
    peers: Option<PeerViewConfig>,
    /// Whether the node appears in its own peer view.
    include_self: bool,
    /// The agent's health check the lease is tied to, if any.
    health: Option<HealthCheck>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.node_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("metadata", &self.metadata)
            .field("ttl", &self.ttl)
            .field("backoff", &self.backoff)
            .field("call_timeout", &self.call_timeout)
            .field("peers", &self.peers)
            .field("include_self", &self.include_self)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node reachable at `host:port`, with a random id, no metadata, a 30 s TTL and
    /// a peer view that polls or streams with default settings.
    pub fn new(registry: Arc<dyn Registry>, host: impl Into<String>, port: u16) -> Self {
        Self {
            registry,
            node_id: random_node_id(),
            host: host.into(),
            port,
            metadata: Metadata::new(),
            ttl: DEFAULT_TTL,
            backoff: Backoff::default(),
            call_timeout: None,
            peers: Some(PeerViewConfig::default()),
            include_self: false,
            health: None,
        }
    }

    /// Ties the lease to the agent's own health check: after `check.failures`
    /// consecutive failures the node deregisters and stops renewing
    /// ([`NodeState::Unhealthy`]); it registers again when a check passes.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// Registers under `node_id` instead of a random one.
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = node_id.into();
        self
    }

    /// Sets the agent card.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The lease length the registry grants (it decides; this sets the renew pace).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The retry policy while the registry is unavailable.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest wait for one registry call (default TTL/3, at most 10 s).
    pub fn call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = Some(limit);
        self
    }

    /// How to follow peers, or `None` for a node that does not need them. The config's
    /// `exclude` is replaced by the node's own id unless [`Node::include_self`] is set.
    pub fn peer_view(mut self, config: Option<PeerViewConfig>) -> Self {
        self.peers = config;
        self
    }

    /// Whether the node lists itself among its peers (default: no).
    pub fn include_self(mut self, include: bool) -> Self {
        self.include_self = include;
        self
    }

    /// The id the node registers under.
    pub fn id(&self) -> &str {
        &self.node_id
    }

    /// The longest wait for one registry call.
    fn effective_call_timeout(&self) -> Duration {
        self.call_timeout
            .unwrap_or_else(|| (self.ttl / 3).min(Duration::from_secs(10)))
    }

    /// Registers the node and starts keeping it alive (and following its peers).
    ///
    /// Fails if the configuration is invalid or the registry refuses the node for good
    /// (see the module docs). If the registry is merely unavailable, the node starts in
    /// [`NodeState::Lost`] and keeps trying in the background. Must be called inside a
    /// Tokio runtime.
    pub async fn start(self) -> Result<NodeHandle> {
        if self.ttl < Duration::from_millis(3) {
            return Err(Error::InvalidArgument(format!(
                "TTL {:?} is too short to renew within",
                self.ttl
            )));
        }
        if self.node_id.is_empty() {
            return Err(Error::InvalidArgument("node id must not be empty".into()));
        }
        let call_timeout = self.effective_call_timeout();
        let started = Instant::now();
        let first = bounded(
            call_timeout,
            "register",
            self.registry.register_node(
                &self.node_id,
                &self.host,
                self.port,
                self.metadata.clone(),
            ),
        )
        .await;
        let now = SystemTime::now();
        let (initial, last_ok, last_error) = match first {
            Ok(()) => {
                tracing::info!(node_id = %self.node_id, "node registered");
                (NodeState::Registered { since: now }, Some(started), None)
            }
            Err(error) if is_fatal(&error) => return Err(error),
            Err(error) => {
                tracing::warn!(node_id = %self.node_id, %error, "first registration failed; retrying");
                let lost = NodeState::Lost {
                    since: now,
                    attempts: 1,
                    last_error: Some(error.clone()),
                };
                (lost, None, Some(error))
            }
        };
        let (state, _) = watch::channel(initial);
        let state = Arc::new(state);
        let (stop, stop_rx) = watch::channel(false);
        let peers = self.peers.clone().map(|mut config| {
            config.exclude = (!self.include_self).then(|| self.node_id.clone());
            PeerView::start(Arc::clone(&self.registry), config)
        });
        let health = self.health.clone().map(super::health::spawn);
        let keeper = Keeper {
            health,
            withdrawn: false,
            registry: Arc::clone(&self.registry),
            node_id: self.node_id.clone(),
            host: self.host.clone(),
            port: self.port,
            metadata: self.metadata.clone(),
            ttl: self.ttl,
            backoff: self.backoff.capped(self.ttl / 3),
            call_timeout,
            state: Arc::clone(&state),
            stop: stop_rx,
            last_ok,
            lease_lost: false,
            attempts: u32::from(last_ok.is_none()),
            registered_since: now,
            trouble_since: now,
            lost_since: now,
            last_error,
        };
        let task = tokio::spawn(keeper.run());
        Ok(NodeHandle {
            registry: self.registry,
            node_id: self.node_id,
            call_timeout,
            state,
            stop,
            task: Mutex::new(Some(task)),
            peers,
        })
    }
}

/// A running node: its state, its peers, and the way to stop it.
///
/// Dropping the handle without [`NodeHandle::shutdown`] stops the background task
/// without deregistering: the entry then disappears when its lease runs out, as after
/// a crash.
pub struct NodeHandle {
    /// The registry, to deregister on shutdown.
    registry: Arc<dyn Registry>,
    /// Id the node is registered under.
    node_id: String,
    /// Deadline of the deregister call.
    call_timeout: Duration,
    /// Current state, shared with the keeper task.
    state: Arc<watch::Sender<NodeState>>,
    /// Tells the keeper task to stop.
    stop: watch::Sender<bool>,
    /// The keeper task until shutdown takes it; a lock so concurrent shutdowns wait for
    /// the first one.
    task: Mutex<Option<JoinHandle<()>>>,
    /// The node's peer view, if it follows peers.
    peers: Option<PeerView>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("node_id", &self.node_id)
            .field("state", &*self.state.borrow())
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

impl NodeHandle {
    /// The id the node is registered under.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's current state.
    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    /// A receiver of every state change, e.g. to log them or wait for one.
    pub fn states(&self) -> watch::Receiver<NodeState> {
        self.state.subscribe()
    }

    /// The node's view of its peers, unless it was started without one.
    pub fn peer_view(&self) -> Option<&PeerView> {
        self.peers.as_ref()
    }

    /// Stops renewing and deregisters the node, so peers see it leave at once.
    ///
    /// Idempotent: later calls return `Ok(())` without doing anything. A node the
    /// registry no longer knows counts as deregistered. The peer view keeps running
    /// until the handle is dropped.
    pub async fn shutdown(&self) -> Result<()> {
        let mut task = self.task.lock().await;
        let Some(running) = task.take() else {
            return Ok(());
        };
        // The keeper finishes a registration in flight before it stops, so the
        // deregistration below cannot be overtaken by it.
        let _ = self.stop.send(true);
        if let Err(error) = running.await {
            tracing::warn!(node_id = %self.node_id, %error, "keeper task ended abnormally");
        }
        let result = bounded(
            self.call_timeout,
            "deregister",
            self.registry.deregister_node(&self.node_id),
        )
        .await;
        self.state.send_replace(NodeState::Stopped);
        match result {
            Ok(()) | Err(Error::NotFound(_)) => {
                tracing::info!(node_id = %self.node_id, "node deregistered");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(node_id = %self.node_id, %error, "deregistration failed");
                Err(error)
            }
        }
    }
}

/// The background task that keeps the lease alive.
struct Keeper {
    /// The health checker's verdicts, when the lease is tied to a check.
    health: Option<watch::Receiver<Health>>,
    /// The node deregistered because its agent is unhealthy.
    withdrawn: bool,
    /// Where the node lives.
    registry: Arc<dyn Registry>,
    /// Node id to register and renew.
    node_id: String,
    /// Host to register.
    host: String,
    /// Port to register.
    port: u16,
    /// Agent card to register.
    metadata: Metadata,
    /// Lease length: renew every third, consider it lapsed after a whole one.
    ttl: Duration,
    /// Retry policy, already capped at TTL/3.
    backoff: Backoff,
    /// Deadline of each call.
    call_timeout: Duration,
    /// Where transitions are published.
    state: Arc<watch::Sender<NodeState>>,
    /// Becomes `true` when the handle shuts down.
    stop: watch::Receiver<bool>,
    /// Start of the last successful register or renew (the server's deadline is at
    /// least a TTL after it); `None` until the first success.
    last_ok: Option<Instant>,
    /// The registry said the lease is gone: register instead of renewing.
    lease_lost: bool,
    /// Consecutive failed calls.
    attempts: u32,
    /// When the current registration succeeded.
    registered_since: SystemTime,
    /// When the current run of failures began.
    trouble_since: SystemTime,
    /// When the lease was lost, while it is.
    lost_since: SystemTime,
    /// The latest failure of the current run, shown in [`NodeState::Lost`].
    last_error: Option<Error>,
}

impl Keeper {
    /// Time until the next renewal after a success at `at`: TTL/3 minus up to 20 %.
    fn next_renewal(&self, at: Instant) -> Instant {
        let third = self.ttl / 3;
        at + random_between(third.mul_f64(0.8), third)
    }

    /// Whether the lease is gone or never existed, so the next call must register.
    fn must_register(&self) -> bool {
        self.lease_lost || self.last_ok.is_none_or(|ok| ok.elapsed() > self.ttl)
    }

    /// When the lease ran out unrenewed (a TTL after the last success), if it did; not
    /// when the registry reported it gone, which is only known from the answer.
    fn lapsed_at(&self) -> Option<SystemTime> {
        if self.lease_lost {
            return None;
        }
        let overdue = self.last_ok?.elapsed().checked_sub(self.ttl)?;
        SystemTime::now().checked_sub(overdue)
    }

    /// Whether shutdown was requested (or the handle vanished).
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Publishes `state` if it differs from the current one.
    fn publish(&self, state: NodeState) {
        self.state.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            tracing::info!(node_id = %self.node_id, ?state, "node state");
            *current = state;
            true
        });
    }

    /// Renews or registers until stopped or refused for good.
    async fn run(mut self) {
        let mut next = match self.last_ok {
            Some(ok) => self.next_renewal(ok),
            None => Instant::now() + self.backoff.delay(1),
        };
        loop {
            let health_changed = tokio::select! {
                _ = sleep_until(next) => false,
                _ = self.stop.changed() => return,
                () = health_change(self.health.as_mut()) => true,
            };
            if self.stopping() {
                return;
            }
            if let Some(health) = self.health.as_ref().map(|h| h.borrow().clone()) {
                if !health.healthy {
                    if !self.withdrawn {
                        self.withdraw(&health).await;
                    }
                    // Nothing to renew until a check passes.
                    next = Instant::now() + Duration::from_secs(86_400);
                    continue;
                }
                if self.withdrawn {
                    tracing::info!(node_id = %self.node_id, "agent healthy again; registering");
                    self.withdrawn = false;
                    self.lease_lost = true;
                    self.attempts = 0;
                    self.last_error = None;
                } else if health_changed {
                    // A verdict that changed nothing for this node: keep the pace.
                    continue;
                }
            }
            let register = self.must_register();
            if register && !self.lease_lost && self.last_ok.is_some() && self.attempts > 0 {
                // The lease ran out while the registry was unreachable.
                self.enter_lost();
            }
            let started = Instant::now();
            let result = if register {
                // Not cancelled by shutdown: a registration landing after the
                // deregistration would resurrect the node until its lease ran out.
                bounded(
                    self.call_timeout,
                    "register",
                    self.registry.register_node(
                        &self.node_id,
                        &self.host,
                        self.port,
                        self.metadata.clone(),
                    ),
                )
                .await
            } else {
                let renew = bounded(
                    self.call_timeout,
                    "renew",
                    self.registry.lease_refresh(&self.node_id),
                );
                tokio::select! {
                    result = renew => result,
                    _ = self.stop.changed() => return,
                }
            };
            next = match result {
                Ok(()) => self.succeeded(started, register),
                Err(Error::NotFound(message)) if !register => {
                    tracing::warn!(node_id = %self.node_id, %message, "lease lost; registering again");
                    self.lease_lost = true;
                    self.last_error = Some(Error::NotFound(message));
                    self.enter_lost();
                    Instant::now()
                }
                Err(error) if is_fatal(&error) => {
                    tracing::error!(node_id = %self.node_id, %error, "registry refused the node; giving up");
                    self.publish(NodeState::Failed(error));
                    return;
                }
                Err(error) => self.failed(error),
            };
        }
    }

    /// Deregisters because the agent is unhealthy, and publishes
    /// [`NodeState::Unhealthy`]. A failed deregistration leaves the entry to expire
    /// with its lease, which is no longer renewed.
    async fn withdraw(&mut self, health: &Health) {
        let reason = health.last_error.clone().unwrap_or_default();
        tracing::warn!(node_id = %self.node_id, failures = health.failures, %reason, "agent unhealthy; deregistering");
        let result = bounded(
            self.call_timeout,
            "deregister",
            self.registry.deregister_node(&self.node_id),
        )
        .await;
        if let Err(error) = result {
            tracing::warn!(node_id = %self.node_id, %error, "deregistration of an unhealthy node failed; it expires with its lease");
        }
        self.withdrawn = true;
        self.publish(NodeState::Unhealthy {
            since: SystemTime::now(),
            failures: health.failures,
            last_error: reason,
        });
    }

    /// Publishes [`NodeState::Lost`], keeping the start of an ongoing loss.
    fn enter_lost(&mut self) {
        if !matches!(*self.state.borrow(), NodeState::Lost { .. }) {
            self.lost_since = self.lapsed_at().unwrap_or_else(SystemTime::now);
        }
        self.publish(NodeState::Lost {
            since: self.lost_since,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        });
    }

    /// Records a successful call started at `started`; returns when to renew next.
    fn succeeded(&mut self, started: Instant, registered: bool) -> Instant {
        if registered {
            self.registered_since = SystemTime::now();
        }
        self.last_ok = Some(started);
        self.lease_lost = false;
        self.attempts = 0;
        self.last_error = None;
        self.publish(NodeState::Registered {
            since: self.registered_since,
        });
        self.next_renewal(started)
    }

    /// Records a retryable failure; returns when to try again.
    fn failed(&mut self, error: Error) -> Instant {
        if self.attempts == 0 {
            self.trouble_since = SystemTime::now();
        }
        self.attempts = self.attempts.saturating_add(1);
        tracing::warn!(node_id = %self.node_id, %error, attempts = self.attempts, "registry call failed");
        self.last_error = Some(error.clone());
        if self.must_register() {
            self.enter_lost();
        } else {
            self.publish(NodeState::Retrying {
                since: self.trouble_since,
                attempts: self.attempts,
                last_error: error,
            });
        }
        Instant::now() + self.backoff.delay(self.attempts)
    }
}

/// Resolves when the health verdict changes; never without a check (or once the
/// checker is gone).
async fn health_change(health: Option<&mut watch::Receiver<Health>>) {
    match health {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
