//! The ownership rules: who may renew, overwrite or deregister a registration.
//!
//! A node registered with a signature (see [`isek::wire::proof`]) has an [`Owner`]:
//! its public key and the SHA-256 of the lease token handed to the registrant. While
//! it is alive, every act on it must carry a proof, expressed as a [`Guard`] that the
//! store writer checks against the node's current owner at decision time (so a check
//! and the write it allows cannot be separated by another write):
//!
//! - [`Guard::Token`]: the hash of a presented lease token (cheap: no signature);
//! - [`Guard::Key`]: a key whose signature the handler already verified and whose
//!   timestamp the center accepted (inside the window, newer than the last one of
//!   that key for that id), before any other check: a refused registration has used
//!   its op proof up, like an accepted one;
//! - [`Guard::Unsigned`]: no proof at all (the original protocol) — allowed only on
//!   nodes that have no owner;
//! - [`Guard::Admin`]: the operator (admin token) or in-process callers.
//!
//! Refusals are [`Refusal`]s: a [`RefusalKind`] (what the caller can do about it) and a
//! message naming the missing proof. Level 0 (pure): no HTTP status, no store, no
//! lock on the registry; `http` alone maps a kind to a status.
//!
//! Replay: the registration signature covers only `node_info` (it is the etcd entry's
//! signature, which has no timestamp), so a signed registration also carries an op
//! proof (`timestamp`, `op_signature` over `{"node_id", "node_info_sha256", "op":
//! "register", "timestamp"}`: the digest binds it to that one record). Every signed
//! op's timestamp (Unix ms) goes through [`Horizons`]: within the window of the
//! center's clock, newer than the last one accepted for the node id *and key* (kept
//! after the node is deregistered or expired, for as long as it can matter), and
//! newer than the center's start (see [`Horizons::new`]).
//!
//! Why per key: a timestamp is used up as soon as its signature verifies, whatever
//! the answer, so no copy of a refused registration (503 full, 403, 409) can be
//! replayed for a token; keyed by id alone, that would let anyone with a key push a
//! node's horizon ahead and make its owner's next signed ops look like replays. A
//! signature by one key never acts on a node owned by another, so per key is as tight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use isek::identity::{PublicKey, Signature, SignatureAlg};
use isek::wire::proof::{
    NODE_INFO_DIGEST_FIELD, REGISTER_OP, TIMESTAMP_WINDOW_MS, operation_bytes,
    register_operation_bytes, unix_millis,
};
use sha2::{Digest, Sha256};

use crate::record::Owner;

/// Bytes of randomness in a lease token (256 bits).
const TOKEN_BYTES: usize = 32;

/// Most node ids [`Horizons`] remembers (about 100 MiB at worst); past half of it after
/// pruning, it forgets them all and raises its floor instead.
const MAX_HORIZONS: usize = 1 << 20;

/// Fewest entries before [`Horizons`] prunes (amortizes the walk).
const MIN_PRUNE_AT: usize = 1024;

/// The replay horizon of signed operations: per node id and key, the newest timestamp
/// accepted by any signed op (register, renew, deregister), whether the node is still
/// live or not and whether the op was then carried out or refused, so a captured
/// registration or signature cannot be replayed after its node was deregistered or
/// expired either. An entry matters only while its timestamp is inside the window (an
/// older timestamp is refused as stale anyway), so entries older than the window are
/// pruned and the table holds at most the (id, key) pairs signed for in the last
/// window.
#[derive(Debug)]
pub struct Horizons {
    /// The table, behind a lock held for one hash lookup (and, rarely, a prune).
    state: Mutex<HorizonState>,
}

/// The mutable part of [`Horizons`].
#[derive(Debug)]
struct HorizonState {
    /// Newest accepted timestamp (Unix ms) per node id and key digest.
    last: HashMap<(Box<str>, KeyDigest), u64>,
    /// Every timestamp at or below it is refused, for every id: the center's start,
    /// raised when the table overflowed and was forgotten.
    floor: u64,
    /// Table size at which the next prune runs.
    prune_at: usize,
}

