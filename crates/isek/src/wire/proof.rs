//! Proofs of ownership on the Isek Center protocol: signed registrations, lease
//! tokens, and signed renew/deregister operations.
//!
//! A signed registration carries the same `node_info` and signature as an etcd entry
//! ([`crate::wire::etcd`]): the signature covers `json.dumps(node_info, sort_keys=True)`
//! of `{"node_id", "host", "port", "public_key", "metadata"}`. That signature has no
//! time in it (an etcd entry has none), so a registration also carries an *op proof*:
//! `timestamp` and `op_signature`, a signature by the same key over the canonical
//! JSON of `{"node_id", "node_info_sha256", "op": "register", "timestamp"}`, where
//! `node_info_sha256` is the lowercase hex SHA-256 of the `node_info` bytes the
//! registration signs ([`register_operation_bytes`]). Without it, anyone holding a
//! copy of a signed registration could replay it and receive a lease token; with the
//! digest, an op proof cannot be paired with another signed record of the same id
//! (an older entry read from etcd, say). The center accepts each op proof once,
//! whatever the answer (a registration refused with 503 has used its timestamp up), so
//! no copy of a refused or older registration yields a token. The center answers
//! `data: {"lease_token": "..."}`, a secret only the registrant sees.
//!
//! Renew and deregister prove ownership with that token (`lease_token`) or with a
//! signature over the canonical JSON of `{"op", "node_id", "timestamp"}`.
//!
//! Every `timestamp` is Unix **milliseconds** (so two processes signing with one key
//! rarely collide, and one process never needs to run ahead of the clock). The center
//! accepts one only within [`TIMESTAMP_WINDOW_MS`] of its clock and only if newer than
//! the last one it accepted for that node id and key (no replay), whatever the op.
//! `signature_alg` applies to both signatures of a registration. Unsigned bodies (the
//! original protocol) omit every extra field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use sha2::{Digest, Sha256};

use crate::Metadata;
use crate::canonical;
use crate::identity::{NodeIdentity, SignatureAlg};

/// `op` of a registration's op proof.
pub const REGISTER_OP: &str = "register";
/// `op` of a signed renew.
pub const RENEW_OP: &str = "renew";
/// `op` of a signed deregister.
pub const DEREGISTER_OP: &str = "deregister";
/// How far (milliseconds, i.e. 30 s) a signed operation's timestamp may be from the
/// center's clock.
pub const TIMESTAMP_WINDOW_MS: u64 = 30_000;
/// Header carrying the admin token: `Authorization: Bearer <token>`.
pub const ADMIN_AUTH_SCHEME: &str = "Bearer ";

/// Body of a signed `POST /isek_center/register` (the unsigned fields are the
/// original's; the center ignores unknown fields of unsigned bodies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRegisterRequest {
    /// Id of the node to register.
    pub node_id: String,
    /// Where peers reach the node.
    pub host: String,
    /// Where peers reach the node.
    pub port: u16,
    /// The node's agent card (signed as an object, `{}` when empty).
    #[serde(default)]
    pub metadata: Metadata,
    /// Base64 raw `X||Y` P-256 key of the owner.
    pub public_key: String,
    /// Base64 raw `r||s` signature over [`registration_bytes`].
    pub signature: String,
    /// `"ES256"` (SHA-256, what this crate sends); absent means the original's
    /// SHA-1, exactly as in an etcd entry ([`crate::identity::SignatureAlg::from_entry_field`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_alg: Option<String>,
    /// Unix milliseconds the op proof was made at (fresh: within the window, and newer
    /// than anything the center accepted for this node id).
    pub timestamp: u64,
    /// Base64 `r||s` signature by the same key over
    /// [`register_operation_bytes`] (`register`, the node id, the timestamp and the
    /// digest of the signed `node_info`): makes the registration unreplayable although
    /// `signature` (the etcd entry's) has no time in it, and binds it to this record.
    pub op_signature: String,
}

/// `data` of a successful signed registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterData {
    /// Secret proving ownership on renew and deregister; only the registrant sees it.
    pub lease_token: String,
}

/// Body of `POST /isek_center/renew` or `/deregister` with an optional proof.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProofRequest {
    /// Id of the node to act on.
    pub node_id: String,
    /// The lease token from registration (cheapest proof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    /// Base64 `r||s` signature over [`operation_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Algorithm of `signature`: `"ES256"`, or absent for legacy SHA-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_alg: Option<String>,
    /// Unix milliseconds the signature was made at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// The `node_info` object a registration signs (same as the etcd entry's).
pub fn registration_node_info(
    node_id: &str,
    host: &str,
    port: u16,
    public_key: &str,
    metadata: &Metadata,
) -> Value {
    crate::wire::etcd::node_info_value(node_id, host, port, public_key, metadata)
}

/// The bytes a registration signature covers: `json.dumps(node_info, sort_keys=True)`.
pub fn registration_bytes(node_info: &Value) -> Vec<u8> {
    canonical::to_sorted_bytes(node_info)
}

/// The bytes a renew or deregister signature covers: canonical sorted JSON of
/// `{"node_id": ..., "op": ..., "timestamp": ...}`.
pub fn operation_bytes(op: &str, node_id: &str, timestamp: u64) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("op".into(), Value::from(op));
    map.insert("node_id".into(), Value::from(node_id));
    map.insert("timestamp".into(), Value::from(timestamp));
    canonical::to_sorted_bytes(&Value::Object(map))
}

/// Field of a registration's op proof holding [`node_info_digest`].
pub const NODE_INFO_DIGEST_FIELD: &str = "node_info_sha256";

