//! `Index`: the nodes of a membership with inverted indexes (posting lists)
//! over the terms that select them, so that a filtered query costs in
//! proportion to its candidates, not to the membership.
//!
//! [`Postings`] is the value-free part: every node id gets a slot number and
//! each posting key ([`crate::filter::plan::keys_of`]) a compressed bitmap of
//! slots; it answers a filter's [`Plan`] with candidate slots. A center keeps
//! one beside its own records; [`Index`] is `Postings` plus the [`NodeInfo`]
//! of each slot. A query runs its filter's plan: an index plan combines
//! bitmaps and evaluates only the candidates; a scan plan evaluates every
//! node. Both give exactly the nodes for which [`Filter::matches`] is true.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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

/// The slots of one posting key: a single slot (most keys of unique values,
/// such as a node's name, have one) without the bitmap's allocations.
#[derive(Debug, Clone)]
enum Posting {
    /// Exactly one slot.
    One(u32),
    /// Two or more slots.
    Many(RoaringBitmap),
}

impl Posting {
    fn bitmap(&self) -> Cow<'_, RoaringBitmap> {
        match self {
            Posting::One(slot) => Cow::Owned(std::iter::once(*slot).collect()),
            Posting::Many(bitmap) => Cow::Borrowed(bitmap),
        }
    }

    fn insert(&mut self, slot: u32) {
        match self {
            Posting::One(one) if *one == slot => {}
            Posting::One(one) => *self = Posting::Many([*one, slot].into_iter().collect()),
            Posting::Many(bitmap) => {
                bitmap.insert(slot);
            }
        }
    }

    /// Removes `slot`; whether the posting is now empty.
    fn remove(&mut self, slot: u32) -> bool {
        match self {
            Posting::One(one) => *one == slot,
            Posting::Many(bitmap) => {
                bitmap.remove(slot);
                match bitmap.len() {
                    0 => true,
                    1 => {
                        if let Some(last) = bitmap.min() {
                            *self = Posting::One(last);
                        }
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Posting lists over node ids, without the nodes: slot numbers, interned
/// posting keys, and the slots of each key. What a registry keeps beside its
/// own records to answer a [`Plan`] with candidates.
#[derive(Debug, Default)]
pub struct Postings {
    /// The slot of each node id.
    slot_of: HashMap<Arc<str>, u32>,
    /// The node id of each slot (`None`: free).
    ids: Vec<Option<Arc<str>>>,
    /// The key numbers of each slot, so a removal needs no metadata.
    slot_keys: Vec<Box<[u32]>>,
    /// Slots free for reuse.
    free: Vec<u32>,
    /// Every slot in use (the candidates of a scan).
    live: RoaringBitmap,
    /// Key text to key number, ordered for prefix ranges.
    key_numbers: BTreeMap<Arc<str>, u32>,
    /// The key text and slots of each key number (`None`: a free number).
    lists: Vec<Option<(Arc<str>, Posting)>>,
    /// Key numbers free for reuse.
    free_keys: Vec<u32>,
}

impl Postings {
    /// Empty posting lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes they cover.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Whether they cover no node.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// How many distinct posting keys they keep (a measure of their size).
    pub fn posting_keys(&self) -> usize {
        self.key_numbers.len()
    }

    /// The slot of `node_id`.
    pub fn slot(&self, node_id: &str) -> Option<u32> {
        self.slot_of.get(node_id).copied()
    }

    /// The node id in `slot`.
    pub fn id(&self, slot: u32) -> Option<&Arc<str>> {
        self.ids.get(slot as usize).and_then(Option::as_ref)
    }

    /// Every slot in use.
    pub fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    /// Adds `node_id` with posting `keys` (replacing what it had); its slot.
    pub fn insert(
        &mut self,
        node_id: Arc<str>,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<u32, IndexError> {
        self.remove(&node_id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot =
                    u32::try_from(self.ids.len()).map_err(|_| IndexError::Full(self.ids.len()))?;
                self.ids.push(None);
                self.slot_keys.push(Box::default());
                slot
            }
        };
        let mut numbers = Vec::new();
        for key in keys {
            let number = match self.key_numbers.get(key.as_str()) {
                Some(number) => *number,
                None => {
                    let number = match self.free_keys.pop() {
                        Some(n) => n,
                        None => {
                            self.lists.push(None);
                            u32::try_from(self.lists.len() - 1)
                                .map_err(|_| IndexError::Full(self.ids.len()))?
                        }
                    };
                    let text: Arc<str> = Arc::from(key);
                    self.key_numbers.insert(Arc::clone(&text), number);
                    if let Some(place) = self.lists.get_mut(number as usize) {
                        *place = Some((text, Posting::One(slot)));
                    }
                    numbers.push(number);
                    continue;
                }
            };
            match self.lists.get_mut(number as usize) {
                Some(Some((_, posting))) => posting.insert(slot),
                _ => continue,
            }
            numbers.push(number);
        }
        numbers.sort_unstable();
        numbers.dedup();
        if let Some(place) = self.slot_keys.get_mut(slot as usize) {
            *place = numbers.into_boxed_slice();
        }
        if let Some(place) = self.ids.get_mut(slot as usize) {
            *place = Some(Arc::clone(&node_id));
        }
        self.live.insert(slot);
        self.slot_of.insert(node_id, slot);
        Ok(slot)
    }

    /// Removes `node_id`; the slot it had.
    pub fn remove(&mut self, node_id: &str) -> Option<u32> {
        let slot = self.slot_of.remove(node_id)?;
        let numbers = self
            .slot_keys
            .get_mut(slot as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        for number in numbers.iter() {
            let Some(place) = self.lists.get_mut(*number as usize) else {
                continue;
            };
            if place.as_mut().is_some_and(|(_, p)| p.remove(slot))
                && let Some((text, _)) = place.take()
            {
                self.key_numbers.remove(&text);
                self.free_keys.push(*number);
            }
        }
        if let Some(place) = self.ids.get_mut(slot as usize) {
            *place = None;
        }
        self.live.remove(slot);
        self.free.push(slot);
        Some(slot)
    }

    /// The candidate slots of `plan`: a superset of the matches (every slot for
    /// a scan).
    pub fn candidates(&self, plan: &Plan) -> (PlanKind, Cow<'_, RoaringBitmap>) {
        match plan {
            Plan::Index(term) => (PlanKind::Index, self.term(term)),
            Plan::Scan => (PlanKind::Scan, Cow::Borrowed(&self.live)),
        }
    }

    fn posting(&self, key: &str) -> Option<&Posting> {
        let number = self.key_numbers.get(key)?;
        self.lists.get(*number as usize)?.as_ref().map(|(_, p)| p)
    }

    /// The slots of `term`.
    fn term(&self, term: &Term) -> Cow<'_, RoaringBitmap> {
        match term {
            Term::Key(key) => match self.posting(key) {
                Some(posting) => posting.bitmap(),
                None => Cow::Owned(RoaringBitmap::new()),
            },
            Term::Prefix(prefix) => {
                let mut union = RoaringBitmap::new();
                for (_, number) in self
                    .key_numbers
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                {
                    if let Some(Some((_, posting))) = self.lists.get(*number as usize) {
                        union |= posting.bitmap().as_ref();
                    }
                }
                Cow::Owned(union)
            }
            Term::Ids(ids) => Cow::Owned(
                ids.iter()
                    .filter_map(|id| self.slot_of.get(id.as_str()))
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

/// Nodes by id, with posting lists for filtered selection.
#[derive(Debug, Default)]
pub struct Index {
    /// The posting lists and slot numbers.
    postings: Postings,
    /// The node in each slot.
    slots: Vec<Option<NodeInfo>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.postings.len()
    }

    /// Whether it holds no node.
    pub fn is_empty(&self) -> bool {
        self.postings.is_empty()
    }

    /// The node with this id.
    pub fn get(&self, node_id: &str) -> Option<&NodeInfo> {
        self.slot(self.postings.slot(node_id)?)
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.slots.iter().flatten()
    }

    /// How many distinct posting keys it keeps (a measure of its size).
    pub fn posting_keys(&self) -> usize {
        self.postings.posting_keys()
    }

    fn slot(&self, slot: u32) -> Option<&NodeInfo> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// Adds `node`, or replaces the node with its id; returns the one replaced.
    pub fn put(&mut self, node: NodeInfo) -> Result<Option<NodeInfo>, IndexError> {
        let previous = self.remove(&node.node_id);
        let slot = self
            .postings
            .insert(Arc::from(node.node_id.as_str()), keys_of(&node.metadata))?;
        let at = slot as usize;
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        if let Some(place) = self.slots.get_mut(at) {
            *place = Some(node);
        }
        Ok(previous)
    }

    /// Removes the node with this id; returns it.
    pub fn remove(&mut self, node_id: &str) -> Option<NodeInfo> {
        let slot = self.postings.remove(node_id)?;
        self.slots.get_mut(slot as usize)?.take()
    }

    /// The nodes that match `filter`, through its plan.
    pub fn select(&self, filter: &Filter) -> Selection<'_> {
        let (plan, candidates) = self.postings.candidates(filter.plan());
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
}
