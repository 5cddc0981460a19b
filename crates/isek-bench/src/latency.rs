//! Latency histogram: fixed memory, mergeable, percentiles within 1.6 %.
//!
//! A load run records millions of request latencies; keeping them all would make the
//! tool's memory grow with the run length. This log-linear histogram (64 sub-buckets
//! per power of two of nanoseconds, like HdrHistogram with two significant digits)
//! has a fixed size, costs a few instructions per record, and merges across connections.

use std::time::Duration;

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 6;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64` nanosecond value.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// A histogram of durations, with exact count, minimum and maximum.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// How many values fell into each bucket (see [`bucket_of`]).
    counts: Vec<u64>,
    /// Number of recorded values, so percentiles need no extra pass.
    total: u64,
    /// Exact largest value in nanoseconds, reported as `max` instead of a bucket bound.
    max_ns: u64,
    /// Exact smallest value in nanoseconds (`u64::MAX` while empty).
    min_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Index of the bucket holding `ns`.
fn bucket_of(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let exponent = 63 - ns.leading_zeros();
    let shift = exponent - SUB_BITS;
    let mantissa = (ns >> shift) - SUB;
    ((u64::from(shift) + 1) * SUB + mantissa) as usize
}

/// Largest value that falls into bucket `index`.
fn upper_bound_of(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let shift = index / SUB - 1;
    let mantissa = index % SUB;
    let lower = (SUB + mantissa) << shift;
    lower.saturating_add((1u64 << shift) - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ns: 0,
            min_ns: u64::MAX,
        }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if let Some(slot) = self.counts.get_mut(bucket_of(ns)) {
            *slot += 1;
        }
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
        self.min_ns = self.min_ns.min(ns);
    }

    /// Adds every value of `other` (one histogram per connection, merged at the end).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value (zero when empty).
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// Smallest recorded value (zero when empty).
    pub fn min(&self) -> Duration {
        if self.total == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.min_ns)
        }
    }

    /// The value below or at which a fraction `quantile` (0.0..=1.0) of the values lie,
    /// rounded up to its bucket's upper bound and never above the exact maximum.
    pub fn percentile(&self, quantile: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = upper_bound_of(index).clamp(self.min_ns, self.max_ns);
                return Duration::from_nanos(bound);
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for ns in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, 10_000_000_007, u64::MAX]) {
            let index = bucket_of(ns);
            assert!(index < BUCKETS, "{ns} -> {index}");
            assert!(upper_bound_of(index) >= ns, "{ns} above its bucket {index}");
            if index > 0 {
                assert!(
                    upper_bound_of(index - 1) < ns,
                    "{ns} fits the previous bucket"
                );
            }
        }
    }

    #[test]
    fn percentiles_are_within_precision() {
        let mut histogram = Histogram::new();
        for micros in 1..=1000u64 {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!(histogram.count(), 1000);
        let p50 = histogram.percentile(0.5).as_nanos() as f64;
        assert!((500_000.0..=500_000.0 * 1.016).contains(&p50), "p50 {p50}");
        let p99 = histogram.percentile(0.99).as_nanos() as f64;
        assert!((990_000.0..=990_000.0 * 1.016).contains(&p99), "p99 {p99}");
        assert_eq!(histogram.percentile(1.0), Duration::from_micros(1000));
        assert_eq!(histogram.max(), Duration::from_micros(1000));
        assert_eq!(histogram.min(), Duration::from_micros(1));
    }

    #[test]
    fn merge_adds_counts_and_extremes() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_millis(7));
        b.record(Duration::from_millis(7));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), Duration::from_millis(7));
        assert_eq!(a.min(), Duration::from_micros(10));
        assert_eq!(a.percentile(0.5), Duration::from_millis(7));
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let histogram = Histogram::new();
        assert_eq!(histogram.percentile(0.5), Duration::ZERO);
        assert_eq!(histogram.max(), Duration::ZERO);
        assert_eq!(histogram.min(), Duration::ZERO);
    }
}
