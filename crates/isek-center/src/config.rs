//! [`Config`] and [`Limits`]: everything an operator can tune about a center.
//!
//! The CLI maps its flags onto these structs; tests and the benchmark build them
//! directly. Defaults are the documented ones (30 s leases, 1 MiB bodies, ...).
//!
//! Level 0 (pure data): every layer reads its settings from here; nothing here knows
//! the types of the layers that use them (sockets, SQLite, HTTP).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::policy::hash_token;

/// Default lease length, as in the original ISEK center.
pub const DEFAULT_LEASE_TTL: Duration = isek::DEFAULT_TTL;

/// How a center runs: where it stores nodes, how long leases last, what it accepts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the SQLite store; `None` keeps everything in memory (`--in-memory`).
    pub data_dir: Option<PathBuf>,
    /// Share one registry with other centers through an etcd cluster instead
    /// (`--store etcd`); `data_dir` must then be `None`.
    pub cluster: Option<ClusterStore>,
    /// Lease length granted by register and renew (`--lease-ttl`).
    pub lease_ttl: Duration,
    /// Size limits on request bodies and fields.
    pub limits: Limits,
    /// Who may act on nodes: signatures required or not, the admin token, the node
    /// cap (see [`crate::policy`]).
    pub security: Security,
    /// Serve HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Time limits on connections (slow or half-open clients).
    pub timeouts: Timeouts,
    /// How many connections may be open at once.
    pub connections: ConnectionLimits,
    /// Oldest a cached `available_nodes` body may be before it is rebuilt, which bounds
    /// how far its `expires_at` values lag behind renewals.
    pub snapshot_max_age: Duration,
    /// Capacity of the queue in front of the store writer; requests beyond it wait.
    pub write_queue: usize,
    /// Most writes committed in one transaction (one fsync).
    pub max_batch: usize,
    /// SQLite page cache in KiB: small, so a million nodes fit in the memory goal.
    pub sqlite_cache_kib: u32,
    /// Bytes kept free in the data directory (a file the writer gives back when a
    /// commit fails) so deregistrations still commit on a full disk
    /// (`--disk-reserve-bytes`; 0: none).
    pub disk_reserve_bytes: u64,
    /// Changes kept for `GET /v1/watch?since=REV` resumption; older revisions get a
    /// resync answer. Bounds the change log's memory (about 200 bytes per change).
    pub watch_history: usize,
    /// Most bytes of rendered changes kept in that history (large metadata shortens
    /// it), so the change log's memory is bounded whatever the nodes carry.
    pub watch_history_bytes: usize,
    /// Changes buffered per live watcher; a watcher further behind gets a `resync`
    /// event and its stream ends, so a slow reader never grows memory.
    pub watch_buffer: usize,
    /// Longest silence on a change stream before a keep-alive comment is sent, so
    /// clients can tell a quiet stream from a dead connection.
    pub watch_keepalive: Duration,
    /// Bounds on filtered and paged queries (`?filter=`, `?limit=`, `?cursor=`).
    pub discovery: Discovery,
    /// The expiry guard (`--expiry-guard`, on by default): when the center itself
    /// could not run (stopped, stalled, a clock jump) for longer than
    /// [`Config::expiry_guard_gap`], the leases running when it stopped get that
    /// time back, at most one TTL past the moment it runs again, so its waking
    /// reaper does not expire a membership that could not renew. `false`: leases
    /// run out by the clock alone.
    pub expiry_guard: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            cluster: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            limits: Limits::default(),
            security: Security::default(),
            tls: None,
            timeouts: Timeouts::default(),
            connections: ConnectionLimits::default(),
            snapshot_max_age: Duration::from_secs(1),
            write_queue: 16_384,
            max_batch: 8_192,
            sqlite_cache_kib: 4_096,
            disk_reserve_bytes: 8 * 1024 * 1024,
            watch_history: 65_536,
            watch_history_bytes: 64 * 1024 * 1024,
            watch_buffer: 8_192,
            watch_keepalive: Duration::from_secs(5),
            discovery: Discovery::default(),
            expiry_guard: true,
        }
    }
}

