//! The job queue on PostgreSQL: claims are one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`
//! statement; heartbeats and completions are one statement per batch (`unnest` of the fences);
//! enqueues `NOTIFY tenantry_jobs` in their transaction so idle workers on every instance wake at
//! commit. Tenant-scoped reads run in the tenant's row-level-security context.
//!
//! Fenced writes match `(id, attempt, lease_owner)` and not the state: the 0004 constraint makes
//! a lease owner exist exactly while a job runs, and the planner then never reaches for the
//! running-jobs index (ADR 0010).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use tenantry_domain::job::{FailureKind, JobState};
use uuid::Uuid;

use super::{Intent, PgStore, db_time, err};
use crate::jobs::*;
use crate::{Changes, StoreResult};

pub(super) const CHANNEL: &str = "tenantry_jobs";

pub(super) fn decode(row: &PgRow) -> StoreResult<JobRecord> {
    crate::sql::rows::decode_job!(row, err)
}

fn fence_arrays(jobs: &[Fence]) -> (Vec<Uuid>, Vec<i32>) {
    jobs.iter()
        .map(|f| (f.id, i32::try_from(f.attempt).unwrap_or(i32::MAX)))
        .unzip()
}

/// Inserts jobs in the caller's transaction: unique keys first, then one multi-row insert.
pub(super) async fn insert_jobs(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> StoreResult<Vec<Enqueued>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut fresh: Vec<&NewJob> = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(key) = &job.unique_key {
            sqlx::query("DELETE FROM job_unique_keys WHERE key = $1 AND expires_at IS NOT NULL AND expires_at <= $2")
                .bind(key)
                .bind(job.created_at)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            // Two statements, not one: when a concurrent transaction holds the key, the insert
            // waits for it to commit and then does nothing — and a read in the same statement
            // would still see the snapshot from before that commit (no row: both would enqueue).
            // The read after it is a new statement with a new snapshot.
            let inserted: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO job_unique_keys (key, job_id) VALUES ($1, $2)
                 ON CONFLICT (key) DO NOTHING RETURNING job_id",
            )
            .bind(key)
            .bind(job.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(err)?;
            let existing: Option<Uuid> = match inserted {
                Some(_) => None,
                None => sqlx::query_scalar("SELECT job_id FROM job_unique_keys WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(err)?,
            };
            if let Some(id) = existing {
                out.push(Enqueued::Existing(id));
                continue;
            }
        }
        out.push(Enqueued::New(job.id));
        fresh.push(job);
    }
    if fresh.is_empty() {
        return Ok(out);
    }
    insert_fresh(conn, &fresh).await?;
    Ok(out)
}

/// One statement for a whole batch: the fair keys are computed in the same statement as the insert
/// (each lane continues from the larger of the queue's head and its own tail), so an enqueue
/// without unique keys is a single round trip. `tails` is `MATERIALIZED`: inlined, the planner
/// evaluated the lane-tail probe once per inserted row instead of once per lane (8 ms of 100 jobs).
pub(super) async fn insert_fresh<'c, E>(conn: E, fresh: &[&NewJob]) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    // position of each job within its lane, in the order given
    let mut seq: HashMap<String, i64> = HashMap::new();
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
        "WITH v (id, queue, kind, tenant_id, lane, seq, unique_key, unique_window_ms, payload, priority, state, attempt, max_attempts, run_at, lease_ms, retry_base_ms, retry_cap_ms, created_at, trace_parent) AS (",
    );
    qb.push_values(fresh, |mut b, job| {
        let lane = lane(job.tenant_id);
        let n = seq.entry(lane.clone()).or_insert(0);
        *n += 1;
        b.push_bind(job.id)
            .push_bind(job.queue.clone())
            .push_bind(job.kind.clone())
            .push_bind(job.tenant_id.map(Uuid::from))
            .push_bind(lane)
            .push_bind(*n)
            .push_bind(job.unique_key.clone())
            .push_bind(millis(job.unique_window))
            .push_bind(Json(job.payload.clone()))
            .push_bind(job.priority)
            .push_bind(if job.run_at > job.created_at {
                "scheduled"
            } else {
                "available"
            })
            .push_bind(0_i32)
            .push_bind(i32::try_from(job.max_attempts.max(1)).unwrap_or(i32::MAX))
            .push_bind(job.run_at)
            .push_bind(millis(job.lease).max(1))
            .push_bind(millis(job.retry.base))
            .push_bind(millis(job.retry.cap))
            .push_bind(job.created_at)
            .push_bind(job.trace_parent.clone());
    });
    qb.push(
        "), head AS (SELECT tenantry_queue_head() AS h),
         tails AS MATERIALIZED (SELECT l.lane, GREATEST((SELECT h FROM head), tenantry_lane_tail(l.lane)) AS t
                   FROM (SELECT DISTINCT lane FROM v) l)
         INSERT INTO jobs (id, queue, kind, tenant_id, lane, fair_key, unique_key, unique_window_ms, payload, priority, state, attempt, max_attempts, run_at, lease_ms, retry_base_ms, retry_cap_ms, created_at, trace_parent)
         SELECT v.id, v.queue, v.kind, v.tenant_id, v.lane, tails.t + v.seq, v.unique_key, v.unique_window_ms, v.payload, v.priority, v.state, v.attempt, v.max_attempts, v.run_at, v.lease_ms, v.retry_base_ms, v.retry_cap_ms, v.created_at, v.trace_parent
         FROM v JOIN tails ON tails.lane = v.lane",
    );
    qb.build().execute(conn).await.map_err(err)?;
    Ok(())
}

