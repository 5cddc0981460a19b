//! [`LeaseTable`]: node id → (value, lease deadline), pure and clock-free.
//!
//! Every method takes `now`, so tests drive it with made-up instants and the reaper
//! with the real clock. The table is also the center's index of nodes: each lease
//! carries its node's record, so a node costs one map entry.
//!
//! Expiry is driven by deadlines, not scans: a min-heap holds one scheduled check per
//! lease. Renewals only move the deadline in the map (O(log n), no heap work); when a
//! check comes due and the lease was renewed meanwhile, it is rescheduled at the new
//! deadline ("lazy rescheduling"), so the heap never holds more than one live check per
//! lease plus stale checks of removed leases, which are dropped when they come due.
//!
//! Invariants:
//! - every lease whose deadline has not passed has exactly one scheduled check, at or
//!   before its deadline (`scheduled != 0` names it);
//! - a lease returned by [`LeaseTable::expire`] stays in the map, invisible to every
//!   live read, until [`LeaseTable::remove_generation`] takes it out; a renew cannot
//!   revive it, a new `insert` replaces it (with a new generation);
//! - generations identify one registration, so removing an expired generation never
//!   removes a re-registration that happened meanwhile.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// One node's lease and record.
#[derive(Debug)]
struct Lease<V> {
    /// When the lease runs out, in nanoseconds since the table's origin.
    deadline: u64,
    /// Which registration this is; changes on every insert.
    generation: u64,
    /// Sequence number of this lease's pending check in the heap, 0 when none
    /// (after it expired).
    scheduled: u64,
    /// The node's record.
    value: V,
    /// Whether [`LeaseTable::guard`] moved `deadline` since the last renewal or
    /// registration.
    guarded: bool,
}

/// A pending deadline check in the heap: ordered by time, then sequence.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Check {
    /// When to look at the lease, in nanoseconds since the origin.
    at: u64,
    /// Unique per scheduled check, to tell a lease's current check from stale ones.
    seq: u64,
    /// The lease to look at.
    id: Arc<str>,
}

/// A lease that ran out, as reported by [`LeaseTable::expire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The node whose lease ran out.
    pub id: Arc<str>,
    /// The registration that ran out (a later one with the same id is not affected).
    pub generation: u64,
}

/// What one [`LeaseTable::guard`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guarded {
    /// Leases whose deadline it moved.
    pub extended: usize,
    /// The latest deadline it set, if it moved any.
    pub until: Option<Instant>,
}

/// A live entry as reads see it.
#[derive(Debug)]
pub struct LiveEntry<'a, V> {
    /// The node id.
    pub id: &'a Arc<str>,
    /// The node's record.
    pub value: &'a V,
    /// When its lease runs out.
    pub deadline: Instant,
    /// Its registration generation.
    pub generation: u64,
    /// Whether `deadline` was moved by [`LeaseTable::guard`] (not renewed since).
    pub guarded: bool,
}

/// Leases keyed by node id, sorted by id, with deadline-ordered expiry.
#[derive(Debug)]
pub struct LeaseTable<V> {
    /// Instant that deadline offsets count from.
    origin: Instant,
    /// Lease length in nanoseconds.
    ttl: u64,
    /// Every lease, live or expired-but-not-removed, sorted by id (the listing order).
    leases: BTreeMap<Arc<str>, Lease<V>>,
    /// Pending deadline checks, earliest first.
    checks: BinaryHeap<Reverse<Check>>,
    /// Last sequence number handed to a check (0 means "none").
    last_seq: u64,
    /// How many leases are `guarded` (so listings look for them only when some are).
    guarded: usize,
}

impl<V> LeaseTable<V> {
    /// An empty table granting leases of `ttl`, counting time from `origin`.
    pub fn new(ttl: Duration, origin: Instant) -> Self {
        Self {
            origin,
            ttl: nanos(ttl),
            leases: BTreeMap::new(),
            checks: BinaryHeap::new(),
            last_seq: 0,
            guarded: 0,
        }
    }

