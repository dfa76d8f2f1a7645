//! Which rate-limit buckets a request is checked against, with which limits.
//!
//! - the **key**: its own lower limit if it has one, else its tenant's edition limit;
//! - the **tenant**: its edition's requests per minute and burst (every key of the tenant shares it);
//! - the **platform**: the configured global limit, if any.
//!
//! Edition limits are read from the store and cached for `edition_cache_seconds`, so an edition
//! change (or an edited edition) applies without a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tenantry_domain::gcra::Limit;
use tenantry_domain::{EditionLimits, Principal, TenantId, TenantRef};
use tenantry_limiter::Check;

use crate::platform::{App, AppResult};

/// Bucket kinds, in the order [`LimitPolicy::checks`] returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Key,
    Tenant,
    Global,
}

impl Bucket {
    pub const fn as_str(self) -> &'static str {
        match self {
            Bucket::Key => "key",
            Bucket::Tenant => "tenant",
            Bucket::Global => "global",
        }
    }
}

pub struct LimitPolicy {
    global: Option<Limit>,
    ttl: Duration,
    editions: Mutex<HashMap<TenantId, (Instant, EditionLimits)>>,
}

impl LimitPolicy {
    pub fn new(global_per_minute: u32, global_burst: u32, ttl: Duration) -> Self {
        let global = (global_per_minute > 0).then(|| {
            let burst = if global_burst == 0 {
                global_per_minute.saturating_mul(2)
            } else {
                global_burst
            };
            Limit::per_minute(u64::from(global_per_minute), u64::from(burst))
        });
        Self {
            global,
            ttl,
            editions: Mutex::new(HashMap::new()),
        }
    }

    /// A tenant's edition limits, cached for `edition_cache_seconds` (`None`: no such tenant).
    pub(crate) async fn edition_limits(
        &self,
        app: &App,
        tenant: TenantId,
    ) -> AppResult<Option<EditionLimits>> {
        if !self.ttl.is_zero()
            && let Some((at, limits)) = self
                .editions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&tenant)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(*limits));
        }
        let Some(t) = app.store().tenants().get(&TenantRef::Id(tenant)).await? else {
            return Ok(None);
        };
        let Some(edition) = app.store().editions().get(&t.edition).await? else {
            return Ok(None);
        };
        let mut cache = self
            .editions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(tenant, (Instant::now(), edition.limits));
        Ok(Some(edition.limits))
    }

    /// The buckets for a request by `principal` (none is empty: platform credentials are only
    /// subject to the global limit).
    pub async fn checks(
        &self,
        app: &App,
        principal: &Principal,
    ) -> AppResult<Vec<(Bucket, Check)>> {
        let mut checks = Vec::with_capacity(3);
        if let Some(tenant) = principal.tenant
            && let Some(e) = self.edition_limits(app, tenant).await?
        {
            let edition = Limit::per_minute(u64::from(e.requests_per_minute), u64::from(e.burst));
            let key_limit = match principal.rate_limit_per_minute {
                Some(rpm) => Limit::per_minute(u64::from(rpm), u64::from(rpm.min(e.burst))),
                None => edition,
            };
            checks.push((
                Bucket::Key,
                Check {
                    key: crate::access::keys::scope_id(principal),
                    limit: key_limit,
                },
            ));
            checks.push((
                Bucket::Tenant,
                Check {
                    key: format!("tenant:{tenant}"),
                    limit: edition,
                },
            ));
        }
        if let Some(global) = self.global {
            checks.push((
                Bucket::Global,
                Check {
                    key: "global".into(),
                    limit: global,
                },
            ));
        }
        Ok(checks)
    }
}
