//! The typed requests a [`crate::Center`] acts on: what `http` parses a body into, and
//! what in-process callers (tests, tools) build directly.
//!
//! Level 0 (pure data): no JSON maps, no headers. Parsing and the checks that need the
//! raw body (the registration signature covers its exact `node_info`) happen in
//! `http::request`; everything that needs the registry happens in the center.

use crate::policy::{Proof, Signer};
use crate::record::NodeRecord;

/// Register (or replace) a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The node id (validated against the limits).
    pub node_id: String,
    /// What the center stores about the node.
    pub record: NodeRecord,
    /// The verified signer of a signed registration (`None`: unsigned).
    pub signer: Option<Signer>,
    /// The operator acts (in-process callers): no ownership check.
    pub operator: bool,
}

impl Register {
    /// An unsigned registration as the original protocol sends it.
    pub fn unsigned(node_id: impl Into<String>, record: NodeRecord) -> Self {
        Self {
            node_id: node_id.into(),
            record,
            signer: None,
            operator: false,
        }
    }

    /// A registration by the operator: replaces any owner's entry.
    pub fn by_operator(node_id: impl Into<String>, record: NodeRecord) -> Self {
        Self {
            operator: true,
            ..Self::unsigned(node_id, record)
        }
    }
}

/// Renew a node's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renew {
    /// The node id.
    pub node_id: String,
    /// The proof of ownership the request carries.
    pub proof: Proof,
    /// The operator acts: no ownership check.
    pub operator: bool,
}

impl Renew {
    /// A renewal carrying `proof`.
    pub fn new(node_id: impl Into<String>, proof: Proof) -> Self {
        Self {
            node_id: node_id.into(),
            proof,
            operator: false,
        }
    }

    /// A renewal by the operator.
    pub fn by_operator(node_id: impl Into<String>) -> Self {
        Self {
            operator: true,
            ..Self::new(node_id, Proof::None)
        }
    }
}

/// Deregister a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deregister {
    /// The node id.
    pub node_id: String,
    /// The proof of ownership the request carries.
    pub proof: Proof,
    /// The operator acts (admin token, in-process callers): no ownership check.
    pub operator: bool,
}

impl Deregister {
    /// A deregistration carrying `proof`.
    pub fn new(node_id: impl Into<String>, proof: Proof) -> Self {
        Self {
            node_id: node_id.into(),
            proof,
            operator: false,
        }
    }

    /// A deregistration by the operator.
    pub fn by_operator(node_id: impl Into<String>) -> Self {
        Self {
            operator: true,
            ..Self::new(node_id, Proof::None)
        }
    }
}

/// What a query lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Collection {
    /// Nodes (`GET /v1/nodes`).
    #[default]
    Nodes,
    /// The A2A agent cards of the nodes that carry one (`GET /v1/agents`).
    Agents,
}

/// A filtered or paged listing (`GET /v1/nodes?filter=&limit=&cursor=`,
/// `GET /v1/agents`).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// What is listed.
    pub collection: Collection,
    /// Only nodes this filter matches (`None`: every node). For
    /// [`Collection::Agents`], the caller adds "has an agent card" (see
    /// [`agents_filter`]).
    pub filter: Option<isek::filter::Filter>,
    /// The filter as the client sent it (a later page must name the same or none).
    pub asked: Option<String>,
    /// Most nodes in the answer (`None`: the center's page size).
    pub limit: Option<usize>,
    /// Continue the query this cursor token came from (its filter and revision).
    pub cursor: Option<String>,
}

/// The filter of `GET /v1/agents` for a client's `filter` (already checked on its
/// own, so its errors name the client's positions): the nodes that carry an
/// agent card, and match it. An index serves the card's presence.
pub fn agents_filter(asked: Option<&str>) -> String {
    match asked {
        Some(source) => format!("has(metadata.agent_card) && (\n{source}\n)"),
        None => "has(metadata.agent_card)".to_owned(),
    }
}
