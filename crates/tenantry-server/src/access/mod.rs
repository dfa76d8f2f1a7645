//! Access: authentication (operator, tenant and device keys; JWT bearer tokens), tenant resolution
//! and the minting of `TenantScope` ([`scope`]), scopes and roles, rate limits ([`limits`]), tenant
//! keys and devices. The platform's extractors call into it; it is the one capability every other
//! one depends on.

pub mod config;
pub mod devices;
pub mod http;
pub mod keys;
pub mod limits;
pub mod scope;
pub mod tenant_keys;
pub mod tokens;

pub use keys::AuthError;

/// What this capability adds to the server.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "access",
    routes: http::register,
    metrics: &[
        Metric::counter(
            "rate_limited_total",
            "Requests refused with 429, by the bucket that was exhausted (key, tenant, global)",
        ),
        Metric::counter(
            "jwks_refresh_total",
            "Downloads of the identity provider's JWKS",
        ),
        Metric::gauge(
            "rate_limiter_fallback_active",
            "1 while Redis does not answer and rate limits are decided in process, else 0",
        ),
        Metric::counter(
            "rate_limiter_fallback_total",
            "Rate-limit decisions taken in process because Redis did not answer in time",
        ),
        Metric::counter(
            "jwks_refresh_failures_total",
            "JWKS downloads that failed (the keys already known are kept)",
        ),
    ],
    ..crate::Capability::NONE
};

use crate::observability::Metric;
