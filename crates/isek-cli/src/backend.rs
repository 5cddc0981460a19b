//! Backend selection: which [`Registry`] a client command talks to.
//!
//! Every client command (`nodes`, `register`, `renew`, `deregister`, `run`, `watch`)
//! takes the same [`BackendArgs`] and gets a `Box<dyn Registry>` from
//! [`BackendArgs::connect`], so the commands never know which backend they drive: an
//! Isek Center over HTTP (`--center URL`, the default) or etcd (`--etcd ENDPOINTS
//! [--parent ID] [--identity KEYFILE]`, see [`crate::etcd`]). The two flags exclude
//! each other; without either, `$ISEK_ETCD` or `$ISEK_CENTER` decides.

use std::path::PathBuf;

use anyhow::Context;
use isek::identity::NodeIdentity;
use isek::{CenterConfig, IsekCenterRegistry, Registry};

use crate::etcd::{CENTER_ENV, EtcdArgs, EtcdTarget};

/// The center used when neither flags nor environment choose a backend.
const DEFAULT_CENTER: &str = "http://127.0.0.1:8088";

/// Where the registry is, as given on the command line or in the environment.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("registry").args(["center", "etcd"]).multiple(false)))]
pub struct BackendArgs {
    /// Base URL of the Isek Center, ours or the original Python one, or several
    /// comma-separated centers of one registry, tried in turn when one is unavailable
    /// (default: $ISEK_CENTER, else http://127.0.0.1:8088).
    #[arg(long, value_name = "URL")]
    pub center: Option<String>,
    /// Center only: PEM file of a CA to trust for an https:// center (e.g. its
    /// self-signed certificate), besides the system roots.
    #[arg(long, value_name = "FILE", conflicts_with = "etcd")]
    pub ca_file: Option<PathBuf>,
    /// The etcd backend's flags.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

impl BackendArgs {
    /// The etcd registry the command line selects, or `None` when it selects a center.
    pub fn etcd_target(&self) -> anyhow::Result<Option<EtcdTarget>> {
        self.etcd.target(self.center.is_some(), env_var)
    }

    /// Opens the selected backend. On etcd it acts for `--identity`, or else for a key
    /// held in memory for the life of the process (see [`crate::etcd`]).
    pub async fn connect(&self) -> anyhow::Result<Box<dyn Registry>> {
        match self.etcd_target()? {
            Some(target) => Ok(Box::new(target.connect_node().await?)),
            None => self.connect_center(),
        }
    }

    /// Opens the selected backend for `command` (`renew`, `deregister`) on a node
    /// registered earlier, maybe by another process: on etcd, `--identity` is required.
    pub async fn connect_owner(&self, command: &str) -> anyhow::Result<Box<dyn Registry>> {
        match self.etcd_target()? {
            Some(target) => Ok(Box::new(target.connect_owner(command).await?)),
            None => self.connect_center(),
        }
    }

    /// The center client boxed as a registry.
    fn connect_center(&self) -> anyhow::Result<Box<dyn Registry>> {
        Ok(Box::new(self.center_client()?))
    }

    /// The center client: `--center`, else `$ISEK_CENTER`, else the default; trusting
    /// `--ca-file`; signing with `--identity` when given (registrations get a lease
    /// token, renew/deregister from another process sign with the key).
    pub fn center_client(&self) -> anyhow::Result<IsekCenterRegistry> {
        let url = self
            .center
            .clone()
            .or_else(|| env_var(CENTER_ENV))
            .unwrap_or_else(|| DEFAULT_CENTER.to_owned());
        let mut urls = url.split(',').map(str::trim).filter(|u| !u.is_empty());
        let mut config = CenterConfig::new(urls.next().unwrap_or(DEFAULT_CENTER));
        config.fallback_urls = urls.map(str::to_owned).collect();
        config.ca_file = self.ca_file.clone();
        let mut client = IsekCenterRegistry::with_config(config)
            .with_context(|| format!("cannot use center '{url}'"))?;
        if let Some(path) = &self.etcd.identity {
            let identity = NodeIdentity::load(path).context("cannot use --identity")?;
            client = client.with_identity(identity);
        }
        Ok(client)
    }
}

/// A non-empty environment variable (an empty one counts as unset, as for clap's `env`).
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}