    /// `t` as an offset from the origin (instants before it count as the origin).
    fn offset(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.origin))
    }

    /// The instant of an offset (offsets are at most 584 years: always representable).
    fn instant(&self, offset: u64) -> Instant {
        self.origin
            .checked_add(Duration::from_nanos(offset))
            .unwrap_or(self.origin)
    }

    /// Schedules a check of `id` at `at` and returns its sequence number.
    fn schedule(&mut self, id: Arc<str>, at: u64) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        self.checks.push(Reverse(Check { at, seq, id }));
        seq
    }

    /// Registers `id` (or replaces it) with a fresh lease from `now`; returns the
    /// previous value, if any (live or expired).
    pub fn insert(&mut self, id: Arc<str>, value: V, generation: u64, now: Instant) -> Option<V> {
        let deadline = self.offset(now).saturating_add(self.ttl);
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.deadline = deadline;
            lease.generation = generation;
            self.guarded -= usize::from(std::mem::take(&mut lease.guarded));
            let old = std::mem::replace(&mut lease.value, value);
            if lease.scheduled == 0 {
                // Its check already fired (it had expired): schedule a new one.
                self.last_seq += 1;
                lease.scheduled = self.last_seq;
                self.checks.push(Reverse(Check {
                    at: deadline,
                    seq: self.last_seq,
                    id,
                }));
            }
            // Otherwise its pending check is due no later than the new deadline and
            // reschedules itself then.
            return Some(old);
        }
        let scheduled = self.schedule(Arc::clone(&id), deadline);
        self.leases.insert(
            id,
            Lease {
                deadline,
                generation,
                scheduled,
                value,
                guarded: false,
            },
        );
        None
    }

    /// Extends a live lease to `now + ttl`; false when `id` is unknown or expired.
    pub fn renew(&mut self, id: &str, now: Instant) -> bool {
        let now = self.offset(now);
        let ttl = self.ttl;
        match self.leases.get_mut(id) {
            Some(lease) if lease.deadline > now => {
                lease.deadline = now.saturating_add(ttl);
                self.guarded -= usize::from(std::mem::take(&mut lease.guarded));
                true
            }
            _ => false,
        }
    }

    /// Extends the lease of `id` to `now + ttl` even if its deadline has passed, as
    /// long as [`LeaseTable::expire`] has not reported it (a renewal another center
    /// accepted in time, arriving late); false when unknown or reported expired.
    pub fn refresh(&mut self, id: &str, now: Instant) -> bool {
        let deadline = self.offset(now).saturating_add(self.ttl);
        match self.leases.get_mut(id) {
            Some(lease) if lease.scheduled != 0 => {
                // Its pending check is due no later than the new deadline and
                // reschedules itself then.
                lease.deadline = lease.deadline.max(deadline);
                true
            }
            _ => false,
        }
    }

    /// Gives every lease in the table, lapsed or reported expired ones included, a
    /// fresh deadline of `now + ttl` (a new lease holder takes over).
    pub fn refresh_all(&mut self, now: Instant) {
        let deadline = self.offset(now).saturating_add(self.ttl);
        let mut unscheduled = Vec::new();
        for (id, lease) in &mut self.leases {
            lease.deadline = deadline;
            if lease.scheduled == 0 {
                unscheduled.push(Arc::clone(id));
            }
        }
        for id in unscheduled {
            let seq = self.schedule(Arc::clone(&id), deadline);
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.scheduled = seq;
            }
        }
    }

    /// Whether `id` holds a lease that has not run out at `now`.
    pub fn is_live(&self, id: &str, now: Instant) -> bool {
        let now = self.offset(now);
        self.leases.get(id).is_some_and(|l| l.deadline > now)
    }

    /// The live entry of `id` at `now`.
    pub fn get(&self, id: &str, now: Instant) -> Option<LiveEntry<'_, V>> {
        let now_off = self.offset(now);
        let (id, lease) = self.leases.get_key_value(id)?;
        (lease.deadline > now_off).then(|| LiveEntry {
            id,
            value: &lease.value,
            deadline: self.instant(lease.deadline),
            generation: lease.generation,
            guarded: lease.guarded,
        })
    }

    /// Generation of the entry of `id`, live or expired.
    pub fn generation(&self, id: &str) -> Option<u64> {
        self.leases.get(id).map(|l| l.generation)
    }

    /// Removes `id` whatever its state (deregistration); returns its value.
    pub fn remove(&mut self, id: &str) -> Option<V> {
        // Its pending check, if any, becomes stale and is dropped when due.
        let lease = self.leases.remove(id)?;
        self.guarded -= usize::from(lease.guarded);
        Some(lease.value)
    }

    /// Removes `id` only if it is still registration `generation` (expiry cleanup).
    pub fn remove_generation(&mut self, id: &str, generation: u64) -> Option<V> {
        if self.generation(id) == Some(generation) {
            self.remove(id)
        } else {
            None
        }
    }

    /// Collects the leases that ran out at or before `now`. They stay in the table,
    /// invisible to live reads, until removed with [`Self::remove_generation`].
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        self.expire_at_most(now, usize::MAX)
    }

    /// Like [`Self::expire`], but stops after `limit` expired leases, so a mass
    /// expiry (every node reloaded at the same instant, none renewed) is handled in
    /// bounded steps; the rest stays due and [`Self::next_deadline`] says so.
    pub fn expire_at_most(&mut self, now: Instant, limit: usize) -> Vec<Expired> {
        let now = self.offset(now);
        let mut expired = Vec::new();
        while let Some(Reverse(check)) = self.checks.peek() {
            if check.at > now || expired.len() >= limit {
                break;
            }
            let Some(Reverse(check)) = self.checks.pop() else {
                break;
            };
            let Some(lease) = self.leases.get_mut(&check.id) else {
                continue; // removed since: stale check
            };
            if lease.scheduled != check.seq {
                continue; // a newer check exists for a newer registration
            }
            if lease.deadline <= now {
                lease.scheduled = 0;
                expired.push(Expired {
                    id: check.id,
                    generation: lease.generation,
                });
            } else {
                // Renewed since scheduling: check again at the current deadline.
                let at = lease.deadline;
                self.last_seq += 1;
                let seq = self.last_seq;
                lease.scheduled = seq;
                self.checks.push(Reverse(Check {
                    at,
                    seq,
                    id: check.id,
                }));
            }
        }
        expired
    }

    /// When [`Self::expire`] may next find something (possibly earlier than any real
    /// deadline, never later); `None` when nothing is scheduled.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.checks.peek().map(|Reverse(c)| self.instant(c.at))
    }

    /// Live entries at `now`, sorted by id.
    pub fn live(&self, now: Instant) -> impl Iterator<Item = LiveEntry<'_, V>> {
        let now_off = self.offset(now);
        self.leases
            .iter()
            .filter(move |(_, l)| l.deadline > now_off)
            .map(|(id, l)| LiveEntry {
                id,
                value: &l.value,
                deadline: self.instant(l.deadline),
                generation: l.generation,
                guarded: l.guarded,
            })
    }

    /// Gives back a gap in which the caller could not take renewals (it was
    /// stopped, stalled, or its clock jumped) from `since` to `now`: every lease
    /// still running at `since` and not collected by [`Self::expire`] runs
    /// `now - since` longer, but never past `now + ttl`, so the guard never holds a
    /// lease for more than one TTL after renewals can flow again, and a node that is
    /// really gone expires by then. Extending moves deadlines later only, so the
    /// pending checks stay at or before them. Returns how many leases it extended
    /// and the latest deadline it set. Walks every lease (once per gap).
    pub fn guard(&mut self, since: Instant, now: Instant) -> Guarded {
        let start = self.offset(since);
        let end = self.offset(now).max(start);
        let gap = end - start;
        let cap = end.saturating_add(self.ttl);
        let (mut extended, mut until) = (0, 0);
        for lease in self.leases.values_mut() {
            if lease.scheduled == 0 || lease.deadline <= start {
                continue; // collected, or it ran out before the gap began
            }
            let deadline = lease.deadline.saturating_add(gap).min(cap);
            if deadline > lease.deadline {
                lease.deadline = deadline;
                self.guarded += usize::from(!std::mem::replace(&mut lease.guarded, true));
                extended += 1;
                until = until.max(deadline);
            }
        }
        Guarded {
            extended,
            until: (extended > 0).then(|| self.instant(until)),
        }
    }

    /// The live entries at `now` whose deadline the guard moved (not renewed
    /// since), sorted by id; costs nothing while none is guarded.
    pub fn guarded(&self, now: Instant) -> impl Iterator<Item = LiveEntry<'_, V>> {
        let any = self.guarded > 0;
        self.live(now)
            .take_while(move |_| any)
            .filter(|e| e.guarded)
    }

    /// Number of entries, including expired ones not yet removed.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether the table holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Number of pending checks (live leases plus stale checks), for tests and metrics.
    pub fn pending_checks(&self) -> usize {
        self.checks.len()
    }
}

