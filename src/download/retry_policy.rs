//! When and how long the downloader waits before trying a file again: exponential backoff with
//! jitter, bounded attempts. Defaults follow NANOCHAT.md §2.1 (5 attempts, delays of 2^attempt
//! seconds); the jitter spreads retries of parallel workers so they do not hit a server in step.
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per file, the first one included (§2.1: 5).
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles after each further failure (§2.1: 2 s).
    pub initial_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
    /// Fraction of each delay that is random, in [0, 1]: 0.5 waits between 50 % and 100 % of it.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, initial_delay: Duration::from_secs(2), max_delay: Duration::from_secs(60), jitter: 0.5 }
    }
}

impl RetryPolicy {
    /// Delay to wait after attempt number `failed_attempt` (1-based) failed.
    pub fn delay_after(&self, failed_attempt: u32) -> Duration {
        let doublings = failed_attempt.saturating_sub(1).min(30);
        let base = self.initial_delay.saturating_mul(1u32 << doublings).min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * random_unit())
    }
}

/// A uniform number in [0, 1) from the process's hash randomness (no RNG crate needed for jitter).
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_bounded_and_jitter_within_range() {
        let policy = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(policy.delay_after(1), Duration::from_secs(2));
        assert_eq!(policy.delay_after(2), Duration::from_secs(4));
        assert_eq!(policy.delay_after(4), Duration::from_secs(16));
        assert_eq!(policy.delay_after(40), Duration::from_secs(60));
        let jittered = RetryPolicy::default();
        for attempt in 1..6 {
            let delay = jittered.delay_after(attempt);
            let base = policy.delay_after(attempt);
            assert!(delay <= base && delay >= base / 2, "{delay:?} vs {base:?}");
        }
    }
}
