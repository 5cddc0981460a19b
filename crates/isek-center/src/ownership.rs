//! Ownership of nodes: who may renew, overwrite or deregister a registration.
//!
//! A node registered with a signature (see [`isek::wire::proof`]) has an [`Owner`]:
//! its public key and the SHA-256 of the lease token handed to the registrant. While
//! it is alive, every act on it must carry a proof, expressed as a [`Guard`] that the
//! store writer checks against the node's current owner at decision time (so a check
//! and the write it allows cannot be separated by another write):
//!
//! - [`Guard::Token`]: the hash of a presented lease token (cheap: no signature);
//! - [`Guard::Key`]: a key whose signature the handler already verified (and, for
//!   renew/deregister, whose timestamp it accepted: inside the window, newer than the
//!   last one; a registration's op-proof timestamp is accepted by the writer, once the
//!   ownership check passed, so a refused registration consumes nothing);
//! - [`Guard::Unsigned`]: no proof at all (the original protocol) — allowed only on
//!   nodes that have no owner;
//! - [`Guard::Admin`]: the operator (admin token) or in-process callers.
//!
//! Refusals are [`Refusal`]s: a status and a message naming the missing proof.
//!
//! Replay: the registration signature covers only `node_info` (it is the etcd entry's
//! signature, which has no timestamp), so a signed registration also carries an op
//! proof (`timestamp`, `op_signature` over `{"node_id", "op": "register",
//! "timestamp"}`). Every signed op's timestamp (Unix ms) goes through [`Horizons`]:
//! within the window of the center's clock, newer than the last one accepted for the
//! node id (kept after the node is deregistered or expired, for as long as it can
//! matter), and newer than the center's start (see [`Horizons::new`] for why that
//! replaces persisting the timestamps).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use isek::canonical::write_str;
use isek::identity::{PublicKey, Signature, SignatureAlg};
use isek::wire::proof::{ADMIN_AUTH_SCHEME, DEREGISTER_OP, RENEW_OP, operation_bytes};
use isek::wire::proof::{REGISTER_OP, TIMESTAMP_WINDOW_MS, unix_millis};
use isek::wire::proof::{registration_bytes, registration_node_info};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::registry::{Center, NodeRecord};
use crate::request::{Rejection, node_id_of, registration_of};
use crate::writer::{WriteError, WriteOp};

/// Bytes of randomness in a lease token (256 bits).
const TOKEN_BYTES: usize = 32;

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

/// Most node ids [`Horizons`] remembers (about 100 MiB at worst); past half of it after
/// pruning, it forgets them all and raises its floor instead.
const MAX_HORIZONS: usize = 1 << 20;

/// Fewest entries before [`Horizons`] prunes (amortizes the walk).
const MIN_PRUNE_AT: usize = 1024;

/// The replay horizon of signed operations: per node id, the newest timestamp accepted
/// by any signed op (register, renew, deregister), whether the node is still live or
/// not, so a captured registration or signature cannot be replayed after its node was
/// deregistered or expired either. An entry matters only while its timestamp is inside
/// the window (an older timestamp is refused as stale anyway), so entries older than
/// the window are pruned and the table holds at most the ids signed for in the last
/// window.
#[derive(Debug)]
pub struct Horizons {
    /// The table, behind a lock held for one hash lookup (and, rarely, a prune).
    state: Mutex<HorizonState>,
}

/// The mutable part of [`Horizons`].
#[derive(Debug)]
struct HorizonState {
    /// Newest accepted timestamp (Unix ms) per node id.
    last: HashMap<Box<str>, u64>,
    /// Every timestamp at or below it is refused, for every id: the center's start,
    /// raised when the table overflowed and was forgotten.
    floor: u64,
    /// Table size at which the next prune runs.
    prune_at: usize,
}