/// A duration in nanoseconds, saturating (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn table() -> (LeaseTable<&'static str>, Instant) {
        let t0 = Instant::now();
        (LeaseTable::new(TTL, t0), t0)
    }

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_guard_gives_back_the_gap_to_running_leases_at_most_one_ttl_past_it() {
        let (mut t, t0) = table();
        t.insert(id("early"), "E", 1, t0);
        t.insert(id("late"), "L", 2, t0 + secs(20)); // deadline t0 + 50
        t.insert(id("gone"), "G", 3, t0);
        t.insert(id("lapsed"), "X", 4, t0);
        t.renew("gone", t0 + secs(1)); // deadline t0 + 31
        let collected: Vec<_> = t.expire(t0 + secs(30)).into_iter().map(|e| e.id).collect();
        assert_eq!(collected, vec![id("early"), id("lapsed")]);
        t.insert(id("early"), "E", 5, t0 + secs(30)); // deadline t0 + 60
        // Stopped from t0 + 40 to t0 + 100: "gone" ran out before the gap, "lapsed"
        // was collected; the others get the 60 s back.
        let guarded = t.guard(t0 + secs(40), t0 + secs(100));
        assert_eq!(guarded.extended, 2);
        assert_eq!(guarded.until, Some(t0 + secs(120)));
        let early = t.get("early", t0 + secs(100)).unwrap();
        assert_eq!((early.deadline, early.guarded), (t0 + secs(120), true));
        let late = t.get("late", t0 + secs(100)).unwrap();
        assert_eq!((late.deadline, late.guarded), (t0 + secs(110), true));
        assert!(!t.is_live("gone", t0 + secs(100)));
        assert!(!t.is_live("lapsed", t0 + secs(100)));
        // A renewal ends the guard; an unrenewed guarded lease runs out at its
        // guarded deadline, not later.
        let guarded: Vec<_> = t.guarded(t0 + secs(100)).map(|e| e.id.clone()).collect();
        assert_eq!(guarded, vec![id("early"), id("late")]);
        assert!(t.renew("late", t0 + secs(101)));
        assert!(!t.get("late", t0 + secs(101)).unwrap().guarded);
        assert_eq!(t.guarded(t0 + secs(101)).count(), 1);
        let gone: Vec<_> = t.expire(t0 + secs(110)).into_iter().map(|e| e.id).collect();
        assert_eq!(gone, vec![id("gone")]);
        assert!(t.is_live("early", t0 + secs(119)));
        let gone: Vec<_> = t.expire(t0 + secs(120)).into_iter().map(|e| e.id).collect();
        assert_eq!(gone, vec![id("early")]);
        assert!(t.remove_generation("early", 5).is_some());
        assert_eq!(t.guarded, 0);
        // Never more than one TTL past the gap's end, whatever gap is claimed.
        t.insert(id("fresh"), "F", 6, t0 + secs(200)); // deadline t0 + 230
        t.guard(t0 + secs(190), t0 + secs(250));
        assert_eq!(
            t.get("fresh", t0 + secs(250)).unwrap().deadline,
            t0 + secs(280)
        );
    }

    #[test]
    fn insert_grants_full_ttl_and_expires_at_deadline() {
        let (mut t, t0) = table();
        assert_eq!(t.insert(id("a"), "A", 1, t0), None);
        assert!(t.is_live("a", t0 + secs(29)));
        assert!(
            !t.is_live("a", t0 + secs(30)),
            "gone exactly at its deadline"
        );
        assert_eq!(t.next_deadline(), Some(t0 + TTL));
        assert!(t.expire(t0 + secs(29)).is_empty());
        let gone = t.expire(t0 + secs(30));
        assert_eq!(
            gone,
            vec![Expired {
                id: id("a"),
                generation: 1
            }]
        );
        // Still in the table until removed, but invisible.
        assert_eq!(t.len(), 1);
        assert!(t.get("a", t0 + secs(30)).is_none());
        assert_eq!(t.live(t0 + secs(30)).count(), 0);
        assert_eq!(t.remove_generation("a", 1), Some("A"));
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn renew_moves_deadline_and_check_is_rescheduled() {
        let (mut t, t0) = table();
        t.insert(id("a"), "A", 1, t0);
        assert!(t.renew("a", t0 + secs(20)));
        // The first check fires at 30 s, finds the lease renewed, reschedules at 50 s.
        assert!(t.expire(t0 + secs(30)).is_empty());
        assert_eq!(t.next_deadline(), Some(t0 + secs(50)));
        assert_eq!(t.pending_checks(), 1);
        assert!(t.is_live("a", t0 + secs(49)));
        assert_eq!(t.expire(t0 + secs(50)).len(), 1);
    }

    #[test]
    fn renew_of_unknown_or_expired_lease_fails() {
        let (mut t, t0) = table();
        assert!(!t.renew("nope", t0));
        t.insert(id("a"), "A", 1, t0);
        // Expired but not yet collected: a renew must not revive it.
        assert!(!t.renew("a", t0 + secs(30)));
        assert!(!t.renew("a", t0 + secs(31)));
        assert!(!t.is_live("a", t0 + secs(31)));
        assert_eq!(t.expire(t0 + secs(31)).len(), 1);
        assert!(!t.renew("a", t0 + secs(32)));
    }

    #[test]
    fn reinsert_restarts_lease_and_survives_old_expiry() {
        let (mut t, t0) = table();
        t.insert(id("a"), "A1", 1, t0);
        assert_eq!(t.insert(id("a"), "A2", 2, t0 + secs(10)), Some("A1"));
        assert!(
            t.expire(t0 + secs(30)).is_empty(),
            "lease restarted at 10 s"
        );
        assert_eq!(t.get("a", t0 + secs(39)).map(|e| *e.value), Some("A2"));
        assert_eq!(t.expire(t0 + secs(40)).len(), 1);
    }

    #[test]
    fn expiry_of_old_generation_never_removes_a_reregistration() {
        let (mut t, t0) = table();
        t.insert(id("a"), "A1", 1, t0);
        let gone = t.expire(t0 + secs(30));
        assert_eq!(gone[0].generation, 1);
        // Re-registered before the cleanup of generation 1 ran.
        t.insert(id("a"), "A2", 2, t0 + secs(31));
        assert_eq!(t.remove_generation("a", 1), None);
        assert!(t.is_live("a", t0 + secs(60)));
        // The new registration has its own check.
        assert_eq!(t.next_deadline(), Some(t0 + secs(61)));
        let gone = t.expire(t0 + secs(61));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].generation, 2);
    }

    #[test]
    fn remove_then_reinsert_leaves_only_one_live_check() {
        let (mut t, t0) = table();
        t.insert(id("a"), "A1", 1, t0);
        assert_eq!(t.remove("a"), Some("A1"));
        t.insert(id("a"), "A2", 2, t0 + secs(5));
        // The stale check at 30 s is dropped, the live one fires at 35 s.
        assert!(t.expire(t0 + secs(30)).is_empty());
        assert_eq!(t.pending_checks(), 1);
        let gone = t.expire(t0 + secs(35));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].generation, 2);
        assert_eq!(t.pending_checks(), 0);
    }

    #[test]
    fn expire_at_most_leaves_the_rest_due() {
        let (mut t, t0) = table();
        for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            t.insert(id(name), "X", i as u64 + 1, t0);
        }
        let later = t0 + secs(31);
        assert_eq!(t.expire_at_most(later, 2).len(), 2);
        assert_eq!(t.next_deadline(), Some(t0 + TTL), "the rest is still due");
        assert_eq!(
            t.live(later).count(),
            0,
            "all invisible at their deadline anyway"
        );
        assert_eq!(t.expire_at_most(later, 2).len(), 2);
        assert_eq!(t.expire_at_most(later, 2).len(), 1);
        assert!(t.expire_at_most(later, 2).is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn expire_returns_everything_due_in_deadline_order() {
        let (mut t, t0) = table();
        t.insert(id("c"), "C", 1, t0 + secs(2));
        t.insert(id("a"), "A", 2, t0);
        t.insert(id("b"), "B", 3, t0 + secs(1));
        let gone: Vec<_> = t
            .expire(t0 + secs(40))
            .into_iter()
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(gone, ["a", "b", "c"]);
    }

    #[test]
    fn live_lists_sorted_by_id_with_deadlines() {
        let (mut t, t0) = table();
        t.insert(id("b"), "B", 1, t0);
        t.insert(id("a"), "A", 2, t0 + secs(5));
        let live: Vec<_> = t
            .live(t0 + secs(29))
            .map(|e| (e.id.to_string(), e.deadline))
            .collect();
        assert_eq!(
            live,
            [
                ("a".to_string(), t0 + secs(35)),
                ("b".to_string(), t0 + secs(30))
            ]
        );
        let live: Vec<_> = t.live(t0 + secs(30)).map(|e| e.id.to_string()).collect();
        assert_eq!(live, ["a"]);
    }

    #[test]
    fn a_late_refresh_revives_a_lapsed_lease_and_a_new_holder_refreshes_all() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut t = LeaseTable::new(ttl, t0);
        t.insert(Arc::from("a"), (), 1, t0);
        t.insert(Arc::from("b"), (), 2, t0);
        let late = t0 + Duration::from_secs(11);
        assert!(!t.is_live("a", late));
        assert!(t.refresh("a", late), "lapsed but not reported expired");
        assert!(t.is_live("a", late));
        assert_eq!(t.expire_at_most(late, 10).len(), 1, "b ran out");
        assert!(
            !t.refresh("b", late),
            "reported expired: only a new holder revives it"
        );
        t.refresh_all(late);
        assert!(t.is_live("b", late + Duration::from_secs(9)));
        assert_eq!(
            t.expire_at_most(late + Duration::from_secs(10), 10).len(),
            2
        );
    }
}
