//! What a registry knows about a node.

use serde::{Deserialize, Serialize};

/// A node's agent card: name, url, p2p address, ... Always a JSON object.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// One registered node as a registry reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique id of the node within its registry (or etcd parent namespace).
    pub node_id: String,
    /// Host name or address where peers reach the node.
    pub host: String,
    /// Port where peers reach the node.
    pub port: u16,
    /// The node's agent card.
    #[serde(default)]
    pub metadata: Metadata,
    /// Base64 raw `X||Y` P-256 public key of the node's owner, when the entry is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When the lease runs out, in Unix seconds, when the backend reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<f64>,
}

impl NodeInfo {
    /// A node with no key and no known lease deadline.
    pub fn new(
        node_id: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        metadata: Metadata,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            host: host.into(),
            port,
            metadata,
            public_key: None,
            expires_at: None,
        }
    }
}
