//! The Generic Cell Rate Algorithm: a token bucket expressed as one timestamp per key (the
//! *theoretical arrival time*, TAT). Pure integer arithmetic on microseconds, so the in-process limiter and
//! the Redis script make the same decisions.
//!
//! A limit of `rate` requests per `period` with a `burst` allows `burst` requests at once, then one
//! every `period / rate` (the emission interval).

/// A rate limit: `rate` per `period_us`, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub rate: u64,
    pub period_us: u64,
    pub burst: u64,
}

impl Limit {
    pub const fn per_minute(rate: u64, burst: u64) -> Self {
        Self {
            rate,
            period_us: 60_000_000,
            burst,
        }
    }

    /// Microseconds between two requests at the sustained rate.
    pub const fn emission_interval_us(&self) -> u64 {
        let rate = if self.rate == 0 { 1 } else { self.rate };
        let interval = self.period_us / rate;
        // at least a microsecond: a rate above one per microsecond (60 M a minute) would
        // otherwise round to an interval of 0, a tolerance of 0, and refuse requests at random
        // (two requests of the same microsecond). Such a limit allows a million a second.
        if interval == 0 { 1 } else { interval }
    }

    /// How far the TAT may run ahead of now: the burst.
    pub const fn tolerance_us(&self) -> u64 {
        let burst = if self.burst == 0 { 1 } else { self.burst };
        self.emission_interval_us() * burst
    }
}

/// The outcome of one request against one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The TAT to store (unchanged when refused).
    pub new_tat_us: u64,
    /// Requests that could still be made right now.
    pub remaining: u64,
    /// Microseconds until the bucket is full again.
    pub reset_after_us: u64,
    /// When refused: microseconds until this request would be allowed.
    pub retry_after_us: u64,
}

/// Decides one request of `cost` at `now_us`, given the stored TAT (`None`: a full bucket).
pub fn decide(limit: Limit, tat_us: Option<u64>, now_us: u64, cost: u64) -> Decision {
    let interval = limit.emission_interval_us();
    let tolerance = limit.tolerance_us();
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let increment = interval.saturating_mul(cost.max(1));
    let new_tat = tat.saturating_add(increment);
    // allowed if the new TAT stays within the tolerance window ahead of now
    let allow_at = new_tat.saturating_sub(tolerance);
    if allow_at <= now_us {
        let ahead = new_tat - now_us;
        Decision {
            allowed: true,
            new_tat_us: new_tat,
            remaining: (tolerance - ahead) / interval.max(1),
            reset_after_us: ahead,
            retry_after_us: 0,
        }
    } else {
        let ahead = tat - now_us;
        Decision {
            allowed: false,
            new_tat_us: tat,
            remaining: tolerance.saturating_sub(ahead) / interval.max(1),
            reset_after_us: ahead,
            retry_after_us: allow_at - now_us,
        }
    }
}

/// Re-expresses a stored TAT made under `old_interval_us` in a new limit's interval, keeping the
/// number of requests already counted (so an edition upgrade gives room at once, and a downgrade
/// does not forgive what was used).
pub fn rescale(tat_us: u64, old_interval_us: u64, limit: Limit, now_us: u64) -> u64 {
    let new_interval = limit.emission_interval_us();
    if tat_us <= now_us || old_interval_us == new_interval || old_interval_us == 0 {
        return tat_us;
    }
    let debt = u128::from(tat_us - now_us) * u128::from(new_interval) / u128::from(old_interval_us);
    now_us.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn burst_then_sustained_rate() {
        let limit = Limit::per_minute(60, 120); // one per second, 120 at once
        let mut tat = None;
        let now = 1_000 * SEC;
        for i in 0..120 {
            let d = decide(limit, tat, now, 1);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 119 - i);
            tat = Some(d.new_tat_us);
        }
        let refused = decide(limit, tat, now, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_us, SEC);
        assert_eq!(refused.remaining, 0);
        // one second later exactly one more fits
        let later = decide(limit, tat, now + SEC, 1);
        assert!(later.allowed);
        assert!(!decide(limit, Some(later.new_tat_us), now + SEC, 1).allowed);
    }

    #[test]
    fn limits_above_one_per_microsecond_do_not_refuse() {
        // 100 M a minute used to round to an interval of 0 µs: requests in the same or an
        // earlier microsecond than the last were refused
        let limit = Limit::per_minute(100_000_000, 100_000_000);
        assert_eq!(limit.emission_interval_us(), 1);
        let mut tat = None;
        for i in 0..10_000 {
            let now = 1_000 * SEC - (i % 3); // threads read the clock out of order
            let d = decide(limit, tat, now, 1);
            assert!(d.allowed, "request {i}");
            tat = Some(d.new_tat_us);
        }
    }

    #[test]
    fn rescaling_keeps_the_count_used() {
        let (free, enterprise) = (Limit::per_minute(60, 120), Limit::per_minute(3000, 6000));
        let now = 10 * SEC;
        // 2 requests used on free: TAT two intervals ahead
        let tat = now + 2 * free.emission_interval_us();
        let t = rescale(tat, free.emission_interval_us(), enterprise, now);
        assert_eq!(t, now + 2 * enterprise.emission_interval_us());
        assert_eq!(decide(enterprise, Some(t), now, 1).remaining, 6000 - 3);
        assert_eq!(rescale(tat, free.emission_interval_us(), free, now), tat);
        assert_eq!(
            rescale(now - 5, free.emission_interval_us(), enterprise, now),
            now - 5
        );
    }

    proptest! {
        /// Over any window, no more than burst + rate × elapsed / period requests pass.
        #[test]
        fn never_exceeds_the_limit(rate in 1u64..5_000, burst in 1u64..10_000, gaps in proptest::collection::vec(0u64..50_000, 1..2_000)) {
            let limit = Limit::per_minute(rate, burst);
            let (mut tat, mut now, mut allowed) = (None, 0u64, 0u64);
            for gap in gaps {
                now += gap;
                let d = decide(limit, tat, now, 1);
                if d.allowed { allowed += 1; }
                tat = Some(d.new_tat_us);
            }
            let budget = burst + (now as u128 * rate as u128 / limit.period_us as u128) as u64 + 1;
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
                    prop_assert!(d.retry_after_us > 0);
                    prop_assert!(decide(limit, tat, now + d.retry_after_us, 1).allowed);
                    prop_assert!(!decide(limit, tat, now + d.retry_after_us - 1, 1).allowed);
                    break;
                }
                tat = Some(d.new_tat_us);
            }
        }
    }
}
