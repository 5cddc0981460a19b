//! `EtcdRegistry`: nodes registered straight into etcd, in the original ISEK entry format.
//!
//! Keys and values are the original's (see [`crate::wire::etcd`]), so Python and Rust
//! nodes sharing one etcd see each other. Unlike the original, each registry acts for one
//! [`NodeIdentity`]: it signs the entries it writes with the node's own key, and refuses
//! to renew, overwrite or remove an entry whose public key is not its own. Every write
//! that depends on what was read is a transaction guarded by the key's `mod_revision`,
//! so a concurrent writer can never be silently overwritten.
//!
//! Every etcd call is bounded by the configured timeout: an unreachable etcd yields
//! [`Error::Unavailable`] naming the endpoints, never a hang.
//!
//! Refreshes of every lease a registry holds share one long-lived keep-alive stream
//! ([`lease_stream`]). A refresh costs one keep-alive on it; the key is read again only
//! when etcd changed since the registry last saw the key attached to the lease (the
//! keep-alive answer's header revision says so), so the ownership check stays exact.

mod lease_stream;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use futures::StreamExt as _;
use tonic::Code;

use crate::canonical;
use crate::identity::{IdentityError, NodeIdentity, PublicKey, Signature, SignatureAlg};
use crate::memory::{MAX_HOST_BYTES, MAX_NODE_ID_BYTES};
use crate::watch::{NodeEvent, NodeEventStream};
use crate::wire::etcd::{
    ListedEntry, StoredEntry, encode_entry, node_info_value, node_key, parent_prefix,
};
use crate::{Error, Metadata, NodeInfo, Registry, Result};
use lease_stream::{KeepAlive, LeaseStream};

/// Parent namespace of the original ISEK (`/root/{node_id}`).
pub const DEFAULT_PARENT: &str = "root";
pub use crate::registry::DEFAULT_TTL;
/// Default bound on connecting and on every etcd request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a write is retried when a concurrent write changed the key in between.
const MAX_WRITE_ATTEMPTS: usize = 5;
/// Default bound on keep-alives awaiting etcd's answer on the shared stream.
pub const DEFAULT_MAX_KEEPALIVE_IN_FLIGHT: usize = 1024;

/// TLS settings for etcd endpoints given as `https://...`.
#[derive(Clone, Default)]
pub struct EtcdTls {
    /// PEM CA certificate(s) to trust instead of nothing (etcd clusters use private CAs).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and private key, for clusters that require client auth.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Server name to verify when it differs from the endpoint's host.
    pub domain: Option<String>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity_pem", &self.client_identity_pem.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

/// How to reach etcd and where to register.
#[derive(Clone)]
pub struct EtcdConfig {
    /// etcd endpoints, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Namespace: entries live at `/{parent_node_id}/{node_id}`.
    pub parent_node_id: String,
    /// Lease length granted on register (rounded up to whole seconds, as etcd counts).
    pub ttl: Duration,
    /// etcd user name and password, when the cluster has auth enabled.
    pub credentials: Option<(String, String)>,
    /// TLS settings, when the endpoints are `https://`.
    pub tls: Option<EtcdTls>,
    /// Bound on connecting and on every request.
    pub timeout: Duration,
    /// Bound on lease keep-alives awaiting etcd's answer at once on the registry's one
    /// keep-alive stream; further refreshes wait for a slot (within `timeout`, then
    /// [`Error::Unavailable`]).
    pub max_keepalive_in_flight: usize,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("parent_node_id", &self.parent_node_id)
            .field("ttl", &self.ttl)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("max_keepalive_in_flight", &self.max_keepalive_in_flight)
            .finish()
    }
}