/// Where a center cluster keeps its registry (`--store etcd --etcd A,B,C`).
#[derive(Debug, Clone)]
pub struct ClusterStore {
    /// The etcd endpoints, TLS, credentials and request timeout.
    pub etcd: isek::etcd::EtcdConfig,
    /// The key prefix of this registry (`--etcd-prefix`): centers with the same
    /// cluster and prefix serve the same nodes.
    pub prefix: String,
    /// The URL other centers reach this one at (`--advertise-url`); `None`: the
    /// server fills in its bound address.
    pub advertise: Option<String>,
    /// TTL of the etcd lease behind the lease holder election (`--holder-ttl`):
    /// how long the cluster may go without a holder when one dies.
    pub holder_ttl: Duration,
}

impl ClusterStore {
    /// The registry under `prefix` in the etcd of `etcd`, with the default holder TTL
    /// and the bound address advertised.
    pub fn new(etcd: isek::etcd::EtcdConfig, prefix: impl Into<String>) -> Self {
        Self {
            etcd,
            prefix: prefix.into(),
            advertise: None,
            holder_ttl: DEFAULT_HOLDER_TTL,
        }
    }
}

/// The default `--holder-ttl`.
pub const DEFAULT_HOLDER_TTL: Duration = Duration::from_secs(3);

/// The default `--etcd-prefix`.
pub const DEFAULT_ETCD_PREFIX: &str = "/isek-center";

impl Config {
    /// The silence (no request served, no reaper tick: nothing ran) after which the
    /// expiry guard counts a gap: a quarter of the TTL, within 250 ms and 2 s; the
    /// reaper ticks four times as often. `None` with the guard off.
    pub fn expiry_guard_gap(&self) -> Option<Duration> {
        self.expiry_guard
            .then(|| (self.lease_ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(2)))
    }

    /// An in-memory center with default settings and the given lease length.
    pub fn in_memory(lease_ttl: Duration) -> Self {
        Self {
            lease_ttl,
            ..Self::default()
        }
    }

    /// A center storing its nodes under `data_dir`, with default settings.
    pub fn on_disk(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: Some(data_dir.into()),
            ..Self::default()
        }
    }
}

impl Config {
    /// Rejects values a center cannot run with: a zero lease (every node would be
    /// expired on arrival) or zero limits (nothing could be registered).
    pub fn validate(&self) -> Result<(), Error> {
        if self.lease_ttl.is_zero() {
            return Err(Error::Config(
                "the lease TTL must be longer than zero".into(),
            ));
        }
        if self.discovery.cursor_ttl.is_zero() {
            return Err(Error::Config(
                "the cursor TTL must be longer than zero".into(),
            ));
        }
        if self.discovery.max_filter_cost == 0 {
            return Err(Error::Config("max_filter_cost must be at least 1".into()));
        }
        if let Some(cluster) = &self.cluster {
            if self.data_dir.is_some() {
                return Err(Error::Config(
                    "a center on etcd keeps no data directory (drop --data-dir)".into(),
                ));
            }
            if cluster.prefix.trim_matches('/').is_empty() {
                return Err(Error::Config(
                    "the etcd prefix must name a key range (e.g. /isek-center)".into(),
                ));
            }
        }
        if self.watch_keepalive.is_zero() {
            return Err(Error::Config(
                "the watch keep-alive interval must be longer than zero".into(),
            ));
        }
        let t = &self.timeouts;
        let timeouts = [
            ("handshake", t.handshake),
            ("header_read", t.header_read),
            ("request", t.request),
            ("preface", t.preface),
            ("idle", t.idle),
            ("keepalive_interval", t.keepalive_interval),
            ("keepalive_timeout", t.keepalive_timeout),
            ("body_progress", t.body_progress),
            ("write_stall", t.write_stall),
        ];
        for (name, value) in timeouts {
            if value.is_zero() {
                return Err(Error::Config(format!(
                    "the {name} timeout must be longer than zero"
                )));
            }
        }
        if self.connections.max_connections == Some(0) {
            return Err(Error::Config("max_connections must be at least 1".into()));
        }
        let limits = [
            ("max_watchers", self.connections.max_watchers),
            ("max_watchers_per_ip", self.connections.max_watchers_per_ip),
            ("watch_buffer", self.watch_buffer),
            ("max_body_bytes", self.limits.max_body_bytes),
            ("max_metadata_bytes", self.limits.max_metadata_bytes),
            ("max_node_id_bytes", self.limits.max_node_id_bytes),
            ("max_host_bytes", self.limits.max_host_bytes),
            ("max_page", self.discovery.max_page),
            ("max_cursors", self.discovery.max_cursors),
            ("max_filter_bytes", self.discovery.max_filter_bytes),
        ];
        for (name, value) in limits {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// Bounds on what one request may carry, so no client can exhaust the center.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `metadata` object, measured as its compact serialized JSON.
    pub max_metadata_bytes: usize,
    /// Longest `node_id`, in UTF-8 bytes.
    pub max_node_id_bytes: usize,
    /// Longest `host`, in UTF-8 bytes (253: the longest DNS name).
    pub max_host_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_metadata_bytes: 64 * 1024,
            max_node_id_bytes: 256,
            max_host_bytes: 253,
        }
    }
}