impl Horizons {
    /// A horizon refusing every timestamp up to `floor` (the center's start, Unix ms).
    ///
    /// Why a start-time floor instead of persisting accepted timestamps: persisting
    /// would cost a store write (an fsync) per signed renew, which otherwise never
    /// touches the store, while the floor costs nothing and covers every node id, also
    /// those deregistered just before the restart (no longer in the store). Every
    /// signature accepted before the restart was made before the start by a client
    /// whose clock is not ahead of the center's, so it is refused after it. Price: a
    /// client whose clock is behind the center's by d gets its signed ops refused for d
    /// after a restart (it signs afresh and retries); residual hole: a client clock
    /// *ahead* by d (at most the 30 s window) leaves its last d of pre-restart
    /// signatures replayable once right after a restart that follows within d.
    pub fn new(floor: u64) -> Self {
        Self {
            state: Mutex::new(HorizonState {
                last: HashMap::new(),
                floor,
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }

    /// Accepts `timestamp` (Unix ms) for a signed op on `id` if it is within the window
    /// of `now`, newer than the floor and newer than every timestamp accepted for `id`
    /// before (atomically: two concurrent uses of one signature cannot both pass).
    pub fn accept(&self, id: &str, timestamp: u64, now: u64) -> Result<(), Refusal> {
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
        match state.last.get_mut(id) {
            Some(last) if timestamp <= *last => Err(Refusal::forbidden(format!(
                "The signed timestamp {timestamp} is not newer than the last accepted one ({last}) for node '{id}': replayed signature."
            ))),
            Some(last) => {
                *last = timestamp;
                Ok(())
            }
            None => {
                state.last.insert(Box::from(id), timestamp);
                if state.last.len() >= state.prune_at {
                    state.prune(now);
                }
                Ok(())
            }
        }
    }

    /// The newest timestamp accepted for `id`, if it is remembered.
    pub fn last(&self, id: &str) -> Option<u64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last.get(id).copied()
    }

    /// Number of node ids remembered.
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last.len()
    }

    /// Whether no node id is remembered.
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

/// Why an act on a node was refused (status and envelope message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// HTTP status: 403 for a missing or wrong proof, 503 when the center is full.
    pub status: StatusCode,
    /// Envelope message naming the missing or wrong proof.
    pub message: String,
}

impl Refusal {
    /// A 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }
}

impl From<Refusal> for Rejection {
    fn from(r: Refusal) -> Self {
        Rejection {
            status: r.status,
            message: r.message,
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
pub fn new_token() -> Result<(String, [u8; 32]), Rejection> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Rejection {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("No randomness available for a lease token: {e}."),
    })?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// SHA-256 of a token as presented.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
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

/// A string field of a body: absent/null => `None`, a non-string => 400.
fn optional_str<'a>(
    body: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Rejection> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::bad_request(format!(
            "'{name}' must be a string."
        ))),
    }
}

/// The `signature_alg` of a body (absent: legacy SHA-1, as in etcd entries).
fn alg_of(body: &Map<String, Value>) -> Result<SignatureAlg, Rejection> {
    let field = optional_str(body, "signature_alg")?;
    SignatureAlg::from_entry_field(field).ok_or_else(|| {
        Rejection::bad_request(format!(
            "'signature_alg' must be '{}' or absent (legacy SHA-1).",
            SignatureAlg::ES256_NAME
        ))
    })
}

/// The `timestamp` of a body: absent/null => `None`, not a non-negative integer => 400.
fn timestamp_of(body: &Map<String, Value>) -> Result<Option<u64>, Rejection> {
    match body.get("timestamp") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(_) => Err(Rejection::bad_request(
            "'timestamp' must be a non-negative integer (Unix milliseconds).",
        )),
    }
}

