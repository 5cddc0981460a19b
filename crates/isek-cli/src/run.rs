//! `isek run`: be a well-behaved node without linking Rust.
//!
//! Registers one node through [`isek::runtime::Node`] and keeps it alive (renewing at
//! a third of the TTL, registering again after the registry forgot it, backing off
//! while it is unreachable) until SIGINT or SIGTERM, then deregisters it and exits 0.
//! A Python agent or a shell script starts it next to itself and stops it when it
//! stops.
//!
//! `--check URL|CMD` ties the lease to the agent's own health check (see
//! `isek::runtime::health`): after `--check-failures` (3) failures in a row, one every
//! `--check-interval` (5 s), the node deregisters (an `unhealthy` line) and stops
//! renewing; the first passing check registers it again.
//!
//! `--agent-card FILE|URL` registers an A2A AgentCard as `metadata.agent_card`, loaded
//! and validated before the first registration (see `crate::card`).
//!
//! Every state change is one line on stdout, so a supervising script can follow it:
//!
//! ```text
//! registered 3f2a... 127.0.0.1:9000
//! retrying 3f2a... (attempt 2): unavailable: ...
//! lost 3f2a... (attempt 1): not found: ...
//! stopped 3f2a...
//! ```
//!
//! or, with `--json`, one JSON object per line with `state`, `node_id` and the state's
//! details (`since` as float Unix seconds, `attempts`, `error`). A registry that refuses
//! the node for good (bad input, a key that is not the owner's) ends the process: a
//! `failed` line on stdout, one `error: ...` line on stderr, exit status 1. So does a
//! deregistration that fails at shutdown (the entry then expires with its lease).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use isek::runtime::{Node, NodeHandle, NodeState};
use isek::{Metadata, Registry};
use serde_json::json;

use crate::backend::BackendArgs;

/// Flags of `isek run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Where the registry is.
    #[command(flatten)]
    backend: BackendArgs,
    /// Id of the node (default: 32 random hex digits, as the original ISEK).
    #[arg(long)]
    node_id: Option<String>,
    /// Host name or address where peers reach the node.
    #[arg(long)]
    host: String,
    /// Port where peers reach the node (1-65535).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// The node's agent card, a JSON object.
    #[arg(long, value_name = "JSON-OBJECT", value_parser = crate::register::parse_metadata, default_value = "{}")]
    metadata: Metadata,
    /// An A2A AgentCard (JSON) registered as `metadata.agent_card`: a file, or an
    /// http(s) URL fetched once at start; validated before registering.
    #[arg(long, value_name = "FILE|URL")]
    agent_card: Option<String>,
    /// Largest --agent-card accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::card::DEFAULT_MAX_BYTES)]
    agent_card_max_bytes: usize,
    /// Longest wait for an --agent-card URL's whole answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = crate::server::parse_seconds)]
    agent_card_timeout: Duration,
    /// Tie the lease to the agent's health: an http(s) URL that must answer 2xx, or a
    /// shell command that must exit 0. After --check-failures failures in a row the
    /// node deregisters and stops renewing; it registers again when a check passes.
    #[arg(long, value_name = "URL|CMD")]
    check: Option<String>,
    /// Seconds between two health checks.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = crate::server::parse_seconds)]
    check_interval: Duration,
    /// Longest one health check may take, in seconds (slower: a failure).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = crate::server::parse_seconds)]
    check_timeout: Duration,
    /// Consecutive failed checks after which the node deregisters.
    #[arg(long, value_name = "N", default_value = "3", value_parser = clap::value_parser!(u32).range(1..))]
    check_failures: u32,
    /// Lease length in seconds (fractions allowed); the node renews every third of it.
    /// On etcd it is the lease granted (same as `--lease-ttl`); a center grants its own
    /// `--lease-ttl`, so give the same value here [default: 30].
    #[arg(long, value_name = "SECONDS", value_parser = crate::server::parse_seconds)]
    ttl: Option<Duration>,
    /// Print state changes as JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Handlers first: a supervisor may signal as soon as it sees the first line.
    let shutdown = crate::server::shutdown_signal()?;
    let mut metadata = args.metadata;
    if let Some(source) = args.agent_card {
        let card = crate::card::CardSource {
            source,
            max_bytes: args.agent_card_max_bytes,
            timeout: args.agent_card_timeout,
        };
        card.apply(&mut metadata).await?;
    }
    let mut backend = args.backend;
    let ttl = match (args.ttl, backend.etcd.lease_ttl) {
        (Some(ttl), Some(lease)) if ttl != lease => {
            anyhow::bail!("--ttl and --lease-ttl disagree ({ttl:?} vs {lease:?}); give one")
        }
        (Some(ttl), _) | (None, Some(ttl)) => ttl,
        // The original ISEK's 30 s.
        (None, None) => isek::DEFAULT_TTL,
    };
    if backend.etcd_target()?.is_some() {
        // On etcd the node's registry grants the lease: the one the node renews for.
        backend.etcd.lease_ttl = Some(ttl);
    }
    let registry: Arc<dyn Registry> = Arc::from(backend.connect().await?);
    let mut node = Node::new(registry, args.host.clone(), args.port)
        .metadata(metadata)
        .ttl(ttl)
        // `isek run` only keeps the node alive; following peers is `isek watch`.
        .peer_view(None);
    if let Some(id) = args.node_id {
        node = node.node_id(id);
    }
    if let Some(check) = args.check {
        node = node.health_check(isek::runtime::HealthCheck {
            probe: isek::runtime::Probe::parse(&check),
            interval: args.check_interval,
            timeout: args.check_timeout,
            failures: args.check_failures,
        });
    }
    let id = node.id().to_owned();
    let handle = node
        .start()
        .await
        .with_context(|| format!("the registry refused node '{id}'"))?;
    let mut out = StateLines {
        json: args.json,
        address: format!("{}:{}", args.host, args.port),
        broken: false,
    };
    let outcome = follow(&handle, &mut out, shutdown).await;
    match outcome {
        Outcome::Signalled => {
            let result = handle.shutdown().await;
            out.print(&id, &NodeState::Stopped);
            result.with_context(|| {
                format!("cannot deregister node '{id}' (its entry expires with its lease)")
            })
        }
        Outcome::Failed(error) => {
            Err(error).with_context(|| format!("the registry refused node '{id}'"))
        }
    }
}

