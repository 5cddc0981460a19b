//! `Index`: the nodes of a membership with inverted indexes (posting lists)
//! over the terms that select them, so that a filtered query costs in
//! proportion to its candidates, not to the membership.
//!
//! Every node gets a slot number; each posting key ([`crate::filter::plan::keys_of`])
//! maps to a compressed bitmap of slots. A query runs its filter's
//! [`Plan`]: an index plan combines bitmaps and evaluates only the candidates;
//! a scan plan evaluates every node. Both give exactly the nodes for which
//! [`Filter::matches`] is true.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;

use crate::filter::plan::{Term, keys_of};
use crate::filter::{Filter, Plan, PlanKind};
use crate::node::NodeInfo;

/// Why a node could not be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Every slot number (2^32) is in use.
    #[error("index full: {0} nodes")]
    Full(usize),
}

/// The answer of [`Index::select`].
#[derive(Debug)]
pub struct Selection<'a> {
    /// Whether posting lists or a scan produced the candidates.
    pub plan: PlanKind,
    /// How many nodes were evaluated.
    pub candidates: u64,
    /// The matching nodes, in no particular order.
    pub nodes: Vec<&'a NodeInfo>,
}

/// Nodes by id, with posting lists for filtered selection.
#[derive(Debug, Default)]
pub struct Index {
    slots: Vec<Option<NodeInfo>>,
    by_id: HashMap<String, u32>,
    free: Vec<u32>,
    live: RoaringBitmap,
    postings: BTreeMap<Box<str>, RoaringBitmap>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether it holds no node.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The node with this id.
    pub fn get(&self, node_id: &str) -> Option<&NodeInfo> {
        let slot = *self.by_id.get(node_id)?;
        self.slot(slot)
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.slots.iter().flatten()
    }

    /// How many distinct posting keys it keeps (a measure of its size).
    pub fn posting_keys(&self) -> usize {
        self.postings.len()
    }

    fn slot(&self, slot: u32) -> Option<&NodeInfo> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// Adds `node`, or replaces the node with its id; returns the one replaced.
    pub fn put(&mut self, node: NodeInfo) -> Result<Option<NodeInfo>, IndexError> {
        let previous = self.remove(&node.node_id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len())
                    .map_err(|_| IndexError::Full(self.slots.len()))?;
                self.slots.push(None);
                slot
            }
        };
        for key in keys_of(&node.metadata) {
            self.postings
                .entry(key.into_boxed_str())
                .or_default()
                .insert(slot);
        }
        self.live.insert(slot);
        self.by_id.insert(node.node_id.clone(), slot);
        if let Some(place) = self.slots.get_mut(slot as usize) {
            *place = Some(node);
        }
        Ok(previous)
    }

    /// Removes the node with this id; returns it.
    pub fn remove(&mut self, node_id: &str) -> Option<NodeInfo> {
        let slot = self.by_id.remove(node_id)?;
        let node = self.slots.get_mut(slot as usize)?.take()?;
        for key in keys_of(&node.metadata) {
            if let Some(posting) = self.postings.get_mut(key.as_str()) {
                posting.remove(slot);
                if posting.is_empty() {
                    self.postings.remove(key.as_str());
                }
            }
        }
        self.live.remove(slot);
        self.free.push(slot);
        Some(node)
    }

    /// The nodes that match `filter`, through its plan.
    pub fn select(&self, filter: &Filter) -> Selection<'_> {
        let (plan, candidates) = match filter.plan() {
            Plan::Index(term) => (PlanKind::Index, self.term(term)),
            Plan::Scan => (PlanKind::Scan, Cow::Borrowed(&self.live)),
        };
        let nodes = crate::filter::with_eval_stack(|| {
            candidates
                .iter()
                .filter_map(|slot| self.slot(slot))
                .filter(|node| filter.matches(node))
                .collect()
        });
        Selection {
            plan,
            candidates: candidates.len(),
            nodes,
        }
    }

    /// The slots of `term`.
    fn term(&self, term: &Term) -> Cow<'_, RoaringBitmap> {
        match term {
            Term::Key(key) => match self.postings.get(key.as_str()) {
                Some(posting) => Cow::Borrowed(posting),
                None => Cow::Owned(RoaringBitmap::new()),
            },
            Term::Prefix(prefix) => {
                let mut union = RoaringBitmap::new();
                for (_, posting) in self
                    .postings
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                {
                    union |= posting;
                }
                Cow::Owned(union)
            }
            Term::Ids(ids) => Cow::Owned(
                ids.iter()
                    .filter_map(|id| self.by_id.get(id))
                    .copied()
                    .collect(),
            ),
            Term::And(terms) => {
                let mut sets: Vec<Cow<'_, RoaringBitmap>> =
                    terms.iter().map(|t| self.term(t)).collect();
                sets.sort_by_key(|s| s.len());
                let mut sets = sets.into_iter();
                let Some(first) = sets.next() else {
                    return Cow::Borrowed(&self.live);
                };
                let mut acc = first.into_owned();
                for set in sets {
                    if acc.is_empty() {
                        break;
                    }
                    acc &= set.as_ref();
                }
                Cow::Owned(acc)
            }
            Term::Or(terms) => {
                let mut union = RoaringBitmap::new();
                for t in terms {
                    union |= self.term(t).as_ref();
                }
                Cow::Owned(union)
            }
        }
    }
}