/// Reads the proof of a renew or deregister body (a token wins over a signature).
pub fn proof_of(body: &Map<String, Value>) -> Result<Proof, Rejection> {
    if let Some(token) = optional_str(body, "lease_token")? {
        return Ok(Proof::Token(hash_token(token)));
    }
    let Some(signature) = optional_str(body, "signature")? else {
        return Ok(Proof::None);
    };
    let signature = Signature::from_base64(signature)
        .map_err(|e| Rejection::bad_request(format!("'signature': {e}.")))?;
    let Some(timestamp) = timestamp_of(body)? else {
        return Err(Rejection::bad_request(
            "A 'signature' needs a 'timestamp' (integer Unix milliseconds).",
        ));
    };
    Ok(Proof::Signature {
        signature,
        alg: alg_of(body)?,
        timestamp,
    })
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

/// Verifies the signatures of a register body, if it has them: `None` for an unsigned
/// registration, the signer for a valid signed one (its `node_info` signature AND its
/// op proof over `register`, the node id and the timestamp), 400/403 otherwise.
pub fn registration_signer(body: &Map<String, Value>) -> Result<Option<Signer>, Rejection> {
    let key = optional_str(body, "public_key")?;
    let signature = optional_str(body, "signature")?;
    let (key, signature) = match (key, signature) {
        (None, None) => return Ok(None),
        (Some(k), Some(s)) => (k, s),
        _ => {
            return Err(Rejection::bad_request(
                "A signed registration needs both 'public_key' and 'signature'.",
            ));
        }
    };
    let key = PublicKey::from_base64(key)
        .map_err(|e| Rejection::bad_request(format!("'public_key': {e}.")))?;
    let signature = Signature::from_base64(signature)
        .map_err(|e| Rejection::bad_request(format!("'signature': {e}.")))?;
    let alg = alg_of(body)?;
    // Fields were validated by `registration_of` before; rebuild node_info from them.
    let (Some(Value::String(node_id)), Some(Value::String(host)), Some(port)) = (
        body.get("node_id"),
        body.get("host"),
        body.get("port").and_then(Value::as_u64),
    ) else {
        return Err(Rejection::bad_request(
            "'node_id', 'host', and 'port' are required fields.",
        ));
    };
    let port = u16::try_from(port)
        .map_err(|_| Rejection::bad_request("'port' must be between 1 and 65535."))?;
    let empty = Map::new();
    let metadata = match body.get("metadata") {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let node_info = registration_node_info(node_id, host, port, key.to_base64(), metadata);
    key.verify(&registration_bytes(&node_info), &signature, alg)
        .map_err(|_| {
            Rejection::from(Refusal::forbidden(format!(
                "The registration signature of node '{node_id}' does not verify with its 'public_key'."
            )))
        })?;
    // The node_info signature has no time in it (it is the etcd entry's): without a
    // fresh op proof, a copy of the registration could be replayed.
    let (Some(timestamp), Some(op_signature)) =
        (timestamp_of(body)?, optional_str(body, "op_signature")?)
    else {
        return Err(Refusal::forbidden(format!(
            "A signed registration needs an op proof: 'timestamp' (Unix milliseconds) and 'op_signature', a signature by the same key over {{\"node_id\", \"op\": \"{REGISTER_OP}\", \"timestamp\"}}; without it, node '{node_id}' is refused (a copy of a registration must not be replayable)."
        ))
        .into());
    };
    let op_signature = Signature::from_base64(op_signature)
        .map_err(|e| Rejection::bad_request(format!("'op_signature': {e}.")))?;
    key.verify(
        &operation_bytes(REGISTER_OP, node_id, timestamp),
        &op_signature,
        alg,
    )
    .map_err(|_| {
        Rejection::from(Refusal::forbidden(format!(
            "The '{REGISTER_OP}' op signature of node '{node_id}' does not verify with its 'public_key'."
        )))
    })?;
    Ok(Some(Signer { key, timestamp }))
}

/// A new owner for a verified registration by `key`, with a fresh token.
pub fn new_owner(key: PublicKey) -> Result<(Arc<Owner>, String), Rejection> {
    let (token, hash) = new_token()?;
    Ok((Arc::new(Owner::new(key, Some(hash))), token))
}

/// Who may act on nodes: the operator's security settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Refuse unsigned registrations (`--require-signatures`); by default the
    /// original, unsigned protocol is accepted for nodes without an owner.
    pub require_signatures: bool,
    /// SHA-256 of the admin token (`--admin-token-file` / `ISEK_ADMIN_TOKEN`); `None`:
    /// no admin operation exists.
    pub admin_token_hash: Option<[u8; 32]>,
    /// Most nodes the center holds (`--max-nodes`); registrations of new ids beyond it
    /// get 503. `None`: unbounded.
    pub max_nodes: Option<usize>,
}

impl Security {
    /// These settings with an admin token (only its hash is kept).
    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin_token_hash = Some(hash_token(token.trim()));
        self
    }

    /// Whether `headers` carry `Authorization: Bearer <admin token>`; always false
    /// without a configured token.
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.admin_token_hash else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(ADMIN_AUTH_SCHEME))
            .is_some_and(|token| constant_time_eq(&hash_token(token.trim()), expected))
    }
}

