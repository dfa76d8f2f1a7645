//! The Generic Cell Rate Algorithm: a token bucket expressed as one timestamp per key (the
//! *theoretical arrival time*, TAT). Pure arithmetic on nanoseconds, so the in-process limiter and
//! the Redis script make the same decisions.
//!
//! A limit of `rate` requests per `period` with a `burst` allows `burst` requests at once, then one
//! every `period / rate` (the emission interval).

/// A rate limit: `rate` per `period_ns`, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub rate: u64,
    pub period_ns: u64,
    pub burst: u64,
}

impl Limit {
    pub const fn per_minute(rate: u64, burst: u64) -> Self {
        Self {
            rate,
            period_ns: 60_000_000_000,
            burst,
        }
    }

    /// Nanoseconds between two requests at the sustained rate.
    pub const fn emission_interval_ns(&self) -> u64 {
        let rate = if self.rate == 0 { 1 } else { self.rate };
        self.period_ns / rate
    }

    /// How far the TAT may run ahead of now: the burst.
    pub const fn tolerance_ns(&self) -> u64 {
        let burst = if self.burst == 0 { 1 } else { self.burst };
        self.emission_interval_ns() * burst
    }
}

/// The outcome of one request against one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The TAT to store (unchanged when refused).
    pub new_tat_ns: u64,
    /// Requests that could still be made right now.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset_after_ns: u64,
    /// When refused: nanoseconds until this request would be allowed.
    pub retry_after_ns: u64,
}

/// Decides one request of `cost` at `now_ns`, given the stored TAT (`None`: a full bucket).
pub fn decide(limit: Limit, tat_ns: Option<u64>, now_ns: u64, cost: u64) -> Decision {
    let interval = limit.emission_interval_ns();
    let tolerance = limit.tolerance_ns();
    let tat = tat_ns.unwrap_or(now_ns).max(now_ns);
    let increment = interval.saturating_mul(cost.max(1));
    let new_tat = tat.saturating_add(increment);
    // allowed if the new TAT stays within the tolerance window ahead of now
    let allow_at = new_tat.saturating_sub(tolerance);
    if allow_at <= now_ns {
        let ahead = new_tat - now_ns;
        Decision {
            allowed: true,
            new_tat_ns: new_tat,
            remaining: (tolerance - ahead) / interval.max(1),
            reset_after_ns: ahead,
            retry_after_ns: 0,
        }
    } else {
        let ahead = tat - now_ns;
        Decision {
            allowed: false,
            new_tat_ns: tat,
            remaining: tolerance.saturating_sub(ahead) / interval.max(1),
            reset_after_ns: ahead,
            retry_after_ns: allow_at - now_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_sustained_rate() {
        let limit = Limit::per_minute(60, 120); // one per second, 120 at once
        let mut tat = None;
        let now = 1_000 * SEC;
        for i in 0..120 {
            let d = decide(limit, tat, now, 1);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 119 - i);
            tat = Some(d.new_tat_ns);
        }
        let refused = decide(limit, tat, now, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_ns, SEC);
        assert_eq!(refused.remaining, 0);
        // one second later exactly one more fits
        let later = decide(limit, tat, now + SEC, 1);
        assert!(later.allowed);
        assert!(!decide(limit, Some(later.new_tat_ns), now + SEC, 1).allowed);
    }

    proptest! {
        /// Over any window, no more than burst + rate × elapsed / period requests pass.
        #[test]
        fn never_exceeds_the_limit(rate in 1u64..5_000, burst in 1u64..10_000, gaps in proptest::collection::vec(0u64..50_000_000, 1..2_000)) {
            let limit = Limit::per_minute(rate, burst);
            let (mut tat, mut now, mut allowed) = (None, 0u64, 0u64);
            for gap in gaps {
                now += gap;
                let d = decide(limit, tat, now, 1);
                if d.allowed { allowed += 1; }
                tat = Some(d.new_tat_ns);
            }
            let budget = burst + (now as u128 * rate as u128 / limit.period_ns as u128) as u64 + 1;
            prop_assert!(allowed <= budget, "allowed {allowed} > budget {budget}");
        }

        /// A refused request reports a positive wait after which it is allowed.
        #[test]
        fn retry_after_is_exact(rate in 1u64..1_000, burst in 1u64..100) {
            let limit = Limit::per_minute(rate, burst);
            let mut tat = None;
            let now = SEC;
            loop {
                let d = decide(limit, tat, now, 1);
                if !d.allowed {
                    prop_assert!(d.retry_after_ns > 0);
                    prop_assert!(decide(limit, tat, now + d.retry_after_ns, 1).allowed);
                    prop_assert!(!decide(limit, tat, now + d.retry_after_ns - 1, 1).allowed);
                    break;
                }
                tat = Some(d.new_tat_ns);
            }
        }
    }
}
