//! [`Credentials`]: what an [`crate::IsekCenterRegistry`] proves ownership with.
//!
//! With a [`NodeIdentity`], registrations are signed (the etcd entry's `node_info` and
//! signature, plus a fresh op proof over `register`, the node id and a timestamp, see
//! [`crate::wire::proof`]) and the center answers with a lease token, kept here per
//! node id. Renew and deregister send the token when there is one (cheap for the
//! center), otherwise a fresh signature over the operation, the node id and a
//! timestamp. Timestamps are Unix milliseconds, strictly increasing per process
//! ([`crate::wire::proof::next_timestamp`]). Without an identity every body is the
//! original, unsigned one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::Metadata;
use crate::identity::NodeIdentity;
use crate::wire::center::RegisterRequest;
use crate::wire::proof::{ProofRequest, SignedRegisterRequest, next_timestamp};

/// A node identity and the lease tokens the center gave for it.
#[derive(Debug, Default)]
pub struct Credentials {
    /// The key registrations and operations are signed with; `None`: unsigned client.
    identity: Option<Arc<NodeIdentity>>,
    /// Lease token per node id, from the last signed registration of that node.
    tokens: Mutex<HashMap<String, String>>,
}

impl Credentials {
    /// Credentials signing with `identity`.
    pub fn new(identity: Option<Arc<NodeIdentity>>) -> Self {
        Self {
            identity,
            ..Self::default()
        }
    }

    /// The identity, if any.
    pub fn identity(&self) -> Option<&Arc<NodeIdentity>> {
        self.identity.as_ref()
    }

    /// The register body: signed with the identity (with a fresh op proof), or the
    /// original unsigned one.
    pub fn register_body(&self, node_id: &str, host: &str, port: u16, metadata: Metadata) -> Value {
        let body = match &self.identity {
            Some(identity) => serde_json::to_value(SignedRegisterRequest::sign(
                identity, node_id, host, port, metadata,
            )),
            None => serde_json::to_value(RegisterRequest {
                node_id: node_id.to_owned(),
                host: host.to_owned(),
                port,
                metadata,
            }),
        };
        body.unwrap_or(Value::Null)
    }

    /// Keeps (or, with `None`, forgets) the lease token of `node_id`.
    pub fn set_token(&self, node_id: &str, token: Option<String>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        match token {
            Some(token) => tokens.insert(node_id.to_owned(), token),
            None => tokens.remove(node_id),
        };
    }

    /// The lease token of `node_id`, if this client registered it.
    pub fn token(&self, node_id: &str) -> Option<String> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node_id)
            .cloned()
    }

    /// The body of a renew or deregister (`op`): the token if known (unless
    /// `prefer_signature`), else a signature, else the original `{"node_id"}`.
    pub fn operation_body(&self, op: &str, node_id: &str, prefer_signature: bool) -> ProofRequest {
        let token = (!prefer_signature).then(|| self.token(node_id)).flatten();
        if let Some(token) = token {
            return ProofRequest::with_token(node_id, &token);
        }
        match &self.identity {
            Some(identity) => ProofRequest::signed(identity, op, node_id, next_timestamp()),
            None => ProofRequest {
                node_id: node_id.to_owned(),
                ..ProofRequest::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bodies_carry_increasing_timestamps() {
        let c = Credentials::new(Some(Arc::new(NodeIdentity::generate())));
        let a = c.operation_body("renew", "n", true).timestamp;
        let b = c.operation_body("renew", "n", true).timestamp;
        assert!(b > a);
        let register = c.register_body("n", "h", 1, Metadata::new());
        assert!(register["timestamp"].as_u64() > b);
        assert!(register["op_signature"].is_string());
        let unsigned = Credentials::default().register_body("n", "h", 1, Metadata::new());
        assert!(unsigned.get("timestamp").is_none());
    }

    #[test]
    fn tokens_win_over_signatures_unless_asked() {
        let c = Credentials::new(Some(Arc::new(NodeIdentity::generate())));
        assert!(c.operation_body("renew", "n", false).signature.is_some());
        c.set_token("n", Some("t".into()));
        assert_eq!(
            c.operation_body("renew", "n", false).lease_token.as_deref(),
            Some("t")
        );
        assert!(c.operation_body("renew", "n", true).signature.is_some());
        c.set_token("n", None);
        assert!(c.token("n").is_none());
        let unsigned = Credentials::default();
        assert_eq!(
            unsigned.operation_body("renew", "n", false),
            ProofRequest {
                node_id: "n".into(),
                ..ProofRequest::default()
            }
        );
    }
}