impl EtcdConfig {
    /// The original's defaults (parent `root`, TTL 30 s) against `endpoints`.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            parent_node_id: DEFAULT_PARENT.to_owned(),
            ttl: DEFAULT_TTL,
            credentials: None,
            tls: None,
            timeout: DEFAULT_TIMEOUT,
            max_keepalive_in_flight: DEFAULT_MAX_KEEPALIVE_IN_FLIGHT,
        }
    }

    /// Parses a comma-separated endpoint list, as `--etcd A,B,C` gives it.
    pub fn from_endpoint_list(list: &str) -> Result<Self> {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "no etcd endpoint given (expected e.g. http://127.0.0.1:2379)".into(),
            ));
        }
        Ok(Self::new(endpoints))
    }

    /// Sets the parent namespace.
    pub fn parent(mut self, parent: impl Into<String>) -> Self {
        self.parent_node_id = parent.into();
        self
    }

    /// Sets the lease length.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the connect and request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the bound on keep-alives awaiting an answer at once (at least 1).
    pub fn max_keepalive_in_flight(mut self, max: usize) -> Self {
        self.max_keepalive_in_flight = max;
        self
    }

    /// Sets etcd credentials.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Connects a client to these endpoints with these settings (TLS, credentials,
    /// timeouts, keep-alive pings), within `timeout`: for programs that speak to etcd
    /// themselves, such as a center cluster's store.
    pub async fn connect_client(&self) -> Result<Client> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no etcd endpoint given".into()));
        }
        let label = self.endpoints.join(",");
        let connect = Client::connect(self.endpoints.clone(), Some(self.connect_options()));
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(map_etcd_error(&label, "connect", e)),
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {label}: no connection within {:?}",
                self.timeout
            ))),
        }
    }

    /// The etcd-client connection options these settings amount to.
    fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout)
            // Detect dead connections (watch streams would otherwise wait forever).
            .with_keep_alive(Duration::from_secs(10), self.timeout)
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &self.credentials {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                t = t.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.client_identity_pem {
                t = t.identity(Identity::from_pem(cert, key));
            }
            if let Some(domain) = &tls.domain {
                t = t.domain_name(domain.clone());
            }
            options = options.with_tls(t);
        }
        options
    }
}

/// Checks a node id or parent id is usable as one key segment, with the same rules as
/// the other backends: 1 to [`MAX_NODE_ID_BYTES`] bytes, no `/`, no control character,
/// NFC, no invisible character.
fn validate_segment(what: &str, id: &str) -> Result<()> {
    crate::node_id::check(id, MAX_NODE_ID_BYTES).map_err(|problem| match problem {
        crate::node_id::Problem::Length { .. } => {
            Error::InvalidArgument(format!("{what} {problem}"))
        }
        _ => Error::InvalidArgument(format!("{what} {id:?} {problem}")),
    })
}

/// Verifies a stored entry against its own public key; returns the algorithm used.
///
/// This proves the entry was written by the holder of `public_key`, not that the node
/// id belongs to them: callers also compare the key with the one they trust.
pub fn verify_entry(entry: &StoredEntry) -> Result<SignatureAlg, IdentityError> {
    let alg = SignatureAlg::from_entry_field(entry.signature_alg.as_deref()).ok_or_else(|| {
        IdentityError::MalformedSignature(format!(
            "unknown signature_alg '{}'",
            entry.signature_alg.as_deref().unwrap_or_default()
        ))
    })?;
    let key = PublicKey::from_base64(&entry.fields.public_key)?;
    let signature = Signature::from_base64(&entry.signature)?;
    key.verify(&entry.signed_bytes(), &signature, alg)?;
    Ok(alg)
}

/// What a registry and its watch streams share.
struct Inner {
    /// The etcd connection (cheap to clone: a shared channel).
    client: Client,
    /// The node identity this registry signs with and checks ownership against.
    identity: NodeIdentity,
    /// Parent namespace.
    parent: String,
    /// `/{parent}/`.
    prefix: String,
    /// Lease TTL in whole seconds.
    ttl_secs: i64,
    /// Bound on every request.
    timeout: Duration,
    /// The endpoints, for error messages.
    endpoints: String,
    /// The one keep-alive stream every refresh of this registry goes through.
    keep_alive: LeaseStream,
    /// The lease of each node this instance registered or refreshed, and the revision
    /// at which its key was last seen attached to it: a refresh whose keep-alive
    /// reports no newer revision needs no read. A std mutex, never held across an await.
    leases: Mutex<HashMap<String, CachedLease>>,
    /// Outcome of checking each key's value, reused while the value is byte-identical
    /// (verification is a pure function of key and value, and costs ~150 µs): repeated
    /// listings only verify what changed. Pruned to the keys of the latest listing.
    checked: Mutex<HashMap<Vec<u8>, CheckedValue>>,
}

