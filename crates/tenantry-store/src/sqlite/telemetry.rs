//! Device telemetry on SQLite: one table keyed by `(tenant_id, event_id)`; a batch is one
//! multi-row `INSERT … ON CONFLICT DO NOTHING` per chunk, in the tenant's write transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;
use tenantry_domain::TenantScope;
use tenantry_domain::telemetry::TelemetryEvent;

use super::{Intent, SqliteStore, db_time, err};
use crate::StoreResult;
use crate::telemetry::{
    BucketStats, Inserted, Position, StatsFilter, StoredEvent, TelemetryFilter, TelemetryStore,
};

/// Rows per statement: 9 values each, well under SQLite's 32 766 parameters.
const CHUNK: usize = 500;

const COLUMNS: &str =
    "rowid AS seq, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at";

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn insert(
        &self,
        scope: &TenantScope,
        events: &[TelemetryEvent],
        received_at: DateTime<Utc>,
    ) -> StoreResult<Inserted> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.insert")
            .tenant(scope.tenant_id());
        let mut tx = self.tenant_tx(scope, Intent::Write).await?;
        let mut stored = 0_u64;
        for chunk in events.chunks(CHUNK) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO telemetry_events (tenant_id, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(scope.tenant_id().as_uuid())
                    .push_bind(&e.event_id)
                    .push_bind(&e.device_id)
                    .push_bind(&e.event_type)
                    .push_bind(e.value)
                    .push_bind(Json(&e.values))
                    .push_bind(e.payload.as_ref().map(Json))
                    .push_bind(db_time(e.recorded_at))
                    .push_bind(db_time(received_at));
            });
            qb.push(" ON CONFLICT (tenant_id, event_id) DO NOTHING");
            let done = qb.build().execute(&mut *tx).await.map_err(err)?;
            stored += done.rows_affected();
        }
        tx.commit().await?;
        Ok(Inserted::of(events.len(), stored))
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

    async fn prepare(&self, _from: DateTime<Utc>, _to: DateTime<Utc>) -> StoreResult<()> {
        Ok(())
    }
}
