//! Source sync (issue 13): a tenant's sources pulled from third-party APIs on a schedule, page by
//! page through the egress guard, each page stored with the run's checkpoint; records reconciled
//! at the end of a complete run; items that cannot be read quarantined. ADR 0021.

pub mod config;
pub mod fetch;
pub mod http;
pub mod runtime;
pub mod service;
pub mod workers;

use crate::observability::Metric;

pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "sync",
    routes: http::register,
    job_kinds: workers::register,
    startup: |rt| {
        if !rt.app.sync().sealer().is_configured() {
            tracing::warn!(
                "encryption_key is not set: sources' header secrets are sealed with a key kept in the database, which protects nothing against someone who holds the database; set TENANTRY_ENCRYPTION_KEY (32 bytes, base64) in production"
            );
        }
        None
    },
    metrics: &[
        Metric::counter(
            "sync_runs_total",
            "Source run attempts that ended, by outcome (completed, failed: retried later, dead)",
        ),
        Metric::seconds(
            "sync_run_duration_seconds",
            "How long one run attempt took, from claim to its end",
        ),
        Metric::counter("sync_pages_total", "Pages pulled from upstream APIs"),
        Metric::counter(
            "sync_page_bytes_total",
            "Bytes of the pages pulled from upstream APIs",
        ),
        Metric::counter(
            "sync_records_total",
            "Items of pulled pages, by result (upserted: new or changed, unchanged, quarantined)",
        ),
        Metric::counter(
            "sync_truncations_total",
            "String fields cut to their limit in pulled records",
        ),
        Metric::counter(
            "sync_run_resumes_total",
            "Run attempts that continued from an earlier attempt's checkpoint",
        ),
        Metric::counter(
            "sync_request_retries_total",
            "Upstream page requests tried again (timeouts, connection errors, 429, 5xx)",
        ),
        Metric::counter(
            "sync_breaker_opened_total",
            "Times an upstream host's circuit opened after repeated failures",
        ),
    ],
    ..crate::Capability::NONE
};
