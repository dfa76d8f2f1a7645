//! The limiter conformance suite on every adapter.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod in_process {
    tenantry_limiter::limiter_conformance_suite!(Some(tenantry_limiter::InProcess::new()));
}

async fn redis() -> Option<tenantry_limiter::RedisLimiter> {
    let url = tenantry_limiter::conformance::redis_url()?;
    Some(
        tenantry_limiter::RedisLimiter::connect(&url, "tenantry-test:", Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| {
                panic!("TENANTRY_TEST_REDIS_URL is set but Redis is unusable: {e}")
            }),
    )
}

mod redis_backend {
    tenantry_limiter::limiter_conformance_suite!(super::redis().await);
}

mod resilient_on_redis {
    async fn make() -> Option<tenantry_limiter::Resilient> {
        let url = tenantry_limiter::conformance::redis_url()?;
        let r = tenantry_limiter::Resilient::new(
            &url,
            "tenantry-test:",
            super::Duration::from_secs(2),
            super::Duration::from_secs(1),
        )
        .await;
        assert!(!r.is_degraded(), "Redis is up");
        Some(r)
    }
    tenantry_limiter::limiter_conformance_suite!(make().await);
}
