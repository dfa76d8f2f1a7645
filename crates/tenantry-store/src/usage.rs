//! The usage port: what a tenant occupies. Today its footprint, read for the per-tenant
//! utilisation metrics; metering and quotas build on it. Tenant data: every method takes the
//! tenant's scope first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tenantry_domain::TenantScope;

use crate::StoreResult;

/// A tenant's footprint at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantFootprint {
    /// Devices with a device key (not revoked) used since the instant asked about.
    pub active_devices: i64,
    /// Bytes of the tenant's stored rows: keys, devices, audit records, outbox events, jobs,
    /// schedules and device telemetry. PostgreSQL counts each row's stored size (`pg_column_size`); SQLite the length
    /// of each stored value. An estimate of what the tenant costs to keep, not of disk pages.
    pub storage_bytes: i64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    async fn footprint(
        &self,
        scope: &TenantScope,
        active_since: DateTime<Utc>,
    ) -> StoreResult<TenantFootprint>;
}