/// SHA-256 of a key's base64 text: what [`Horizons`] tells keys apart by.
pub type KeyDigest = [u8; 32];

/// The [`KeyDigest`] of `key`.
pub fn key_digest(key: &PublicKey) -> KeyDigest {
    Sha256::digest(key.to_base64().as_bytes()).into()
}

impl Horizons {
    /// A horizon refusing every timestamp up to `floor` (the center's start, Unix ms).
    ///
    /// Across a restart two things keep a signature from being replayed. The floor:
    /// every signature accepted before the restart was made before the start by a
    /// client whose clock is not ahead of the center's, so it is refused after it, for
    /// every node id, at no cost. And for a client clock *ahead* by up to the window,
    /// the store: the timestamps of registrations (accepted or refused) and signed
    /// deregistrations are written in the same group commit as the row they go with
    /// (no extra fsync) and [`Horizons::restore`]d at start. Signed renewals, which
    /// never touch the store, keep only the floor: persisting them would cost an
    /// fsync per renew. Residual: a renew signed by a clock ahead by d can be replayed
    /// once within d after a restart; it extends the lease of the node its owner was
    /// renewing, and yields no token and no change of record. Price of the floor: a
    /// client whose clock is behind the center's by d gets its signed ops refused for
    /// d after a restart (it signs afresh and retries).
    pub fn new(floor: u64) -> Self {
        Self {
            state: Mutex::new(HorizonState {
                last: HashMap::new(),
                floor,
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }

    /// Accepts `timestamp` (Unix ms) for a signed op on `id` by `key` if it is within
    /// the window of `now`, newer than the floor and newer than every timestamp
    /// accepted for `id` and `key` before (atomically: two concurrent uses of one
    /// signature cannot both pass).
    pub fn accept(
        &self,
        id: &str,
        key: &PublicKey,
        timestamp: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        if timestamp.abs_diff(now) > TIMESTAMP_WINDOW_MS {
            let hint = if timestamp < 100_000_000_000 {
                " (timestamps are Unix milliseconds)"
            } else {
                ""
            };
            return Err(Refusal::forbidden(format!(
                "The signed timestamp {timestamp} is more than {TIMESTAMP_WINDOW_MS} ms from the center's clock ({now}){hint}."
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if timestamp <= state.floor {
            return Err(Refusal::forbidden(format!(
                "The signed timestamp {timestamp} is not newer than {}: signatures made before this center started (or before its replay table last overflowed) are refused; sign afresh.",
                state.floor
            )));
        }
        let slot = (Box::from(id), key_digest(key));
        match state.last.get_mut(&slot) {
            Some(last) if timestamp <= *last => Err(Refusal::forbidden(format!(
                "The signed timestamp {timestamp} is not newer than the last accepted one ({last}) for node '{id}' and this key: replayed signature."
            ))),
            Some(last) => {
                *last = timestamp;
                Ok(())
            }
            None => {
                state.last.insert(slot, timestamp);
                if state.last.len() >= state.prune_at {
                    state.prune(now);
                }
                Ok(())
            }
        }
    }

    /// Raises the horizon of `id` and `key` to `timestamp` (a stored one, at start).
    pub fn restore(&self, id: &str, key: &PublicKey, timestamp: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let last = state
            .last
            .entry((Box::from(id), key_digest(key)))
            .or_insert(timestamp);
        *last = (*last).max(timestamp);
        if state.last.len() >= state.prune_at {
            let now = unix_millis();
            state.prune(now);
        }
    }

    /// The newest timestamp accepted for `id` and `key`, if it is remembered.
    pub fn last(&self, id: &str, key: &PublicKey) -> Option<u64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last.get(&(Box::from(id), key_digest(key))).copied()
    }

    /// Number of (node id, key) pairs remembered.
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last.len()
    }

    /// Whether no (node id, key) pair is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HorizonState {
    /// Drops entries too old to matter; if more than half the cap is still left (that
    /// many ids signed within one window), forgets them all and raises the floor to
    /// the newest of them: conservative, it may refuse fresh ops, never admit a replay.
    fn prune(&mut self, now: u64) {
        let oldest_useful = now.saturating_sub(TIMESTAMP_WINDOW_MS);
        self.last.retain(|_, last| *last >= oldest_useful);
        if self.last.len() > MAX_HORIZONS / 2 {
            let newest = self.last.values().copied().max().unwrap_or(0);
            tracing::warn!(
                ids = self.last.len(),
                floor = newest,
                "too many node ids signed within one window: replay horizon collapsed to a floor"
            );
            self.floor = self.floor.max(newest);
            self.last = HashMap::new();
        }
        self.prune_at = (self.last.len() * 2).max(MIN_PRUNE_AT);
    }
}

/// What kind of refusal: decides the answer (`http` maps it to a status) without this
/// layer knowing HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// A proof is missing or wrong (403).
    Forbidden,
    /// The center requires signed registrations and this one is unsigned (401).
    SignatureRequired,
    /// The center holds its maximum number of nodes (503).
    Full,
    /// The new id looks like a live node's (same confusable skeleton) and the center
    /// refuses look-alikes (409).
    LookAlike,
    /// A resource the act needs is missing, e.g. randomness for a token (503).
    Unavailable,
}

/// Why an act on a node was refused: its kind and the envelope message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// What kind of refusal (the HTTP layer's status).
    pub kind: RefusalKind,
    /// Envelope message naming the missing or wrong proof.
    pub message: String,
}

impl Refusal {
    /// A refusal for a missing or wrong proof.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(RefusalKind::Forbidden, message)
    }

    /// A refusal of `kind` with `message`.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The proof an act carries, checked against the node's current owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The operator or an in-process caller: no check.
    Admin,
    /// No proof (the original protocol): only nodes without an owner.
    Unsigned,
    /// A verified signature by this key.
    Key(PublicKey),
    /// SHA-256 of a presented lease token.
    Token([u8; 32]),
}

impl Guard {
    /// Whether a registration with this proof may replace `current` (the owner of the
    /// live node with that id, `None` when it is absent or unsigned).
    pub fn check_register(&self, id: &str, current: Option<&Owner>) -> Result<(), Refusal> {
        let Some(owner) = current else {
            return Ok(());
        };
        match self {
            Self::Admin => Ok(()),
            Self::Key(key) if key == owner.key() => Ok(()),
            Self::Key(_) => Err(Refusal::forbidden(format!(
                "Node '{id}' is owned by another key: the registration is signed by a different key."
            ))),
            Self::Unsigned | Self::Token(_) => Err(Refusal::forbidden(format!(
                "Node '{id}' is owned by a key: re-registering it needs a signature by that key."
            ))),
        }
    }

    /// Whether a renew or deregister with this proof may act on `current` (the owner
    /// of the live node, `None` when it is unsigned).
    pub fn check_act(&self, id: &str, current: Option<&Owner>) -> Result<(), Refusal> {
        let Some(owner) = current else {
            return Ok(());
        };
        match self {
            Self::Admin => Ok(()),
            Self::Unsigned => Err(Refusal::forbidden(format!(
                "Node '{id}' is owned by a key: this needs its 'lease_token' or a 'signature' with a 'timestamp'."
            ))),
            Self::Key(key) if key == owner.key() => Ok(()),
            Self::Key(_) => Err(Refusal::forbidden(format!(
                "Node '{id}' is owned by another key: the signature does not prove ownership."
            ))),
            Self::Token(hash) => match owner.token_hash() {
                Some(expected) if constant_time_eq(hash, expected) => Ok(()),
                _ => Err(Refusal::forbidden(format!(
                    "The 'lease_token' is not the one issued for node '{id}'."
                ))),
            },
        }
    }
}

/// Equality of two hashes whose running time does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A fresh lease token (256 random bits, base64url) and its SHA-256.
pub fn new_token() -> Result<(String, [u8; 32]), Refusal> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        Refusal::new(
            RefusalKind::Unavailable,
            format!("No randomness available for a lease token: {e}."),
        )
    })?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// SHA-256 of a token as presented.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a presented admin token matches the configured hash (constant time).
