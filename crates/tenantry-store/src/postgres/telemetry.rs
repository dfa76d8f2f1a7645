//! Device telemetry on PostgreSQL (ADR 0017): events in monthly partitions of `recorded_at`; the
//! `(tenant, event_id)` uniqueness in `telemetry_event_ids`, taken in the same statement that
//! stores the events (`unnest` of column arrays: one round trip per batch).

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use sqlx::types::Json;
use tenantry_domain::TenantScope;
use tenantry_domain::telemetry::TelemetryEvent;

use super::{Intent, PgStore, Tx, db_time, err};
use crate::telemetry::{
    Batch, BucketStats, Inserted, Outcome, Position, RemovalChanges, RetentionSettings,
    StatsFilter, StoredEvent, TelemetryFilter, TelemetryStore, devices_of,
};
use crate::{Changes, StoreResult};
use tenantry_domain::TenantId;

const INSERT: &str = "WITH input AS (
        SELECT DISTINCT ON (event_id) *
        FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::jsonb[], $7::jsonb[], $8::timestamptz[])
             AS t(event_id, device_id, type, value, vals, payload, recorded_at)
    ), fresh AS (
        INSERT INTO telemetry_event_ids (tenant_id, event_id, recorded_at)
        SELECT $1, event_id, recorded_at FROM input
        ON CONFLICT (tenant_id, event_id) DO NOTHING
        RETURNING event_id
    )
    INSERT INTO telemetry_events (tenant_id, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at)
    SELECT $1, i.event_id, i.device_id, i.type, i.value, i.vals, i.payload, i.recorded_at, $9
    FROM input i JOIN fresh USING (event_id)
    RETURNING event_id";

const COLUMNS: &str =
    "seq, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at";

mod sql {
    pub(super) const SETTINGS: &str =
        "SELECT legal_hold, archive FROM telemetry_tenant_settings WHERE tenant_id = $1";
    pub(super) const PUT_SETTINGS: &str = "INSERT INTO telemetry_tenant_settings (tenant_id, legal_hold, archive, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id) DO UPDATE
         SET legal_hold = EXCLUDED.legal_hold, archive = EXCLUDED.archive, updated_at = EXCLUDED.updated_at";
}

const KNOWN_DEVICES: &str =
    "SELECT device_id FROM devices WHERE tenant_id = $1 AND device_id = ANY($2)";

const REGISTER_DEVICE: &str =
    "INSERT INTO devices (id, tenant_id, device_id, name, metadata, created_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, device_id) DO NOTHING";

/// One batch, in a transaction already under its tenant: its unknown devices registered or
/// refused, then its events stored in one statement.
async fn insert_batch(tx: &mut Tx, b: &Batch<'_>) -> StoreResult<Outcome> {
    let tenant = b.scope.tenant_id();
    let devices = devices_of(b.events);
    let known = sqlx::query_scalar(KNOWN_DEVICES)
        .bind(tenant.as_uuid())
        .bind(&devices)
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
        PgStore
    );
    if kept.is_empty() {
        outcome.inserted = Inserted::of(0, 0);
        return Ok(outcome);
    }
    let column = |f: fn(&TelemetryEvent) -> String| kept.iter().map(|e| f(e)).collect::<Vec<_>>();
    let stored: Vec<String> = sqlx::query_scalar(INSERT)
        .bind(tenant.as_uuid())
        .bind(column(|e| e.event_id.clone()))
        .bind(column(|e| e.device_id.clone()))
        .bind(column(|e| e.event_type.clone()))
        .bind(kept.iter().map(|e| e.value).collect::<Vec<_>>())
        .bind(kept.iter().map(|e| Json(&e.values)).collect::<Vec<_>>())
        .bind(
            kept.iter()
                .map(|e| e.payload.as_ref().map(Json))
                .collect::<Vec<_>>(),
        )
        .bind(kept.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
        .bind(b.received_at)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    outcome.inserted = Inserted::of(kept.len(), stored.len() as u64);
    outcome.stored_ids = stored;
    Ok(outcome)
}

crate::sql::capabilities::retention_settings!(PgStore);

