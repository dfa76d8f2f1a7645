//! `[telemetry]`: the limits of device telemetry ingestion.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

/// The most one ingest request's body counts against the bytes budget (the 1 MiB per
/// request; larger bodies are refused by the body limit).
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Most events in one request.
    pub max_events: u32,
    /// How far ahead of the server's clock an event's `recorded_at` may be, in seconds.
    pub max_future_skew_seconds: u32,
    /// Largest `payload` of one event, in bytes of JSON.
    pub max_payload_bytes: u32,
    /// Events one process ingests at once, all requests together; past it, requests are
    /// answered `503` with `Retry-After` (nothing of theirs stored) instead of queueing.
    pub max_in_flight_events: u32,
    /// Bytes of request bodies one process reads and parses at once, all requests together
    /// (a body's parsed form takes several times its size); past it, `503` with `Retry-After`.
    /// A body without `Content-Length` counts as 1 MiB.
    pub max_in_flight_bytes: u64,
    /// Concurrent group commits on PostgreSQL (each one transaction holding the requests that
    /// waited); SQLite, with its one writer, always has one.
    pub commit_workers: u32,
    /// Most events in one group commit.
    pub max_commit_events: u32,
    /// Events of a device the tenant has not registered: `register` it (audited, as
    /// `device.register`) or `reject` them.
    pub unknown_devices: UnknownDevicePolicy,
    /// Where archives go: a directory (empty: `archive` under the data directory, or
    /// `file:///…`) or `s3://bucket/prefix` (credentials, region and endpoint from the standard
    /// `AWS_*` variables).
    pub archive_url: String,
    /// Editions whose tenants' expired events are archived before removal (a tenant's own
    /// setting wins).
    pub archive_editions: Vec<String>,
    /// When retention runs (cron, UTC): the platform schedule `telemetry-retention`, created
    /// at start-up when missing (then managed like any schedule).
    pub retention_cron: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownDevicePolicy {
    #[default]
    Register,
    Reject,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            max_events: 1000,
            max_future_skew_seconds: 300,
            max_payload_bytes: 16 * 1024,
            max_in_flight_events: 50_000,
            max_in_flight_bytes: 16 * MAX_REQUEST_BYTES,
            commit_workers: 2,
            max_commit_events: 10_000,
            unknown_devices: UnknownDevicePolicy::Register,
            archive_url: String::new(),
            archive_editions: vec!["enterprise".into()],
            retention_cron: "17 3 * * *".into(),
        }
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("telemetry_max_events", "telemetry.max_events"),
    (
        "telemetry_max_future_skew_seconds",
        "telemetry.max_future_skew_seconds",
    ),
    ("telemetry_max_payload_bytes", "telemetry.max_payload_bytes"),
    (
        "telemetry_max_in_flight_events",
        "telemetry.max_in_flight_events",
    ),
    (
        "telemetry_max_in_flight_bytes",
        "telemetry.max_in_flight_bytes",
    ),
    ("telemetry_commit_workers", "telemetry.commit_workers"),
    ("telemetry_max_commit_events", "telemetry.max_commit_events"),
    ("telemetry_unknown_devices", "telemetry.unknown_devices"),
    ("telemetry_archive_url", "telemetry.archive_url"),
    ("telemetry_retention_cron", "telemetry.retention_cron"),
];

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.max_events) {
            return Err(invalid(
                "telemetry.max_events",
                "must be between 1 and 100000",
            ));
        }
        if self.max_future_skew_seconds > 86_400 {
            return Err(invalid(
                "telemetry.max_future_skew_seconds",
                "must be at most 86400 (a day)",
            ));
        }
        if !(64..=1024 * 1024).contains(&self.max_payload_bytes) {
            return Err(invalid(
                "telemetry.max_payload_bytes",
                "must be between 64 and 1048576",
            ));
        }
        if self.max_in_flight_events < self.max_events || self.max_in_flight_events > 10_000_000 {
            return Err(invalid(
                "telemetry.max_in_flight_events",
                "must be at least telemetry.max_events (one full request) and at most 10000000",
            ));
        }
        if !(MAX_REQUEST_BYTES..=1 << 34).contains(&self.max_in_flight_bytes) {
            return Err(invalid(
                "telemetry.max_in_flight_bytes",
                "must be at least 1048576 (one whole request) and at most 17179869184",
            ));
        }
        let url = self.archive_url.trim();
        if !(url.is_empty()
            || url.starts_with("s3://")
            || url.starts_with("file://")
            || url.starts_with('/'))
        {
            return Err(invalid(
                "telemetry.archive_url",
                "must be empty (the data directory), an absolute path, file:///… or s3://bucket/prefix",
            ));
        }
        if let Err(e) = tenantry_domain::job::ScheduleSpec::cron(&self.retention_cron) {
            return Err(invalid("telemetry.retention_cron", e.to_string()));
        }
        if !(1..=32).contains(&self.commit_workers) {
            return Err(invalid(
                "telemetry.commit_workers",
                "must be between 1 and 32",
            ));
        }
        if self.max_commit_events < self.max_events || self.max_commit_events > 1_000_000 {
            return Err(invalid(
                "telemetry.max_commit_events",
                "must be at least telemetry.max_events (one full request) and at most 1000000",
            ));
        }
        Ok(())
    }

    pub fn rules(&self) -> tenantry_domain::telemetry::TelemetryRules {
        tenantry_domain::telemetry::TelemetryRules {
            max_future_skew: chrono::Duration::seconds(i64::from(self.max_future_skew_seconds)),
            max_payload_bytes: self.max_payload_bytes as usize,
            ..Default::default()
        }
    }
}
