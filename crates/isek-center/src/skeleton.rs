//! [`SkeletonIndex`]: node ids by their UTS #39 confusable skeleton, so a center can
//! refuse a new id that looks like a live node's (`--confusable-ids refuse`).
//!
//! The skeleton of an id ([`skeleton_of`], `unicode-security`'s implementation of
//! UTS #39 section 4) maps every character to its prototype (Cyrillic `а` and Latin
//! `a` to `a`, `1` and `I` to `l`, `m` to `rn`, ...): two ids with the same skeleton
//! look alike. The index keeps, per 64-bit hash of a skeleton, the ids that have it;
//! a lookup recomputes the skeletons of the (usually zero) ids under that hash, so a
//! hash collision never refuses an id. About 40 bytes per node; the state keeps it in
//! step with its put/remove/expire, and only when the setting is `refuse`.
//!
//! Level 0 (pure): no lock, no clock; the caller decides which ids are live.

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The UTS #39 skeleton of `id`.
pub fn skeleton_of(id: &str) -> String {
    unicode_security::skeleton(id).collect()
}

/// The key of a skeleton in the index (a fixed hasher: the same in every process).
fn key_of(skeleton: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    skeleton.hash(&mut hasher);
    hasher.finish()
}

/// The ids under one key: nearly always one.
#[derive(Debug)]
enum Ids {
    /// One id.
    One(Arc<str>),
    /// Several ids (look-alikes loaded from a store or registered with `allow`, or a
    /// hash collision).
    Many(Vec<Arc<str>>),
}

/// Node ids by skeleton.
#[derive(Debug, Default)]
pub struct SkeletonIndex {
    /// Ids per skeleton key.
    ids: HashMap<u64, Ids>,
}

impl SkeletonIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id` (idempotent).
    pub fn insert(&mut self, id: &Arc<str>) {
        match self.ids.entry(key_of(&skeleton_of(id))) {
            Entry::Vacant(slot) => {
                slot.insert(Ids::One(Arc::clone(id)));
            }
            Entry::Occupied(mut slot) => {
                let ids = slot.get_mut();
                match ids {
                    Ids::One(one) if **one == **id => {}
                    Ids::One(one) => *ids = Ids::Many(vec![Arc::clone(one), Arc::clone(id)]),
                    Ids::Many(many) if many.iter().any(|m| **m == **id) => {}
                    Ids::Many(many) => many.push(Arc::clone(id)),
                }
            }
        }
    }

    /// Removes `id` (absent ids are fine).
    pub fn remove(&mut self, id: &str) {
        let Entry::Occupied(mut slot) = self.ids.entry(key_of(&skeleton_of(id))) else {
            return;
        };
        match slot.get_mut() {
            Ids::One(one) if **one == *id => {
                slot.remove();
            }
            Ids::One(_) => {}
            Ids::Many(many) => {
                many.retain(|m| **m != *id);
                if let [last] = many.as_slice() {
                    let last = Arc::clone(last);
                    slot.insert(Ids::One(last));
                } else if many.is_empty() {
                    slot.remove();
                }
            }
        }
    }

    /// The indexed ids other than `id` whose skeleton is `skeleton` (the skeleton of
    /// `id`, computed once by the caller).
    pub fn look_alikes<'a>(
        &'a self,
        id: &'a str,
        skeleton: &'a str,
    ) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        let ids: &[Arc<str>] = match self.ids.get(&key_of(skeleton)) {
            None => &[],
            Some(Ids::One(one)) => std::slice::from_ref(one),
            Some(Ids::Many(many)) => many,
        };
        ids.iter()
            .filter(move |other| ***other != *id && skeleton_of(other) == skeleton)
    }

    /// Number of ids indexed.
    pub fn len(&self) -> usize {
        self.ids
            .values()
            .map(|ids| match ids {
                Ids::One(_) => 1,
                Ids::Many(many) => many.len(),
            })
            .sum()
    }

    /// Whether no id is indexed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_share_a_skeleton_and_the_index_follows_changes() {
        // Cyrillic а (U+0430) for Latin a; digit 1 and capital I for small l.
        assert_eq!(skeleton_of("p\u{430}ypal"), skeleton_of("paypal"));
        assert_eq!(skeleton_of("node-1"), skeleton_of("node-l"));
        assert_eq!(skeleton_of("node-I"), skeleton_of("node-l"));
        assert_ne!(skeleton_of("node-1"), skeleton_of("node-2"));

        let mut index = SkeletonIndex::new();
        let paypal: Arc<str> = Arc::from("paypal");
        let other: Arc<str> = Arc::from("planner");
        index.insert(&paypal);
        index.insert(&paypal);
        index.insert(&other);
        assert_eq!(index.len(), 2);
        let fake = "p\u{430}ypal";
        let fake_skeleton = skeleton_of(fake);
        let found: Vec<_> = index.look_alikes(fake, &fake_skeleton).collect();
        assert_eq!(found, [&paypal]);
        // An id is not its own look-alike.
        assert_eq!(
            index.look_alikes("paypal", &skeleton_of("paypal")).count(),
            0
        );
        // Several ids under one skeleton, removed one by one.
        let fake: Arc<str> = Arc::from(fake);
        index.insert(&fake);
        assert_eq!(index.len(), 3);
        assert_eq!(
            index.look_alikes("paypal", &skeleton_of("paypal")).count(),
            1
        );
        index.remove("paypal");
        index.remove("paypal");
        assert_eq!(index.len(), 2);
        index.remove(&fake);
        index.remove("planner");
        assert!(index.is_empty());
    }
}
