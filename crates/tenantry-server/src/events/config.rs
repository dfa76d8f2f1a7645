//! `[events]`: the event bus, the relay and the realtime streams.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// NATS JetStream (`nats://host:4222`): the bus between instances. Empty: the in-process
    /// bus (one process; realtime streams reach only the clients of the instance that relays).
    pub nats_url: String,
    /// The JetStream stream holding the events (created when missing).
    pub nats_stream: String,
    /// Subjects are `<prefix>.<tenant id or platform>.<type>`.
    pub subject_prefix: String,
    /// How long the bus keeps events, in hours (the log in the database keeps them per edition).
    pub bus_retention_hours: u32,
    /// Most events the relay publishes in one pipelined batch.
    pub relay_batch: u32,
    /// How often the relay looks at the log when no signal woke it, in milliseconds.
    pub relay_poll_ms: u32,
    /// Events of no tenant are kept this many days in the log (tenants' by their edition).
    pub platform_retention_days: u32,
    /// Events one realtime stream may have waiting; past it the client is sent a final
    /// `resume` message and disconnected (it reconnects with `Last-Event-ID`).
    pub stream_buffer: u32,
    /// Seconds between heartbeat comments on a quiet stream.
    pub stream_heartbeat_seconds: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            nats_stream: "TENANTRY_EVENTS".into(),
            subject_prefix: "tenantry.events".into(),
            bus_retention_hours: 72,
            relay_batch: 2000,
            relay_poll_ms: 1000,
            platform_retention_days: 90,
            stream_buffer: 1000,
            stream_heartbeat_seconds: 15,
        }
    }
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.nats_url.trim();
        if !(url.is_empty() || url.starts_with("nats://") || url.starts_with("tls://")) {
            return Err(invalid(
                "events.nats_url",
                "a nats:// or tls:// URL (or empty for the in-process bus)",
            ));
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|t| {
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                })
        };
        if !token(&self.subject_prefix) {
            return Err(invalid(
                "events.subject_prefix",
                "dot-separated tokens of letters, digits, '-' and '_'",
            ));
        }
        if !token(&self.nats_stream) || self.nats_stream.contains('.') {
            return Err(invalid(
                "events.nats_stream",
                "a stream name of letters, digits, '-' and '_'",
            ));
        }
        for (key, v, min) in [
            ("events.relay_batch", self.relay_batch, 1),
            ("events.relay_poll_ms", self.relay_poll_ms, 10),
            ("events.stream_buffer", self.stream_buffer, 16),
            (
                "events.stream_heartbeat_seconds",
                self.stream_heartbeat_seconds,
                1,
            ),
            ("events.bus_retention_hours", self.bus_retention_hours, 1),
            (
                "events.platform_retention_days",
                self.platform_retention_days,
                1,
            ),
        ] {
            if v < min {
                return Err(invalid(key, format!("at least {min}")));
            }
        }
        Ok(())
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("nats_url", "events.nats_url"),
    ("events_nats_stream", "events.nats_stream"),
    ("events_subject_prefix", "events.subject_prefix"),
    ("events_bus_retention_hours", "events.bus_retention_hours"),
    ("events_relay_batch", "events.relay_batch"),
    ("events_relay_poll_ms", "events.relay_poll_ms"),
    (
        "events_platform_retention_days",
        "events.platform_retention_days",
    ),
    ("events_stream_buffer", "events.stream_buffer"),
    (
        "events_stream_heartbeat_seconds",
        "events.stream_heartbeat_seconds",
    ),
];
