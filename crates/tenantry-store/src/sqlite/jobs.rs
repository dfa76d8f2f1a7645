//! The job queue on SQLite: claims are one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`
//! inside a short immediate transaction (SQLite has one writer, so nothing can claim in between).
//! Times are stored as microseconds since the epoch.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Row, SqliteConnection};
use tenantry_domain::job::JobState;
use uuid::Uuid;

use super::{Intent, SqliteStore, db_time, err};
use crate::jobs::*;
use crate::sql::enqueue_batch::EnqueueBatcher;
use crate::{Changes, StoreResult};

pub(super) fn decode(row: &SqliteRow) -> StoreResult<JobRecord> {
    crate::sql::rows::decode_job!(row, err)
}

const PAUSE_TENANT_JOBS: &str = "UPDATE jobs SET state = 'paused'
     WHERE tenant_id = ?1 AND state IN ('scheduled', 'available', 'retryable')";
const RESUME_TENANT_JOBS: &str = "UPDATE jobs SET state = CASE WHEN attempt > 0 THEN 'retryable'
                                  WHEN run_at > ?2 THEN 'scheduled' ELSE 'available' END
     WHERE tenant_id = ?1 AND state = 'paused'";

crate::sql::tenant_jobs::hold_tenant_jobs!(SqliteConnection);

/// Inserts jobs in the caller's transaction, honouring unique keys and assigning fair keys.
pub(super) async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
) -> StoreResult<Vec<Enqueued>> {
    let head: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT fair_key FROM jobs WHERE state IN ",
        pending!(),
        " ORDER BY priority DESC, fair_key, id LIMIT 1"
    ))
    .fetch_optional(&mut *conn)
    .await
    .map_err(err)?;
    let head = head.unwrap_or(0);
    let mut next: HashMap<String, i64> = HashMap::new();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let now = db_time(job.created_at);
        if let Some(key) = &job.unique_key {
            sqlx::query("DELETE FROM job_unique_keys WHERE key = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2")
                .bind(key)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            let taken = sqlx::query("INSERT INTO job_unique_keys (key, job_id, expires_at) VALUES (?1, ?2, NULL) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(job.id)
                .execute(&mut *conn)
                .await
                .map_err(err)?
                .rows_affected()
                == 0;
            if taken {
                let existing: Uuid =
                    sqlx::query_scalar("SELECT job_id FROM job_unique_keys WHERE key = ?1")
                        .bind(key)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(err)?;
                out.push(Enqueued::Existing(existing));
                continue;
            }
        }
        let lane = lane(job.tenant_id);
        let fair = match next.get(&lane) {
            Some(k) => *k,
            None => {
                let tail: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT fair_key FROM jobs WHERE lane = ?1 AND state IN ",
                    pending!(),
                    " ORDER BY fair_key DESC LIMIT 1"
                ))
                .bind(&lane)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
                head.max(tail.unwrap_or(0)) + 1
            }
        };
        next.insert(lane.clone(), fair + 1);
        let state = if job.run_at > job.created_at {
            "scheduled"
        } else {
            "available"
        };
        sqlx::query(
            "INSERT INTO jobs (id, queue, kind, tenant_id, lane, fair_key, unique_key, unique_window_ms, payload, priority, state, attempt, max_attempts, run_at, lease_ms, retry_base_ms, retry_cap_ms, created_at, trace_parent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )
        .bind(job.id)
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(job.tenant_id.map(Uuid::from))
        .bind(&lane)
        .bind(fair)
        .bind(&job.unique_key)
        .bind(millis(job.unique_window))
        .bind(Json(&job.payload))
        .bind(i64::from(job.priority))
        .bind(state)
        .bind(i64::from(job.max_attempts.max(1)))
        .bind(db_time(job.run_at))
        .bind(millis(job.lease).max(1))
        .bind(millis(job.retry.base))
        .bind(millis(job.retry.cap))
        .bind(now)
        .bind(&job.trace_parent)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        out.push(Enqueued::New(job.id));
    }
    Ok(out)
}

