//! [`Metrics`]: the center's counters, gauges and histograms, registered in one
//! `prometheus-client` [`Registry`] per center.
//!
//! The facade every layer records into: the HTTP handlers (request latency and
//! outcomes), the writer (batch size, commit latency, expiries), the change streams
//! (watchers, lag, resyncs) and the transport (open connections). Each series a hot
//! path touches is resolved once, here, into a plain handle (an atomic counter, or a
//! histogram), so recording is one atomic add or one short uncontended lock, never a
//! label lookup. Exposition (`GET /metrics`) is `http`'s job: it encodes
//! [`Metrics::registry`].
//!
//! One registry per center, not a process-global recorder: several centers in one
//! process (tests, embedders) each report their own figures.
//!
//! Names follow the Prometheus conventions: `isek_` prefix, `_total` on counters (the
//! encoder appends it), base units in the name (`_seconds`, `_bytes`).
//!
//! Level 0: values and their rules; no clock (callers pass durations), no I/O.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// A label set: (name, value) pairs known at compile time.
type Labels = Vec<(&'static str, &'static str)>;

/// The HTTP endpoints whose latency is measured, one histogram series each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /isek_center/register`.
    Register,
    /// `POST /isek_center/renew`.
    Renew,
    /// `POST /isek_center/deregister`.
    Deregister,
    /// `GET /isek_center/available_nodes`.
    AvailableNodes,
    /// `GET /v1/nodes`.
    Nodes,
    /// `GET /v1/agents`.
    Agents,
    /// `GET /v1/watch` (until the stream starts).
    Watch,
    /// `GET /healthz` and `GET /readyz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
}

impl Endpoint {
    /// Every endpoint, in the order of their series.
    pub const ALL: [Endpoint; 10] = [
        Self::Register,
        Self::Renew,
        Self::Deregister,
        Self::AvailableNodes,
        Self::Nodes,
        Self::Agents,
        Self::Watch,
        Self::Health,
        Self::Metrics,
        Self::OpenApi,
    ];

    /// The `endpoint` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Renew => "renew",
            Self::Deregister => "deregister",
            Self::AvailableNodes => "available_nodes",
            Self::Nodes => "nodes",
            Self::Agents => "agents",
            Self::Watch => "watch",
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::OpenApi => "openapi",
        }
    }
}

/// The registry operations counted by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A registration (`isek_register_total`).
    Register,
    /// A lease renewal (`isek_renew_total`).
    Renew,
    /// A deregistration (`isek_deregister_total`).
    Deregister,
}

/// How an operation ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (2xx).
    Ok,
    /// The node is unknown or its lease ran out (404).
    NotFound,
    /// Bad input: body, field, size or content type (400, 413, 415, ...).
    Invalid,
    /// Ownership or signature refused (401, 403).
    Denied,
    /// The center could not do it now: full, storage failing, shutting down (5xx).
    Unavailable,
}

impl Outcome {
    /// Every outcome, in the order of their series.
    pub const ALL: [Outcome; 5] = [
        Self::Ok,
        Self::NotFound,
        Self::Invalid,
        Self::Denied,
        Self::Unavailable,
    ];

    /// The outcome of an answer with HTTP status `status` (the code, so this level
    /// needs no HTTP type).
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Ok,
            404 => Self::NotFound,
            401 | 403 => Self::Denied,
            400..=499 => Self::Invalid,
            _ => Self::Unavailable,
        }
    }

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::Denied => "denied",
            Self::Unavailable => "unavailable",
        }
    }

    /// Index into a per-outcome array.
    fn index(self) -> usize {
        self as usize
    }
}

/// Why a watcher was told to re-list (`isek_watch_resyncs_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// It fell further behind than its buffer (a `resync` event ended its stream).
    Lagged,
    /// Its `since` (or epoch) could not be resumed (410).
    Gone,
}

/// The center's metrics: every series, resolved into handles.
#[derive(Debug)]
pub struct Metrics {
    /// What `GET /metrics` encodes.
    registry: Registry,
    /// Request latency per endpoint, in the order of [`Endpoint::ALL`].
    latency: Vec<Histogram>,
    /// `isek_register_total` per outcome.
    registers: Vec<Counter>,
    /// `isek_renew_total` per outcome.
    renews: Vec<Counter>,
    /// `isek_deregister_total` per outcome.
    deregisters: Vec<Counter>,
    /// `isek_expire_total{outcome="ok"}`: expired leases the store forgot.
    expired: Counter,
    /// `isek_expire_total{outcome="unavailable"}`: expired leases whose store delete
    /// failed (removed from memory anyway).
    expire_failed: Counter,
    /// Expiry waves (reaper wake-ups that found expired leases).
    expiry_waves: Counter,
    /// Gaps the expiry guard gave back (the center did not run for a while).
    guard_gaps: Counter,
    /// Their total length, in seconds.
    guard_gap_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Leases the guard extended.
    guard_leases: Counter,
    /// Live nodes registered with a key.
    signed_nodes: Gauge,
    /// Live nodes registered without one.
    unsigned_nodes: Gauge,
    /// Operations per store commit.
    batch_size: Histogram,
    /// Time of one store commit, fsync included.
    commit_seconds: Histogram,
    /// Store commits that failed.
    commit_failures: Counter,
    /// Open HTTP connections.
    connections: Gauge,
    /// Connections accepted since start.
    connections_accepted: Counter,
    /// Connections closed to make room for newer ones (at the cap or out of descriptors).
    connections_reclaimed: Counter,
    /// Connections refused because every open one was busy.
    connections_refused: Counter,
    /// Open change streams.
    watchers: Gauge,
    /// Changes queued for a watcher when it takes one (how far behind it runs).
    watcher_lag: Histogram,
    /// Watchers told to re-list because they lagged.
    resyncs_lagged: Counter,
    /// Watchers told to re-list because their `since` was gone.
    resyncs_gone: Counter,
    /// Bytes of the store's files (database and write-ahead log).
    store_bytes: Gauge,
}