/// What a registry knows about one of its nodes' leases.
#[derive(Debug, Clone, Copy)]
struct CachedLease {
    /// The lease the node's key is attached to.
    lease: i64,
    /// The key's `mod_revision` when it held our entry on `lease`: a key still on our
    /// lease but with another `mod_revision` was rewritten (e.g. `put --ignore-lease`)
    /// and must be read and checked again.
    mod_revision: i64,
    /// A store revision at which the key was seen unchanged: if etcd's revision is
    /// still at most this, nothing changed the key since.
    seen_at: i64,
}

/// A cached verification outcome.
struct CheckedValue {
    /// The exact value that was checked.
    value: Vec<u8>,
    /// The node and whether it is legacy, or why it was rejected.
    outcome: CheckOutcome,
}

/// What checking one entry yields: the node and whether it is a legacy entry, or why
/// it is not a valid node.
type CheckOutcome = std::result::Result<(NodeInfo, bool), String>;

/// Below this many unverified entries a listing verifies inline rather than on the
/// blocking pool.
const PARALLEL_VERIFY_THRESHOLD: usize = 32;

/// A [`Registry`] writing ISEK entries into etcd on behalf of one node identity.
#[derive(Clone)]
pub struct EtcdRegistry {
    /// Shared state, also held by watch streams.
    inner: Arc<Inner>,
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.inner.endpoints)
            .field("parent", &self.inner.parent)
            .field("ttl_secs", &self.inner.ttl_secs)
            .field("identity", &self.inner.identity)
            .finish_non_exhaustive()
    }
}

impl EtcdRegistry {
    /// Connects to the endpoints of `config` and acts for `identity`.
    pub async fn connect(config: EtcdConfig, identity: NodeIdentity) -> Result<Self> {
        let client = config.connect_client().await?;
        Self::from_client(client, identity, &config)
    }

