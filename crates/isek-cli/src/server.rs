//! `isek center`: runs the Isek Center until SIGINT or SIGTERM.
//!
//! Binds the listener and hands over to `isek_center::run_announced`, which opens the
//! store, then has the bound address announced on stdout (one line, so scripts and
//! tests using `--listen 127.0.0.1:0` learn the port; printed only once the center
//! takes signed registrations), and returns after a clean shutdown: in-flight
//! requests finished, store flushed and closed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use isek_center::TlsFiles;
use isek_center::{Config, ConfusableIds, ConnectionLimits, Discovery, Limits, Security, Timeouts};
use tokio::net::TcpListener;

/// `--store`: where the registry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreArg {
    /// SQLite in `--data-dir` (or memory with `--in-memory`).
    Sqlite,
    /// The etcd cluster of `--etcd`, shared with other centers.
    Etcd,
}

/// Flags of `isek center`.
#[derive(Debug, Clone, clap::Args)]
pub struct CenterArgs {
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: String,
    /// Directory of the on-disk store (created if missing).
    #[arg(long, default_value = "./isek-data", conflicts_with = "in_memory")]
    data_dir: PathBuf,
    /// Keep nodes in memory only: nothing survives a restart.
    #[arg(long)]
    in_memory: bool,
    /// Where the registry lives: `sqlite` (in --data-dir, this center alone) or
    /// `etcd` (in the etcd cluster of --etcd, shared by every center with the same
    /// --etcd-prefix).
    #[arg(long, value_enum, default_value_t = StoreArg::Sqlite, conflicts_with = "in_memory")]
    store: StoreArg,
    /// `--store etcd`: comma-separated etcd endpoints, e.g.
    /// http://10.0.0.1:2379,http://10.0.0.2:2379.
    #[arg(long, value_name = "ENDPOINTS", required_if_eq("store", "etcd"))]
    etcd: Option<String>,
    /// `--store etcd`: the key prefix of this registry in etcd.
    #[arg(long, value_name = "PREFIX", default_value = isek_center::config::DEFAULT_ETCD_PREFIX)]
    etcd_prefix: String,
    /// `--store etcd`: the URL the other centers reach this one at (renewals are
    /// forwarded there). Default: http(s)://<the bound address>.
    #[arg(long, value_name = "URL")]
    advertise_url: Option<String>,
    /// `--store etcd`: seconds the etcd lease behind the lease holder election lasts:
    /// how long the cluster may be without a holder (no expiries) when one dies.
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_seconds)]
    holder_ttl: Duration,
    /// Lease length in seconds granted by register and renew (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    lease_ttl: Duration,
    /// Largest accepted request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest node metadata, in bytes of compact JSON.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_metadata_bytes)]
    max_metadata_bytes: usize,
    /// Longest node id, in UTF-8 bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_node_id_bytes)]
    max_node_id_bytes: usize,
    /// Longest host, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_host_bytes)]
    max_host_bytes: usize,
    /// Disk space kept in reserve in --data-dir (a file given back when the disk is
    /// full) so deregistrations still commit; 0: none.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().disk_reserve_bytes)]
    disk_reserve_bytes: u64,
    /// Most nodes the center holds; registrations of new ids beyond it get 503.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_nodes: Option<u64>,
    /// Most open connections; at the cap the oldest connections that never completed
    /// a request (then the oldest idle ones) are closed to make room. Default: 10000,
    /// or the open-files limit less 64 when that is lower.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Most change streams (`GET /v1/watch`) open at once; one more gets 503.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().max_watchers, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_watchers: usize,
    /// Most change streams from one client address; one more gets 429.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().max_watchers_per_ip, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_watchers_per_ip: usize,
    /// Seconds a new connection may take to send its first bytes (and a whole HTTP/2
    /// preface).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    preface_timeout: Duration,
    /// Seconds a TLS handshake may take.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    handshake_timeout: Duration,
    /// Seconds HTTP/1 request headers may take to arrive; also the idle limit of a
    /// kept-alive HTTP/1 connection.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    header_timeout: Duration,
    /// Seconds a request may take to be answered, its body read included (else 408).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    request_timeout: Duration,
    /// Seconds a request body may go without a byte (else 408).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    body_timeout: Duration,
    /// Seconds a write to a client may make no progress before the connection is
    /// closed (a change stream whose reader does not read).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    write_timeout: Duration,
    /// Seconds a connection may stay open with no request in flight (HTTP/2: closed
    /// with a GOAWAY).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Seconds between HTTP/2 pings on a quiet connection.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_seconds)]
    keepalive_interval: Duration,
    /// Seconds an HTTP/2 ping may wait for its answer before the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    keepalive_timeout: Duration,
    /// Seconds shutdown waits for open requests before closing their connections.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    drain_timeout: Duration,
    /// Most nodes in one page of a filtered or paged query (`GET /v1/nodes?limit=`),
    /// and the page size of a filtered query without `limit`; a larger limit is a 400.
    #[arg(long, value_name = "N", default_value_t = Discovery::default().max_page, value_parser = at_least_one)]
    max_page: usize,
    /// Most open cursors of paged queries (each pins its candidates, about 48 bytes
    /// per node); a query needing one more gets a 503.
    #[arg(long, value_name = "N", default_value_t = Discovery::default().max_cursors, value_parser = at_least_one)]
    max_cursors: usize,
    /// Seconds an unused cursor is kept (fractions allowed); later it is a 410.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    cursor_ttl: Duration,
    /// Longest query filter, in bytes; longer is a 400.
    #[arg(long, value_name = "BYTES", default_value_t = Discovery::default().max_filter_bytes, value_parser = at_least_one)]
    max_filter_bytes: usize,
    /// Highest estimated cost of a query filter, in evaluation steps per node;
    /// costlier is a 400.
    #[arg(long, value_name = "STEPS", default_value_t = Discovery::default().max_filter_cost, value_parser = clap::value_parser!(u64).range(1..))]
    max_filter_cost: u64,
    /// Refuse unsigned registrations (the original Python client's); by default they
    /// are accepted but can never act on a node registered with a key.
    #[arg(long)]
    require_signatures: bool,
    /// A new node id whose Unicode confusable skeleton (UTS #39) equals a live node's
    /// (`pаypal` with a Cyrillic `а` beside `paypal`): `refuse` it (409) or `allow` it.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = ConfusableIdsArg::Refuse)]
    confusable_ids: ConfusableIdsArg,
    /// The expiry guard: when the center itself could not run (stopped, stalled, a
    /// clock jump) for a quarter of the lease TTL (at least 250 ms, at most 2 s), the
    /// leases running when it stopped get that time back, never past one TTL after
    /// it runs again, so its waking reaper does not expire nodes that could not
    /// renew; a node that is really gone still expires within a TTL. `off`: leases
    /// run out by the clock alone.
    #[arg(long, value_enum, value_name = "ON|OFF", default_value_t = Toggle::On)]
    expiry_guard: Toggle,
    /// File holding the admin token that allows deregistering any node
    /// (`Authorization: Bearer TOKEN`); else $ISEK_ADMIN_TOKEN; without either there
    /// is no admin access. Never a command-line value: it would show in `ps`.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Read flags from this TOML file: each key is a flag's name (`lease-ttl = 30`,
    /// `require-signatures = true`); flags on the command line win. See
    /// `isek-center.example.toml`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The two ways of writing log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `tracing`'s human-readable lines.
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// A feature switched `on` or `off` (`--expiry-guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// The values of `--confusable-ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfusableIdsArg {
    /// Refuse a new id that looks like a live node's.
    Refuse,
    /// Accept look-alike ids.
    Allow,
}

