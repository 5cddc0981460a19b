//! `isek renew`: extend a node's lease by a full TTL, as its owner.

use isek::wire::center::renewed_message;

use crate::backend::BackendArgs;

/// Arguments of `isek renew`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// Where the registry is.
    #[command(flatten)]
    backend: BackendArgs,
    /// Id of the node.
    #[arg(long)]
    node_id: String,
}

/// Runs `isek renew`.
pub async fn renew(args: RenewArgs) -> anyhow::Result<()> {
    let registry = args.backend.connect_owner("renew").await?;
    registry.lease_refresh(&args.node_id).await?;
    println!("{}", renewed_message(&args.node_id));
    Ok(())
}