    /// Wraps an existing client; `config` supplies parent, TTL and timeout (its
    /// endpoints only label error messages).
    pub fn from_client(
        client: Client,
        identity: NodeIdentity,
        config: &EtcdConfig,
    ) -> Result<Self> {
        validate_segment("parent_node_id", &config.parent_node_id)?;
        if config.ttl.is_zero() {
            return Err(Error::InvalidArgument("ttl must be positive".into()));
        }
        if config.timeout.is_zero() {
            return Err(Error::InvalidArgument("timeout must be positive".into()));
        }
        if config.max_keepalive_in_flight == 0 {
            return Err(Error::InvalidArgument(
                "max_keepalive_in_flight must be positive".into(),
            ));
        }
        let ttl_secs = i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX)
            + i64::from(config.ttl.subsec_nanos() > 0);
        Ok(Self {
            inner: Arc::new(Inner {
                keep_alive: LeaseStream::new(
                    client.clone(),
                    config.timeout,
                    config.endpoints.join(","),
                    config.max_keepalive_in_flight,
                ),
                client,
                identity,
                prefix: parent_prefix(&config.parent_node_id),
                parent: config.parent_node_id.clone(),
                ttl_secs,
                timeout: config.timeout,
                endpoints: config.endpoints.join(","),
                leases: Mutex::new(HashMap::new()),
                checked: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The identity this registry acts for.
    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// The parent namespace.
    pub fn parent_node_id(&self) -> &str {
        &self.inner.parent
    }

    /// How many lease keep-alives are awaiting etcd's answer on the shared stream
    /// (at most the configured `max_keepalive_in_flight`): for metrics and tests.
    pub fn keep_alives_in_flight(&self) -> usize {
        self.inner.keep_alive.in_flight()
    }

    /// The underlying etcd client, e.g. for tools that need raw access.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Every entry under the prefix, verified or not: the operator's view
    /// (`isek nodes --etcd`). One read.
    pub async fn list_entries(&self) -> Result<Vec<ListedEntry>> {
        let (kvs, _) = self.inner.list_prefix().await?;
        Ok(kvs.iter().map(|kv| self.inner.describe(kv)).collect())
    }

    /// Membership changes from `from_revision` on (inclusive), or, with `None`, a
    /// [`NodeEvent::Snapshot`] of the current nodes followed by changes. After a lost
    /// connection the stream resumes after the last revision it delivered; when that
    /// revision was compacted away it sends a fresh snapshot. Nothing is lost or repeated.
    pub fn watch_from(&self, from_revision: Option<u64>) -> NodeEventStream {
        let state = WatchState {
            inner: self.inner.clone(),
            next_revision: from_revision.map(|r| i64::try_from(r.max(1)).unwrap_or(i64::MAX)),
            known: None,
            pending: VecDeque::new(),
            watch: None,
            failures: 0,
        };
        futures::stream::unfold(state, |mut state| async move {
            let event = state.next_event().await;
            Some((Ok(event), state))
        })
        .boxed()
    }
}

impl Inner {
    /// Runs an etcd call under the timeout, mapping failures to [`Error`].
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_etcd_error(&self.endpoints, what, e)),
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {}: {what} got no answer within {:?}",
                self.endpoints, self.timeout
            ))),
        }
    }

    /// Reads one key.
    async fn read_key(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.read_key_at(key).await?.0)
    }

    /// Reads one key, with the store revision of the read.
    async fn read_key_at(&self, key: &str) -> Result<(Option<KeyValue>, i64)> {
        let mut kv = self.client.kv_client();
        let mut resp = self.call("get", kv.get(key, None)).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((resp.take_kvs().into_iter().next(), revision))
    }

    /// Reads every key under the prefix, with the revision of the read.
    async fn list_prefix(&self) -> Result<(Vec<KeyValue>, i64)> {
        let mut kv = self.client.kv_client();
        let mut resp = self
            .call(
                "list",
                kv.get(self.prefix.as_str(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((resp.take_kvs(), revision))
    }

    /// The node id a key names, when it is a UTF-8 key under the prefix.
    fn node_id_of<'k>(&self, key: &'k [u8]) -> std::result::Result<&'k str, String> {
        let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_owned())?;
        key.strip_prefix(self.prefix.as_str())
            .ok_or_else(|| format!("key is not under {}", self.prefix))
    }

    /// Parses and verifies an entry; the node id must match its key.
    fn check(&self, key: &[u8], value: &[u8]) -> CheckOutcome {
        let node_id = self.node_id_of(key)?;
        let entry = StoredEntry::parse(value).map_err(|e| e.to_string())?;
        let alg = verify_entry(&entry).map_err(|e| e.to_string())?;
        if entry.fields.node_id != node_id {
            return Err(format!(
                "node_id '{}' does not match its key",
                entry.fields.node_id
            ));
        }
        Ok((entry.to_node_info(), alg == SignatureAlg::LegacySha1))
    }

    /// Checks every listed entry: cached outcomes for unchanged values, the rest verified
    /// on the blocking pool in parallel chunks (a large listing would otherwise hold a
    /// runtime thread for a long time). Returns outcomes in listing order.
    async fn check_listing(self: &Arc<Self>, kvs: Vec<KeyValue>) -> Vec<(Vec<u8>, CheckOutcome)> {
        let mut results: Vec<Option<CheckOutcome>> = Vec::with_capacity(kvs.len());
        let mut todo: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        {
            let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            for (i, kv) in kvs.iter().enumerate() {
                match checked.get(kv.key()) {
                    Some(hit) if hit.value == kv.value() => results.push(Some(hit.outcome.clone())),
                    _ => {
                        results.push(None);
                        todo.push((i, kv.key().to_vec(), kv.value().to_vec()));
                    }
                }
            }
        }
        let fresh: Vec<(usize, Vec<u8>, Vec<u8>, CheckOutcome)> =
            if todo.len() < PARALLEL_VERIFY_THRESHOLD {
                todo.into_iter()
                    .map(|(i, k, v)| {
                        let outcome = self.check(&k, &v);
                        (i, k, v, outcome)
                    })
                    .collect()
            } else {
                let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
                let chunk = todo.len().div_ceil(workers);
                let mut tasks = Vec::new();
                let mut rest = todo;
                while !rest.is_empty() {
                    let tail = rest.split_off(chunk.min(rest.len()));
                    let part = std::mem::replace(&mut rest, tail);
                    let inner = self.clone();
                    tasks.push(tokio::task::spawn_blocking(move || {
                        part.into_iter()
                            .map(|(i, k, v)| {
                                let outcome = inner.check(&k, &v);
                                (i, k, v, outcome)
                            })
                            .collect::<Vec<_>>()
                    }));
                }
                let mut all = Vec::new();
                for task in tasks {
                    match task.await {
                        Ok(part) => all.extend(part),
                        // Only reachable if verification panicked; leave those entries
                        // out (as unverifiable) rather than fail the listing.
                        Err(e) => tracing::error!(error = %e, "entry verification task failed"),
                    }
                }
                all
            };
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        for (i, key, value, outcome) in fresh {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(outcome.clone());
            }
            checked.insert(key, CheckedValue { value, outcome });
        }
        let live: HashSet<&[u8]> = kvs.iter().map(|kv| kv.key()).collect();
        checked.retain(|key, _| live.contains(key.as_slice()));
        kvs.iter()
            .zip(results)
            .map(|(kv, outcome)| {
                let outcome =
                    outcome.unwrap_or_else(|| Err("entry could not be verified".to_owned()));
                (kv.key().to_vec(), outcome)
            })
            .collect()
    }

    /// The operator's view of one key-value.
    fn describe(&self, kv: &KeyValue) -> ListedEntry {
        let parsed = StoredEntry::parse(kv.value());
        let check = self.check(kv.key(), kv.value());
        let (fields, legacy) = match &parsed {
            Ok(entry) => (Some(&entry.fields), entry.signature_alg.is_none()),
            Err(_) => (None, false),
        };
        ListedEntry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            node_id: fields.map(|f| f.node_id.clone()),
            host: fields.map(|f| f.host.clone()),
            port: fields.map(|f| f.port),
            metadata: fields.map(|f| f.metadata.clone()),
            public_key: fields.map(|f| f.public_key.clone()),
            verified: check.is_ok(),
            legacy,
            error: check.err(),
            lease: kv.lease(),
        }
    }

    /// Fails with [`Error::Conflict`] unless the stored entry carries our public key
    /// (used by register: the key can be replaced only by its owner).
    fn ensure_replaceable(&self, node_id: &str, kv: &KeyValue) -> Result<()> {
        let entry = StoredEntry::parse(kv.value()).map_err(|e| {
            Error::Conflict(format!(
                "node '{node_id}' is held by an entry that is not a valid ISEK entry ({e})"
            ))
        })?;
        if entry.fields.public_key != self.identity.public_key().to_base64() {
            return Err(Error::Conflict(format!(
                "node '{node_id}' is registered by another identity (public key {})",
                entry.fields.public_key
            )));
        }
        Ok(())
    }

    /// Fails with [`Error::PermissionDenied`] unless the stored entry verifies and
    /// carries our public key (used by refresh and deregister).
    fn ensure_owned(&self, node_id: &str, kv: &KeyValue) -> Result<()> {
        let entry = StoredEntry::parse(kv.value()).map_err(|e| {
            Error::PermissionDenied(format!(
                "node '{node_id}' is held by an entry that is not a valid ISEK entry ({e})"
            ))
        })?;
        if entry.fields.public_key != self.identity.public_key().to_base64() {
            return Err(Error::PermissionDenied(format!(
                "node '{node_id}' is registered by another identity (public key {})",
                entry.fields.public_key
            )));
        }
        verify_entry(&entry).map_err(|e| {
            Error::PermissionDenied(format!("entry of node '{node_id}' does not verify: {e}"))
        })?;
        Ok(())
    }

    /// Revokes a lease, logging rather than failing (cleanup after the real work).
    async fn revoke_quietly(&self, lease: i64) {
        let mut lc = self.client.lease_client();
        if let Err(e) = self.call("lease revoke", lc.revoke(lease)).await
            && !matches!(e, Error::NotFound(_))
        {
            tracing::warn!(lease, error = %e, "could not revoke an etcd lease");
        }
    }

    /// The lease and `mod_revision` of `key` (`None` when absent), and the revision of
    /// the read. A linearizable keys-only read: it sees every write acknowledged before
    /// it, and ships no value.
    async fn key_state(&self, key: &str) -> Result<(Option<(i64, i64)>, i64)> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_keys_only();
        let resp = self.call("lease check", kv.get(key, Some(options))).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let state = resp.kvs().first().map(|kv| (kv.lease(), kv.mod_revision()));
        Ok((state, revision))
    }

    /// What this instance knows about the lease of `node_id`, if anything.
    fn cached_lease(&self, node_id: &str) -> Option<CachedLease> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node_id)
            .copied()
    }

    /// Records (or forgets, with `None`) the lease of `node_id`.
    fn set_cached_lease(&self, node_id: &str, lease: Option<CachedLease>) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match lease {
            Some(l) => {
                leases.insert(node_id.to_owned(), l);
            }
            None => {
                leases.remove(node_id);
            }
        }
    }

    /// Moves the revision at which `node_id`'s key was seen on `lease` forward, unless
    /// the cache meanwhile holds another lease (a concurrent register replaced it).
    fn saw_lease_at(&self, node_id: &str, lease: i64, revision: i64) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = leases.get_mut(node_id)
            && cached.lease == lease
        {
            cached.seen_at = cached.seen_at.max(revision);
        }
    }

    /// Forgets the lease of `node_id` if it is still `lease`.
    fn forget_lease(&self, node_id: &str, lease: i64) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.get(node_id).is_some_and(|c| c.lease == lease) {
            leases.remove(node_id);
        }
    }
}

