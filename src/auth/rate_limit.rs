//! A token bucket per principal: `burst` requests at once, refilled at `rate` per second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// Buckets kept; beyond this the least recently used principal's bucket is dropped (it starts
/// full again if that principal returns), so many new callers never reset everyone's limit.
const MAX_BUCKETS: usize = 100_000;

/// Per-principal token buckets.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<LruCache<String, Bucket>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `rate` tokens per second, at most `burst` saved up.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(LruCache::new(MAX_BUCKETS)),
        }
    }

    /// Takes a token for `principal`, or says how long until one is available.
    pub fn admit(&self, principal: &str) -> Result<(), Duration> {
        self.admit_at(principal, Instant::now())
    }

    fn admit_at(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock only means another request panicked; do not lock everyone out.
            return Ok(());
        };
        if buckets.get(principal).is_none() {
            buckets.insert(
                principal.to_string(),
                Bucket {
                    tokens: self.burst,
                    updated: now,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(principal) else {
            return Ok(());
        };
        bucket.tokens = bucket.level(now, self.rate, self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::MAX))
        }
    }
}

impl Bucket {
    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_configured_refill() {
        let limiter = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.admit_at("a", t0).is_ok());
        }
        let wait = limiter.admit_at("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Other principals have their own bucket.
        assert!(limiter.admit_at("b", t0).is_ok());
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.admit_at("a", t1).is_ok());
        assert!(limiter.admit_at("a", t1).is_err());
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.admit_at("a", t2).is_ok());
        }
        assert!(limiter.admit_at("a", t2).is_err());
    }

    #[test]
    fn many_new_callers_evict_the_least_recent_not_everyone() {
        let limiter = RateLimiter::new(0.001, 2);
        let t0 = Instant::now();
        assert!(limiter.admit_at("victim", t0).is_ok());
        assert!(limiter.admit_at("victim", t0).is_ok());
        assert!(limiter.admit_at("victim", t0).is_err());
        // An attacker with as many addresses as there are buckets, minus the victim's.
        for i in 0..MAX_BUCKETS - 1 {
            let _ = limiter.admit_at(&format!("ip:{i}"), t0);
        }
        // The victim is the least recently used, yet still tracked: still limited.
        assert!(limiter.admit_at("victim", t0).is_err());
        // Another new caller evicts the least recent attacker bucket, not the victim's.
        assert!(limiter.admit_at("ip:new", t0).is_ok());
        assert!(limiter.admit_at("victim", t0).is_err());
    }
}
