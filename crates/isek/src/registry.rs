//! The [`Registry`] trait: the four operations of ISEK's registry interface, plus
//! change streams and filtered queries.

use std::collections::BTreeMap;

use std::time::Duration;

use async_trait::async_trait;

use crate::query::{Page, Query};
use crate::watch::NodeEventStream;
use crate::{Metadata, NodeInfo, Result};

/// Lease length of a node that does not choose one, as in the original ISEK (30 s):
/// the one definition every backend, the runtime and the center default to.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A place where nodes register, keep a lease alive and find their peers.
///
/// The methods mirror the Python `Registry` interface of ISEK so code and people move
/// between the two without translation. Implementations must be safe to share between
/// tasks; they are object safe so a program can pick a backend at run time.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Registers `node_id` (or replaces its entry) and starts a fresh lease.
    async fn register_node(
        &self,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
    ) -> Result<()>;

    /// Extends the node's lease by a full TTL; [`crate::Error::NotFound`] if it lapsed.
    async fn lease_refresh(&self, node_id: &str) -> Result<()>;

    /// Removes the node at once; [`crate::Error::NotFound`] if it is not registered.
    async fn deregister_node(&self, node_id: &str) -> Result<()>;

    /// Every node whose lease is alive, keyed by node id.
    async fn get_available_nodes(&self) -> Result<BTreeMap<String, NodeInfo>>;

    /// A stream of membership changes (see [`crate::watch`]), when the backend can
    /// push them; `Ok(None)` when it cannot, and a watcher has to poll
    /// [`Registry::get_available_nodes`] instead (the original Python center, for one).
    async fn watch_nodes(&self) -> Result<Option<NodeEventStream>> {
        Ok(None)
    }

    /// One page of the nodes `query`'s filter matches, sorted by id (see
    /// [`crate::query`]). A center of ours answers from its indexes; by default the
    /// full listing is narrowed here by the same evaluator ([`crate::query::evaluate`]),
    /// which is what etcd, the in-memory registry and the original center get.
    /// [`crate::Error::NotFound`] for a cursor that is unknown or expired: start over.
    async fn query(&self, query: &Query) -> Result<Page> {
        crate::query::evaluate(self.get_available_nodes().await?, query)
    }
}