/// Maps an etcd-client failure to [`Error`], naming the endpoints.
fn map_etcd_error(endpoints: &str, what: &str, e: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    let message = format!("etcd at {endpoints}: {what} failed: {e}");
    match &e {
        // etcd reports missing or wrong credentials as INVALID_ARGUMENT/FAILED_PRECONDITION.
        E::GRpcStatus(status)
            if [
                "user name is empty",
                "authentication failed",
                "invalid auth token",
            ]
            .iter()
            .any(|m| status.message().contains(m)) =>
        {
            Error::PermissionDenied(message)
        }
        E::GRpcStatus(status) => match status.code() {
            Code::NotFound => Error::NotFound(message),
            Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied(message),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Error::InvalidArgument(message)
            }
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown => Error::Unavailable(message),
            _ => Error::Backend(message),
        },
        E::TransportError(_) | E::IoError(_) => Error::Unavailable(message),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) => {
            Error::InvalidArgument(message)
        }
        _ => Error::Backend(message),
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    async fn register_node(
        &self,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
    ) -> Result<()> {
        validate_segment("node_id", node_id)?;
        if host.is_empty() || host.len() > MAX_HOST_BYTES {
            return Err(Error::InvalidArgument(format!(
                "host must be 1 to {MAX_HOST_BYTES} bytes"
            )));
        }
        if port == 0 {
            return Err(Error::InvalidArgument("port must be 1-65535".into()));
        }
        let inner = &self.inner;
        let key = node_key(&inner.parent, node_id);
        // The entry is signed while the lease grant is on its way (the grant is sent
        // when first polled, before the signing runs).
        let mut lc = inner.client.lease_client();
        let (granted, value) = tokio::join!(
            inner.call("lease grant", lc.grant(inner.ttl_secs, None)),
            async {
                let public_key = inner.identity.public_key().to_base64().to_owned();
                let info = node_info_value(node_id, host, port, &public_key, &metadata);
                let signature = inner.identity.sign(&canonical::to_sorted_bytes(&info));
                encode_entry(
                    &info,
                    &signature.to_base64(),
                    Some(SignatureAlg::ES256_NAME),
                )
            }
        );
        let lease = granted?.id();
        // One fresh lease for this node, then one transaction that writes the entry if
        // the key is free, or else reads what holds it: two writes, no read first. Only
        // when the key is held (by our own entry: a re-registration) does a second
        // transaction replace it, guarded by the `mod_revision` just read. (Sending the
        // grant and the transaction together, with a lease id chosen here, measured no
        // faster: etcd does not commit them as one, and the put overtakes the grant
        // about half the time; see the `etcd_bench` example.)
        let put_or_read = |guard: Compare| {
            Txn::new()
                .when([guard])
                .and_then([TxnOp::put(
                    key.as_str(),
                    value.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.as_str(), None)])
        };
        let free = || Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
        let mut kv = inner.client.kv_client();
        let mut guard = free();
        let mut replaced_lease = 0;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let resp = match inner
                .call("register transaction", kv.txn(put_or_read(guard)))
                .await
            {
                Ok(resp) => resp,
                Err(e) => {
                    inner.revoke_quietly(lease).await;
                    return Err(e);
                }
            };
            if resp.succeeded() {
                if replaced_lease != 0 && replaced_lease != lease {
                    inner.revoke_quietly(replaced_lease).await;
                }
                let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
                inner.set_cached_lease(
                    node_id,
                    Some(CachedLease {
                        lease,
                        mod_revision: revision,
                        seen_at: revision,
                    }),
                );
                return Ok(());
            }
            let current = resp.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                _ => None,
            });
            guard = match current {
                // Gone again in between: write it as new.
                None => free(),
                Some(kv) => {
                    if let Err(e) = inner.ensure_replaceable(node_id, &kv) {
                        inner.revoke_quietly(lease).await;
                        return Err(e);
                    }
                    replaced_lease = kv.lease();
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())
                }
            };
        }
        inner.revoke_quietly(lease).await;
        Err(Error::Conflict(format!(
            "node '{node_id}': its entry kept changing during registration"
        )))
    }

    async fn lease_refresh(&self, node_id: &str) -> Result<()> {
        validate_segment("node_id", node_id)?;
        let inner = &self.inner;
        let key = node_key(&inner.parent, node_id);
        if let Some(cached) = inner.cached_lease(node_id) {
            // The lease we know, renewed on the shared stream. The answer carries etcd's
            // revision: if nothing was written since we last saw our entry on the key,
            // the key is still ours and on this lease; otherwise look again, so that a
            // key deleted, replaced or rewritten behind our back surfaces as NotFound /
            // PermissionDenied, not as a lease kept alive for nothing.
            match inner.keep_alive.keep_alive(cached.lease).await? {
                KeepAlive::Alive {
                    revision: Some(revision),
                } if revision <= cached.seen_at => return Ok(()),
                KeepAlive::Alive { .. } => match inner.key_state(&key).await? {
                    (Some((lease, mod_revision)), revision)
                        if lease == cached.lease && mod_revision == cached.mod_revision =>
                    {
                        inner.saw_lease_at(node_id, lease, revision);
                        return Ok(());
                    }
                    // Rewritten on our lease: whose entry it now is, the read below tells.
                    (Some((lease, _)), _) if lease == cached.lease => {
                        inner.forget_lease(node_id, cached.lease);
                    }
                    // Our lease no longer holds the key: it keeps nothing alive.
                    _ => {
                        inner.forget_lease(node_id, cached.lease);
                        inner.revoke_quietly(cached.lease).await;
                    }
                },
                KeepAlive::Gone => inner.forget_lease(node_id, cached.lease),
            }
        }
        // Not granted here (another process registered it with the same identity), or
        // our lease is gone or was rewritten: find the lease on the key, if the entry is
        // ours.
        let (kv, read_at) = inner.read_key_at(&key).await?;
        let kv =
            kv.ok_or_else(|| Error::NotFound(format!("node '{node_id}' is not registered")))?;
        inner.ensure_owned(node_id, &kv)?;
        let lease = kv.lease();
        if lease == 0 || inner.keep_alive.keep_alive(lease).await? == KeepAlive::Gone {
            return Err(Error::NotFound(format!(
                "lease of node '{node_id}' has expired"
            )));
        }
        inner.set_cached_lease(
            node_id,
            Some(CachedLease {
                lease,
                mod_revision: kv.mod_revision(),
                seen_at: read_at,
            }),
        );
        Ok(())
    }

    async fn deregister_node(&self, node_id: &str) -> Result<()> {
        validate_segment("node_id", node_id)?;
        let inner = &self.inner;
        let key = node_key(&inner.parent, node_id);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let kv = inner
                .read_key(&key)
                .await?
                .ok_or_else(|| Error::NotFound(format!("node '{node_id}' is not registered")))?;
            inner.ensure_owned(node_id, &kv)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            let mut client = inner.client.kv_client();
            let resp = inner
                .call("deregister transaction", client.txn(txn))
                .await?;
            if resp.succeeded() {
                if kv.lease() != 0 {
                    inner.revoke_quietly(kv.lease()).await;
                }
                inner.set_cached_lease(node_id, None);
                return Ok(());
            }
        }
        Err(Error::Conflict(format!(
            "node '{node_id}': its entry kept changing during deregistration"
        )))
    }

    async fn get_available_nodes(&self) -> Result<BTreeMap<String, NodeInfo>> {
        let (kvs, _) = self.inner.list_prefix().await?;
        let mut nodes = BTreeMap::new();
        for (key, outcome) in self.inner.check_listing(kvs).await {
            match outcome {
                Ok((node, _)) => {
                    nodes.insert(node.node_id.clone(), node);
                }
                Err(reason) => tracing::warn!(
                    key = %String::from_utf8_lossy(&key),
                    %reason,
                    "skipping etcd entry"
                ),
            }
        }
        Ok(nodes)
    }

    async fn watch_nodes(&self) -> Result<Option<NodeEventStream>> {
        Ok(Some(self.watch_from(None)))
    }
}

