//! [`Backoff`]: how long to wait before retrying a registry that did not answer.
//!
//! Capped exponential backoff with "equal jitter": the n-th retry waits between half
//! and all of `min(max, initial * 2^(n-1))`. The jitter keeps thousands of nodes that
//! lost the same center from hammering it in lockstep when it comes back; the floor of
//! half the delay keeps a single node from spinning.

use std::time::Duration;

use super::entropy::random_between;

/// Retry policy for a registry that is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter); later retries double it.
    pub initial: Duration,
    /// Largest delay between two retries (before jitter), so recovery is noticed soon.
    pub max: Duration,
}

impl Default for Backoff {
    /// 200 ms doubling up to 5 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The un-jittered delay before retry number `attempt` (1 = first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        let grown = self.initial.saturating_mul(1u32 << shift);
        grown.min(self.max).max(Duration::from_millis(1))
    }

    /// The delay before retry number `attempt`, jittered within `[ceiling/2, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        random_between(ceiling / 2, ceiling)
    }

    /// This policy with `max` lowered to `limit` (and `initial` with it) when larger.
    pub(crate) fn capped(self, limit: Duration) -> Self {
        Self {
            initial: self.initial.min(limit),
            max: self.max.min(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let ceilings: Vec<u128> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_between_half_and_full_ceiling() {
        let b = Backoff::default();
        for attempt in 1..20 {
            let c = b.ceiling(attempt);
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d >= c / 2 && d <= c, "attempt {attempt}: {d:?} vs {c:?}");
            }
        }
    }

    #[test]
    fn capped_lowers_both_bounds() {
        let b = Backoff::default().capped(Duration::from_millis(100));
        assert_eq!(b.initial, Duration::from_millis(100));
        assert_eq!(b.max, Duration::from_millis(100));
        assert_eq!(
            Backoff::default().capped(Duration::from_secs(60)),
            Backoff::default()
        );
    }

    #[test]
    fn zero_initial_never_spins() {
        let b = Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert!(b.ceiling(1) > Duration::ZERO);
    }
}