/// Why [`follow`] returned.
enum Outcome {
    /// SIGINT or SIGTERM arrived: shut down cleanly.
    Signalled,
    /// The node ended in [`NodeState::Failed`].
    Failed(isek::Error),
}

/// Prints every state change of `handle` until a signal or a fatal state.
async fn follow(
    handle: &NodeHandle,
    out: &mut StateLines,
    shutdown: impl Future<Output = ()>,
) -> Outcome {
    let mut states = handle.states();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let state = states.borrow_and_update().clone();
        out.print(handle.node_id(), &state);
        if let NodeState::Failed(error) = state {
            return Outcome::Failed(error);
        }
        tokio::select! {
            () = &mut shutdown => return Outcome::Signalled,
            changed = states.changed() => {
                if changed.is_err() {
                    // The handle owns the sender, so this cannot happen while it lives;
                    // wait for the signal rather than spin.
                    shutdown.await;
                    return Outcome::Signalled;
                }
            }
        }
    }
}

/// Writes state lines to stdout.
struct StateLines {
    /// JSON lines instead of text.
    json: bool,
    /// `host:port` of the node, shown when it registers.
    address: String,
    /// Stdout failed once (e.g. the reader went away); the node keeps running and
    /// further lines are dropped silently.
    broken: bool,
}

impl StateLines {
    /// Prints one line for `state`.
    fn print(&mut self, node_id: &str, state: &NodeState) {
        if self.broken {
            return;
        }
        let line = if self.json {
            json_line(node_id, state)
        } else {
            text_line(node_id, &self.address, state)
        };
        if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
            tracing::warn!(%error, "cannot write state lines to stdout; the node keeps running");
            self.broken = true;
        }
    }
}

