//! Device telemetry on SQLite: one table keyed by `(tenant_id, event_id)`; a batch is one
//! multi-row `INSERT … ON CONFLICT DO NOTHING` per chunk, in the tenant's write transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;
use tenantry_domain::TenantScope;

use super::{Intent, SqliteStore, Tx, db_time, err};
use crate::telemetry::{
    Batch, BucketStats, Inserted, Outcome, Position, RemovalChanges, RetentionSettings,
    StatsFilter, StoredEvent, TelemetryFilter, TelemetryStore, devices_of,
};
use crate::{Changes, StoreResult};
use chrono::NaiveDate;
use tenantry_domain::TenantId;

/// Rows per statement: 9 values each, well under SQLite's 32 766 parameters.
const CHUNK: usize = 500;

const COLUMNS: &str =
    "rowid AS seq, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at";

mod sql {
    pub(super) const SETTINGS: &str =
        "SELECT legal_hold, archive FROM telemetry_tenant_settings WHERE tenant_id = ?1";
    pub(super) const PUT_SETTINGS: &str = "INSERT INTO telemetry_tenant_settings (tenant_id, legal_hold, archive, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant_id) DO UPDATE
         SET legal_hold = excluded.legal_hold, archive = excluded.archive, updated_at = excluded.updated_at";
}

const KNOWN_DEVICES: &str = "SELECT device_id FROM devices
     WHERE tenant_id = ?1 AND device_id IN (SELECT value FROM json_each(?2))";

const REGISTER_DEVICE: &str =
    "INSERT INTO devices (id, tenant_id, device_id, name, metadata, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, device_id) DO NOTHING";

/// One batch, filtered by its scope's tenant: its unknown devices registered or refused, then
/// its events stored a chunk per statement.
async fn insert_batch(tx: &mut Tx, b: &Batch<'_>) -> StoreResult<Outcome> {
    let tenant = b.scope.tenant_id();
    let devices = devices_of(b.events);
    let known = sqlx::query_scalar(KNOWN_DEVICES)
        .bind(tenant.as_uuid())
        .bind(Json(&devices))
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?
        .into_iter()
        .collect();
    let (mut outcome, kept) = crate::sql::capabilities::sort_out_devices!(
        &mut *tx,
        b,
        devices,
        known,
        REGISTER_DEVICE,
        SqliteStore
    );
    let mut stored: Vec<String> = Vec::with_capacity(kept.len());
    for chunk in kept.chunks(CHUNK) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO telemetry_events (tenant_id, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at) ",
        );
        qb.push_values(chunk, |mut q, e| {
            q.push_bind(tenant.as_uuid())
                .push_bind(&e.event_id)
                .push_bind(&e.device_id)
                .push_bind(&e.event_type)
                .push_bind(e.value)
                .push_bind(Json(&e.values))
                .push_bind(e.payload.as_ref().map(Json))
                .push_bind(db_time(e.recorded_at))
                .push_bind(db_time(b.received_at));
        });
        qb.push(" ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING event_id");
        let ids = qb
            .build_query_scalar::<String>()
            .fetch_all(&mut **tx)
            .await
            .map_err(err)?;
        stored.extend(ids);
    }
    outcome.inserted = Inserted::of(kept.len(), stored.len() as u64);
    outcome.stored_ids = stored;
    Ok(outcome)
}

