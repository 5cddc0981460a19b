//! What centers sharing one etcd cluster (`isek center --store etcd`) write there and
//! send each other.
//!
//! Keys live under the cluster's prefix (`--etcd-prefix`, default `/isek-center`):
//! `{prefix}/nodes/{node_id}` holds a [`StoredNode`] (the key's `mod_revision` is the
//! registration's generation and its revision on `/v1/watch`); `{prefix}/expired`
//! is written in the same transaction as an expiry's delete, with the expired node
//! id as its value, so every center tells an expiry from a deregistration.

use serde::{Deserialize, Serialize};

/// The sub-prefix of node entries.
pub const NODES: &str = "nodes/";

/// The key written with an expiry's delete (value: the node id).
pub const EXPIRED: &str = "expired";

/// One registered node as a center cluster stores it in etcd: the record and its
/// owner, so any center can check ownership and answer for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNode {
    /// The node's host.
    pub host: String,
    /// The node's port (1 to 65535).
    pub port: u16,
    /// The metadata object as compact JSON text, byte for byte as the center renders it.
    pub metadata: String,
    /// The owner's raw `X||Y` P-256 key in base64, for signed registrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The SHA-256 of the owner's current lease token, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// The sub-prefix where each center announces its URL, on its etcd lease.
pub const CENTERS: &str = "centers/";

/// The key of the lease holder (value: its center id), on its etcd lease.
pub const HOLDER: &str = "holder";

/// The key of the secret centers prove themselves to each other with.
pub const SECRET: &str = "secret";

/// Where a center takes the renewals another center accepted.
pub const RENEWALS_PATH: &str = "/v1/cluster/renewals";

/// The header carrying the cluster's secret on [`RENEWALS_PATH`].
pub const SECRET_HEADER: &str = "x-isek-cluster-secret";

/// The body of [`RENEWALS_PATH`]: ids renewed on the sending center since its last
/// batch (about every 100 ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewals {
    /// The renewed node ids.
    pub ids: Vec<String>,
}