pub(super) fn tenant_clause(scope: JobScope<'_>) -> Option<Uuid> {
    scope.tenant_id().map(Uuid::from)
}

/// Sends finished jobs back to the queue with fresh attempts (replay).
pub(super) async fn requeue_all(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'available', attempt = 0, run_at = $2, finished_at = NULL,
             cancel_requested = FALSE WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}

pub(super) async fn finish_unique(
    conn: &mut PgConnection,
    id: Uuid,
    unique_key: Option<String>,
    window_ms: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(key) = unique_key else {
        return Ok(());
    };
    sqlx::query(
        "WITH d AS (DELETE FROM job_unique_keys WHERE key = $1 AND job_id = $2 AND $3 <= 0)
         UPDATE job_unique_keys SET expires_at = $4 + $3 * interval '1 millisecond'
         WHERE key = $1 AND job_id = $2 AND $3 > 0",
    )
    .bind(&key)
    .bind(id)
    .bind(window_ms)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}

pub(super) async fn retake_unique_all(conn: &mut PgConnection, ids: &[Uuid]) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO job_unique_keys (key, job_id, expires_at)
         SELECT unique_key, id, NULL FROM jobs WHERE id = ANY($1) AND unique_key IS NOT NULL
         ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, expires_at = NULL",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}

async fn apply_failure(
    conn: &mut PgConnection,
    job: &JobRecord,
    d: &FailureDecision,
    now: DateTime<Utc>,
    window_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jobs SET state = CASE WHEN $2 = 'retryable' AND EXISTS (SELECT 1 FROM tenants t
                                  WHERE t.id = jobs.tenant_id AND t.status IN ('suspended', 'deleted'))
                                  THEN 'paused' ELSE $2 END,
             run_at = $3, errors = errors || $4, lease_owner = NULL,
             lease_expires_at = NULL, finished_at = $5, cancel_requested = FALSE
         WHERE id = $1",
    )
    .bind(job.id)
    .bind(d.state.as_str())
    .bind(d.run_at)
    .bind(Json(d.error.iter().collect::<Vec<_>>()))
    .bind(d.state.is_finished().then_some(now))
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    if d.state.is_finished() {
        finish_unique(conn, job.id, job.unique_key.clone(), window_ms, now).await?;
    }
    Ok(())
}

/// `NOTIFY` inside a transaction (for jobs enqueued through another unit of work's `Changes`).
const PAUSE_TENANT_JOBS: &str = "UPDATE jobs SET state = 'paused'
     WHERE tenant_id = $1 AND state IN ('scheduled', 'available', 'retryable')";
const RESUME_TENANT_JOBS: &str = "UPDATE jobs SET state = CASE WHEN attempt > 0 THEN 'retryable'
                                  WHEN run_at > $2 THEN 'scheduled' ELSE 'available' END
     WHERE tenant_id = $1 AND state = 'paused'";

crate::sql::tenant_jobs::hold_tenant_jobs!(PgConnection);

