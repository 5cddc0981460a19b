//! [`Etcd`]: the store of a center cluster (`--store etcd`): every center of one
//! registry writes its registrations into one etcd cluster and follows the others'
//! through a watch ([`Changes`]).
//!
//! Layout (see `isek::wire::cluster`): `{prefix}/nodes/{id}` holds a
//! [`StoredNode`]; the key's `mod_revision` is the registration's generation and its
//! revision on `/v1/watch`, so revisions mean the same on every center. Each node op
//! is its own transaction (one etcd revision per change, as the change log needs),
//! guarded by the key's `mod_revision` as this center last saw it (`StoreOp`'s
//! `expect`; 0 for a key it believes absent): a decision taken on a view that another
//! center has changed since is never committed ([`Outcome::Conflict`]). The
//! transactions of one batch run concurrently (etcd batches them into its Raft log);
//! a batch never holds two ops on one node (`writer::plan` defers the second).
//!
//! A commit does not apply anything to this center's state: the follower
//! (`crate::follower`) applies every center's changes, this one's included, in etcd's
//! order, and the writer answers once the follower reached the commit's revision.
//! Replay horizons are not stored here (each center keeps its own in memory).
//!
//! The writer's thread is not a runtime thread, so it drives the async client with
//! [`tokio::runtime::Handle::block_on`] on the center's runtime.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use futures::future::join_all;
use isek::identity::PublicKey;
use isek::wire::cluster::{CENTERS, EXPIRED, HOLDER, NODES, SECRET, StoredNode};

use crate::error::{Error, Result};
use crate::record::{NodeRecord, Owner};

use super::{Outcome, StoreOp};

/// Most node transactions of one batch in flight at once.
const MAX_IN_FLIGHT: usize = 512;

/// A connection to the etcd cluster a center shares with the others.
#[derive(Clone)]
pub struct Etcd {
    /// The etcd client (cheap to clone: one channel).
    client: Client,
    /// The runtime the writer's thread drives the client on.
    runtime: tokio::runtime::Handle,
    /// The cluster's prefix, ending in `/`.
    prefix: String,
    /// Bound on every request.
    timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a center starts from: every node with its generation, the revision they
/// show, and the etcd cluster's id.
#[derive(Debug)]
pub struct Loaded {
    /// Every stored node, with its key's `mod_revision`.
    pub nodes: Vec<(Arc<str>, NodeRecord, u64)>,
    /// The revision of the read.
    pub revision: u64,
    /// The etcd cluster id (with the prefix, it names the registry: the epoch).
    pub cluster_id: u64,
}

/// One change to the registry, as the watch reports it.
#[derive(Debug)]
pub enum Change {
    /// A node was registered or replaced at `revision`.
    Put {
        /// Its revision (the key's `mod_revision`).
        revision: u64,
        /// The node id.
        id: Arc<str>,
        /// Its record.
        record: NodeRecord,
    },
    /// A node was removed at `revision`.
    Delete {
        /// Its revision.
        revision: u64,
        /// The node id.
        id: Arc<str>,
        /// An expiry (else a deregistration).
        expired: bool,
    },
}

/// An etcd error as a store error.
fn store_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("etcd {what}: {e}").into())
}

impl Etcd {
    /// Connects to etcd with `config` (endpoints, TLS, credentials, timeout), for the
    /// registry under `prefix`.
    pub async fn connect(config: &isek::etcd::EtcdConfig, prefix: &str) -> Result<Self> {
        let client = config
            .connect_client()
            .await
            .map_err(|e| store_error("connect", e))?;
        let mut prefix = prefix.trim_end_matches('/').to_owned();
        prefix.push('/');
        Ok(Self {
            client,
            runtime: tokio::runtime::Handle::current(),
            prefix,
            timeout: config.timeout,
        })
    }

    /// The key of node `id`.
    fn node_key(&self, id: &str) -> String {
        format!("{}{NODES}{id}", self.prefix)
    }

