//! The event fabric (issue 14, ADR 0023): the outbox read as an ordered log, relayed to the bus
//! (in process, or NATS JetStream), fanned out to realtime streams on every instance, and read
//! back as CloudEvents. docs/events.md is the user's guide.

pub mod catalog;
pub mod config;
pub mod http;
pub mod hub;
pub mod relay;
pub mod runtime;

use std::sync::Arc;

use tenantry_store::events::PrunePolicy;

use crate::observability::Metric;
use crate::platform::App;

pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "events",
    routes: http::register,
    background: |rt| {
        let mut tasks: Vec<crate::Task> = Vec::new();
        let events = Arc::clone(rt.app.events());
        let store = Arc::clone(rt.app.store());
        if rt.roles.worker {
            tasks.push(Box::pin(relay::run(
                Arc::clone(&store),
                Arc::clone(&events),
                crate::jobs::workers::worker_id(),
                rt.stop.clone(),
            )));
        }
        if rt.roles.api {
            tasks.push(Box::pin(hub::run(
                Arc::clone(&store),
                Arc::clone(&events),
                rt.stop.clone(),
            )));
            // streams end when the process stops, so that they do not hold up shutdown
            let mut stop = rt.stop.clone();
            tasks.push(Box::pin(async move {
                let _ = stop.wait_for(|s| *s).await;
                events.close();
            }));
        }
        tasks
    },
    housekeeping: |app, _| {
        let app = app.clone();
        Some(Box::pin(async move {
            if let Err(e) = prune(&app, chrono::Utc::now()).await {
                tracing::warn!(error = %e, "event log pruning failed; the next run tries again");
            }
        }))
    },
    metrics: &[
        Metric::counter(
            "events_published_total",
            "Events the relay published to the bus",
        ),
        Metric::counter(
            "events_relay_errors_total",
            "Relay attempts that failed (the bus or the store unreachable); the relay retries",
        ),
        Metric::gauge(
            "events_relay_backlog",
            "Events committed but not yet published (sequenced or not)",
        ),
        Metric::gauge(
            "events_relay_oldest_seconds",
            "Age of the oldest event not yet published (0 when none)",
        ),
        Metric::seconds(
            "events_publish_lag_seconds",
            "From an event's time (its commit) to the bus acknowledging its publish",
        ),
        Metric::seconds(
            "events_delivery_lag_seconds",
            "From an event's time (its commit) to its hand-over to a realtime stream",
        ),
        Metric::gauge(
            "events_streams_open",
            "Realtime streams open on this instance",
        ),
        Metric::counter(
            "events_streams_refused_total",
            "Realtime streams refused because the tenant had its edition's number open",
        ),
        Metric::counter(
            "events_streams_lagged_total",
            "Realtime streams closed because the client fell behind (told to resume)",
        ),
        Metric::counter(
            "events_pruned_total",
            "Published events removed from the log after their retention",
        ),
    ],
    ..crate::Capability::NONE
};

/// Removes published events older than their tenant's edition's retention (platform events:
/// `[events] platform_retention_days`), in batches. Safe on any number of replicas.
pub async fn prune(app: &App, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
    let store = app.store();
    let through = store.events().cursor(relay::RELAY_CURSOR).await?;
    let editions = store
        .editions()
        .list()
        .await?
        .into_iter()
        .map(|e| {
            (
                e.key,
                now - chrono::Duration::days(i64::from(e.limits.retention_days)),
            )
        })
        .collect();
    let policy = PrunePolicy {
        through,
        editions,
        platform: now
            - chrono::Duration::days(i64::from(app.events().config().platform_retention_days)),
        limit: 10_000,
    };
    let mut total = 0;
    loop {
        let n = store.events().prune(&policy).await?;
        total += n;
        if n < u64::from(policy.limit) {
            break;
        }
    }
    metrics::counter!("events_pruned_total").increment(total);
    if total > 0 {
        tracing::info!(removed = total, "event log pruned");
    }
    Ok(total)
}