pub fn is_admin_token(presented: &str, expected: &[u8; 32]) -> bool {
    constant_time_eq(&hash_token(presented.trim()), expected)
}

/// Unix milliseconds now, the unit of signed timestamps (0 before 1970).
pub fn unix_now() -> u64 {
    unix_millis()
}

/// The proof a renew or deregister body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Nothing: the original protocol.
    None,
    /// A lease token (its SHA-256).
    Token([u8; 32]),
    /// A signature over the operation, the node id and a timestamp.
    Signature {
        /// The raw signature.
        signature: Signature,
        /// Its hash algorithm.
        alg: SignatureAlg,
        /// Unix milliseconds it claims to be made at.
        timestamp: u64,
    },
}

/// A verified signed registration: who signed it and when its op proof was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The key both signatures verify with: the node's owner once registered.
    pub key: PublicKey,
    /// The op proof's timestamp (Unix ms), still to be accepted by [`Horizons`] (by the
    /// writer, once the ownership check passed).
    pub timestamp: u64,
}

/// Checks the `node_info` signature of a signed registration of `node_id`: `message`
/// is the canonical `node_info` text it signs (see `isek::wire::proof`).
pub fn verify_registration(
    node_id: &str,
    key: &PublicKey,
    message: &[u8],
    signature: &Signature,
    alg: SignatureAlg,
) -> Result<(), Refusal> {
    key.verify(message, signature, alg).map_err(|_| {
        Refusal::forbidden(format!(
            "The registration signature of node '{node_id}' does not verify with its 'public_key'."
        ))
    })
}

