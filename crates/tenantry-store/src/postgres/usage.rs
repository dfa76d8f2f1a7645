//! Tenant footprints on PostgreSQL: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::usage_store`] (through `PgStore::tenant_tx`, so row-level
//! security bounds every sum to the tenant).

use super::{Intent, PgStore, db_time, err};

mod sql {
    pub(super) const ACTIVE_DEVICES: &str = "SELECT COUNT(DISTINCT device_id) FROM api_keys
         WHERE tenant_id = $1 AND device_id IS NOT NULL AND revoked_at IS NULL AND last_used_at >= $2";
    pub(super) fn storage_bytes() -> &'static str {
        STORAGE_BYTES
    }
    /// Each row's stored size, summed over the tenant's tables.
    const STORAGE_BYTES: &str = "SELECT (
           (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM api_keys t WHERE tenant_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM devices t WHERE tenant_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM audit_log t WHERE tenant_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM outbox t WHERE tenant_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM jobs t WHERE tenant_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM schedules t WHERE tenant_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM telemetry_events t WHERE tenant_id = $1)
         )::BIGINT";
}

crate::sql::capabilities::usage_store!(PgStore);