crate::sql::capabilities::retention_settings!(SqliteStore);

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn insert_group(&self, batches: &[Batch<'_>]) -> StoreResult<Vec<Outcome>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.insert");
        let mut tx = self.group_tx().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        for b in batches {
            outcomes.push(insert_batch(&mut tx, b).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn list(
        &self,
        scope: &TenantScope,
        filter: &TelemetryFilter,
        limit: u32,
        after: Option<Position>,
    ) -> StoreResult<Vec<StoredEvent>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.list")
            .tenant(scope.tenant_id());
        let (cmp, dir) = filter.order.sql();
        let sql = format!(
            "SELECT {COLUMNS} FROM telemetry_events
             WHERE tenant_id = ?1 AND device_id = ?2
               AND recorded_at >= ?3 AND recorded_at < ?4 AND (?5 IS NULL OR type = ?5)
               AND (?6 IS NULL OR (recorded_at, rowid) {cmp} (?6, ?7))
             ORDER BY recorded_at {dir}, rowid {dir} LIMIT ?8"
        );
        let mut tx = self.tenant_tx(scope, Intent::Read).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant_id().as_uuid())
            .bind(&filter.device_id)
            .bind(filter.from.map_or(i64::MIN, db_time))
            .bind(filter.to.map_or(i64::MAX, db_time))
            .bind(&filter.event_type)
            .bind(after.map(|p| db_time(p.recorded_at)))
            .bind(after.map(|p| p.seq))
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await?;
        rows.iter()
            .map(|row| crate::sql::rows::decode_telemetry!(row, err))
            .collect()
    }

    async fn stats(
        &self,
        scope: &TenantScope,
        filter: &StatsFilter,
    ) -> StoreResult<Vec<BucketStats>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.stats")
            .tenant(scope.tenant_id());
        const WHERE: &str = "tenant_id = ?1 AND recorded_at >= ?2 AND recorded_at < ?3
               AND (?4 IS NULL OR device_id = ?4) AND (?5 IS NULL OR type = ?5)";
        let sql = format!(
            "SELECT (o.recorded_at / ?6) * ?6 AS bucket, COUNT(*) AS n, MIN(o.value) AS lo,
                    MAX(o.value) AS hi, AVG(o.value) AS mean,
                    (SELECT i.value FROM telemetry_events i
                     WHERE {WHERE} AND i.value IS NOT NULL
                       AND i.recorded_at / ?6 = o.recorded_at / ?6
                     ORDER BY i.recorded_at DESC, i.rowid DESC LIMIT 1) AS last
             FROM telemetry_events o WHERE {WHERE}
             GROUP BY bucket ORDER BY bucket"
        );
        let mut tx = self.tenant_tx(scope, Intent::Read).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant_id().as_uuid())
            .bind(db_time(filter.from))
            .bind(db_time(filter.to))
            .bind(&filter.device_id)
            .bind(&filter.event_type)
            .bind(filter.bucket_seconds.max(1) * 1_000_000)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await?;
        rows.iter()
            .map(|row| crate::sql::rows::decode_bucket!(row, err))
            .collect()
    }

    async fn settings(&self, tenant: TenantId) -> StoreResult<RetentionSettings> {
        settings(self, tenant).await
    }

    async fn put_settings(
        &self,
        tenant: TenantId,
        s: &RetentionSettings,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()> {
        put_settings(self, tenant, s, at, changes).await
    }

    async fn export(
        &self,
        scope: &TenantScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<Position>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.export")
            .tenant(scope.tenant_id());
        let mut tx = self.tenant_tx(scope, Intent::Read).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM telemetry_events
             WHERE tenant_id = ?1 AND recorded_at >= ?2 AND recorded_at < ?3
               AND (?4 IS NULL OR (recorded_at, rowid) > (?4, ?5))
             ORDER BY recorded_at, rowid LIMIT ?6"
        )))
        .bind(scope.tenant_id().as_uuid())
        .bind(db_time(from))
        .bind(db_time(to))
        .bind(after.map(|p| db_time(p.recorded_at)))
        .bind(after.map(|p| p.seq))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        rows.iter()
            .map(|row| crate::sql::rows::decode_telemetry!(row, err))
            .collect()
    }

    async fn oldest_before(
        &self,
        scope: &TenantScope,
        before: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.oldest")
            .tenant(scope.tenant_id());
        let mut tx = self.tenant_tx(scope, Intent::Read).await?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(recorded_at) FROM telemetry_events WHERE tenant_id = ?1 AND recorded_at < ?2",
        )
        .bind(scope.tenant_id().as_uuid())
        .bind(db_time(before))
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        Ok(oldest.and_then(DateTime::from_timestamp_micros))
    }

    async fn remove_before(
        &self,
        scope: &TenantScope,
        before: DateTime<Utc>,
        changes: &RemovalChanges<'_>,
    ) -> StoreResult<u64> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.remove")
            .tenant(scope.tenant_id());
        let mut tx = self.tenant_tx(scope, Intent::Write).await?;
        let removed =
            sqlx::query("DELETE FROM telemetry_events WHERE tenant_id = ?1 AND recorded_at < ?2")
                .bind(scope.tenant_id().as_uuid())
                .bind(db_time(before))
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
        if removed > 0 {
            Self::write_changes(&mut tx, &changes(removed)).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn drop_empty_months(&self, _before: DateTime<Utc>) -> StoreResult<Vec<NaiveDate>> {
        Ok(Vec::new())
    }

    async fn prepare(&self, _from: DateTime<Utc>, _to: DateTime<Utc>) -> StoreResult<()> {
        Ok(())
    }
}