    /// Every node under the prefix, at one revision.
    pub async fn load(&self) -> Result<Loaded> {
        let mut kv = self.client.kv_client();
        let from = format!("{}{NODES}", self.prefix);
        let answer = tokio::time::timeout(
            self.timeout.max(Duration::from_secs(30)),
            kv.get(from.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await
        .map_err(|_| store_error("load", "no answer in time"))?
        .map_err(|e| store_error("load", e))?;
        let header = answer
            .header()
            .ok_or_else(|| store_error("load", "answer without a header"))?;
        let (revision, cluster_id) = (to_u64(header.revision()), header.cluster_id());
        let mut nodes = Vec::with_capacity(answer.kvs().len());
        for entry in answer.kvs() {
            if let Some((id, record)) = self.decode(entry) {
                nodes.push((id, record, to_u64(entry.mod_revision())));
            }
        }
        Ok(Loaded {
            nodes,
            revision,
            cluster_id,
        })
    }

    /// The node of a `nodes/` entry; `None` (with a warning) for anything invalid.
    fn decode(&self, entry: &KeyValue) -> Option<(Arc<str>, NodeRecord)> {
        let key = std::str::from_utf8(entry.key()).ok()?;
        let id = key.strip_prefix(&self.prefix)?.strip_prefix(NODES)?;
        match decode_node(entry.value()) {
            Ok(record) => Some((Arc::from(id), record)),
            Err(problem) => {
                tracing::warn!(node_id = %id, problem, "skipping an invalid node entry in etcd");
                None
            }
        }
    }

    /// The changes after `revision`, as they happen.
    pub async fn changes(&self, after: u64) -> Result<Changes> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX));
        let stream = self
            .client
            .watch_client()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|e| store_error("watch", e))?;
        Ok(Changes {
            store: self.clone(),
            stream,
        })
    }

    /// A linearizable read of one key: etcd has a quorum and answers this center.
    pub fn probe(&self) -> Result<()> {
        let mut kv = self.client.kv_client();
        let key = format!("{}{EXPIRED}", self.prefix);
        self.runtime.block_on(async {
            tokio::time::timeout(
                self.timeout,
                kv.get(key, Some(GetOptions::new().with_count_only())),
            )
            .await
            .map_err(|_| store_error("probe", "no answer in time"))?
            .map_err(|e| store_error("probe", e))
            .map(|_| ())
        })
    }

    /// Commits every node op of `ops` as its own guarded transaction, concurrently
    /// (replay-horizon ops are not stored: [`Outcome::Local`]). `Err` when etcd could
    /// not be reached at all; a transaction that failed alone is reported as
    /// [`Outcome::Failed`].
    pub fn commit(&self, ops: &[StoreOp<'_>]) -> Result<Vec<Outcome>> {
        let mut txns = Vec::with_capacity(ops.len());
        for (at, op) in ops.iter().enumerate() {
            let txn = match op {
                StoreOp::Upsert { id, record, expect } => {
                    let key = self.node_key(id);
                    let value = encode_node(record)?;
                    guarded(&key, *expect).and_then(vec![TxnOp::put(key, value, None)])
                }
                StoreOp::Delete { id, expect } => {
                    let key = self.node_key(id);
                    guarded(&key, *expect).and_then(vec![TxnOp::delete(key, None)])
                }
                StoreOp::Expire { id, generation } => {
                    let key = self.node_key(id);
                    guarded(&key, Some(*generation)).and_then(vec![
                        TxnOp::delete(key, None),
                        TxnOp::put(format!("{}{EXPIRED}", self.prefix), id.as_bytes(), None),
                    ])
                }
                StoreOp::Horizon { .. } | StoreOp::PruneHorizons { .. } => continue,
            };
            txns.push((at, txn));
        }
        let mut outcomes = vec![Outcome::Local; ops.len()];
        if txns.is_empty() {
            return Ok(outcomes);
        }
        let answers = self.runtime.block_on(async {
            let mut answers = Vec::with_capacity(txns.len());
            let mut txns = txns.into_iter();
            loop {
                let wave: Vec<_> = txns.by_ref().take(MAX_IN_FLIGHT).collect();
                if wave.is_empty() {
                    break answers;
                }
                let sent = wave.into_iter().map(|(at, txn)| {
                    let mut kv = self.client.kv_client();
                    async move {
                        let answer = tokio::time::timeout(self.timeout, kv.txn(txn)).await;
                        (at, answer)
                    }
                });
                answers.extend(join_all(sent).await);
            }
        });
        let mut reached = false;
        let mut last_error = None;
        for (at, answer) in answers {
            let outcome = match answer {
                Ok(Ok(done)) => {
                    reached = true;
                    let revision = done.header().map_or(0, |h| to_u64(h.revision()));
                    if done.succeeded() {
                        Outcome::At(revision)
                    } else {
                        Outcome::Conflict(revision)
                    }
                }
                Ok(Err(e)) => {
                    last_error = Some(e.to_string());
                    Outcome::Failed
                }
                Err(_) => {
                    last_error = Some("no answer in time".to_owned());
                    Outcome::Failed
                }
            };
            if let Some(slot) = outcomes.get_mut(at) {
                *slot = outcome;
            }
        }
        match last_error {
            Some(e) if !reached => Err(store_error("commit", e)),
            _ => Ok(outcomes),
        }
    }
}