impl CenterArgs {
    /// The log format chosen (read before the runtime and the logger start).
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

/// Environment variable holding the admin token when no --admin-token-file is given.
const ADMIN_TOKEN_ENV: &str = "ISEK_ADMIN_TOKEN";

/// The security settings of the flags and the environment.
fn security(args: &CenterArgs) -> anyhow::Result<Security> {
    let token = match &args.admin_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?,
        ),
        None => std::env::var(ADMIN_TOKEN_ENV).ok(),
    };
    let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if args.admin_token_file.is_some() && token.is_none() {
        anyhow::bail!("--admin-token-file is empty");
    }
    let mut security = Security {
        require_signatures: args.require_signatures,
        admin_token_hash: None,
        max_nodes: args
            .max_nodes
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        confusable_ids: match args.confusable_ids {
            ConfusableIdsArg::Refuse => ConfusableIds::Refuse,
            ConfusableIdsArg::Allow => ConfusableIds::Allow,
        },
    };
    if let Some(token) = token {
        if token.len() < 16 {
            tracing::warn!("the admin token is shorter than 16 characters");
        }
        security = security.with_admin_token(&token);
    }
    Ok(security)
}

/// Parses a positive number of seconds such as `30` or `1.5`.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err("must be more than 0 seconds".to_owned());
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}' seconds: {e}"))
}

