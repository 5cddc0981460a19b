//! `isek nodes`: the live nodes as a table or as JSON (on etcd: every entry, and
//! whether it verifies), optionally only those a CEL `--filter` matches.
//!
//! With `--filter` or `--limit` the listing is a [`Query`]: a center of ours answers it
//! from its indexes (page after page, following its cursors); etcd and the original
//! center are narrowed here by the same evaluator. A filter that does not compile is
//! refused before anything is sent, with its line and column.

use std::collections::BTreeMap;

use anyhow::Context;
use isek::{Filter, NodeInfo, Query, Registry};

use crate::backend::BackendArgs;

/// Arguments of `isek nodes`.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Where the registry is.
    #[command(flatten)]
    backend: BackendArgs,
    /// Print the listing as a JSON object keyed by node id instead of a table.
    #[arg(long)]
    json: bool,
    /// Only the nodes this CEL expression matches, e.g.
    /// 'metadata.role == "planner"' (over node_id, host, port, public_key, metadata;
    /// on etcd: the entries that verify).
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// List at most N nodes (the first by id); a center caps it at its --max-page.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

/// Runs `isek nodes`.
pub async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let query = query_of(args.filter.as_deref(), args.limit)?;
    match (query, args.backend.etcd_target()?) {
        // etcd: the operator's view, also entries that fail verification.
        (None, Some(target)) => crate::etcd::nodes(&target, args.json).await,
        (None, None) => list(&*args.backend.connect().await?, args.json).await,
        (Some(query), _) => filtered(&*args.backend.connect().await?, query, args.json).await,
    }
}

/// The query `--filter` and `--limit` ask for, `None` when they ask for nothing.
fn query_of(filter: Option<&str>, limit: Option<u64>) -> anyhow::Result<Option<Query>> {
    if filter.is_none() && limit.is_none() {
        return Ok(None);
    }
    let filter = filter
        .map(Filter::compile)
        .transpose()
        .context("invalid --filter")?;
    let limit = limit
        .map(usize::try_from)
        .transpose()
        .context("--limit is too large")?;
    Ok(Some(Query {
        filter,
        limit,
        cursor: None,
    }))
}

/// Prints the live nodes of `registry`.
async fn list(registry: &dyn Registry, json: bool) -> anyhow::Result<()> {
    let nodes = registry.get_available_nodes().await?;
    print_nodes(&nodes, json, false)
}

/// Prints the nodes `query` matches: with `--limit` its first page, else every page.
async fn filtered(registry: &dyn Registry, query: Query, json: bool) -> anyhow::Result<()> {
    let mut nodes = BTreeMap::new();
    let mut next = Some(query.clone());
    let mut more = false;
    while let Some(current) = next {
        let page = registry.query(&current).await?;
        for node in &page.nodes {
            nodes.insert(node.node_id.clone(), node.clone());
        }
        next = current.next(&page);
        if query.limit.is_some() {
            more = next.is_some();
            break;
        }
    }
    print_nodes(&nodes, json, more)
}

/// Prints `nodes` as JSON or as a table; `more` notes that further nodes match.
fn print_nodes(nodes: &BTreeMap<String, NodeInfo>, json: bool, more: bool) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(nodes).context("cannot encode the listing")?;
        println!("{text}");
    } else {
        print!("{}", crate::table::render(nodes, crate::table::unix_now()));
        if more {
            println!("(more nodes match; raise --limit to list them)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_names_its_position_on_one_line() {
        let text = match query_of(Some("metadata.role == "), None) {
            Err(error) => format!("{error:#}"),
            Ok(query) => panic!("compiled: {query:?}"),
        };
        assert!(text.starts_with("invalid --filter: filter 1:"), "{text}");
        assert!(matches!(query_of(None, None), Ok(None)));
    }
}
