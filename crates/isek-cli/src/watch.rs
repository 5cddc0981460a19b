//! `isek watch`: print membership changes as they happen.
//!
//! A standalone [`PeerView`] follows the registry (its change stream when the backend
//! has one, otherwise a full list every `--poll-interval`, diffed) and every change
//! becomes one line on stdout until SIGINT or SIGTERM (exit 0):
//!
//! ```text
//! + 3f2a... 127.0.0.1:9000          a node joined
//! ~ 3f2a... 127.0.0.1:9001 (address) a node re-registered with other details
//! - 3f2a...                          a node left (deregistered or expired)
//! # live (polling), 12 nodes         the view follows the registry (again)
//! # stale: unavailable: ...          contact lost; the view keeps the last known nodes
//! ```
//!
//! The nodes present at start are printed as joins (`+`), followed by one `# live`
//! line once the first full list is in, so a script knows where the initial set ends.
//!
//! With `--json`, each line is one JSON object with an `event` field: `join`
//! (`node`), `update` (`node`, `previous`), `leave` (`node`, the last known entry),
//! `live` (`source`: `stream` or `poll`, `nodes`: count) and `stale` (`error`,
//! `since` as float Unix seconds). `node` values are node entries as `isek nodes
//! --json` prints them.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use isek::runtime::{PeerSource, PeerSync, PeerUpdate, PeerViewConfig};
use isek::{NodeInfo, PeerChange, PeerView, Registry};
use serde_json::json;

use crate::backend::BackendArgs;

/// Flags of `isek watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Where the registry is.
    #[command(flatten)]
    backend: BackendArgs,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds between two full lists when the registry has no change stream
    /// (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = crate::server::parse_seconds)]
    poll_interval: Duration,
    /// Only the nodes this CEL expression matches (evaluated here on every entry, on
    /// every backend): a node that stops matching is printed as a leave (`-`), one that
    /// starts matching as a join (`+`).
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
}

/// Follows the registry and prints changes until SIGINT or SIGTERM.
pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let shutdown = crate::server::shutdown_signal()?;
    let mut shutdown = std::pin::pin!(shutdown);
    let filter = args
        .filter
        .as_deref()
        .map(isek::Filter::compile)
        .transpose()
        .context("invalid --filter")?;
    let registry: Arc<dyn Registry> = Arc::from(args.backend.connect().await?);
    let config = PeerViewConfig {
        poll_interval: args.poll_interval,
        // Nobody to leave out: a watcher is not a node.
        exclude: None,
        filter,
        ..PeerViewConfig::default()
    };
    let view = PeerView::start(registry, config);
    let mut sync = view.sync_changes();
    let (mut known, mut updates) = view.subscribe_with_peers();
    let mut out = Lines::new(args.json);
    // Joins of whatever the view already holds (usually nothing yet).
    for node in known.values() {
        out.change(&PeerChange::Joined(node.clone()))?;
    }
    loop {
        // Changes before status: the view publishes a list's changes before marking
        // itself live, so the `live` line comes after the joins it covers.
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            update = updates.recv() => match update {
                Some(PeerUpdate::Change(change)) => {
                    apply(&mut known, &change);
                    out.change(&change)?;
                }
                Some(PeerUpdate::Resync(peers)) => {
                    for change in diff(&known, &peers) {
                        out.change(&change)?;
                    }
                    known = peers;
                }
                None => anyhow::bail!("the peer view stopped"),
            },
            changed = sync.changed() => {
                changed.context("the peer view stopped")?;
                let status = sync.borrow_and_update().clone();
                out.status(&status, known.len())?;
            }
        }
    }
}

/// Applies one change to the watcher's copy of the membership.
fn apply(known: &mut BTreeMap<String, NodeInfo>, change: &PeerChange) {
    match change {
        PeerChange::Joined(node) | PeerChange::Updated { current: node, .. } => {
            known.insert(node.node_id.clone(), node.clone());
        }
        PeerChange::Left(node) => {
            known.remove(&node.node_id);
        }
    }
}

/// The changes that turn `old` into `new` (leaves first, then joins and updates in id
/// order), for a resync after the watcher fell behind.
fn diff(old: &BTreeMap<String, NodeInfo>, new: &BTreeMap<String, NodeInfo>) -> Vec<PeerChange> {
    let mut changes: Vec<PeerChange> = old
        .iter()
        .filter(|(id, _)| !new.contains_key(*id))
        .map(|(_, node)| PeerChange::Left(node.clone()))
        .collect();
    for (id, node) in new {
        match old.get(id) {
            None => changes.push(PeerChange::Joined(node.clone())),
            Some(previous) if !changed_fields(previous, node).is_empty() => {
                changes.push(PeerChange::Updated {
                    previous: previous.clone(),
                    current: node.clone(),
                });
            }
            Some(_) => {}
        }
    }
    changes
}

/// What differs between two entries of one node, ignoring the lease deadline.
fn changed_fields(previous: &NodeInfo, current: &NodeInfo) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if previous.host != current.host || previous.port != current.port {
        fields.push("address");
    }
    if previous.metadata != current.metadata {
        fields.push("metadata");
    }
    if previous.public_key != current.public_key {
        fields.push("key");
    }
    fields
}

/// Writes change and status lines to stdout.
struct Lines {
    /// JSON lines instead of text.
    json: bool,
}