/// The refusal of a signed registration without an op proof: the `node_info`
/// signature has no time in it (it is the etcd entry's), so a copy of the
/// registration could be replayed.
pub fn missing_op_proof(node_id: &str) -> Refusal {
    Refusal::forbidden(format!(
        "A signed registration needs an op proof: 'timestamp' (Unix milliseconds) and 'op_signature', a signature by the same key over {{\"node_id\", \"{NODE_INFO_DIGEST_FIELD}\", \"op\": \"{REGISTER_OP}\", \"timestamp\"}}; without it, node '{node_id}' is refused (a copy of a registration must not be replayable)."
    ))
}

/// Checks the op proof of a signed registration (`register`, the node id, the
/// timestamp and `node_info_digest`, the digest of the record it registers, signed by
/// the same key).
pub fn verify_register_op(
    node_id: &str,
    key: &PublicKey,
    timestamp: u64,
    node_info_digest: &str,
    op_signature: &Signature,
    alg: SignatureAlg,
) -> Result<(), Refusal> {
    key.verify(
        &register_operation_bytes(node_id, timestamp, node_info_digest),
        op_signature,
        alg,
    )
    .map_err(|_| {
        Refusal::forbidden(format!(
            "The '{REGISTER_OP}' op signature of node '{node_id}' does not verify with its 'public_key' over this registration ('{NODE_INFO_DIGEST_FIELD}' is the SHA-256 of the signed node_info)."
        ))
    })
}

/// Checks the signature of a renew or deregister (`op`) on `id` with the key of its
/// `owner`, then accepts its timestamp in `horizons` (window, no replay); the guard
/// it earns.
pub fn verify_act(
    op: &str,
    id: &str,
    owner: &Owner,
    signature: &Signature,
    alg: SignatureAlg,
    timestamp: u64,
    horizons: &Horizons,
) -> Result<Guard, Refusal> {
    owner
        .key()
        .verify(&operation_bytes(op, id, timestamp), signature, alg)
        .map_err(|_| {
            Refusal::forbidden(format!(
                "The '{op}' signature does not verify with the key that owns node '{id}'."
            ))
        })?;
    horizons.accept(id, owner.key(), timestamp, unix_millis())?;
    Ok(Guard::Key(owner.key().clone()))
}