pub(super) async fn notify(conn: &mut PgConnection) -> StoreResult<()> {
    super::notify_channel(conn, CHANNEL).await
}

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue_recorded(
        &self,
        jobs: &[NewJob],
        record: Option<&RecordFn<'_>>,
    ) -> StoreResult<Vec<Enqueued>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.enqueue_recorded");
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if crate::sql::enqueue_batch::coalescable(jobs, record.is_some()) {
            // nothing to check or record first: one autocommitted statement, shared with the
            // calls that arrive at the same time
            self.enqueue_batcher().enqueue(jobs).await?;
            self.announce();
            return Ok(jobs.iter().map(|j| Enqueued::New(j.id)).collect());
        }
        let mut tx = self.platform_tx(Intent::Write).await?;
        let out = insert_jobs(&mut tx, jobs).await?;
        if let Some(record) = record {
            let changes = Changes {
                idempotency: Some(record(&out)),
                ..Changes::default()
            };
            Self::write_changes(&mut tx, &changes).await?;
        }
        tx.commit().await?;
        self.announce();
        Ok(out)
    }

    async fn claim_capped(
        &self,
        owner: &str,
        queues: &[String],
        limit: u32,
        tenant_cap: Option<u32>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<JobRecord>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.claim_capped");
        if limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        // the statements live in the 0003 and 0004 migrations: they pin the plan (see there)
        let sql = if tenant_cap.is_some() {
            "SELECT * FROM tenantry_claim_jobs_capped($1, $2, $3, $4, $5)"
        } else {
            "SELECT * FROM tenantry_claim_jobs($1, $2, $3, $4)"
        };
        let mut query = sqlx::query(sql)
            .bind(owner)
            .bind(now)
            .bind(queues)
            .bind(i64::from(limit));
        if let Some(cap) = tenant_cap {
            query = query.bind(i64::from(cap));
        }
        let rows = query.fetch_all(&self.pool).await.map_err(err)?;
        let mut jobs = rows.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        Ok(jobs)
    }

    async fn heartbeat(
        &self,
        owner: &str,
        jobs: &[Fence],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(Fence, Lease)>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.heartbeat");
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts) = fence_arrays(jobs);
        let rows: Vec<(Uuid, i32, bool)> = sqlx::query_as(
            "UPDATE jobs j SET lease_expires_at = $1 + j.lease_ms * interval '1 millisecond', heartbeat_at = $1
             FROM unnest($2::uuid[], $3::int[]) AS f(id, attempt)
             WHERE j.id = ANY($2) AND j.id = f.id AND j.attempt = f.attempt AND j.lease_owner = $4
             RETURNING j.id, j.attempt, j.cancel_requested",
        )
        .bind(now)
        .bind(&ids)
        .bind(&attempts)
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let held: HashMap<(Uuid, i32), bool> =
            rows.into_iter().map(|(id, a, c)| ((id, a), c)).collect();
        Ok(jobs
            .iter()
            .map(|f| {
                let key = (f.id, i32::try_from(f.attempt).unwrap_or(i32::MAX));
                (
                    *f,
                    match held.get(&key) {
                        Some(c) => Lease::Held { cancel: *c },
                        None => Lease::Lost,
                    },
                )
            })
            .collect())
    }

    async fn complete(
        &self,
        owner: &str,
        jobs: &[Fence],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Fence>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.complete");
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts) = fence_arrays(jobs);
        let rows: Vec<(Uuid, i32)> = sqlx::query_as(
            "WITH done AS (
                 UPDATE jobs j SET state = 'completed', finished_at = $1, lease_owner = NULL,
                     lease_expires_at = NULL
                 FROM unnest($2::uuid[], $3::int[]) AS f(id, attempt)
                 WHERE j.id = ANY($2) AND j.id = f.id AND j.attempt = f.attempt AND j.lease_owner = $4
                 RETURNING j.id, j.attempt, j.unique_key, j.unique_window_ms),
             freed AS (
                 DELETE FROM job_unique_keys k USING done
                 WHERE k.key = done.unique_key AND k.job_id = done.id AND done.unique_window_ms <= 0),
             windowed AS (
                 UPDATE job_unique_keys k SET expires_at = $1 + done.unique_window_ms * interval '1 millisecond'
                 FROM done WHERE k.key = done.unique_key AND k.job_id = done.id AND done.unique_window_ms > 0)
             SELECT id, attempt FROM done",
        )
        .bind(now)
        .bind(&ids)
        .bind(&attempts)
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(id, a)| Fence {
                id,
                attempt: u32::try_from(a).unwrap_or(0),
            })
            .collect())
    }

    async fn fail(
        &self,
        owner: &str,
        job: Fence,
        outcome: &Outcome,
        now: DateTime<Utc>,
        unit: f64,
    ) -> StoreResult<Option<JobState>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.fail");
        let mut tx = self.platform_tx(Intent::Write).await?;
        let row = sqlx::query(
            "SELECT * FROM jobs WHERE id = $1 AND attempt = $2 AND lease_owner = $3 FOR UPDATE",
        )
        .bind(job.id)
        .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let current = decode(&row)?;
        let d = decide_failure(
            current.attempt,
            current.max_attempts,
            row.try_get("retry_base_ms").map_err(err)?,
            row.try_get("retry_cap_ms").map_err(err)?,
            outcome,
            now,
            unit,
        );
        apply_failure(
            &mut tx,
            &current,
            &d,
            now,
            row.try_get("unique_window_ms").map_err(err)?,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(d.state))
    }

    async fn checkpoint(
        &self,
        owner: &str,
        job: Fence,
        checkpoint: &Value,
        _now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.checkpoint");
        let n = sqlx::query(
            "UPDATE jobs SET checkpoint = $1
             WHERE id = $2 AND attempt = $3 AND lease_owner = $4",
        )
        .bind(Json(checkpoint))
        .bind(job.id)
        .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn release(&self, owner: &str, jobs: &[Fence], now: DateTime<Utc>) -> StoreResult<u64> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.release");
        if jobs.is_empty() {
            return Ok(0);
        }
        let (ids, attempts) = fence_arrays(jobs);
        let mut tx = self.platform_tx(Intent::Write).await?;
        let n = sqlx::query(
            "UPDATE jobs j SET state = CASE WHEN EXISTS (SELECT 1 FROM tenants t
                                     WHERE t.id = j.tenant_id AND t.status IN ('suspended', 'deleted')) THEN 'paused'
                                            ELSE 'available' END,
                 attempt = j.attempt - 1, run_at = $1,
                 lease_owner = NULL, lease_expires_at = NULL
             FROM unnest($2::uuid[], $3::int[]) AS f(id, attempt)
             WHERE j.id = ANY($2) AND j.id = f.id AND j.attempt = f.attempt AND j.lease_owner = $4",
        )
        .bind(now)
        .bind(&ids)
        .bind(&attempts)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        tx.commit().await?;
        self.announce();
        Ok(n)
    }

    async fn recover_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        unit: f64,
    ) -> StoreResult<Vec<(Uuid, JobState)>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.recover_expired");
        let mut tx = self.platform_tx(Intent::Write).await?;
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at < $1
             ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let job = decode(row)?;
            let d = decide_failure(
                job.attempt,
                job.max_attempts,
                row.try_get("retry_base_ms").map_err(err)?,
                row.try_get("retry_cap_ms").map_err(err)?,
                &Outcome::Failed {
                    kind: FailureKind::LeaseExpired,
                    message: format!(
                        "lease of {} expired without a heartbeat",
                        job.lease_owner.as_deref().unwrap_or("?")
                    ),
                },
                now,
                unit,
            );
            apply_failure(
                &mut tx,
                &job,
                &d,
                now,
                row.try_get("unique_window_ms").map_err(err)?,
            )
            .await?;
            out.push((job.id, d.state));
        }
        tx.commit().await?;
        if !out.is_empty() {
            self.announce();
        }
        Ok(out)
    }

    async fn queue_depth(&self) -> StoreResult<Vec<QueueDepth>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.queue_depth");
        let rows: Vec<(String, String, i64)> =
            // one branch per partial index (pending, running, dead): never a scan of the history
            sqlx::query_as(
                "SELECT state, kind, COUNT(*) FROM jobs WHERE state IN ('scheduled', 'available', 'retryable') GROUP BY state, kind
                 UNION ALL SELECT state, kind, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY state, kind
                 UNION ALL SELECT state, kind, COUNT(*) FROM jobs WHERE state = 'dead' GROUP BY state, kind",
            )
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.into_iter()
            .map(|(state, kind, count)| {
                Ok(QueueDepth {
                    state: crate::sql::rows::parse("job state", &state)?,
                    kind,
                    count,
                })
            })
            .collect()
    }

    async fn dead_letters(&self) -> StoreResult<DeadLetters> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.dead_letters");
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT COUNT(*), MIN(finished_at) FROM jobs WHERE state = 'dead'")
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
        Ok(DeadLetters { count, oldest })
    }

    async fn tidy_queue(&self, after_dead_rows: u64) -> StoreResult<bool> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.tidy_queue");
        let dead: i64 = sqlx::query_scalar(
            "SELECT COALESCE(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .unwrap_or(0);
        if u64::try_from(dead).unwrap_or(0) < after_dead_rows {
            return Ok(false);
        }
        self.vacuum_jobs().await
    }

    async fn prune_jobs(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.prune_jobs");
        let n = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
                 WHERE id < $3 AND state IN ('completed','cancelled') AND finished_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .bind(created_before(before))
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        sqlx::query("DELETE FROM job_unique_keys WHERE expires_at IS NOT NULL AND expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(n)
    }

    fn job_signal(&self) -> Arc<tokio::sync::Notify> {
        self.listener_started
            .call_once(|| self.spawn_listener(CHANNEL, &self.signal));
        Arc::clone(&self.signal)
    }
}
