//! `[webhooks]`: deliveries to tenants' endpoints.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow `http://` endpoints (development and tests); otherwise HTTPS only.
    pub allow_http: bool,
    /// Attempts one subscription may have in flight at once.
    pub max_in_flight_per_subscription: u32,
    /// Attempts in flight across every subscription, on the dispatching instance.
    pub max_in_flight: u32,
    /// Events read from the log per fan-out batch.
    pub fanout_batch: u32,
    /// How often the dispatcher looks for due messages when nothing woke it, in milliseconds.
    pub poll_ms: u32,
    /// Consecutive failures of a subscription that open its circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit waits before one probe, in seconds.
    pub breaker_cooldown_seconds: u32,
    /// A subscription whose every attempt failed for this long is disabled, in hours (default
    /// 120: 5 days).
    pub disable_after_hours: u32,
    /// How long the old secret still signs after a rotation, in hours.
    pub rotation_grace_hours: u32,
    /// Replays re-deliver at most this many messages per minute per subscription (or the
    /// subscription's own `rate_limit_per_minute`, when lower).
    pub replay_per_minute: u32,
    /// Most messages one replay takes.
    pub replay_max_messages: u32,
    /// Bytes of a receiver's response kept in the delivery log.
    pub response_excerpt_bytes: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            max_in_flight_per_subscription: 16,
            max_in_flight: 4096,
            fanout_batch: 1000,
            poll_ms: 500,
            breaker_threshold: 5,
            breaker_cooldown_seconds: 30,
            disable_after_hours: 120,
            rotation_grace_hours: 24,
            replay_per_minute: 600,
            replay_max_messages: 10_000,
            response_excerpt_bytes: 512,
        }
    }
}

impl WebhooksConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v, min) in [
            (
                "webhooks.max_in_flight_per_subscription",
                self.max_in_flight_per_subscription,
                1,
            ),
            ("webhooks.max_in_flight", self.max_in_flight, 1),
            ("webhooks.fanout_batch", self.fanout_batch, 1),
            ("webhooks.poll_ms", self.poll_ms, 10),
            ("webhooks.breaker_threshold", self.breaker_threshold, 1),
            (
                "webhooks.breaker_cooldown_seconds",
                self.breaker_cooldown_seconds,
                1,
            ),
            ("webhooks.disable_after_hours", self.disable_after_hours, 1),
            ("webhooks.replay_per_minute", self.replay_per_minute, 1),
            ("webhooks.replay_max_messages", self.replay_max_messages, 1),
        ] {
            if v < min {
                return Err(invalid(key, format!("at least {min}")));
            }
        }
        if self.response_excerpt_bytes > 64 * 1024 {
            return Err(invalid("webhooks.response_excerpt_bytes", "at most 65536"));
        }
        Ok(())
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("webhooks_allow_http", "webhooks.allow_http"),
    (
        "webhooks_max_in_flight_per_subscription",
        "webhooks.max_in_flight_per_subscription",
    ),
    ("webhooks_max_in_flight", "webhooks.max_in_flight"),
    ("webhooks_poll_ms", "webhooks.poll_ms"),
    ("webhooks_breaker_threshold", "webhooks.breaker_threshold"),
    (
        "webhooks_breaker_cooldown_seconds",
        "webhooks.breaker_cooldown_seconds",
    ),
    (
        "webhooks_disable_after_hours",
        "webhooks.disable_after_hours",
    ),
    (
        "webhooks_rotation_grace_hours",
        "webhooks.rotation_grace_hours",
    ),
    ("webhooks_replay_per_minute", "webhooks.replay_per_minute"),
];
