//! Redis when it answers, this process's own buckets when it does not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::{Check, InProcess, LimiterError, RateLimiter, RedisLimiter, Verdict};

/// Uses Redis (cluster-wide limits); while Redis is unreachable, falls back to in-process limits
/// (each instance then limits alone), logs a warning and counts `rate_limiter_fallback_total`, and
/// tries Redis again every `retry_every`.
pub struct Resilient {
    url: String,
    prefix: String,
    timeout: Duration,
    retry_every: Duration,
    redis: OnceCell<RedisLimiter>,
    local: InProcess,
    down_since: Mutex<Option<Instant>>,
    next_try: Mutex<Instant>,
}

impl Resilient {
    pub async fn new(url: &str, prefix: &str, timeout: Duration, retry_every: Duration) -> Self {
        let me = Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            timeout,
            retry_every,
            redis: OnceCell::new(),
            local: InProcess::new(),
            down_since: Mutex::new(None),
            next_try: Mutex::new(Instant::now()),
        };
        if let Err(e) = me.connect().await {
            me.went_down(&e);
        }
        me
    }

    async fn connect(&self) -> Result<&RedisLimiter, LimiterError> {
        self.redis
            .get_or_try_init(|| RedisLimiter::connect(&self.url, &self.prefix, self.timeout))
            .await
    }

    fn went_down(&self, e: &LimiterError) {
        let mut down = self
            .down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if down.is_none() {
            tracing::warn!(error = %e, "Redis rate limiter unreachable: falling back to in-process limits (each instance limits alone)");
            *down = Some(Instant::now());
            metrics::gauge!("rate_limiter_fallback_active").set(1.0);
        }
        *self
            .next_try
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now() + self.retry_every;
    }

    fn came_back(&self) {
        let mut down = self
            .down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(since) = down.take() {
            tracing::info!(
                down_for_ms = since.elapsed().as_millis() as u64,
                "Redis rate limiter reachable again: cluster-wide limits restored"
            );
            metrics::gauge!("rate_limiter_fallback_active").set(0.0);
        }
    }

    /// Whether decisions are currently made in-process.
    pub fn is_degraded(&self) -> bool {
        self.down_since.lock().map(|d| d.is_some()).unwrap_or(true)
    }
}

#[async_trait]
impl RateLimiter for Resilient {
    fn backend(&self) -> &'static str {
        if self.is_degraded() {
            "in_process"
        } else {
            "redis"
        }
    }

    async fn probe(&self) -> Option<Result<Duration, LimiterError>> {
        let result = match self.connect().await {
            Ok(redis) => redis.probe().await.unwrap_or(Ok(Duration::ZERO)),
            Err(e) => Err(e),
        };
        // a readiness probe is also a retry: it closes the circuit as soon as Redis answers
        match &result {
            Ok(_) => self.came_back(),
            Err(e) => self.went_down(e),
        }
        Some(result)
    }

    fn circuit_open(&self) -> Option<bool> {
        Some(self.is_degraded())
    }

    async fn check(&self, checks: &[Check]) -> Result<Verdict, LimiterError> {
        let may_try = !self.is_degraded()
            || Instant::now()
                >= *self
                    .next_try
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
        if may_try {
            let attempt = match self.connect().await {
                Ok(redis) => redis.check(checks).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(v) => {
                    self.came_back();
                    return Ok(v);
                }
                Err(e) => self.went_down(&e),
            }
        }
        metrics::counter!("rate_limiter_fallback_total").increment(1);
        self.local.check(checks).await
    }
}
