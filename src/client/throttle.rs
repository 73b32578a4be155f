//! A sans-IO token bucket: at most `rate` operations per second on average, bursts of at most
//! `burst`. Time is passed in.

use std::time::{Duration, Instant};

/// A token bucket. Tokens accrue continuously at `rate_per_sec` up to `burst`; each operation
/// takes one. Over any interval of length `t` at most `burst + rate_per_sec * t` operations pass.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate_per_sec` must be positive and finite (otherwise 1 per second is
    /// used); `burst` is at least 1.
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> TokenBucket {
        let rate_per_sec = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            1.0
        };
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// The configured rate.
    pub fn rate_per_sec(&self) -> f64 {
        self.rate_per_sec
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.updated = now;
    }

    /// Takes a token if one is available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be available (`now` if one is).
    pub fn next_available(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let wait_secs = (1.0 - self.tokens) / self.rate_per_sec;
        now + Duration::from_secs_f64(wait_secs.min(3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 5, start);
        let taken = (0..20).filter(|_| bucket.try_take(start)).count();
        assert_eq!(taken, 5);
        let next = bucket.next_available(start);
        assert_eq!(next - start, Duration::from_millis(10));
        // One second later exactly 100 more (capped by burst if we wait without taking).
        let mut taken = 0;
        for ms in 1..=1000 {
            let now = start + Duration::from_millis(ms);
            while bucket.try_take(now) {
                taken += 1;
            }
        }
        assert!((99..=101).contains(&taken), "{taken}");
        let later = start + Duration::from_secs(60);
        let taken = (0..20).filter(|_| bucket.try_take(later)).count();
        assert_eq!(taken, 5, "the burst caps accrued tokens");
    }
}
