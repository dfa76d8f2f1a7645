//! The rate limiter port and its adapters. Decisions are GCRA ([`tenantry_domain::gcra`]): one
//! timestamp per bucket. A request is checked against several buckets at once (its key, its tenant,
//! the whole platform) and is allowed only if every bucket allows it; a refused request consumes
//! nothing.
//!
//! - [`InProcess`]: one process's buckets in memory (the default).
//! - [`RedisLimiter`]: buckets in Redis, shared by every instance; one atomic script round trip
//!   per decision, timed by the Redis server's clock so that instances agree.
//! - [`Resilient`]: Redis with an in-process fallback while Redis is unreachable.

pub mod conformance;
mod inproc;
mod redis_limiter;
mod resilient;

use async_trait::async_trait;
pub use inproc::InProcess;
pub use redis_limiter::RedisLimiter;
pub use resilient::Resilient;
use tenantry_domain::gcra::{Decision, Limit};

/// One bucket to check: its name and its limit. The same key with a changed limit (an edition
/// change) is judged by the new limit at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub limit: Limit,
}

/// The outcome of a request against all its buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// One decision per check, in order. When refused, nothing was consumed.
    pub decisions: Vec<Decision>,
}

impl Verdict {
    fn from_decisions(decisions: Vec<Decision>) -> Self {
        Self {
            allowed: decisions.iter().all(|d| d.allowed),
            decisions,
        }
    }

    /// The decision that binds: a refusing one, else the one with the fewest requests left.
    pub fn binding(&self) -> Option<(usize, &Decision)> {
        self.decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| !self.allowed || d.allowed)
            .min_by_key(|(_, d)| {
                if d.allowed {
                    (1, d.remaining)
                } else {
                    (0, u64::MAX - d.retry_after_us)
                }
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate limiter backend unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// `in_process` or `redis` (for headers, logs and metrics).
    fn backend(&self) -> &'static str;
    /// Checks one request (cost 1) against every bucket, all or nothing.
    async fn check(&self, checks: &[Check]) -> Result<Verdict, LimiterError>;

    /// Asks the shared backend whether it answers, and how fast (readiness). `None`: there is no
    /// backend to ask (in-process limits).
    async fn probe(&self) -> Option<Result<std::time::Duration, LimiterError>> {
        None
    }

    /// The state of the circuit around the shared backend: `Some(true)` while it is open
    /// (decisions are local), `None` without one.
    fn circuit_open(&self) -> Option<bool> {
        None
    }
}
