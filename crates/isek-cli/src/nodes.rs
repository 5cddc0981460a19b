//! `isek nodes`: the live nodes as a table or as JSON (on etcd: every entry, and
//! whether it verifies).

use anyhow::Context;
use isek::Registry;

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
}

/// Runs `isek nodes`.
pub async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    match args.backend.etcd_target()? {
        // etcd: the operator's view, also entries that fail verification.
        Some(target) => crate::etcd::nodes(&target, args.json).await,
        None => list(&*args.backend.connect().await?, args.json).await,
    }
}

/// Prints the live nodes of `registry`.
async fn list(registry: &dyn Registry, json: bool) -> anyhow::Result<()> {
    let nodes = registry.get_available_nodes().await?;
    if json {
        let text = serde_json::to_string_pretty(&nodes).context("cannot encode the listing")?;
        println!("{text}");
    } else {
        print!("{}", crate::table::render(&nodes, crate::table::unix_now()));
    }
    Ok(())
}
