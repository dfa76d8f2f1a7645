//! Device telemetry (issue 12): devices send events, stored once per `(tenant, event_id)` and
//! acknowledged only once committed; a device's events read back in `recorded_at` order. The
//! storage is ADR 0017's.

pub mod config;
pub mod http;
pub mod retention;
pub mod runtime;
pub mod service;
pub mod workers;

use crate::observability::Metric;

pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "telemetry",
    routes: http::register,
    job_kinds: workers::register,
    background: |rt| {
        // live streams end when the process stops, so that they do not hold up shutdown
        let (app, mut stop) = (rt.app.clone(), rt.stop.clone());
        let closing = Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
            app.telemetry().close();
        });
        vec![closing]
    },
    startup: |rt| {
        let (app, registry) = (rt.app.clone(), std::sync::Arc::clone(rt.registry));
        Some(Box::pin(async move {
            workers::ensure_schedules(&app, &registry).await;
        }))
    },
    metrics: &[
        Metric::counter(
            "telemetry_events_total",
            "Device events sent, by tenant (the tenants of tenant_metrics by id, the others as `other`) and result (accepted, duplicate, rejected)",
        ),
        Metric::count_histogram(
            "telemetry_request_events",
            "Events in one POST /v1/telemetry request",
        ),
        Metric::count_histogram("telemetry_commit_events", "Events written in one commit"),
        Metric::seconds(
            "telemetry_commit_wait_seconds",
            "From a request's events being queued for a group commit to that commit starting",
        ),
        Metric::seconds(
            "telemetry_ingest_duration_seconds",
            "From a POST /v1/telemetry request's start to its events being durable (committed)",
        ),
        Metric::counter(
            "telemetry_overloaded_total",
            "Ingest requests answered 503 because the in-flight budget was spent",
        ),
    ],
    ..crate::Capability::NONE
};