/// Parses a count of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// Runs the center on `args.listen` until SIGINT or SIGTERM.
pub async fn serve(args: CenterArgs) -> anyhow::Result<()> {
    // Signal handlers go in before the address is announced: whoever reads the
    // announcement may signal at once, and must get a clean shutdown, not a kill.
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // Read before `args` is taken apart: a bad token file fails before announcing.
    let security = security(&args)?;
    let tls = match (args.tls_cert.clone(), args.tls_key.clone()) {
        (Some(cert), Some(key)) => {
            // Fail before announcing the address when the files are unusable.
            isek_center::http::transport::tls_acceptor(&cert, &key)
                .context("cannot serve HTTPS")?;
            Some(TlsFiles { cert, key })
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let cluster = match (args.store, &args.etcd) {
        (StoreArg::Etcd, Some(endpoints)) => Some(isek_center::ClusterStore {
            advertise: args.advertise_url.clone(),
            holder_ttl: args.holder_ttl,
            ..isek_center::ClusterStore::new(
                isek::etcd::EtcdConfig::from_endpoint_list(endpoints)?,
                args.etcd_prefix.clone(),
            )
        }),
        (StoreArg::Etcd, None) => anyhow::bail!("--store etcd needs --etcd ENDPOINTS"),
        (StoreArg::Sqlite, _) => None,
    };
    let data_dir = (!args.in_memory && cluster.is_none()).then_some(args.data_dir);
    if let Some(dir) = &data_dir {
        // Fail before announcing the address when the store cannot live there.
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let config = Config {
        data_dir: data_dir.clone(),
        cluster,
        lease_ttl: args.lease_ttl,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_metadata_bytes: args.max_metadata_bytes,
            max_node_id_bytes: args.max_node_id_bytes,
            max_host_bytes: args.max_host_bytes,
        },
        security,
        tls,
        timeouts: Timeouts {
            handshake: args.handshake_timeout,
            header_read: args.header_timeout,
            request: args.request_timeout,
            drain: args.drain_timeout,
            preface: args.preface_timeout,
            idle: args.idle_timeout,
            keepalive_interval: args.keepalive_interval,
            keepalive_timeout: args.keepalive_timeout,
            body_progress: args.body_timeout,
            write_stall: args.write_timeout,
        },
        connections: ConnectionLimits {
            max_connections: args
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_watchers: args.max_watchers,
            max_watchers_per_ip: args.max_watchers_per_ip,
        },
        discovery: Discovery {
            max_page: args.max_page,
            max_cursors: args.max_cursors,
            cursor_ttl: args.cursor_ttl,
            max_filter_bytes: args.max_filter_bytes,
            max_filter_cost: args.max_filter_cost,
        },
        disk_reserve_bytes: args.disk_reserve_bytes,
        expiry_guard: args.expiry_guard == Toggle::On,
        ..Config::default()
    };
    match &data_dir {
        Some(dir) => {
            tracing::info!(store = %dir.display(), lease_ttl = ?args.lease_ttl, "starting")
        }
        None => tracing::info!(store = "memory", lease_ttl = ?args.lease_ttl, "starting"),
    }
    // Announced once the center takes signed registrations (see `run_announced`).
    let announce = move |_| println!("isek center listening on {scheme}://{address}");
    isek_center::run_announced(listener, config, shutdown, announce)
        .await
        .context("the center stopped with an error")?;
    tracing::info!("isek center stopped cleanly");
    Ok(())
}

/// A future that completes on the first SIGINT or SIGTERM; the handlers are
/// installed now, before the future is first polled.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}

/// A future that completes on Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: shutting down");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ttl_is_positive_seconds() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
