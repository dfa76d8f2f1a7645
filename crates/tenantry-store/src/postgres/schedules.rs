//! Schedules on PostgreSQL. Tenant-facing methods open their transaction through
//! [`PgStore::scoped_tx`] (a tenant scope writes under row-level security); the scheduler's
//! (`due`, `reschedule`, `fire`) work on the platform's view.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use tenantry_domain::TenantId;
use uuid::Uuid;

use super::jobs::insert_jobs;
use super::{Intent, PgStore, err};
use crate::error::ensure_same_tenant;
use crate::jobs::{JobScope, NewJob};
use crate::schedules::{ScheduleRecord, ScheduleStore};
use crate::{Changes, StoreResult};

#[async_trait]
impl ScheduleStore for PgStore {
    async fn put(
        &self,
        scope: JobScope<'_>,
        sc: &ScheduleRecord,
        changes: &Changes,
    ) -> StoreResult<()> {
        if let JobScope::Tenant(s) = scope {
            ensure_same_tenant(s, sc.tenant_id)?;
        }
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        sqlx::query(
            "INSERT INTO schedules (name, tenant_id, cron, interval_ms, kind, payload, enabled, next_fire_at, last_fired_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id, cron = excluded.cron,
                 interval_ms = excluded.interval_ms, kind = excluded.kind, payload = excluded.payload,
                 enabled = excluded.enabled, next_fire_at = excluded.next_fire_at,
                 updated_at = excluded.updated_at",
        )
        .bind(&sc.name)
        .bind(sc.tenant_id.map(Uuid::from))
        .bind(&sc.cron)
        .bind(sc.interval_ms)
        .bind(&sc.kind)
        .bind(Json(&sc.payload))
        .bind(sc.enabled)
        .bind(sc.next_fire_at)
        .bind(sc.last_fired_at)
        .bind(sc.created_at)
        .bind(sc.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        Self::write_changes(&mut tx, changes).await?;
        tx.commit().await
    }

    async fn get(&self, scope: JobScope<'_>, name: &str) -> StoreResult<Option<ScheduleRecord>> {
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        let row = sqlx::query(
            "SELECT * FROM schedules WHERE name = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
        )
        .bind(name)
        .bind(scope.tenant_id().map(Uuid::from))
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        row.as_ref().map(decode_schedule).transpose()
    }

    async fn list(&self, scope: JobScope<'_>) -> StoreResult<Vec<ScheduleRecord>> {
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        let rows = sqlx::query(
            "SELECT * FROM schedules WHERE ($1::uuid IS NULL OR tenant_id = $1) ORDER BY name",
        )
        .bind(scope.tenant_id().map(Uuid::from))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        rows.iter().map(decode_schedule).collect()
    }

    async fn delete(
        &self,
        scope: JobScope<'_>,
        name: &str,
        changes: &Changes,
    ) -> StoreResult<bool> {
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        let n = sqlx::query(
            "DELETE FROM schedules WHERE name = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
        )
        .bind(name)
        .bind(scope.tenant_id().map(Uuid::from))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        Self::write_changes(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<ScheduleRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM schedules WHERE enabled AND next_fire_at <= $1
             ORDER BY next_fire_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode_schedule).collect()
    }

    async fn reschedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE schedules SET next_fire_at = $3 WHERE name = $1 AND next_fire_at = $2",
        )
        .bind(name)
        .bind(expected)
        .bind(next)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn fire(
        &self,
        name: &str,
        fired: DateTime<Utc>,
        next: DateTime<Utc>,
        job: &NewJob,
    ) -> StoreResult<bool> {
        let mut tx = self.platform_tx(Intent::Write).await?;
        let n = sqlx::query(
            "UPDATE schedules SET next_fire_at = $3, last_fired_at = $2
             WHERE name = $1 AND next_fire_at = $2 AND enabled",
        )
        .bind(name)
        .bind(fired)
        .bind(next)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        insert_jobs(&mut tx, std::slice::from_ref(job)).await?;
        tx.commit().await?;
        self.announce();
        Ok(true)
    }
}

fn decode_schedule(row: &PgRow) -> StoreResult<ScheduleRecord> {
    Ok(ScheduleRecord {
        name: row.try_get("name").map_err(err)?,
        tenant_id: row
            .try_get::<Option<Uuid>, _>("tenant_id")
            .map_err(err)?
            .map(TenantId::from_uuid),
        cron: row.try_get("cron").map_err(err)?,
        interval_ms: row.try_get("interval_ms").map_err(err)?,
        kind: row.try_get("kind").map_err(err)?,
        payload: row.try_get::<Json<Value>, _>("payload").map_err(err)?.0,
        enabled: row.try_get("enabled").map_err(err)?,
        next_fire_at: row.try_get("next_fire_at").map_err(err)?,
        last_fired_at: row.try_get("last_fired_at").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        updated_at: row.try_get("updated_at").map_err(err)?,
    })
}