impl Metrics {
    /// A fresh set of metrics for a center of version `version`.
    pub fn new(version: &'static str) -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("isek");

        let latency_family = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        let latency = Endpoint::ALL
            .iter()
            .map(|e| {
                latency_family
                    .get_or_create(&vec![("endpoint", e.label())])
                    .clone()
            })
            .collect();
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer a request, per endpoint (a change stream: until it starts)",
            Unit::Seconds,
            latency_family,
        );

        let mut outcomes = |name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            let counters = Outcome::ALL
                .iter()
                .map(|o| family.get_or_create(&vec![("outcome", o.label())]).clone())
                .collect::<Vec<_>>();
            registry.register(name, help, family);
            counters
        };
        let registers = outcomes("register", "Registrations, by outcome");
        let renews = outcomes("renew", "Lease renewals, by outcome");
        let deregisters = outcomes("deregister", "Deregistrations, by outcome");

        let expire_family = Family::<Labels, Counter>::default();
        let expired = expire_family
            .get_or_create(&vec![("outcome", "ok")])
            .clone();
        let expire_failed = expire_family
            .get_or_create(&vec![("outcome", "unavailable")])
            .clone();
        registry.register(
            "expire",
            "Leases that ran out and were removed, by outcome of the store delete",
            expire_family,
        );
        let expiry_waves = Counter::default();
        registry.register(
            "expiry_waves",
            "Reaper wake-ups that found expired leases",
            expiry_waves.clone(),
        );

        let guard_gaps = Counter::default();
        registry.register(
            "expiry_guard_gaps",
            "Times the center found it had not run for a while (stopped, stalled, clock jump) and gave the running leases that time back",
            guard_gaps.clone(),
        );
        let guard_gap_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "expiry_guard_gap",
            "Total length of the gaps the expiry guard gave back",
            Unit::Seconds,
            guard_gap_seconds.clone(),
        );
        let guard_leases = Counter::default();
        registry.register(
            "expiry_guard_leases",
            "Leases whose deadline the expiry guard moved",
            guard_leases.clone(),
        );

        let nodes_family = Family::<Labels, Gauge>::default();
        let signed_nodes = nodes_family
            .get_or_create(&vec![("signed", "true")])
            .clone();
        let unsigned_nodes = nodes_family
            .get_or_create(&vec![("signed", "false")])
            .clone();
        registry.register(
            "nodes",
            "Registered nodes, signed (with an owner key) or not",
            nodes_family,
        );

        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "writer_batch_size",
            "Writes committed together in one store transaction (group commit)",
            batch_size.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        registry.register_with_unit(
            "store_commit_duration",
            "Time of one store commit, fsync included",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let commit_failures = Counter::default();
        registry.register(
            "store_commit_failures",
            "Store commits that failed (their writes were refused with 503)",
            commit_failures.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register_with_unit(
            "store_size",
            "Size of the store's files on disk (database and write-ahead log)",
            Unit::Bytes,
            store_bytes.clone(),
        );

        let connections = Gauge::default();
        registry.register(
            "http_connections",
            "Open HTTP connections",
            connections.clone(),
        );
        let connections_accepted = Counter::default();
        registry.register(
            "http_connections_accepted",
            "HTTP connections accepted",
            connections_accepted.clone(),
        );
        let connections_reclaimed = Counter::default();
        registry.register(
            "http_connections_reclaimed",
            "HTTP connections closed to make room for new ones (connection cap or no descriptors)",
            connections_reclaimed.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections refused at the cap because every open one was busy",
            connections_refused.clone(),
        );

        let watchers = Gauge::default();
        registry.register(
            "watchers",
            "Open change streams (GET /v1/watch)",
            watchers.clone(),
        );
        let watcher_lag = Histogram::new(exponential_buckets(1.0, 4.0, 8));
        registry.register(
            "watcher_lag_events",
            "Changes still queued for a watcher each time it takes one",
            watcher_lag.clone(),
        );
        let resync_family = Family::<Labels, Counter>::default();
        let resyncs_lagged = resync_family
            .get_or_create(&vec![("reason", "lagged")])
            .clone();
        let resyncs_gone = resync_family
            .get_or_create(&vec![("reason", "gone")])
            .clone();
        registry.register(
            "watch_resyncs",
            "Watchers told to re-list: fell behind (lagged) or asked for a revision no longer kept (gone)",
            resync_family,
        );

        registry.register(
            "build",
            "The running center's version",
            Info::new(vec![("version", version)]),
        );

        Self {
            registry: root,
            latency,
            registers,
            renews,
            deregisters,
            expired,
            expire_failed,
            expiry_waves,
            guard_gaps,
            guard_gap_seconds,
            guard_leases,
            signed_nodes,
            unsigned_nodes,
            batch_size,
            commit_seconds,
            commit_failures,
            connections,
            connections_accepted,
            connections_reclaimed,
            connections_refused,
            watchers,
            watcher_lag,
            resyncs_lagged,
            resyncs_gone,
            store_bytes,
        }
    }

    /// Everything, for the exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A request to `endpoint` was answered after `elapsed`.
    pub fn request(&self, endpoint: Endpoint, elapsed: Duration) {
        if let Some(histogram) = self.latency.get(endpoint as usize) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// `op` ended with `outcome`.
    pub fn outcome(&self, op: Op, outcome: Outcome) {
        let counters = match op {
            Op::Register => &self.registers,
            Op::Renew => &self.renews,
            Op::Deregister => &self.deregisters,
        };
        if let Some(counter) = counters.get(outcome.index()) {
            counter.inc();
        }
    }

    /// A store commit of `size` operations took `elapsed`, and succeeded or not.
    pub fn commit(&self, size: usize, elapsed: Duration, ok: bool) {
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(elapsed.as_secs_f64());
        if !ok {
            self.commit_failures.inc();
        }
    }

    /// `count` expired leases were removed; `stored` tells whether the store forgot
    /// them too.
    pub fn expired(&self, count: usize, stored: bool) {
        let counter = if stored {
            &self.expired
        } else {
            &self.expire_failed
        };
        counter.inc_by(count as u64);
    }

    /// The expiry guard gave a gap of `length` back to `leases` leases.
    pub fn expiry_guard(&self, length: Duration, leases: usize) {
        self.guard_gaps.inc();
        self.guard_gap_seconds.inc_by(length.as_secs_f64());
        self.guard_leases.inc_by(leases as u64);
    }

    /// The reaper found expired leases on one wake-up.
    pub fn expiry_wave(&self) {
        self.expiry_waves.inc();
    }

    /// The table now holds `signed` nodes with an owner key and `unsigned` without.
    pub fn set_nodes(&self, signed: usize, unsigned: usize) {
        self.signed_nodes.set(gauge_value(signed));
        self.unsigned_nodes.set(gauge_value(unsigned));
    }

    /// The store's files take `bytes`.
    pub fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_accepted.inc();
        self.connections.inc();
    }

    /// `n` connections were told to close to make room for new ones.
    pub fn connections_reclaimed(&self, n: usize) {
        self.connections_reclaimed
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A connection was refused: every open one was busy.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// A change stream started.
    pub fn watcher_opened(&self) {
        self.watchers.inc();
    }

    /// A change stream ended.
    pub fn watcher_closed(&self) {
        self.watchers.dec();
    }

    /// A watcher took a change with `queued` more waiting behind it.
    pub fn watcher_lag(&self, queued: usize) {
        self.watcher_lag.observe(queued as f64);
    }

    /// A watcher was told to re-list.
    pub fn resync(&self, reason: ResyncReason) {
        match reason {
            ResyncReason::Lagged => self.resyncs_lagged.inc(),
            ResyncReason::Gone => self.resyncs_gone.inc(),
        };
    }
}

/// A count as a gauge value.
fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn text(metrics: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, metrics.registry()).unwrap();
        out
    }

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let metrics = Metrics::new("1.2.3");
        metrics.outcome(Op::Renew, Outcome::NotFound);
        metrics.request(Endpoint::Renew, Duration::from_millis(1));
        let text = text(&metrics);
        assert!(
            text.contains("isek_renew_total{outcome=\"not_found\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("isek_renew_total{outcome=\"ok\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("isek_http_request_duration_seconds_count{endpoint=\"renew\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("isek_build_info{version=\"1.2.3\"} 1\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("isek_"), "{line}");
        }
    }

    #[test]
    fn outcomes_of_statuses() {
        assert_eq!(Outcome::of_status(200), Outcome::Ok);
        assert_eq!(Outcome::of_status(404), Outcome::NotFound);
        assert_eq!(Outcome::of_status(403), Outcome::Denied);
        assert_eq!(Outcome::of_status(401), Outcome::Denied);
        assert_eq!(Outcome::of_status(413), Outcome::Invalid);
        assert_eq!(Outcome::of_status(503), Outcome::Unavailable);
    }
}
