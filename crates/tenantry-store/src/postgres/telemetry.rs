//! Device telemetry on PostgreSQL (ADR 0017): events in monthly partitions of `recorded_at`; the
//! `(tenant, event_id)` uniqueness in `telemetry_event_ids`, taken in the same statement that
//! stores the events (`unnest` of column arrays: one round trip per batch).

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use sqlx::types::Json;
use tenantry_domain::TenantScope;
use tenantry_domain::telemetry::TelemetryEvent;

use std::collections::HashSet;

use super::{Intent, PgStore, Tx, db_time, err};
use crate::StoreResult;
use crate::telemetry::{
    Batch, BucketStats, Inserted, Outcome, Position, StatsFilter, StoredEvent, TelemetryFilter,
    TelemetryStore, UnknownDevices, devices_of, first_seen_device,
};

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
    let known: HashSet<String> = sqlx::query_scalar(KNOWN_DEVICES)
        .bind(tenant.as_uuid())
        .bind(&devices)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?
        .into_iter()
        .collect();
    let mut outcome = Outcome::default();
    // sorted: concurrent registrations take their row locks in one order (no deadlock)
    let mut unknown: Vec<String> = devices.into_iter().filter(|d| !known.contains(d)).collect();
    unknown.sort_unstable();
    let kept: Vec<&TelemetryEvent> = match b.unknown_devices {
        UnknownDevices::Register(changes) => {
            for device_id in unknown {
                let d = first_seen_device(b.scope, &device_id, b.received_at);
                let done = crate::sql::binds::bind_device!(sqlx::query(REGISTER_DEVICE), &d)
                    .execute(&mut **tx)
                    .await
                    .map_err(err)?;
                // another writer registered it first: its changes are that writer's
                if done.rows_affected() == 1 {
                    PgStore::write_changes(tx, &changes(&d)).await?;
                    outcome.registered.push(device_id);
                }
            }
            b.events.iter().collect()
        }
        UnknownDevices::Reject => {
            let kept = b
                .events
                .iter()
                .filter(|e| !unknown.contains(&e.device_id))
                .collect();
            outcome.unknown = unknown;
            kept
        }
    };
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