/// The text line for `state`.
fn text_line(node_id: &str, address: &str, state: &NodeState) -> String {
    match state {
        NodeState::Registered { .. } => format!("registered {node_id} {address}"),
        NodeState::Retrying {
            attempts,
            last_error,
            ..
        } => format!(
            "retrying {node_id} (attempt {attempts}): {}",
            crate::one_line(&last_error.to_string())
        ),
        NodeState::Lost {
            attempts,
            last_error,
            ..
        } => match last_error {
            Some(error) => format!(
                "lost {node_id} (attempt {attempts}): {}",
                crate::one_line(&error.to_string())
            ),
            None => format!("lost {node_id}"),
        },
        NodeState::Unhealthy {
            failures,
            last_error,
            ..
        } => format!(
            "unhealthy {node_id} ({failures} failed checks; deregistered): {}",
            crate::one_line(last_error)
        ),
        NodeState::Stopped => format!("stopped {node_id}"),
        NodeState::Failed(error) => {
            format!("failed {node_id}: {}", crate::one_line(&error.to_string()))
        }
    }
}

/// The JSON line for `state`.
fn json_line(node_id: &str, state: &NodeState) -> String {
    let value = match state {
        NodeState::Registered { since } => json!({
            "state": "registered",
            "node_id": node_id,
            "since": unix_seconds(*since),
        }),
        NodeState::Retrying {
            since,
            attempts,
            last_error,
        } => json!({
            "state": "retrying",
            "node_id": node_id,
            "since": unix_seconds(*since),
            "attempts": attempts,
            "error": last_error.to_string(),
        }),
        NodeState::Lost {
            since,
            attempts,
            last_error,
        } => json!({
            "state": "lost",
            "node_id": node_id,
            "since": unix_seconds(*since),
            "attempts": attempts,
            "error": last_error.as_ref().map(ToString::to_string),
        }),
        NodeState::Unhealthy {
            since,
            failures,
            last_error,
        } => json!({
            "state": "unhealthy",
            "node_id": node_id,
            "since": unix_seconds(*since),
            "attempts": failures,
            "error": last_error,
        }),
        NodeState::Stopped => json!({"state": "stopped", "node_id": node_id}),
        NodeState::Failed(error) => json!({
            "state": "failed",
            "node_id": node_id,
            "error": error.to_string(),
        }),
    };
    value.to_string()
}

/// `time` as float Unix seconds, the way ISEK writes `expires_at`.
pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isek::Error;

    #[test]
    fn text_lines_name_the_state_and_node() {
        let since = UNIX_EPOCH + Duration::from_secs(10);
        let address = "127.0.0.1:9000";
        assert_eq!(
            text_line("n1", address, &NodeState::Registered { since }),
            "registered n1 127.0.0.1:9000"
        );
        let retrying = NodeState::Retrying {
            since,
            attempts: 2,
            last_error: Error::Unavailable("connection\nrefused".into()),
        };
        assert_eq!(
            text_line("n1", address, &retrying),
            "retrying n1 (attempt 2): unavailable: connection refused"
        );
        let lost = NodeState::Lost {
            since,
            attempts: 0,
            last_error: None,
        };
        assert_eq!(text_line("n1", address, &lost), "lost n1");
        assert_eq!(text_line("n1", address, &NodeState::Stopped), "stopped n1");
        let failed = NodeState::Failed(Error::PermissionDenied("not yours".into()));
        assert_eq!(
            text_line("n1", address, &failed),
            "failed n1: permission denied: not yours"
        );
    }

    #[test]
    fn json_lines_carry_the_details() {
        let since = UNIX_EPOCH + Duration::from_millis(1500);
        let lost = NodeState::Lost {
            since,
            attempts: 3,
            last_error: Some(Error::NotFound("gone".into())),
        };
        let value: serde_json::Value = serde_json::from_str(&json_line("n1", &lost)).unwrap();
        assert_eq!(
            value,
            json!({"state": "lost", "node_id": "n1", "since": 1.5, "attempts": 3, "error": "not found: gone"})
        );
        let registered: serde_json::Value =
            serde_json::from_str(&json_line("n1", &NodeState::Registered { since })).unwrap();
        assert_eq!(
            registered,
            json!({"state": "registered", "node_id": "n1", "since": 1.5})
        );
    }
}