impl Lines {
    /// Lines in text or JSON.
    fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints one change.
    fn change(&mut self, change: &PeerChange) -> anyhow::Result<()> {
        let line = if self.json {
            change_json(change)
        } else {
            change_text(change)
        };
        emit(&line)
    }

    /// Prints a change of the view's trustworthiness (nothing while it is pending).
    fn status(&mut self, status: &PeerSync, nodes: usize) -> anyhow::Result<()> {
        let line = if self.json {
            status_json(status, nodes)
        } else {
            status_text(status, nodes)
        };
        match line {
            Some(line) => emit(&line),
            None => Ok(()),
        }
    }
}

/// Writes one line to stdout; a reader that went away (`isek watch | head`) ends the
/// watch quietly.
fn emit(line: &str) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(0);
        }
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

/// `+ id host:port`, `~ id host:port (fields)` or `- id`.
fn change_text(change: &PeerChange) -> String {
    match change {
        PeerChange::Joined(node) => format!("+ {} {}:{}", node.node_id, node.host, node.port),
        PeerChange::Updated { previous, current } => format!(
            "~ {} {}:{} ({})",
            current.node_id,
            current.host,
            current.port,
            changed_fields(previous, current).join(", ")
        ),
        PeerChange::Left(node) => format!("- {}", node.node_id),
    }
}

/// The JSON line of a change.
fn change_json(change: &PeerChange) -> String {
    let value = match change {
        PeerChange::Joined(node) => json!({"event": "join", "node": node}),
        PeerChange::Updated { previous, current } => {
            json!({"event": "update", "node": current, "previous": previous})
        }
        PeerChange::Left(node) => json!({"event": "leave", "node": node}),
    };
    value.to_string()
}

/// Name of a change source on the command line.
fn source_name(source: PeerSource) -> &'static str {
    match source {
        PeerSource::Stream => "stream",
        PeerSource::Poll => "poll",
    }
}

/// `# live (...)` or `# stale: ...`; nothing for pending.
fn status_text(status: &PeerSync, nodes: usize) -> Option<String> {
    match status {
        PeerSync::Pending => None,
        PeerSync::Live { source } => {
            let how = match source {
                PeerSource::Stream => "change stream",
                PeerSource::Poll => "polling",
            };
            Some(format!("# live ({how}), {nodes} nodes"))
        }
        PeerSync::Stale { last_error, .. } => Some(format!(
            "# stale: {}",
            crate::one_line(&last_error.to_string())
        )),
    }
}

/// The JSON line of a status; nothing for pending.
fn status_json(status: &PeerSync, nodes: usize) -> Option<String> {
    let value = match status {
        PeerSync::Pending => return None,
        PeerSync::Live { source } => {
            json!({"event": "live", "source": source_name(*source), "nodes": nodes})
        }
        PeerSync::Stale { since, last_error } => json!({
            "event": "stale",
            "since": crate::run::unix_seconds(*since),
            "error": last_error.to_string(),
        }),
    };
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16) -> NodeInfo {
        NodeInfo::new(id, "127.0.0.1", port, isek::Metadata::new())
    }

    fn map(nodes: &[NodeInfo]) -> BTreeMap<String, NodeInfo> {
        nodes
            .iter()
            .map(|n| (n.node_id.clone(), n.clone()))
            .collect()
    }

    #[test]
    fn text_lines() {
        assert_eq!(
            change_text(&PeerChange::Joined(node("a", 1))),
            "+ a 127.0.0.1:1"
        );
        assert_eq!(change_text(&PeerChange::Left(node("a", 1))), "- a");
        let mut moved = node("a", 2);
        moved.metadata.insert("name".into(), json!("x"));
        assert_eq!(
            change_text(&PeerChange::Updated {
                previous: node("a", 1),
                current: moved
            }),
            "~ a 127.0.0.1:2 (address, metadata)"
        );
        assert_eq!(status_text(&PeerSync::Pending, 0), None);
        assert_eq!(
            status_text(
                &PeerSync::Live {
                    source: PeerSource::Poll
                },
                3
            )
            .as_deref(),
            Some("# live (polling), 3 nodes")
        );
    }

    #[test]
    fn json_lines_hold_whole_entries() {
        let value: serde_json::Value =
            serde_json::from_str(&change_json(&PeerChange::Left(node("a", 1)))).unwrap();
        assert_eq!(
            value,
            json!({"event": "leave", "node": {"node_id": "a", "host": "127.0.0.1", "port": 1, "metadata": {}}})
        );
        let live = status_json(
            &PeerSync::Live {
                source: PeerSource::Stream,
            },
            2,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&live).unwrap(),
            json!({"event": "live", "source": "stream", "nodes": 2})
        );
    }

    #[test]
    fn resync_diff_turns_old_into_new() {
        let old = map(&[node("a", 1), node("b", 2), node("c", 3)]);
        let mut renewed = node("c", 3);
        renewed.expires_at = Some(99.0);
        let new = map(&[node("b", 5), renewed, node("d", 4)]);
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            [
                PeerChange::Left(node("a", 1)),
                PeerChange::Updated {
                    previous: node("b", 2),
                    current: node("b", 5)
                },
                PeerChange::Joined(node("d", 4)),
            ]
        );
        let mut copy = old.clone();
        for change in &changes {
            apply(&mut copy, change);
        }
        assert_eq!(
            copy.keys().collect::<Vec<_>>(),
            new.keys().collect::<Vec<_>>()
        );
    }
}