impl Center {
    /// The owner of the live node `id`, if it has one.
    pub fn owner_of(&self, id: &str) -> Option<Arc<Owner>> {
        let now = Instant::now();
        let state = self.core().lock();
        state
            .leases
            .get(id, now)
            .and_then(|e| e.value.owner().cloned())
    }

    /// Registers `id` if `guard` proves the right to replace the live node (if any);
    /// the check and the write happen together in the store writer.
    ///
    /// `timestamp` is the op proof of a signed registration, accepted (window, no
    /// replay) only once the ownership check passed.
    pub async fn register_guarded(
        &self,
        id: &str,
        record: NodeRecord,
        guard: Guard,
        timestamp: Option<u64>,
    ) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Put {
            id: Arc::from(id),
            record,
            guard,
            timestamp,
            reply,
        };
        self.writer()?
            .send(op)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Renews `id` if `guard` proves ownership: `Ok(false)` when it is not live. The
    /// check is a hash comparison under the table lock, no signature work.
    pub fn renew_guarded(&self, id: &str, guard: &Guard) -> Result<bool, Refusal> {
        let now = Instant::now();
        let mut state = self.core().lock();
        let Some(entry) = state.leases.get(id, now) else {
            return Ok(false);
        };
        guard.check_act(id, entry.value.owner().map(Arc::as_ref))?;
        Ok(state.leases.renew(id, now))
    }