#[async_trait]
impl TelemetryStore for PgStore {
    async fn insert_group(&self, batches: &[Batch<'_>]) -> StoreResult<Vec<Outcome>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.insert");
        let mut tx = self.group_tx().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        for b in batches {
            Self::enter(&mut tx, b.scope).await?;
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
             WHERE tenant_id = $1 AND device_id = $2
               AND ($3::timestamptz IS NULL OR recorded_at >= $3)
               AND ($4::timestamptz IS NULL OR recorded_at < $4)
               AND ($5::text IS NULL OR type = $5)
               AND ($6::timestamptz IS NULL OR (recorded_at, seq) {cmp} ($6, $7))
             ORDER BY recorded_at {dir}, seq {dir} LIMIT $8"
        );
        let mut tx = self.tenant_tx(scope, Intent::Read).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant_id().as_uuid())
            .bind(&filter.device_id)
            .bind(filter.from)
            .bind(filter.to)
            .bind(&filter.event_type)
            .bind(after.map(|p| p.recorded_at))
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
        let mut tx = self.tenant_tx(scope, Intent::Read).await?;
        let rows = sqlx::query(
            "SELECT to_timestamp(floor(extract(epoch FROM recorded_at) / $6) * $6) AS bucket,
                    count(*) AS n, min(value) AS lo, max(value) AS hi, avg(value) AS mean,
                    (array_agg(value ORDER BY recorded_at DESC, seq DESC)
                        FILTER (WHERE value IS NOT NULL))[1] AS last
             FROM telemetry_events
             WHERE tenant_id = $1 AND recorded_at >= $2 AND recorded_at < $3
               AND ($4::text IS NULL OR device_id = $4) AND ($5::text IS NULL OR type = $5)
             GROUP BY 1 ORDER BY 1",
        )
        .bind(scope.tenant_id().as_uuid())
        .bind(filter.from)
        .bind(filter.to)
        .bind(&filter.device_id)
        .bind(&filter.event_type)
        .bind(filter.bucket_seconds.max(1) as f64)
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
             WHERE tenant_id = $1 AND recorded_at >= $2 AND recorded_at < $3
               AND ($4::timestamptz IS NULL OR (recorded_at, seq) > ($4, $5))
             ORDER BY recorded_at, seq LIMIT $6"
        )))
        .bind(scope.tenant_id().as_uuid())
        .bind(from)
        .bind(to)
        .bind(after.map(|p| p.recorded_at))
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
        let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(recorded_at) FROM telemetry_event_ids WHERE tenant_id = $1 AND recorded_at < $2",
        )
        .bind(scope.tenant_id().as_uuid())
        .bind(before)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        Ok(oldest)
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
            sqlx::query("DELETE FROM telemetry_events WHERE tenant_id = $1 AND recorded_at < $2")
                .bind(scope.tenant_id().as_uuid())
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
        sqlx::query("DELETE FROM telemetry_event_ids WHERE tenant_id = $1 AND recorded_at < $2")
            .bind(scope.tenant_id().as_uuid())
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if removed > 0 {
            Self::write_changes(&mut tx, &changes(removed)).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn drop_empty_months(&self, before: DateTime<Utc>) -> StoreResult<Vec<NaiveDate>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.drop_months");
        let mut tx = self.platform_tx(Intent::Write).await?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'telemetry_events'::regclass ORDER BY 1",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut dropped = Vec::new();
        for name in names {
            let Some(month) = name
                .strip_prefix("telemetry_events_")
                .and_then(|m| NaiveDate::parse_from_str(&format!("{m}_01"), "%Y_%m_%d").ok())
            else {
                continue;
            };
            let Some(end) = month.checked_add_months(Months::new(1)) else {
                continue;
            };
            if end.and_time(chrono::NaiveTime::MIN).and_utc() > before {
                continue;
            }
            let gone: bool = sqlx::query_scalar("SELECT tenantry_telemetry_drop_partition($1)")
                .bind(month)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
            if gone {
                dropped.push(month);
            }
        }
        tx.commit().await?;
        Ok(dropped)
    }

    async fn prepare(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<()> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.prepare");
        let first = |t: DateTime<Utc>| NaiveDate::from_ymd_opt(t.year(), t.month(), 1);
        let (Some(mut month), Some(last)) = (first(from), first(to)) else {
            return Ok(());
        };
        let mut tx = self.platform_tx(Intent::Write).await?;
        while month <= last {
            sqlx::query("SELECT tenantry_telemetry_partition($1)")
                .bind(month)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let Some(next) = month.checked_add_months(Months::new(1)) else {
                break;
            };
            month = next;
        }
        tx.commit().await?;
        Ok(())
    }
}
