//! Randomness for node ids and jitter, from the standard library alone.
//!
//! `std`'s `RandomState` is seeded from the operating system's random source; hashing
//! a process-wide counter and the clock with a fresh one gives unpredictable 64-bit
//! values. That is plenty for spreading renewals (jitter) and for node ids that only
//! need to be unique, and it spares the library a random-number dependency.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Makes every draw hash a different input even within one clock tick.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random 64-bit value.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.finish()
}

/// A uniformly random fraction in `[0, 1)`.
pub(crate) fn random_fraction() -> f64 {
    // 53 random bits fill an f64 mantissa exactly.
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A duration drawn uniformly from `[low, high]` (`low` when `high <= low`).
pub(crate) fn random_between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    low + (high - low).mul_f64(random_fraction())
}

/// 32 random lowercase hex digits, the shape of Python's `uuid.uuid4().hex` that the
/// original ISEK uses for node ids.
pub fn random_node_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_32_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_node_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn random_between_stays_in_bounds() {
        let low = Duration::from_millis(80);
        let high = Duration::from_millis(100);
        for _ in 0..1000 {
            let d = random_between(low, high);
            assert!(d >= low && d <= high, "{d:?}");
        }
        assert_eq!(random_between(high, low), high);
    }

    #[test]
    fn fractions_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..1000).map(|_| random_fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(draws.iter().any(|f| *f < 0.25));
        assert!(draws.iter().any(|f| *f > 0.75));
    }
}
