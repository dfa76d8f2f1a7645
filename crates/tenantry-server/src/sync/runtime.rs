//! The process's sync state: the egress client every run shares, the circuit breakers of the
//! upstream hosts, and the sealer of sources' header secrets. `App::sync()`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tenantry_domain::sync::{Breaker, BreakerPolicy};

use super::config::SyncConfig;
use crate::platform::egress::{Egress, EgressConfig};
use crate::platform::sealing::Sealer;

pub struct SyncRuntime {
    config: SyncConfig,
    egress_config: EgressConfig,
    egress: OnceLock<Result<Egress, String>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    origin: Instant,
    sealer: Sealer,
}

impl SyncRuntime {
    pub fn new(config: SyncConfig, egress: EgressConfig, sealer: Sealer) -> Self {
        Self {
            config,
            egress_config: egress,
            egress: OnceLock::new(),
            breakers: Mutex::default(),
            origin: Instant::now(),
            sealer,
        }
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The guarded client (made on first use).
    pub fn egress(&self) -> Result<&Egress, String> {
        self.egress
            .get_or_init(|| {
                Egress::new(
                    self.egress_config.policy(),
                    Duration::from_millis(u64::from(self.config.request_timeout_ms)),
                )
                .map_err(|e| format!("the egress client cannot be made: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn policy(&self) -> BreakerPolicy {
        BreakerPolicy {
            threshold: self.config.breaker_threshold,
            cooldown: Duration::from_secs(u64::from(self.config.breaker_cooldown_seconds)),
        }
    }

    fn with_breaker<T>(&self, host: &str, f: impl FnOnce(&mut Breaker, Duration) -> T) -> T {
        let now = self.origin.elapsed();
        let mut map = self
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // a bounded map: forget closed breakers when it grows large
        if map.len() > 10_000 {
            map.retain(|_, b| b.is_open(now));
        }
        f(map.entry(host.to_owned()).or_default(), now)
    }

    /// Whether a request to `host` may go (`Err(wait)` while its circuit is open).
    pub fn breaker_allows(&self, host: &str) -> Result<(), Duration> {
        self.with_breaker(host, |b, now| b.allow(now))
    }

    pub fn breaker_success(&self, host: &str) {
        self.with_breaker(host, |b, _| b.success());
    }

    pub fn breaker_failure(&self, host: &str) {
        let policy = self.policy();
        let opened = self.with_breaker(host, |b, now| {
            let was = b.is_open(now);
            b.failure(now, policy);
            !was && b.is_open(now)
        });
        if opened {
            metrics::counter!("sync_breaker_opened_total").increment(1);
            tracing::warn!(upstream = %host.split_once('/').map_or(host, |(_, h)| h), "circuit opened for an upstream host");
        }
    }
}

impl std::fmt::Debug for SyncRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRuntime").finish_non_exhaustive()
    }
}
