//! Per-tenant utilisation gauges for the tenants of `tenant_metrics`: storage bytes and active
//! devices, read from the usage port once a minute by every API process (the same value from
//! each: aggregate with `max`). The requests, errors and running jobs of those tenants are
//! counted where they happen (the edge, the worker).
//!
//! Only listed tenants get a footprint: for the others an `other` sum would scan every tenant's
//! rows each minute. The database's own size metrics cover the total.

use std::time::Duration;

use tenantry_domain::{TenantId, TenantRef, TenantStatus};

use crate::Task;
use crate::platform::{App, now};

/// How often the footprints are read.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// A device is active when its key was used within this window.
pub const ACTIVE_WINDOW_HOURS: i64 = 24;

pub(crate) fn background(rt: &crate::Runtime<'_>) -> Vec<Task> {
    let ids = rt.config.tenant_metric_ids().unwrap_or_default();
    if ids.is_empty() || !rt.roles.api {
        return Vec::new();
    }
    let app = rt.app.clone();
    let mut stop = rt.stop.clone();
    vec![Box::pin(async move {
        loop {
            for id in &ids {
                record(&app, *id).await;
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    })]
}

/// Reads one tenant's footprint into its gauges (a deleted or unknown tenant's are left alone).
async fn record(app: &App, id: TenantId) {
    let tenant = match app.store().tenants().get(&TenantRef::Id(id)).await {
        Ok(Some(t)) if t.status != TenantStatus::Deleted => t,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(tenant_id = %id, error = %e, "could not read a tenant for its metrics");
            return;
        }
    };
    let scope = crate::access::scope::system_scope(&tenant, "tenant metrics");
    let since = now() - chrono::Duration::hours(ACTIVE_WINDOW_HOURS);
    match app.store().usage().footprint(&scope, since).await {
        Ok(f) => {
            let label = id.to_string();
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!("tenant_storage_bytes", "tenant" => label.clone())
                    .set(f.storage_bytes as f64);
                metrics::gauge!("tenant_active_devices", "tenant" => label)
                    .set(f.active_devices as f64);
            }
        }
        Err(e) => {
            tracing::warn!(tenant_id = %id, error = %e, "could not read a tenant's footprint");
        }
    }
}
