//! [`MemoryRegistry`]: an in-process registry with real leases.
//!
//! For tests, single-process deployments and examples. Unlike the original
//! `DefaultRegistry` it is not a no-op: entries expire when their lease runs out,
//! exactly like the other backends, so code tested against it behaves the same
//! against a center or etcd; its error messages are the center's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::wire::center::{deregister_not_found_message, renew_not_found_message};
use crate::{Error, Metadata, NodeInfo, Registry, Result};

pub use crate::node_id::MAX_BYTES as MAX_NODE_ID_BYTES;
pub use crate::registry::DEFAULT_TTL;

/// Longest host accepted, in bytes (a DNS name's limit, as in the center).
pub const MAX_HOST_BYTES: usize = 253;

/// Rejects node ids the other backends reject (the rule of [`crate::node_id`]), so
/// tests against memory catch them.
fn check_node_id(node_id: &str) -> Result<()> {
    crate::node_id::check(node_id, MAX_NODE_ID_BYTES)
        .map_err(|problem| Error::InvalidArgument(format!("node_id {problem}")))
}

/// An in-process [`Registry`] whose leases expire on time.
#[derive(Debug)]
pub struct MemoryRegistry {
    /// Lease length granted on register and renew.
    ttl: Duration,
    /// Node id to (entry, lease deadline). Expired entries are dropped lazily on access.
    nodes: Mutex<HashMap<String, (NodeInfo, Instant)>>,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl MemoryRegistry {
    /// A registry granting leases of `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the table with expired entries already removed.
    fn with_live<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, (NodeInfo, Instant)>, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        // A poisoned lock only means another task panicked mid-update; the map is
        // still a valid map, so keep serving rather than propagate the panic.
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|_, (_, deadline)| *deadline > now);
        f(&mut nodes, now)
    }

    /// Unix seconds of `deadline`, for [`NodeInfo::expires_at`].
    fn unix_seconds(deadline: Instant, now: Instant) -> f64 {
        let wall = SystemTime::now() + deadline.saturating_duration_since(now);
        wall.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn register_node(
        &self,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
    ) -> Result<()> {
        check_node_id(node_id)?;
        if host.is_empty() || host.len() > MAX_HOST_BYTES {
            return Err(Error::InvalidArgument(format!(
                "host must be 1 to {MAX_HOST_BYTES} bytes"
            )));
        }
        if port == 0 {
            return Err(Error::InvalidArgument("port must be 1-65535".into()));
        }
        let ttl = self.ttl;
        self.with_live(|nodes, now| {
            let info = NodeInfo::new(node_id, host, port, metadata);
            nodes.insert(node_id.to_owned(), (info, now + ttl));
        });
        Ok(())
    }

    async fn lease_refresh(&self, node_id: &str) -> Result<()> {
        check_node_id(node_id)?;
        let ttl = self.ttl;
        self.with_live(|nodes, now| match nodes.get_mut(node_id) {
            Some((_, deadline)) => {
                *deadline = now + ttl;
                Ok(())
            }
            None => Err(Error::NotFound(renew_not_found_message(node_id))),
        })
    }

    async fn deregister_node(&self, node_id: &str) -> Result<()> {
        check_node_id(node_id)?;
        self.with_live(|nodes, _| match nodes.remove(node_id) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(deregister_not_found_message(node_id))),
        })
    }

    async fn get_available_nodes(&self) -> Result<BTreeMap<String, NodeInfo>> {
        Ok(self.with_live(|nodes, now| {
            nodes
                .iter()
                .map(|(id, (info, deadline))| {
                    let mut info = info.clone();
                    info.expires_at = Some(Self::unix_seconds(*deadline, now));
                    (id.clone(), info)
                })
                .collect()
        }))
    }
}
