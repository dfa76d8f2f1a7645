//! The job console on SQLite: what operators and tenants see of jobs, and the dead-letter
//! actions. Every method opens its transaction through [`SqliteStore::scoped_tx`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use tenantry_domain::job::JobState;
use tenantry_domain::{Page, PageRequest};
use uuid::Uuid;

use super::jobs::{decode, finish_unique, retake_unique, tenant_clause, us};
use super::{Intent, SqliteStore, err};
use crate::jobs::*;
use crate::{Changes, StoreResult};

#[async_trait]
impl JobConsole for SqliteStore {
    async fn get_job(&self, scope: JobScope<'_>, id: Uuid) -> StoreResult<Option<JobRecord>> {
        let mut tx = self.scoped_tx(scope, Intent::Read).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
        ))
        .bind(id)
        .bind(tenant_clause(scope))
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        row.as_ref().map(decode).transpose()
    }

    async fn list_jobs(
        &self,
        scope: JobScope<'_>,
        filter: &JobFilter,
        page: PageRequest,
    ) -> StoreResult<Page<JobRecord>> {
        let tenant = tenant_clause(scope).or(filter.tenant_id.map(Uuid::from));
        if let (Some(a), Some(b)) = (scope.tenant_id(), filter.tenant_id)
            && a != b
        {
            return Ok(Page::from_fetched(
                Vec::new(),
                page.limit,
                |j: &JobRecord| j.id,
            ));
        }
        let mut tx = self.scoped_tx(scope, Intent::Read).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs
             WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR state = ?2)
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC LIMIT ?5"
        ))
        .bind(tenant)
        .bind(filter.state.map(JobState::as_str))
        .bind(&filter.kind)
        .bind(page.after.map(|c| c.0))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await?;
        let jobs = rows.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_fetched(jobs, page.limit, |j| j.id))
    }

    async fn cancel_job(
        &self,
        scope: JobScope<'_>,
        id: Uuid,
        now: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<Option<JobState>> {
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
        ))
        .bind(id)
        .bind(tenant_clause(scope))
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job = decode(&row)?;
        let state = match job.state {
            s if s.is_pending() => {
                sqlx::query("UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(us(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                finish_unique(
                    &mut tx,
                    id,
                    job.unique_key.clone(),
                    row.try_get("unique_window_ms").map_err(err)?,
                    now,
                )
                .await?;
                JobState::Cancelled
            }
            JobState::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                JobState::Running
            }
            finished => return Ok(Some(finished)),
        };
        SqliteStore::write_changes(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(Some(state))
    }

    async fn retry_job(
        &self,
        scope: JobScope<'_>,
        id: Uuid,
        now: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<Option<JobState>> {
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
        )
        .bind(id)
        .bind(tenant_clause(scope))
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(state) = state else {
            return Ok(None);
        };
        let state: JobState = crate::sql::rows::parse("job state", &state)?;
        if !state.can_retry() {
            return Ok(Some(state));
        }
        sqlx::query(
            "UPDATE jobs SET state = 'available', attempt = 0, run_at = ?2, finished_at = NULL,
                 cancel_requested = 0, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = ?1",
        )
        .bind(id)
        .bind(us(now))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        retake_unique(&mut tx, id).await?;
        SqliteStore::write_changes(&mut tx, changes).await?;
        tx.enqueued = true;
        tx.commit().await?;
        Ok(Some(JobState::Available))
    }

    async fn replay_jobs(
        &self,
        scope: JobScope<'_>,
        filter: &ReplayFilter,
        dry_run: bool,
        now: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<u64> {
        let tenant = tenant_clause(scope).or(filter.tenant_id.map(Uuid::from));
        let mut tx = self.scoped_tx(scope, Intent::Write).await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM jobs
             WHERE (state = 'dead' OR (?6 AND state = 'cancelled')) AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR kind = ?2)
               AND (?3 IS NULL OR finished_at >= ?3) AND (?4 IS NULL OR finished_at < ?4)
               AND (?5 IS NULL OR json_extract(errors, '$[#-1].kind') = ?5)",
        )
        .bind(tenant)
        .bind(&filter.kind)
        .bind(filter.since.map(us))
        .bind(filter.until.map(us))
        .bind(filter.error_kind.map(|k| k.as_str()))
        .bind(filter.include_cancelled)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        if dry_run || ids.is_empty() {
            return Ok(ids.len() as u64);
        }
        for id in &ids {
            sqlx::query(
                "UPDATE jobs SET state = 'available', attempt = 0, run_at = ?2, finished_at = NULL,
                     cancel_requested = 0 WHERE id = ?1",
            )
            .bind(id)
            .bind(us(now))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            retake_unique(&mut tx, *id).await?;
        }
        SqliteStore::write_changes(&mut tx, changes).await?;
        tx.enqueued = true;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