    /// Deregisters `id` if `guard` proves ownership (checked by the store writer
    /// together with the delete); `Ok(false)` when it is not live.
    pub async fn deregister_guarded(&self, id: &str, guard: Guard) -> Result<bool, WriteError> {
        if !self.is_live(id) {
            return Ok(false);
        }
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Delete {
            id: Arc::from(id),
            guard,
            reply,
        };
        self.writer()?
            .send(op)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Turns the proof of a renew or deregister (`op`) into a guard: a signature is
    /// verified with the node's key and its timestamp accepted (window, no replay).
    pub fn guard_for(&self, op: &str, id: &str, proof: Proof) -> Result<Guard, Rejection> {
        match proof {
            Proof::None => Ok(Guard::Unsigned),
            Proof::Token(hash) => Ok(Guard::Token(hash)),
            Proof::Signature {
                signature,
                alg,
                timestamp,
            } => {
                // An unknown or unsigned node: nothing to verify against; the act is
                // then as good as unsigned (404 or the original behaviour).
                let Some(owner) = self.owner_of(id) else {
                    return Ok(Guard::Unsigned);
                };
                owner
                    .key()
                    .verify(&operation_bytes(op, id, timestamp), &signature, alg)
                    .map_err(|_| {
                        Refusal::forbidden(format!(
                            "The '{op}' signature does not verify with the key that owns node '{id}'."
                        ))
                    })?;
                self.core().horizons.accept(id, timestamp, unix_millis())?;
                Ok(Guard::Key(owner.key().clone()))
            }
        }
    }

    /// The whole register request after body parsing: validation, signature check,
    /// ownership and limits. Returns the node id and, for a signed registration, the
    /// fresh lease token.
    pub async fn register_request(
        &self,
        body: &Map<String, Value>,
    ) -> Result<(String, Option<String>), Rejection> {
        let registration = registration_of(body, &self.config().limits)?;
        let signer = registration_signer(body)?;
        let (record, guard, token, timestamp) = match signer {
            Some(Signer { key, timestamp }) => {
                let (owner, token) = new_owner(key.clone())?;
                (
                    registration.record.with_owner(Some(owner)),
                    Guard::Key(key),
                    Some(token),
                    Some(timestamp),
                )
            }
            None if self.config().security.require_signatures => {
                return Err(Rejection {
                    status: StatusCode::UNAUTHORIZED,
                    message: "This center requires signed registrations: add 'public_key' and 'signature' (see isek register --identity).".into(),
                });
            }
            None => (registration.record, Guard::Unsigned, None, None),
        };
        self.register_guarded(&registration.node_id, record, guard, timestamp)
            .await?;
        Ok((registration.node_id, token))
    }

    /// The whole renew request after body parsing: `(node id, renewed?)`.
    pub fn renew_request(&self, body: &Map<String, Value>) -> Result<(String, bool), Rejection> {
        let id = node_id_of(body, &self.config().limits)?;
        let guard = self.guard_for(RENEW_OP, &id, proof_of(body)?)?;
        let renewed = self.renew_guarded(&id, &guard)?;
        Ok((id, renewed))
    }

    /// The whole deregister request after body parsing: `(node id, removed?)`. An
    /// admin token in `headers` (when one is configured) skips ownership checks.
    pub async fn deregister_request(
        &self,
        headers: &HeaderMap,
        body: &Map<String, Value>,
    ) -> Result<(String, bool), Rejection> {
        let id = node_id_of(body, &self.config().limits)?;
        let guard = if self.config().security.is_admin(headers) {
            tracing::info!(node_id = %id, "admin deregistration");
            Guard::Admin
        } else {
            self.guard_for(DEREGISTER_OP, &id, proof_of(body)?)?
        };
        let removed = self.deregister_guarded(&id, guard).await?;
        Ok((id, removed))
    }
}

/// A 200 envelope whose `data` is `{"lease_token": token}` (Flask-style JSON).
pub fn envelope_with_token(message: &str, token: &str) -> String {
    let mut out = String::with_capacity(80 + message.len() + token.len());
    out.push_str("{\"code\":200,\"data\":{\"lease_token\":");
    write_str(&mut out, token);
    out.push_str("},\"message\":");
    write_str(&mut out, message);
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use isek::identity::NodeIdentity;

    #[test]
    fn timestamps_must_be_fresh_increasing_per_id_and_after_the_start() {
        let start = 1_700_000_000_000;
        let h = Horizons::new(start);
        let now = start + 60_000;
        assert!(h.accept("a", now, now).is_ok());
        assert!(h.accept("a", now, now).is_err(), "replay");
        assert!(h.accept("a", now - 1, now).is_err(), "older");
        assert!(h.accept("b", now - 1, now).is_ok(), "per id");
        assert!(h.accept("a", now + 30_001, now).is_err(), "future");
        assert!(h.accept("a", now + 30_000, now).is_ok());
        assert!(h.accept("c", now - 30_001, now).is_err(), "stale");
        let seconds = h.accept("c", now / 1000, now).unwrap_err();
        assert!(seconds.message.contains("milliseconds"), "{seconds}");
        // Made before the start: refused even within the window.
        let early = Horizons::new(now);
        assert!(early.accept("d", now - 5, now).is_err());
        assert!(early.accept("d", now, now).is_err());
        assert!(early.accept("d", now + 1, now).is_ok());
    }

    #[test]
    fn horizons_forget_what_is_out_of_the_window_and_collapse_when_overfull() {
        let h = Horizons::new(0);
        let t0 = 1_700_000_000_000;
        for i in 0..MIN_PRUNE_AT - 1 {
            assert!(h.accept(&format!("old-{i}"), t0, t0).is_ok());
        }
        assert_eq!(h.len(), MIN_PRUNE_AT - 1);
        // One window later the next insert prunes every old entry.
        let t1 = t0 + TIMESTAMP_WINDOW_MS + 1;
        assert!(h.accept("new", t1, t1).is_ok());
        assert_eq!(h.len(), 1);
        assert_eq!(h.last("new"), Some(t1));
        assert_eq!(h.last("old-0"), None);
        // Overfull within one window: everything up to the newest is refused.
        let mut state = HorizonState {
            last: (0..=MAX_HORIZONS / 2)
                .map(|i| (i.to_string().into_boxed_str(), t1 + i as u64 % 7))
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