/// A transaction on `key` that runs only if its `mod_revision` is `expect` (0: absent).
fn guarded(key: &str, expect: Option<u64>) -> Txn {
    let expect = i64::try_from(expect.unwrap_or(0)).unwrap_or(i64::MAX);
    Txn::new().when(vec![Compare::mod_revision(key, CompareOp::Equal, expect)])
}

/// An etcd revision (never negative) as ours.
fn to_u64(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

/// The stored form of `record`.
fn encode_node(record: &NodeRecord) -> Result<Vec<u8>> {
    let owner = record.owner();
    let stored = StoredNode {
        host: record.host().to_owned(),
        port: record.port(),
        metadata: record.metadata().to_owned(),
        public_key: owner.map(|o| o.key().to_base64().to_owned()),
        token_sha256: owner
            .and_then(|o| o.token_hash())
            .map(|h| STANDARD.encode(h)),
    };
    serde_json::to_vec(&stored).map_err(|e| store_error("encode", e))
}

/// The record of a stored value, or what is wrong with it.
fn decode_node(value: &[u8]) -> Result<NodeRecord, String> {
    let stored: StoredNode = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if stored.port == 0 {
        return Err("port 0".to_owned());
    }
    let is_object = stored.metadata.starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(&stored.metadata).is_ok();
    if !is_object {
        return Err("metadata is not a JSON object".to_owned());
    }
    let owner = match &stored.public_key {
        None => None,
        Some(key) => {
            let key = PublicKey::from_base64(key).map_err(|e| e.to_string())?;
            let hash = match &stored.token_sha256 {
                None => None,
                Some(h) => {
                    let bytes = STANDARD.decode(h).map_err(|e| e.to_string())?;
                    Some(<[u8; 32]>::try_from(bytes).map_err(|_| "token hash of bad length")?)
                }
            };
            Some(Arc::new(Owner::new(key, hash)))
        }
    };
    Ok(NodeRecord::new(&stored.host, stored.port, &stored.metadata).with_owner(owner))
}

/// The watch of a cluster's prefix: every node change in revision order.
pub struct Changes {
    /// The store whose prefix is watched.
    store: Etcd,
    /// The watch's answers.
    stream: WatchStream,
}

impl Changes {
    /// The next changes, in revision order, with the revision the watch reached
    /// (the last event's); `Ok(None)` when the watch ended, `Err` when it broke or was
    /// compacted past (the caller starts a new watch, or reloads).
    pub async fn next(&mut self) -> Result<Option<(Vec<Change>, u64)>> {
        loop {
            let Some(answer) = self
                .stream
                .message()
                .await
                .map_err(|e| store_error("watch", e))?
            else {
                return Ok(None);
            };
            if answer.canceled() {
                let compacted = answer.compact_revision();
                return Err(store_error(
                    "watch",
                    format!(
                        "canceled ({}; compacted up to {compacted})",
                        answer.cancel_reason()
                    ),
                ));
            }
            let events = answer.events();
            if events.is_empty() {
                continue;
            }
            let expired_key = format!("{}{EXPIRED}", self.store.prefix);
            // Revisions whose transaction marked an expiry.
            let expiries: Vec<u64> = events
                .iter()
                .filter(|e| e.event_type() == EventType::Put)
                .filter_map(|e| e.kv())
                .filter(|kv| kv.key() == expired_key.as_bytes())
                .map(|kv| to_u64(kv.mod_revision()))
                .collect();
            let mut changes = Vec::with_capacity(events.len());
            let mut reached = 0;
            for event in events {
                let Some(kv) = event.kv() else {
                    continue;
                };
                let revision = to_u64(kv.mod_revision());
                reached = reached.max(revision);
                match event.event_type() {
                    EventType::Put => {
                        if let Some((id, record)) = self.store.decode(kv) {
                            changes.push(Change::Put {
                                revision,
                                id,
                                record,
                            });
                        }
                    }
                    EventType::Delete => {
                        let Some(id) = std::str::from_utf8(kv.key())
                            .ok()
                            .and_then(|k| k.strip_prefix(&self.store.prefix))
                            .and_then(|k| k.strip_prefix(NODES))
                        else {
                            continue;
                        };
                        changes.push(Change::Delete {
                            revision,
                            id: Arc::from(id),
                            expired: expiries.contains(&revision),
                        });
                    }
                }
            }
            return Ok(Some((changes, reached)));
        }
    }
}

/// The etcd side of one center's place in the cluster: its lease, which carries its
/// announcement under `{prefix}/centers/` and, when it is the lease holder, the
/// `{prefix}/holder` key (see `crate::holder`).
pub struct CenterLease {
    /// The store it belongs to.
    store: Etcd,
    /// The etcd lease id.
    id: i64,
    /// Sends keep-alives.
    keeper: LeaseKeeper,
    /// Their answers.
    answers: LeaseKeepAliveStream,
}

/// What one keep-alive round learned.
#[derive(Debug)]
pub struct Holder {
    /// Whether this center holds `{prefix}/holder`.
    pub is_me: bool,
    /// The other centers: (id, URL).
    pub peers: Vec<(String, String)>,
}

impl Etcd {
    /// Takes a lease of `ttl` and announces center `me` at `url` on it.
    pub async fn lease(&self, ttl: Duration, me: &str, url: &str) -> Result<CenterLease> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        let granted = tokio::time::timeout(self.timeout, client.lease_grant(seconds, None))
            .await
            .map_err(|_| store_error("lease grant", "no answer in time"))?
            .map_err(|e| store_error("lease grant", e))?;
        let id = granted.id();
        let key = format!("{}{CENTERS}{me}", self.prefix);
        tokio::time::timeout(
            self.timeout,
            client.put(key, url, Some(PutOptions::new().with_lease(id))),
        )
        .await
        .map_err(|_| store_error("announce", "no answer in time"))?
        .map_err(|e| store_error("announce", e))?;
        let (keeper, answers) = tokio::time::timeout(self.timeout, client.lease_keep_alive(id))
            .await
            .map_err(|_| store_error("keep-alive", "no answer in time"))?
            .map_err(|e| store_error("keep-alive", e))?;
        Ok(CenterLease {
            store: self.clone(),
            id,
            keeper,
            answers,
        })
    }

    /// The shared secret centers prove themselves to each other with: the one in
    /// `{prefix}/secret`, written by the first center of the cluster (`candidate`).
    pub async fn secret(&self, candidate: &str) -> Result<String> {
        let key = format!("{}{SECRET}", self.prefix);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(key.as_str(), candidate, None)])
            .or_else(vec![TxnOp::get(key.as_str(), None)]);
        let mut kv = self.client.kv_client();
        let answer = tokio::time::timeout(self.timeout, kv.txn(txn))
            .await
            .map_err(|_| store_error("secret", "no answer in time"))?
            .map_err(|e| store_error("secret", e))?;
        if answer.succeeded() {
            return Ok(candidate.to_owned());
        }
        first_value(&answer)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| store_error("secret", "no value"))
    }
}

