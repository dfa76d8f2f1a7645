//! `[auth]` (credentials and bearer tokens) and `[limits]` (rate limits): the access
//! capability's settings.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Secret, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a rotated key's old secret keeps working, in hours.
    pub key_rotation_grace_hours: u32,
    /// HS256 secret for bearer tokens (development; at least 32 bytes). Empty: HS256 off.
    pub jwt_hs256_secret: Option<Secret>,
    /// JWKS document of the identity provider (RS256, ES256, EdDSA). Empty: off.
    pub jwt_jwks_url: String,
    /// Required `iss` of bearer tokens (required with a JWKS URL).
    pub jwt_issuer: String,
    /// Required `aud` of bearer tokens (required with a JWKS URL).
    pub jwt_audience: String,
    /// Least seconds between two JWKS downloads (an unknown `kid` triggers one).
    pub jwt_jwks_min_refresh_seconds: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key_rotation_grace_hours: 24,
            jwt_hs256_secret: None,
            jwt_jwks_url: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            jwt_jwks_min_refresh_seconds: 30,
        }
    }
}

/// Environment variables of `[auth]`: (`TENANTRY_` + name, key path).
pub const AUTH_ENV: &[(&str, &str)] = &[
    ("key_rotation_grace_hours", "auth.key_rotation_grace_hours"),
    ("auth_jwt_hs256_secret", "auth.jwt_hs256_secret"),
    ("auth_jwt_jwks_url", "auth.jwt_jwks_url"),
    ("auth_jwt_issuer", "auth.jwt_issuer"),
    ("auth_jwt_audience", "auth.jwt_audience"),
    (
        "auth_jwt_jwks_min_refresh_seconds",
        "auth.jwt_jwks_min_refresh_seconds",
    ),
];

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.key_rotation_grace_hours > 24 * 30 {
            return Err(invalid(
                "auth.key_rotation_grace_hours",
                "must be at most 720",
            ));
        }
        if let Some(secret) = &self.jwt_hs256_secret
            && secret.expose().len() < 32
        {
            return Err(invalid(
                "auth.jwt_hs256_secret",
                "must be at least 32 bytes (256 bits)",
            ));
        }
        let jwks = self.jwt_jwks_url.trim();
        if !jwks.is_empty() {
            if !(jwks.starts_with("https://") || jwks.starts_with("http://")) {
                return Err(invalid("auth.jwt_jwks_url", "must be an https:// URL"));
            }
            if self.jwt_issuer.trim().is_empty() {
                return Err(invalid(
                    "auth.jwt_issuer",
                    "is required when auth.jwt_jwks_url is set (tokens from any issuer would be accepted)",
                ));
            }
            if self.jwt_audience.trim().is_empty() {
                return Err(invalid(
                    "auth.jwt_audience",
                    "is required when auth.jwt_jwks_url is set (tokens for other services would be accepted)",
                ));
            }
        }
        if !(1..=3600).contains(&self.jwt_jwks_min_refresh_seconds) {
            return Err(invalid(
                "auth.jwt_jwks_min_refresh_seconds",
                "must be between 1 and 3600",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// `redis://…`: rate limits shared by every instance. Empty: each instance limits alone.
    pub redis_url: String,
    /// Milliseconds a Redis decision may take before the instance falls back to its own.
    pub redis_timeout_ms: u32,
    /// Requests per minute across the whole platform (0: no global limit).
    pub global_per_minute: u32,
    /// Burst of the global limit (0: twice the per-minute rate).
    pub global_burst: u32,
    /// Seconds a tenant's edition limits are cached (an edition change applies within this time).
    pub edition_cache_seconds: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_timeout_ms: 100,
            global_per_minute: 0,
            global_burst: 0,
            edition_cache_seconds: 5,
        }
    }
}

/// Environment variables of `[limits]`: (`TENANTRY_` + name, key path).
pub const LIMITS_ENV: &[(&str, &str)] = &[
    ("redis_url", "limits.redis_url"),
    ("redis_timeout_ms", "limits.redis_timeout_ms"),
    ("global_rate_limit_per_minute", "limits.global_per_minute"),
    ("global_rate_limit_burst", "limits.global_burst"),
    ("edition_cache_seconds", "limits.edition_cache_seconds"),
];

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let redis = self.redis_url.trim();
        let redis_ok = ["redis://", "rediss://", "redis+unix://"]
            .iter()
            .any(|p| redis.starts_with(p));
        if !redis.is_empty() && !redis_ok {
            return Err(invalid(
                "limits.redis_url",
                "must start with redis:// (or be empty for in-process limits)",
            ));
        }
        if !(5..=10_000).contains(&self.redis_timeout_ms) {
            return Err(invalid(
                "limits.redis_timeout_ms",
                "must be between 5 and 10000",
            ));
        }
        if self.edition_cache_seconds > 300 {
            return Err(invalid(
                "limits.edition_cache_seconds",
                "must be at most 300",
            ));
        }
        Ok(())
    }
}
