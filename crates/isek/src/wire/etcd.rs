//! The etcd entry format of ISEK: `{"node_info": {...}, "signature": ...}`.
//!
//! Key: `/{parent_node_id}/{node_id}`. Value, as the original writes it (Python
//! `json.dumps`, insertion order):
//!
//! ```text
//! {"node_info": {"node_id": ..., "host": ..., "port": ..., "public_key": ..., "metadata": {...}},
//!  "signature": "<base64 r||s>"}
//! ```
//!
//! Entries written by this crate add a top-level `"signature_alg": "ES256"` (SHA-256);
//! an entry without it is a legacy one, signed with SHA-1. The signature covers
//! `json.dumps(node_info, sort_keys=True)` (see [`crate::canonical`]) of the `node_info`
//! object exactly as stored, unknown fields included, so parsing keeps the raw object.
//! Readers accept any valid JSON with these fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, KeyOrder};
use crate::{Metadata, NodeInfo};

/// Top-level field naming the signature algorithm of entries this crate writes.
pub const SIGNATURE_ALG_FIELD: &str = "signature_alg";

/// The etcd key of `node_id` under `parent`: `/{parent}/{node_id}`.
pub fn node_key(parent: &str, node_id: &str) -> String {
    format!("/{parent}/{node_id}")
}

/// The prefix of every key under `parent`: `/{parent}/`.
pub fn parent_prefix(parent: &str) -> String {
    format!("/{parent}/")
}

/// Why a stored value is not an ISEK entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The value is not JSON at all.
    #[error("value is not JSON: {0}")]
    NotJson(String),
    /// The JSON lacks a field or has one of the wrong type.
    #[error("not an ISEK entry: {0}")]
    Shape(String),
}

/// The typed fields of `node_info`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EntryNodeFields {
    /// The node's id (should equal the key's last segment).
    pub node_id: String,
    /// Where peers reach the node.
    pub host: String,
    /// Port where peers reach the node.
    pub port: u16,
    /// Base64 raw `X||Y` public key whose owner signed the entry.
    pub public_key: String,
    /// The agent card; the original always writes an object (`{}` when absent).
    #[serde(default)]
    pub metadata: Metadata,
}

/// A stored entry, parsed but not verified.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    /// `node_info` exactly as stored: the signature covers its canonical bytes.
    pub node_info: Value,
    /// The typed view of `node_info`.
    pub fields: EntryNodeFields,
    /// Base64 raw `r||s` signature.
    pub signature: String,
    /// `signature_alg` when present (`None` = legacy SHA-1 entry).
    pub signature_alg: Option<String>,
}

impl StoredEntry {
    /// Parses a stored value (any valid JSON object with the ISEK fields).
    pub fn parse(value: &[u8]) -> Result<Self, EntryError> {
        let root: Value =
            serde_json::from_slice(value).map_err(|e| EntryError::NotJson(e.to_string()))?;
        let Value::Object(mut root) = root else {
            return Err(EntryError::Shape("value is not a JSON object".into()));
        };
        let node_info = root
            .remove("node_info")
            .ok_or_else(|| EntryError::Shape("missing node_info".into()))?;
        let fields: EntryNodeFields = serde_json::from_value(node_info.clone())
            .map_err(|e| EntryError::Shape(format!("node_info: {e}")))?;
        let signature = match root.remove("signature") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(EntryError::Shape("signature is not a string".into())),
            None => return Err(EntryError::Shape("missing signature".into())),
        };
        let signature_alg = match root.remove(SIGNATURE_ALG_FIELD) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(EntryError::Shape("signature_alg is not a string".into())),
        };
        Ok(Self {
            node_info,
            fields,
            signature,
            signature_alg,
        })
    }

    /// The bytes the signature covers: `json.dumps(node_info, sort_keys=True)`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        canonical::to_sorted_bytes(&self.node_info)
    }

    /// The node as a registry reports it (public key filled in, no lease deadline).
    pub fn to_node_info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.fields.node_id.clone(),
            host: self.fields.host.clone(),
            port: self.fields.port,
            metadata: self.fields.metadata.clone(),
            public_key: Some(self.fields.public_key.clone()),
            expires_at: None,
        }
    }
}

/// The `node_info` object a node signs and stores.
pub fn node_info_value(
    node_id: &str,
    host: &str,
    port: u16,
    public_key: &str,
    metadata: &Metadata,
) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("node_id".into(), Value::from(node_id));
    map.insert("host".into(), Value::from(host));
    map.insert("port".into(), Value::from(port));
    map.insert("public_key".into(), Value::from(public_key));
    map.insert("metadata".into(), Value::Object(metadata.clone()));
    Value::Object(map)
}

/// The stored value, written like the original's `json.dumps(node_entry)`: `node_info`
/// fields in the original's order, then `signature`, then `signature_alg` when given.
pub fn encode_entry(node_info: &Value, signature: &str, signature_alg: Option<&str>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"node_info\": ");
    match node_info {
        Value::Object(map) => {
            out.push('{');
            let known = ["node_id", "host", "port", "public_key", "metadata"];
            let ordered = known
                .iter()
                .filter_map(|k| map.get_key_value(*k))
                .chain(map.iter().filter(|(k, _)| !known.contains(&k.as_str())));
            for (i, (key, value)) in ordered.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                canonical::write_str(&mut out, key);
                out.push_str(": ");
                canonical::write_value(&mut out, value, KeyOrder::Insertion);
            }
            out.push('}');
        }
        other => canonical::write_value(&mut out, other, KeyOrder::Insertion),
    }
    out.push_str(", \"signature\": ");
    canonical::write_str(&mut out, signature);
    if let Some(alg) = signature_alg {
        out.push_str(", \"");
        out.push_str(SIGNATURE_ALG_FIELD);
        out.push_str("\": ");
        canonical::write_str(&mut out, alg);
    }
    out.push('}');
    out
}

/// One entry under the prefix as the operator view (`isek nodes --etcd --json`) shows
/// it: also entries that fail to parse or verify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedEntry {
    /// The etcd key, lossily decoded when it is not UTF-8.
    pub key: String,
    /// `node_info.node_id`, when the entry parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// `node_info.host`, when the entry parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `node_info.port`, when the entry parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `node_info.metadata`, when the entry parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// `node_info.public_key`, when the entry parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The signature checked out against the entry's own public key, and the node id
    /// matches the key.
    pub verified: bool,
    /// The entry has no `signature_alg` (SHA-1, written by the original ISEK).
    pub legacy: bool,
    /// Why the entry is not verified, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The etcd lease the key is attached to (0 = none).
    pub lease: i64,
}
