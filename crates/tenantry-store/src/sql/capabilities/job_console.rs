/// [`JobConsole`](crate::JobConsole). SQL: `GET`, `LIST`, `LOCK_JOB`, `CANCEL`,
/// `REQUEST_CANCEL`, `LOCK_STATE`, `RETRY`, `REPLAY_SELECT`. Uses the adapter's `db_time`,
/// `tenant_clause`, `decode`, `finish_unique`, `retake_unique_all` and `requeue_all`; every
/// method opens its transaction through `scoped_tx`.
macro_rules! job_console {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::JobConsole for $store {
            async fn get_job(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                id: uuid::Uuid,
            ) -> $crate::StoreResult<Option<$crate::jobs::JobRecord>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "job_console.get_job")
                        .tenant(scope.tenant_id());
                let mut tx = self.scoped_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::GET)
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
                scope: $crate::jobs::JobScope<'_>,
                filter: &$crate::jobs::JobFilter,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::jobs::JobRecord>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "job_console.list_jobs")
                        .tenant(scope.tenant_id());
                if let (Some(a), Some(b)) = (scope.tenant_id(), filter.tenant_id)
                    && a != b
                {
                    return Ok(tenantry_domain::Page::from_fetched(
                        Vec::new(),
                        page.limit,
                        |j: &$crate::jobs::JobRecord| j.id,
                    ));
                }
                let tenant = tenant_clause(scope).or(filter.tenant_id.map(uuid::Uuid::from));
                let mut tx = self.scoped_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::LIST)
                    .bind(tenant)
                    .bind(filter.state.map(tenantry_domain::job::JobState::as_str))
                    .bind(&filter.kind)
                    .bind(page.after.map(|c| c.0))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let jobs = rows
                    .iter()
                    .map(decode)
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(jobs, page.limit, |j| {
                    j.id
                }))
            }

            async fn cancel_job(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<Option<tenantry_domain::job::JobState>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "job_console.cancel_job")
                        .tenant(scope.tenant_id());
                use tenantry_domain::job::JobState;
                let mut tx = self.scoped_tx(scope, Intent::Write).await?;
                let row = sqlx::query(sql::LOCK_JOB)
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
                    s if s.is_queued() => {
                        sqlx::query(sql::CANCEL)
                            .bind(id)
                            .bind(db_time(now))
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                        finish_unique(
                            &mut tx,
                            id,
                            job.unique_key.clone(),
                            sqlx::Row::try_get(&row, "unique_window_ms").map_err(err)?,
                            now,
                        )
                        .await?;
                        JobState::Cancelled
                    }
                    JobState::Running => {
                        sqlx::query(sql::REQUEST_CANCEL)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                        JobState::Running
                    }
                    finished => return Ok(Some(finished)),
                };
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await?;
                Ok(Some(state))
            }

            async fn retry_job(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<Option<tenantry_domain::job::JobState>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "job_console.retry_job")
                        .tenant(scope.tenant_id());
                use tenantry_domain::job::JobState;
                let mut tx = self.scoped_tx(scope, Intent::Write).await?;
                let state: Option<String> = sqlx::query_scalar(sql::LOCK_STATE)
                    .bind(id)
                    .bind(tenant_clause(scope))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                let Some(state) = state else {
                    return Ok(None);
                };
                let state: JobState = $crate::sql::rows::parse("job state", &state)?;
                if !state.can_retry() {
                    return Ok(Some(state));
                }
                sqlx::query(sql::RETRY)
                    .bind(id)
                    .bind(db_time(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                retake_unique_all(&mut tx, &[id]).await?;
                Self::write_changes(&mut tx, changes).await?;
                tx.mark_enqueued();
                tx.commit().await?;
                self.after_enqueue();
                Ok(Some(JobState::Available))
            }

            async fn replay_jobs(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                filter: &$crate::jobs::ReplayFilter,
                dry_run: bool,
                now: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<u64> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "job_console.replay_jobs")
                        .tenant(scope.tenant_id());
                let tenant = tenant_clause(scope).or(filter.tenant_id.map(uuid::Uuid::from));
                let mut tx = self.scoped_tx(scope, Intent::Write).await?;
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(sql::REPLAY_SELECT)
                    .bind(tenant)
                    .bind(&filter.kind)
                    .bind(filter.since.map(db_time))
                    .bind(filter.until.map(db_time))
                    .bind(filter.error_kind.map(|k| k.as_str()))
                    .bind(filter.include_cancelled)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                if dry_run || ids.is_empty() {
                    return Ok(ids.len() as u64);
                }
                requeue_all(&mut tx, &ids, now).await?;
                retake_unique_all(&mut tx, &ids).await?;
                Self::write_changes(&mut tx, changes).await?;
                tx.mark_enqueued();
                tx.commit().await?;
                self.after_enqueue();
                Ok(ids.len() as u64)
            }
        }
    };
}

pub(crate) use job_console;
