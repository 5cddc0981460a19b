//! `isek keygen`: create a node identity file.
//!
//! Writes a fresh ECDSA P-256 private key as PKCS#8 PEM to a new file readable by its
//! owner only (mode 0600), never over an existing file (it may be another node's
//! identity), and prints the public key (raw `X||Y`, base64, as it appears in etcd
//! entries) on stdout. The file is what `--identity` takes.

use std::path::PathBuf;

use anyhow::Context;
use isek::identity::NodeIdentity;

/// Flags of `isek keygen`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (must not exist yet).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Generates and saves a key; prints its public key.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let identity = NodeIdentity::generate();
    identity
        .save(&args.out)
        .context("cannot write the identity")?;
    println!("{}", identity.public_key());
    Ok(())
}
