//! `isek deregister`: remove a node at once, as its owner or (center only) as the
//! operator holding the admin token.

use std::path::PathBuf;

use anyhow::Context;
use isek::wire::center::deregistered_message;

use crate::backend::BackendArgs;

/// Arguments of `isek deregister`.
#[derive(Debug, clap::Args)]
pub struct DeregisterArgs {
    /// Where the registry is.
    #[command(flatten)]
    backend: BackendArgs,
    /// Id of the node.
    #[arg(long)]
    node_id: String,
    /// Center only: deregister any node as the operator, with the admin token
    /// read from this file (the center's --admin-token-file).
    #[arg(long, value_name = "FILE", conflicts_with = "etcd")]
    admin_token_file: Option<PathBuf>,
}

/// Runs `isek deregister`.
pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<()> {
    let DeregisterArgs {
        backend,
        node_id,
        admin_token_file,
    } = args;
    match admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?;
            backend
                .center_client()?
                .admin_deregister(&node_id, token.trim())
                .await?;
        }
        None => {
            let registry = backend.connect_owner("deregister").await?;
            registry.deregister_node(&node_id).await?;
        }
    }
    println!("{}", deregistered_message(&node_id));
    Ok(())
}