/// Bounds on filtered and paged queries (`GET /v1/nodes?filter=&limit=&cursor=`,
/// `GET /v1/agents`, `GET /v1/watch?filter=`): what one query may cost and how many
/// paged answers the center keeps open, so no client can make it spin or grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// Most nodes in one page (`--max-page`); also the page size of a filtered
    /// query without `limit`. A larger `limit` is a 400.
    pub max_page: usize,
    /// Most open cursors (`--max-cursors`): each pins the candidates of one query
    /// (a pointer copy, about 48 bytes per node). A query that needs one more gets
    /// a 503.
    pub max_cursors: usize,
    /// How long an unused cursor is kept (`--cursor-ttl`); later it is a 410.
    pub cursor_ttl: Duration,
    /// Longest filter source, in bytes (`--max-filter-bytes`); longer is a 400.
    pub max_filter_bytes: usize,
    /// Highest static cost estimate of a filter, in evaluation steps per node
    /// (`--max-filter-cost`); costlier is a 400.
    pub max_filter_cost: u64,
}

impl Default for Discovery {
    fn default() -> Self {
        let filter = isek::filter::Limits::default();
        Self {
            max_page: 1000,
            max_cursors: 64,
            cursor_ttl: Duration::from_secs(60),
            max_filter_bytes: filter.max_source_bytes,
            max_filter_cost: filter.max_cost,
        }
    }
}

impl Discovery {
    /// The compile limits of a filter under these bounds.
    pub fn filter_limits(&self) -> isek::filter::Limits {
        isek::filter::Limits {
            max_source_bytes: self.max_filter_bytes,
            max_cost: self.max_filter_cost,
            ..isek::filter::Limits::default()
        }
    }
}

/// The certificate and key files of an HTTPS center (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
}