/// Lowercase hex SHA-256 of the canonical `node_info` bytes a registration signs
/// ([`registration_bytes`]): what binds the op proof to one record.
pub fn node_info_digest(registration_bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(registration_bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The bytes a registration's op proof covers: canonical sorted JSON of
/// `{"node_id", "node_info_sha256", "op": "register", "timestamp"}`.
pub fn register_operation_bytes(node_id: &str, timestamp: u64, node_info_digest: &str) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("op".into(), Value::from(REGISTER_OP));
    map.insert("node_id".into(), Value::from(node_id));
    map.insert("timestamp".into(), Value::from(timestamp));
    map.insert(NODE_INFO_DIGEST_FIELD.into(), Value::from(node_info_digest));
    canonical::to_sorted_bytes(&Value::Object(map))
}

/// Last timestamp [`next_timestamp`] handed out in this process.
static LAST_TIMESTAMP: AtomicU64 = AtomicU64::new(0);

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A timestamp for a signed operation: now in Unix milliseconds, but strictly after
/// every one handed out before in this process (the center refuses a timestamp that
/// is not newer than the last one it accepted for a node).
pub fn next_timestamp() -> u64 {
    let now = unix_millis();
    let previous = LAST_TIMESTAMP
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    now.max(previous.saturating_add(1))
}

impl SignedRegisterRequest {
    /// A registration signed by `identity` with ES256, its op proof made now
    /// ([`next_timestamp`]).
    pub fn sign(
        identity: &NodeIdentity,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
    ) -> Self {
        Self::sign_at(identity, node_id, host, port, metadata, next_timestamp())
    }

    /// A registration signed by `identity` with ES256, its op proof made at
    /// `timestamp` (Unix milliseconds).
    pub fn sign_at(
        identity: &NodeIdentity,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
        timestamp: u64,
    ) -> Self {
        let public_key = identity.public_key().to_base64().to_owned();
        let node_info = registration_node_info(node_id, host, port, &public_key, &metadata);
        let signed = registration_bytes(&node_info);
        let signature = identity.sign(&signed).to_base64();
        let op_signature = identity
            .sign(&register_operation_bytes(
                node_id,
                timestamp,
                &node_info_digest(&signed),
            ))
            .to_base64();
        Self {
            node_id: node_id.to_owned(),
            host: host.to_owned(),
            port,
            metadata,
            public_key,
            signature,
            signature_alg: Some(SignatureAlg::ES256_NAME.to_owned()),
            timestamp,
            op_signature,
        }
    }
}

impl ProofRequest {
    /// A renew or deregister (`op`) of `node_id` proved by its lease token.
    pub fn with_token(node_id: &str, token: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            lease_token: Some(token.to_owned()),
            ..Self::default()
        }
    }

    /// A renew or deregister (`op`) of `node_id` signed by `identity` (ES256) at
    /// `timestamp` (Unix milliseconds, see [`next_timestamp`]).
    pub fn signed(identity: &NodeIdentity, op: &str, node_id: &str, timestamp: u64) -> Self {
        let signature = identity.sign(&operation_bytes(op, node_id, timestamp));
        Self {
            node_id: node_id.to_owned(),
            lease_token: None,
            signature: Some(signature.to_base64()),
            signature_alg: Some(SignatureAlg::ES256_NAME.to_owned()),
            timestamp: Some(timestamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_bytes_are_sorted_python_json() {
        assert_eq!(
            String::from_utf8(operation_bytes(RENEW_OP, "n-1", 1_700_000_000_123)).ok(),
            Some(r#"{"node_id": "n-1", "op": "renew", "timestamp": 1700000000123}"#.to_owned())
        );
    }

    #[test]
    fn timestamps_are_milliseconds_and_strictly_increase() {
        let a = next_timestamp();
        let b = next_timestamp();
        assert!(b > a);
        // Milliseconds: after 2001-09-09 in ms, far beyond any date in seconds.
        assert!(a > 1_000_000_000_000);
    }

    #[test]
    fn a_registration_carries_an_op_proof_by_the_same_key_bound_to_its_record() {
        let identity = NodeIdentity::generate();
        let r = SignedRegisterRequest::sign_at(&identity, "n", "h", 1, Metadata::new(), 42);
        assert_eq!(r.timestamp, 42);
        let key = identity.public_key();
        let node_info = registration_node_info("n", "h", 1, key.to_base64(), &Metadata::new());
        let digest = node_info_digest(&registration_bytes(&node_info));
        assert_eq!(digest.len(), 64);
        let verifies = |bytes: &[u8]| {
            crate::identity::Signature::from_base64(&r.op_signature)
                .ok()
                .is_some_and(|s| key.verify(bytes, &s, SignatureAlg::Es256).is_ok())
        };
        assert!(verifies(&register_operation_bytes("n", 42, &digest)));
        // Not the op proof of another record (here: port 2) or of the bare op.
        let other = registration_node_info("n", "h", 2, key.to_base64(), &Metadata::new());
        let other = node_info_digest(&registration_bytes(&other));
        assert!(!verifies(&register_operation_bytes("n", 42, &other)));
        assert!(!verifies(&operation_bytes(REGISTER_OP, "n", 42)));
        assert_eq!(
            String::from_utf8(register_operation_bytes("n", 7, "ab")).ok(),
            Some(
                r#"{"node_id": "n", "node_info_sha256": "ab", "op": "register", "timestamp": 7}"#
                    .to_owned()
            )
        );
    }
}
