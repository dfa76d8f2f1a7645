//! Webhooks (issue 15, ADR 0024): a tenant's subscriptions to the event log, delivered to their
//! endpoints signed as Standard Webhooks, retried with backoff (honouring `Retry-After`), paced by
//! a circuit breaker per subscription, dead-lettered, replayable; destinations vetted by the
//! egress guard. docs/webhooks.md is the user's guide.

pub mod config;
pub mod dispatch;
pub mod http;
pub mod runtime;
pub mod service;
pub mod signing;

use crate::observability::Metric;
use crate::platform::App;

pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "webhooks",
    routes: http::register,
    background: |rt| {
        let mut tasks: Vec<crate::Task> = Vec::new();
        if rt.roles.worker {
            tasks.push(Box::pin(dispatch::run(
                rt.app.clone(),
                crate::jobs::workers::worker_id(),
                rt.stop.clone(),
            )));
        }
        tasks
    },
    housekeeping: |app, _| {
        let app = app.clone();
        Some(Box::pin(async move {
            if let Err(e) = prune(&app, chrono::Utc::now()).await {
                tracing::warn!(error = %e, "webhook delivery log pruning failed; the next run tries again");
            }
        }))
    },
    metrics: &[
        Metric::counter(
            "webhook_deliveries_total",
            "Webhook delivery attempts, by status_class (2xx, 3xx, 4xx, 5xx, timeout, error)",
        ),
        Metric::counter(
            "webhook_retries_total",
            "Attempts that failed and were scheduled again",
        ),
        Metric::seconds(
            "webhook_delivery_duration_seconds",
            "How long one delivery attempt took (connection, request, the start of the response)",
        ),
        Metric::counter(
            "webhook_messages_total",
            "Messages fanned out from the event log to subscriptions",
        ),
        Metric::counter(
            "webhook_dead_lettered_total",
            "Messages dead-lettered (attempts or age exhausted, or 410 Gone)",
        ),
        Metric::gauge(
            "webhook_dead_letter_messages",
            "Dead-lettered messages kept (replayable until their retention)",
        ),
        Metric::gauge(
            "webhook_pending_messages",
            "Messages waiting for delivery or a retry",
        ),
        Metric::gauge(
            "webhook_circuits_open",
            "Subscriptions whose circuit is open (deliveries paced to one probe)",
        ),
        Metric::counter(
            "webhook_subscriptions_disabled_total",
            "Subscriptions the platform disabled (410 Gone, or failing for disable_after_hours)",
        ),
    ],
    ..crate::Capability::NONE
};

/// Removes attempts and finished messages older than their tenant's edition's retention
/// (7 / 30 / 90 days), in batches. Safe on any number of replicas.
pub async fn prune(app: &App, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
    let store = app.store();
    let mut total = 0;
    for e in store.editions().list().await? {
        let before = now - chrono::Duration::days(i64::from(e.limits.retention_days));
        loop {
            let n = store
                .webhooks()
                .prune(e.key.as_str(), before, 5_000)
                .await?;
            total += n;
            if n < 5_000 {
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(removed = total, "webhook delivery log pruned");
    }
    Ok(total)
}
