//! Buckets in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use tenantry_domain::gcra;

use crate::{Check, LimiterError, RateLimiter, Verdict};

/// In-process GCRA buckets. Idle buckets (full again) are dropped now and then, so memory follows
/// the number of active keys.
pub struct InProcess {
    epoch: Instant,
    /// Per bucket: the TAT and the emission interval it was counted in.
    buckets: Mutex<HashMap<String, (u64, u64)>>,
    checks: std::sync::atomic::AtomicU64,
}

impl Default for InProcess {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
            checks: Default::default(),
        }
    }
}

impl InProcess {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks at an explicit time (microseconds since this limiter was made): for tests.
    pub fn check_at(&self, checks: &[Check], now_us: u64) -> Verdict {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let decisions: Vec<_> = checks
            .iter()
            .map(|c| {
                let tat = buckets
                    .get(&c.key)
                    .map(|&(tat, interval)| gcra::rescale(tat, interval, c.limit, now_us));
                gcra::decide(c.limit, tat, now_us, 1)
            })
            .collect();
        let verdict = Verdict::from_decisions(decisions);
        if verdict.allowed {
            for (c, d) in checks.iter().zip(&verdict.decisions) {
                buckets.insert(
                    c.key.clone(),
                    (d.new_tat_us, c.limit.emission_interval_us()),
                );
            }
        }
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if buckets.len() > 10_000 && n.is_multiple_of(1024) {
            buckets.retain(|_, (tat, _)| *tat > now_us);
        }
        verdict
    }
}

#[async_trait]
impl RateLimiter for InProcess {
    fn backend(&self) -> &'static str {
        "in_process"
    }

    async fn check(&self, checks: &[Check]) -> Result<Verdict, LimiterError> {
        let now_us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(self.check_at(checks, now_us))
    }
}