/// Time limits on one connection, against slow or half-open clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest a TLS handshake may take.
    pub handshake: Duration,
    /// Longest a client may take to send a request's headers (HTTP/1). hyper starts
    /// this timer whenever it waits for a request head, so it is also the idle limit
    /// of a keep-alive connection: keep it above clients' pool idle time (the Rust
    /// client's is 20 s), or a request sent as the server closes the idle connection
    /// fails.
    pub header_read: Duration,
    /// Longest a request may take to be answered, its body read included.
    pub request: Duration,
    /// Longest shutdown waits for open connections before dropping them.
    pub drain: Duration,
    /// Longest a new connection (after its TLS handshake) may take to send its first
    /// bytes and, for HTTP/2, the whole connection preface. Why: the protocol sniffing
    /// in front of hyper has no limit of its own, so a silent socket would stay forever.
    pub preface: Duration,
    /// Longest an HTTP/2 connection (or a kept-alive HTTP/1 one) may stay open without
    /// a request in flight before it is closed (HTTP/2: with a GOAWAY). Why: HTTP/2
    /// has no idle limit of its own.
    pub idle: Duration,
    /// Interval of HTTP/2 PING frames on a quiet connection; a peer that does not
    /// answer within [`Timeouts::keepalive_timeout`] is disconnected. Why: a dead or
    /// silent HTTP/2 peer is otherwise never noticed.
    pub keepalive_interval: Duration,
    /// Longest an HTTP/2 PING may wait for its answer.
    pub keepalive_timeout: Duration,
    /// Longest a request body may go without a new byte while it is read (a stream
    /// whose body never ends or stalls gets 408). Why: the request limit alone lets a
    /// stalled body hold its stream for the whole request time.
    pub body_progress: Duration,
    /// Longest a write to a client may make no progress (its socket does not drain)
    /// before the connection is closed, change streams included. Why: a reader that
    /// never reads would otherwise pin what was written to it.
    pub write_stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            request: Duration::from_secs(30),
            drain: Duration::from_secs(10),
            preface: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            body_progress: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
        }
    }
}

/// Bounds on connections and change streams, against a client that opens more than
/// its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most open connections (`--max-connections`); at the cap the oldest connections
    /// that never completed a request (then the oldest idle ones) are closed to make
    /// room, and only when every connection is busy is a newcomer refused with a 503
    /// envelope. `None`: derived from the file-descriptor limit when serving starts
    /// (see `crate::admission::default_max_connections`).
    pub max_connections: Option<usize>,
    /// Most change streams (`GET /v1/watch`) open at once (`--max-watchers`); one more
    /// gets a 503 envelope. Why: each holds a connection, a live buffer and, until it
    /// is sent, a snapshot.
    pub max_watchers: usize,
    /// Most change streams from one client address (`--max-watchers-per-ip`); one more
    /// gets a 429 envelope, so one host cannot take every stream.
    pub max_watchers_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_watchers: 10_000,
            max_watchers_per_ip: 100,
        }
    }
}

/// Who may act on nodes: the operator's security settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Refuse unsigned registrations (`--require-signatures`); by default the
    /// original, unsigned protocol is accepted for nodes without an owner.
    pub require_signatures: bool,
    /// SHA-256 of the admin token (`--admin-token-file` / `ISEK_ADMIN_TOKEN`); `None`:
    /// no admin operation exists.
    pub admin_token_hash: Option<[u8; 32]>,
    /// Most nodes the center holds (`--max-nodes`); registrations of new ids beyond it
    /// get 503. `None`: unbounded.
    pub max_nodes: Option<usize>,
    /// Whether a new id that looks like a live node's is refused
    /// (`--confusable-ids`).
    pub confusable_ids: ConfusableIds,
}

/// What a center does with a new node id whose UTS #39 confusable skeleton equals a
/// live node's (`pаypal` with a Cyrillic `а` beside `paypal`, `node-l` beside
/// `node-1`).
///
/// Why `Refuse` by default: such ids are a phishing vector among agents (a peer
/// picks a node by the id it reads), refusing costs about 40 bytes per node and one
/// skeleton per new id, and an id refused this way is one an operator would not want
/// anyway; a fleet that names nodes `x-1` and `x-l` on purpose opts out with `allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConfusableIds {
    /// A new id that looks like a live node's is refused (409).
    #[default]
    Refuse,
    /// Look-alike ids are accepted (the original's behaviour; no index is kept).
    Allow,
}

impl Security {
    /// These settings with an admin token (only its hash is kept).
    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin_token_hash = Some(hash_token(token.trim()));
        self
    }

    /// Whether `presented` (the bearer token of a request) is the admin token; always
    /// false without a configured token.
    pub fn is_admin(&self, presented: Option<&str>) -> bool {
        match (&self.admin_token_hash, presented) {
            (Some(expected), Some(token)) => crate::policy::is_admin_token(token, expected),
            _ => false,
        }
    }
}
