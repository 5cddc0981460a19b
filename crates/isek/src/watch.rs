//! Incremental discovery: the events a registry streams to watchers.
//!
//! The original ISEK made every node download the full list every few seconds. A
//! backend that can do better (etcd watch, the center's change stream, the in-process
//! registry) offers a [`NodeEventStream`] through [`crate::Registry::watch_nodes`]:
//! one [`NodeEvent::Snapshot`] first, then only changes.

use std::collections::BTreeMap;

use futures::stream::BoxStream;

use crate::{NodeInfo, Result};

/// One step in the life of the set of live nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The complete set of live nodes at `revision`. Sent first, and again whenever
    /// the stream had to resynchronise (compaction, lost connection, fell behind): a
    /// watcher replaces its whole view with it.
    Snapshot {
        /// Revision the snapshot reflects.
        revision: u64,
        /// Every live node, keyed by node id.
        nodes: BTreeMap<String, NodeInfo>,
    },
    /// A node was registered or its entry replaced.
    Put {
        /// Revision of the change.
        revision: u64,
        /// The node's new entry.
        node: NodeInfo,
    },
    /// A node left: deregistered or expired.
    Delete {
        /// Revision of the change.
        revision: u64,
        /// Id of the node that left.
        node_id: String,
    },
}

impl NodeEvent {
    /// Revision of the event, for resuming and ordering.
    pub fn revision(&self) -> u64 {
        match self {
            NodeEvent::Snapshot { revision, .. }
            | NodeEvent::Put { revision, .. }
            | NodeEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// A live stream of [`NodeEvent`]s. It ends only when the registry is dropped or
/// fails for good; transient faults are handled inside by resynchronising.
pub type NodeEventStream = BoxStream<'static, Result<NodeEvent>>;