/// The value of the first key a transaction's `get` returned.
fn first_value(answer: &etcd_client::TxnResponse) -> Option<Vec<u8>> {
    answer.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    })
}

impl CenterLease {
    /// Keeps the lease alive once, bids for the holder key if it is free, and reads
    /// who the other centers are. `Err`: the lease is gone (expired) or etcd did not
    /// answer in time.
    pub async fn keep_alive_and_bid(&mut self, me: &str) -> Result<Holder> {
        let timeout = self.store.timeout;
        tokio::time::timeout(timeout, self.keeper.keep_alive())
            .await
            .map_err(|_| store_error("keep-alive", "no answer in time"))?
            .map_err(|e| store_error("keep-alive", e))?;
        let answer = tokio::time::timeout(timeout, self.answers.message())
            .await
            .map_err(|_| store_error("keep-alive", "no answer in time"))?
            .map_err(|e| store_error("keep-alive", e))?
            .ok_or_else(|| store_error("keep-alive", "the stream ended"))?;
        if answer.ttl() <= 0 {
            return Err(store_error("keep-alive", "the lease expired"));
        }
        let prefix = &self.store.prefix;
        let holder = format!("{prefix}{HOLDER}");
        let bid = Txn::new()
            .when(vec![Compare::create_revision(
                holder.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                holder.as_str(),
                me,
                Some(PutOptions::new().with_lease(self.id)),
            )])
            .or_else(vec![TxnOp::get(holder.as_str(), None)]);
        let mut kv = self.store.client.kv_client();
        let answer = tokio::time::timeout(timeout, kv.txn(bid))
            .await
            .map_err(|_| store_error("bid", "no answer in time"))?
            .map_err(|e| store_error("bid", e))?;
        let is_me = answer.succeeded() || first_value(&answer).as_deref() == Some(me.as_bytes());
        let centers = format!("{prefix}{CENTERS}");
        let listed = tokio::time::timeout(
            timeout,
            kv.get(centers.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await
        .map_err(|_| store_error("centers", "no answer in time"))?
        .map_err(|e| store_error("centers", e))?;
        let peers = listed
            .kvs()
            .iter()
            .filter_map(|kv| {
                let id = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&centers)?;
                let url = std::str::from_utf8(kv.value()).ok()?;
                (id != me).then(|| (id.to_owned(), url.to_owned()))
            })
            .collect();
        Ok(Holder { is_me, peers })
    }

    /// Gives the lease up (its keys go with it), best effort.
    pub async fn revoke(&mut self) -> Result<()> {
        let mut client = self.store.client.clone();
        tokio::time::timeout(self.store.timeout, client.lease_revoke(self.id))
            .await
            .map_err(|_| store_error("revoke", "no answer in time"))?
            .map_err(|e| store_error("revoke", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_node_round_trips_with_its_owner() {
        let key = isek::identity::NodeIdentity::generate()
            .public_key()
            .clone();
        let record = NodeRecord::new("10.0.0.1", 8080, r#"{"a":1}"#)
            .with_owner(Some(Arc::new(Owner::new(key, Some([7; 32])))));
        let bytes = encode_node(&record).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decode_node(&bytes), Ok(record));
        let unsigned = NodeRecord::new("h", 1, "{}");
        let bytes = encode_node(&unsigned).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decode_node(&bytes), Ok(unsigned));
        assert!(decode_node(br#"{"host":"h","port":1,"metadata":"[1]"}"#).is_err());
        assert!(decode_node(br#"{"host":"h","port":0,"metadata":"{}"}"#).is_err());
    }
}