/// After a job finished: its unique key stays taken for the job's window, or is freed.
pub(super) async fn finish_unique(
    conn: &mut SqliteConnection,
    id: Uuid,
    unique_key: Option<String>,
    window_ms: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(key) = unique_key else {
        return Ok(());
    };
    if window_ms <= 0 {
        sqlx::query("DELETE FROM job_unique_keys WHERE key = ?1 AND job_id = ?2")
            .bind(&key)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    } else {
        sqlx::query("UPDATE job_unique_keys SET expires_at = ?3 WHERE key = ?1 AND job_id = ?2")
            .bind(&key)
            .bind(id)
            .bind(db_time(now) + window_ms * 1000)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// A unique key taken again when a finished job goes back to the queue (retry, replay).
pub(super) async fn retake_unique(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO job_unique_keys (key, job_id, expires_at)
         SELECT unique_key, id, NULL FROM jobs WHERE id = ?1 AND unique_key IS NOT NULL
         ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, expires_at = NULL",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}

/// Takes the unique keys of finished jobs going back to the queue.
pub(super) async fn retake_unique_all(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
) -> StoreResult<()> {
    for id in ids {
        retake_unique(conn, *id).await?;
    }
    Ok(())
}

/// Sends finished jobs back to the queue with fresh attempts (replay).
pub(super) async fn requeue_all(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for id in ids {
        sqlx::query(
            "UPDATE jobs SET state = 'available', attempt = 0, run_at = ?2, finished_at = NULL,
                 cancel_requested = 0 WHERE id = ?1",
        )
        .bind(id)
        .bind(db_time(now))
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    }
    Ok(())
}

pub(super) fn tenant_clause(scope: JobScope<'_>) -> Option<Uuid> {
    scope.tenant_id().map(Uuid::from)
}

impl SqliteStore {
    /// Nothing to do after an enqueue commits: the transaction woke the workers itself.
    pub(super) fn after_enqueue(&self) {}

    /// Concurrent plain enqueues share one write transaction (`enqueue_batch`). One insert at a
    /// time: SQLite has one writer.
    fn enqueue_batcher(&self) -> &EnqueueBatcher {
        self.batcher.get_or_init(|| {
            let (pool, writer, signal, events) = (
                self.pool.clone(),
                Arc::clone(&self.writer),
                Arc::clone(&self.signal),
                Arc::clone(&self.events),
            );
            EnqueueBatcher::start(
                1,
                Arc::new(move |jobs: Vec<NewJob>| {
                    let (pool, writer, signal, events) = (
                        pool.clone(),
                        Arc::clone(&writer),
                        Arc::clone(&signal),
                        Arc::clone(&events),
                    );
                    Box::pin(async move {
                        let mut tx = super::begin_write(&pool, &writer, &signal, &events).await?;
                        insert_jobs(&mut tx, &jobs).await?;
                        tx.enqueued = true;
                        tx.commit().await
                    })
                }),
            )
        })
    }
}

#[async_trait]
impl JobQueue for SqliteStore {
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
            // nothing to check or record first: share the write transaction (and its fsync)
            // with the calls that arrive at the same time
            self.enqueue_batcher().enqueue(jobs).await?;
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
        tx.enqueued = out.iter().any(|e| matches!(e, Enqueued::New(_)));
        tx.commit().await?;
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
        let mut tx = self.platform_tx(Intent::Write).await?;
        // the claim runs in the single writer's transaction, so a tenant cap counts exactly
        let uncapped = concat!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?1,
                 lease_expires_at = ?2 + lease_ms * 1000, heartbeat_at = ?2, attempted_at = ?2
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE state IN ",
            pending!(),
            " AND run_at <= ?2
                   AND queue IN (SELECT value FROM json_each(?3))
                 ORDER BY priority DESC, fair_key, id LIMIT ?4)
             RETURNING ",
            job_columns!(),
            ""
        );
        let capped = concat!(
            "WITH busy AS (
                 SELECT lane, count(*) AS n FROM jobs WHERE state = 'running' AND lane <> '' GROUP BY lane),
             candidates AS (
                 SELECT id, lane, priority, fair_key FROM jobs
                 WHERE state IN ",
            pending!(),
            " AND run_at <= ?2
                   AND queue IN (SELECT value FROM json_each(?3))
                   AND lane NOT IN (SELECT lane FROM busy WHERE n >= ?5)
                 ORDER BY priority DESC, fair_key, id LIMIT ?4),
             ranked AS (
                 SELECT id, lane,
                        row_number() OVER (PARTITION BY lane ORDER BY priority DESC, fair_key, id) AS rn
                 FROM candidates)
             UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?1,
                 lease_expires_at = ?2 + lease_ms * 1000, heartbeat_at = ?2, attempted_at = ?2
             WHERE id IN (
                 SELECT r.id FROM ranked r LEFT JOIN busy b ON b.lane = r.lane
                 WHERE r.lane = '' OR r.rn + COALESCE(b.n, 0) <= ?5)
             RETURNING ",
            job_columns!(),
            ""
        );
        let mut query = sqlx::query(if tenant_cap.is_some() {
            capped
        } else {
            uncapped
        })
        .bind(owner)
        .bind(db_time(now))
        .bind(Json(queues))
        .bind(i64::from(limit));
        if let Some(cap) = tenant_cap {
            query = query.bind(i64::from(cap));
        }
        let rows = query.fetch_all(&mut *tx).await.map_err(err)?;
        tx.commit().await?;
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
        let mut tx = self.platform_tx(Intent::Write).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for f in jobs {
            let cancel: Option<i64> = sqlx::query_scalar(
                "UPDATE jobs SET lease_expires_at = ?1 + lease_ms * 1000, heartbeat_at = ?1
                 WHERE id = ?2 AND attempt = ?3 AND lease_owner = ?4 AND state = 'running'
                 RETURNING cancel_requested",
            )
            .bind(db_time(now))
            .bind(f.id)
            .bind(i64::from(f.attempt))
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            out.push((
                *f,
                match cancel {
                    Some(c) => Lease::Held { cancel: c != 0 },
                    None => Lease::Lost,
                },
            ));
        }
        tx.commit().await?;
        Ok(out)
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
        let mut tx = self.platform_tx(Intent::Write).await?;
        let mut done = Vec::with_capacity(jobs.len());
        for f in jobs {
            let row = sqlx::query(
                "UPDATE jobs SET state = 'completed', finished_at = ?1, lease_owner = NULL,
                     lease_expires_at = NULL
                 WHERE id = ?2 AND attempt = ?3 AND lease_owner = ?4 AND state = 'running'
                 RETURNING unique_key, unique_window_ms",
            )
            .bind(db_time(now))
            .bind(f.id)
            .bind(i64::from(f.attempt))
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            if let Some(row) = row {
                finish_unique(
                    &mut tx,
                    f.id,
                    row.try_get("unique_key").map_err(err)?,
                    row.try_get("unique_window_ms").map_err(err)?,
                    now,
                )
                .await?;
                done.push(*f);
            }
        }
        tx.commit().await?;
        Ok(done)
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
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs
             WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'"
        ))
        .bind(job.id)
        .bind(i64::from(job.attempt))
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let current = decode(&row)?;
        let decision = decide_failure(
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
            &decision,
            now,
            row.try_get("unique_window_ms").map_err(err)?,
        )
        .await?;
        tx.enqueued = decision.state == JobState::Retryable;
        tx.commit().await?;
        Ok(Some(decision.state))
    }

    async fn checkpoint(
        &self,
        owner: &str,
        job: Fence,
        checkpoint: &Value,
        _now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.checkpoint");
        let mut tx = self.platform_tx(Intent::Write).await?;
        let n = sqlx::query(
            "UPDATE jobs SET checkpoint = ?1
             WHERE id = ?2 AND attempt = ?3 AND lease_owner = ?4 AND state = 'running'",
        )
        .bind(Json(checkpoint))
        .bind(job.id)
        .bind(i64::from(job.attempt))
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn release(&self, owner: &str, jobs: &[Fence], now: DateTime<Utc>) -> StoreResult<u64> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.release");
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.platform_tx(Intent::Write).await?;
        let mut n = 0;
        for f in jobs {
            n += sqlx::query(
                "UPDATE jobs SET state = CASE WHEN EXISTS (SELECT 1 FROM tenants t
                                     WHERE t.id = jobs.tenant_id AND t.status IN ('suspended', 'deleted'))
                                     THEN 'paused' ELSE 'available' END,
                     attempt = attempt - 1, run_at = ?1,
                     lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?2 AND attempt = ?3 AND lease_owner = ?4 AND state = 'running'",
            )
            .bind(db_time(now))
            .bind(f.id)
            .bind(i64::from(f.attempt))
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        }
        tx.enqueued = n > 0;
        tx.commit().await?;
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE state = 'running' AND lease_expires_at < ?1
             ORDER BY lease_expires_at LIMIT ?2"
        ))
        .bind(db_time(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let job = decode(row)?;
            let decision = decide_failure(
                job.attempt,
                job.max_attempts,
                row.try_get("retry_base_ms").map_err(err)?,
                row.try_get("retry_cap_ms").map_err(err)?,
                &Outcome::Failed {
                    kind: tenantry_domain::job::FailureKind::LeaseExpired,
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
                &decision,
                now,
                row.try_get("unique_window_ms").map_err(err)?,
            )
            .await?;
            out.push((job.id, decision.state));
        }
        tx.enqueued = !out.is_empty();
        tx.commit().await?;
        Ok(out)
    }

    async fn queue_depth(&self) -> StoreResult<Vec<QueueDepth>> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.queue_depth");
        let rows = sqlx::query(
            "SELECT state, kind, COUNT(*) AS n FROM jobs
             WHERE state NOT IN ('completed', 'cancelled') GROUP BY state, kind",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(QueueDepth {
                    state: crate::sql::rows::parse(
                        "job state",
                        &r.try_get::<String, _>("state").map_err(err)?,
                    )?,
                    kind: r.try_get("kind").map_err(err)?,
                    count: r.try_get("n").map_err(err)?,
                })
            })
            .collect()
    }

    async fn dead_letters(&self) -> StoreResult<DeadLetters> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.dead_letters");
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(finished_at) AS oldest FROM jobs WHERE state = 'dead'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        Ok(DeadLetters {
            count: row.try_get("n").map_err(err)?,
            oldest: crate::sql::rows::Times::opt_time(&row, "oldest").map_err(err)?,
        })
    }

    async fn tidy_queue(&self, _after_dead_rows: u64) -> StoreResult<bool> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.tidy_queue");
        // SQLite frees a deleted or updated row's index entries at once: nothing piles up
        Ok(false)
    }

    async fn prune_jobs(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "jobs.prune_jobs");
        let mut tx = self.platform_tx(Intent::Write).await?;
        let n = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
                 WHERE id < ?3 AND state IN ('completed','cancelled') AND finished_at < ?1 LIMIT ?2)",
        )
        .bind(db_time(before))
        .bind(i64::from(limit))
        .bind(created_before(before))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        sqlx::query("DELETE FROM job_unique_keys WHERE expires_at IS NOT NULL AND expires_at < ?1")
            .bind(db_time(before))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await?;
        Ok(n)
    }

    fn job_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.signal)
    }
}

async fn apply_failure(
    conn: &mut SqliteConnection,
    job: &JobRecord,
    d: &FailureDecision,
    now: DateTime<Utc>,
    window_ms: i64,
) -> StoreResult<()> {
    let mut errors = job.errors.clone();
    errors.extend(d.error.clone());
    sqlx::query(
        "UPDATE jobs SET state = CASE WHEN ?2 = 'retryable' AND EXISTS (SELECT 1 FROM tenants t
                                  WHERE t.id = jobs.tenant_id AND t.status IN ('suspended', 'deleted'))
                                  THEN 'paused' ELSE ?2 END,
             run_at = ?3, errors = ?4, lease_owner = NULL,
             lease_expires_at = NULL, finished_at = ?5, cancel_requested = 0
         WHERE id = ?1",
    )
    .bind(job.id)
    .bind(d.state.as_str())
    .bind(db_time(d.run_at))
    .bind(Json(&errors))
    .bind(d.state.is_finished().then(|| db_time(now)))
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    if d.state.is_finished() {
        finish_unique(conn, job.id, job.unique_key.clone(), window_ms, now).await?;
    }
    Ok(())
}
