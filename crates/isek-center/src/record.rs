//! [`NodeRecord`] and [`Owner`]: what the center keeps about one node, as plain values.
//!
//! Level 0 (pure): no locks, no I/O, no HTTP or SQL types. Every other layer passes
//! these around; nothing here knows where they are stored or how they are served.

use std::sync::Arc;

use isek::identity::PublicKey;

/// What the center keeps about one node besides its id and lease: compact, because a
/// million of them must fit in a few hundred MiB. Host and metadata share one
/// reference-counted allocation, so a clone costs two counter increments: a listing
/// copies the live records under the state lock that way and renders them after
/// releasing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The host followed by the metadata object as Flask-compatible compact JSON
    /// text (ready to splice into listings and to store, never re-parsed).
    text: Arc<str>,
    /// Length of the host prefix of `text` in bytes (hosts are at most 253 bytes).
    host_len: u32,
    /// Where peers reach the node (1..=65535).
    port: u16,
    /// Who owns the node when it was registered with a signature (`None`: unsigned,
    /// anyone may act on it as in the original protocol).
    owner: Option<Arc<Owner>>,
}

impl NodeRecord {
    /// A record from its parts (`metadata` must already be compact JSON object text).
    pub fn new(host: &str, port: u16, metadata: &str) -> Self {
        let mut text = String::with_capacity(host.len() + metadata.len());
        text.push_str(host);
        text.push_str(metadata);
        Self {
            text: Arc::from(text),
            host_len: u32::try_from(host.len()).unwrap_or(u32::MAX),
            port,
            owner: None,
        }
    }

    /// The same record owned by `owner` (a signed registration).
    pub fn with_owner(mut self, owner: Option<Arc<Owner>>) -> Self {
        self.owner = owner;
        self
    }

    /// The owner of a signed registration.
    pub fn owner(&self) -> Option<&Arc<Owner>> {
        self.owner.as_ref()
    }

    /// Where peers reach the node.
    pub fn host(&self) -> &str {
        self.text.get(..self.host_len as usize).unwrap_or("")
    }

    /// Where peers reach the node.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metadata object as compact JSON text.
    pub fn metadata(&self) -> &str {
        self.text.get(self.host_len as usize..).unwrap_or("{}")
    }
}

/// The owner of a signed registration.
#[derive(Debug, PartialEq, Eq)]
pub struct Owner {
    /// The key that signed the registration; renew/deregister signatures must verify
    /// with it and re-registrations must be signed by it.
    key: PublicKey,
    /// SHA-256 of the lease token given to the registrant (`None` when unknown, e.g.
    /// a store row without one): the token itself is never kept.
    token_hash: Option<[u8; 32]>,
}

impl Owner {
    /// An owner with `key` and the hash of its lease token.
    pub fn new(key: PublicKey, token_hash: Option<[u8; 32]>) -> Self {
        Self { key, token_hash }
    }

    /// The owner's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// SHA-256 of the owner's lease token, if known.
    pub fn token_hash(&self) -> Option<&[u8; 32]> {
        self.token_hash.as_ref()
    }
}