/// A new owner for a verified registration by `key`, with a fresh token.
pub fn new_owner(key: PublicKey) -> Result<(Arc<Owner>, String), Refusal> {
    let (token, hash) = new_token()?;
    Ok((Arc::new(Owner::new(key, Some(hash))), token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use isek::identity::NodeIdentity;

    #[test]
    fn timestamps_must_be_fresh_increasing_per_id_and_key_and_after_the_start() {
        let start = 1_700_000_000_000;
        let h = Horizons::new(start);
        let k = NodeIdentity::generate().public_key().clone();
        let other = NodeIdentity::generate().public_key().clone();
        let now = start + 60_000;
        assert!(h.accept("a", &k, now, now).is_ok());
        assert!(h.accept("a", &k, now, now).is_err(), "replay");
        assert!(h.accept("a", &k, now - 1, now).is_err(), "older");
        assert!(h.accept("b", &k, now - 1, now).is_ok(), "per id");
        assert!(h.accept("a", &other, now - 1, now).is_ok(), "per key");
        assert_eq!(h.last("a", &k), Some(now));
        assert!(h.accept("a", &k, now + 30_001, now).is_err(), "future");
        assert!(h.accept("a", &k, now + 30_000, now).is_ok());
        assert!(h.accept("c", &k, now - 30_001, now).is_err(), "stale");
        let seconds = h.accept("c", &k, now / 1000, now).unwrap_err();
        assert!(seconds.message.contains("milliseconds"), "{seconds}");
        // Made before the start: refused even within the window.
        let early = Horizons::new(now);
        assert!(early.accept("d", &k, now - 5, now).is_err());
        assert!(early.accept("d", &k, now, now).is_err());
        assert!(early.accept("d", &k, now + 1, now).is_ok());
    }

    #[test]
    fn horizons_forget_what_is_out_of_the_window_and_collapse_when_overfull() {
        let h = Horizons::new(0);
        let k = NodeIdentity::generate().public_key().clone();
        let t0 = 1_700_000_000_000;
        for i in 0..MIN_PRUNE_AT - 1 {
            assert!(h.accept(&format!("old-{i}"), &k, t0, t0).is_ok());
        }
        assert_eq!(h.len(), MIN_PRUNE_AT - 1);
        // One window later the next insert prunes every old entry.
        let t1 = t0 + TIMESTAMP_WINDOW_MS + 1;
        assert!(h.accept("new", &k, t1, t1).is_ok());
        assert_eq!(h.len(), 1);
        assert_eq!(h.last("new", &k), Some(t1));
        assert_eq!(h.last("old-0", &k), None);
        // Overfull within one window: everything up to the newest is refused.
        let mut state = HorizonState {
            last: (0..=MAX_HORIZONS / 2)
                .map(|i| ((i.to_string().into_boxed_str(), [0; 32]), t1 + i as u64 % 7))
                .collect(),
            floor: 0,
            prune_at: 0,
        };
        state.prune(t1);
        assert!(state.last.is_empty());
        assert_eq!(state.floor, t1 + 6);
    }

    #[test]
    fn guards_follow_ownership() {
        let a = NodeIdentity::generate().public_key().clone();
        let b = NodeIdentity::generate().public_key().clone();
        let (token, hash) = new_token().unwrap_or_else(|e| panic!("{e:?}"));
        assert!(token.len() >= 43);
        let owner = Owner::new(a.clone(), Some(hash));
        for guard in [Guard::Unsigned, Guard::Key(b.clone()), Guard::Token(hash)] {
            assert!(
                guard.check_register("n", Some(&owner)).is_err(),
                "{guard:?}"
            );
            assert!(guard.check_register("n", None).is_ok());
        }
        assert!(
            Guard::Key(a.clone())
                .check_register("n", Some(&owner))
                .is_ok()
        );
        assert!(Guard::Unsigned.check_act("n", Some(&owner)).is_err());
        assert!(Guard::Key(b).check_act("n", Some(&owner)).is_err());
        assert!(
            Guard::Token(hash_token("wrong"))
                .check_act("n", Some(&owner))
                .is_err()
        );
        assert!(
            Guard::Token(hash_token(&token))
                .check_act("n", Some(&owner))
                .is_ok()
        );
        assert!(Guard::Key(a).check_act("n", Some(&owner)).is_ok());
        assert!(Guard::Admin.check_act("n", Some(&owner)).is_ok());
        assert!(Guard::Unsigned.check_act("n", None).is_ok());
    }
}
