//! Backend selection: which [`Registry`] a client command talks to.
//!
//! Every client command (`nodes`, `register`, `renew`, `deregister`) takes the same
//! [`BackendArgs`] and gets a `Box<dyn Registry>` from [`BackendArgs::connect`], so the
//! commands never know which backend they drive. Today the only backend is an Isek
//! Center over HTTP; an etcd backend (`--etcd ENDPOINTS [--parent ID] [--identity
//! FILE]`) slots in here as another flag group and another arm of `connect`.

use anyhow::Context;
use isek::{IsekCenterRegistry, Registry};

/// Where the registry is, as given on the command line or in the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Base URL of the Isek Center (ours or the original Python one).
    #[arg(long, env = "ISEK_CENTER", default_value = "http://127.0.0.1:8088")]
    pub center: String,
}

impl BackendArgs {
    /// Opens the selected backend.
    pub fn connect(&self) -> anyhow::Result<Box<dyn Registry>> {
        let client = IsekCenterRegistry::new(&self.center)
            .with_context(|| format!("cannot use center '{}'", self.center))?;
        Ok(Box::new(client))
    }
}
