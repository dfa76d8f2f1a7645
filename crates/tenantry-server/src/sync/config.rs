//! `[sync]`: how source runs talk to upstream APIs.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Milliseconds one upstream request may take (a source's `timeout_ms` overrides it).
    pub request_timeout_ms: u32,
    /// Tries of one page request before the run's attempt fails (timeouts, connection errors,
    /// 429 and 5xx are retried).
    pub request_attempts: u32,
    /// Backoff between tries: full jitter under `min(max, base·2^n)`, in milliseconds.
    pub backoff_base_ms: u32,
    pub backoff_max_ms: u32,
    /// The longest `Retry-After` honoured, in seconds; a longer one fails the attempt (the job
    /// engine retries the run later, from its checkpoint).
    pub max_retry_after_seconds: u32,
    /// Consecutive failures of one upstream host that open its circuit (requests to it fail at
    /// once until the cooldown passes).
    pub breaker_threshold: u32,
    pub breaker_cooldown_seconds: u32,
    /// Largest page body, in bytes.
    pub max_page_bytes: u64,
    /// Most pages in one run (a guard against an upstream that never stops paginating).
    pub max_pages: u64,
    /// Largest record (serialized, after truncation), in bytes; larger ones are quarantined.
    pub max_record_bytes: u64,
    /// Seconds one run attempt may take before it fails (and is retried from its checkpoint).
    pub run_timeout_seconds: u32,
    /// Backoff between a run's attempts (full jitter under `min(max, base·2^n)`), in ms.
    pub run_retry_base_ms: u64,
    pub run_retry_max_ms: u64,
    /// A run's lease on the job engine, renewed by heartbeats while it works: how long after a
    /// worker dies its run is taken up again (from its checkpoint).
    pub run_lease_seconds: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            request_attempts: 4,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            max_retry_after_seconds: 120,
            breaker_threshold: 5,
            breaker_cooldown_seconds: 30,
            max_page_bytes: 16 * 1024 * 1024,
            max_pages: 100_000,
            max_record_bytes: 1024 * 1024,
            run_timeout_seconds: 3600,
            run_retry_base_ms: 5_000,
            run_retry_max_ms: 600_000,
            run_lease_seconds: 60,
        }
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("sync_request_timeout_ms", "sync.request_timeout_ms"),
    ("sync_request_attempts", "sync.request_attempts"),
    ("sync_backoff_base_ms", "sync.backoff_base_ms"),
    ("sync_backoff_max_ms", "sync.backoff_max_ms"),
    (
        "sync_max_retry_after_seconds",
        "sync.max_retry_after_seconds",
    ),
    ("sync_breaker_threshold", "sync.breaker_threshold"),
    (
        "sync_breaker_cooldown_seconds",
        "sync.breaker_cooldown_seconds",
    ),
    ("sync_max_page_bytes", "sync.max_page_bytes"),
    ("sync_max_pages", "sync.max_pages"),
    ("sync_max_record_bytes", "sync.max_record_bytes"),
    ("sync_run_timeout_seconds", "sync.run_timeout_seconds"),
    ("sync_run_retry_base_ms", "sync.run_retry_base_ms"),
    ("sync_run_retry_max_ms", "sync.run_retry_max_ms"),
    ("sync_run_lease_seconds", "sync.run_lease_seconds"),
];

impl SyncConfig {
    pub fn run_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.run_lease_seconds))
    }

    /// How a run's attempts are retried (the attempts come from each source).
    pub fn run_retry(&self) -> tenantry_domain::job::RetryPolicy {
        tenantry_domain::job::RetryPolicy {
            max_attempts: 3,
            base: std::time::Duration::from_millis(self.run_retry_base_ms),
            cap: std::time::Duration::from_millis(self.run_retry_max_ms),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=300_000).contains(&self.request_timeout_ms) {
            return Err(invalid(
                "sync.request_timeout_ms",
                "must be between 100 and 300000",
            ));
        }
        if !(1..=20).contains(&self.request_attempts) {
            return Err(invalid("sync.request_attempts", "must be between 1 and 20"));
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return Err(invalid(
                "sync.backoff_max_ms",
                "backoff_base_ms must be positive and backoff_max_ms at least as large",
            ));
        }
        if self.breaker_threshold == 0 {
            return Err(invalid("sync.breaker_threshold", "must be at least 1"));
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.max_page_bytes) {
            return Err(invalid(
                "sync.max_page_bytes",
                "must be between 1 KiB and 256 MiB",
            ));
        }
        if self.max_pages == 0 {
            return Err(invalid("sync.max_pages", "must be at least 1"));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_record_bytes) {
            return Err(invalid(
                "sync.max_record_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if self.run_retry_base_ms == 0 || self.run_retry_max_ms < self.run_retry_base_ms {
            return Err(invalid(
                "sync.run_retry_max_ms",
                "run_retry_base_ms must be positive and run_retry_max_ms at least as large",
            ));
        }
        if !(3..=3600).contains(&self.run_lease_seconds) {
            return Err(invalid(
                "sync.run_lease_seconds",
                "must be between 3 and 3600",
            ));
        }
        if self.run_timeout_seconds < 10 {
            return Err(invalid("sync.run_timeout_seconds", "must be at least 10"));
        }
        Ok(())
    }
}