/// The state of one watch stream between events.
struct WatchState {
    /// Registry internals (client, prefix, verification).
    inner: Arc<Inner>,
    /// The first revision not yet delivered; `None` = a snapshot is needed first.
    next_revision: Option<i64>,
    /// Node ids the watcher currently has, when known (after a snapshot): deletes of
    /// anything else are not news and are dropped.
    known: Option<HashSet<String>>,
    /// Events decoded but not yet handed out.
    pending: VecDeque<NodeEvent>,
    /// The open etcd watch, if any.
    watch: Option<WatchStream>,
    /// Consecutive failures, for backoff.
    failures: u32,
}

impl WatchState {
    /// Waits before retrying after a failure (100 ms doubling to 5 s).
    async fn back_off(&mut self, error: &(dyn fmt::Display + Sync)) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(100)
            .saturating_mul(1u32 << self.failures.min(6))
            .min(Duration::from_secs(5));
        tracing::warn!(error = %error, ?delay, "etcd watch interrupted; resuming");
        tokio::time::sleep(delay).await;
    }

    /// Produces the next event, handling reconnects and resynchronisation inside.
    async fn next_event(&mut self) -> NodeEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let Some(next) = self.next_revision else {
                match self.inner.list_prefix().await {
                    Ok((kvs, revision)) => {
                        let mut nodes = BTreeMap::new();
                        for (_, outcome) in self.inner.check_listing(kvs).await {
                            if let Ok((node, _)) = outcome {
                                nodes.insert(node.node_id.clone(), node);
                            }
                        }
                        self.failures = 0;
                        self.known = Some(nodes.keys().cloned().collect());
                        self.next_revision = Some(revision + 1);
                        self.watch = None;
                        return NodeEvent::Snapshot {
                            revision: u64::try_from(revision).unwrap_or_default(),
                            nodes,
                        };
                    }
                    Err(e) => {
                        self.back_off(&e).await;
                        continue;
                    }
                }
            };
            let Some(watch) = self.watch.as_mut() else {
                let mut wc = self.inner.client.watch_client();
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(next)
                    .with_progress_notify();
                match self
                    .inner
                    .call("watch", wc.watch(self.inner.prefix.as_str(), Some(options)))
                    .await
                {
                    Ok(stream) => self.watch = Some(stream),
                    Err(e) => self.back_off(&e).await,
                }
                continue;
            };
            let message = match watch.message().await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    self.watch = None;
                    self.back_off(&"watch stream closed").await;
                    continue;
                }
                Err(e) => {
                    self.watch = None;
                    self.back_off(&e).await;
                    continue;
                }
            };
            self.failures = 0;
            if message.canceled() {
                // Compacted past our revision (or cancelled by the server): what
                // happened in between is gone, so start over from a fresh snapshot.
                tracing::info!(
                    compact_revision = message.compact_revision(),
                    reason = message.cancel_reason(),
                    "etcd watch cancelled; resynchronising"
                );
                self.watch = None;
                self.next_revision = None;
                continue;
            }
            if message.events().is_empty() && !message.created() {
                // Progress notification: everything up to the header revision is seen.
                if let Some(h) = message.header() {
                    self.next_revision = Some(next.max(h.revision() + 1));
                }
                continue;
            }
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                self.next_revision = Some(revision + 1);
                let rev = u64::try_from(revision).unwrap_or_default();
                let Ok(node_id) = self.inner.node_id_of(kv.key()) else {
                    continue;
                };
                let node_id = node_id.to_owned();
                let put = match event.event_type() {
                    EventType::Put => match self.inner.check(kv.key(), kv.value()) {
                        Ok((node, _)) => Some(node),
                        Err(reason) => {
                            tracing::warn!(key = %node_id, %reason, "ignoring invalid etcd entry");
                            None
                        }
                    },
                    EventType::Delete => None,
                };
                match put {
                    Some(node) => {
                        if let Some(known) = self.known.as_mut() {
                            known.insert(node_id);
                        }
                        self.pending.push_back(NodeEvent::Put {
                            revision: rev,
                            node,
                        });
                    }
                    None => {
                        let was_known = match self.known.as_mut() {
                            Some(known) => known.remove(&node_id),
                            None => true,
                        };
                        if was_known {
                            self.pending.push_back(NodeEvent::Delete {
                                revision: rev,
                                node_id,
                            });
                        }
                    }
                }
            }
        }
    }
}
