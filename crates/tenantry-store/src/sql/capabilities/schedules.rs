/// [`ScheduleStore`](crate::ScheduleStore). SQL: `UPSERT`, `GET`, `LIST`, `DELETE`, `DUE`,
/// `RESCHEDULE`, `FIRE`. Uses the adapter's `db_time`, `tenant_clause`, `decode_schedule` and
/// `insert_jobs`; tenant-facing methods open their transaction through `scoped_tx`.
macro_rules! schedule_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::ScheduleStore for $store {
            async fn put(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                sc: &$crate::schedules::ScheduleRecord,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.put")
                    .tenant(scope.tenant_id());
                if let $crate::jobs::JobScope::Tenant(s) = scope {
                    $crate::error::ensure_same_tenant(s, sc.tenant_id)?;
                }
                let mut tx = self.scoped_tx(scope, Intent::Write).await?;
                $crate::sql::binds::bind_schedule!(sqlx::query(sql::UPSERT), sc)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }

            async fn get(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                name: &str,
            ) -> $crate::StoreResult<Option<$crate::schedules::ScheduleRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.get")
                    .tenant(scope.tenant_id());
                let mut tx = self.scoped_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::GET)
                    .bind(name)
                    .bind(tenant_clause(scope))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                row.as_ref().map(decode_schedule).transpose()
            }

            async fn list(
                &self,
                scope: $crate::jobs::JobScope<'_>,
            ) -> $crate::StoreResult<Vec<$crate::schedules::ScheduleRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.list")
                    .tenant(scope.tenant_id());
                let mut tx = self.scoped_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::LIST)
                    .bind(tenant_clause(scope))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                rows.iter().map(decode_schedule).collect()
            }

            async fn delete(
                &self,
                scope: $crate::jobs::JobScope<'_>,
                name: &str,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<bool> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.delete")
                    .tenant(scope.tenant_id());
                let mut tx = self.scoped_tx(scope, Intent::Write).await?;
                let n = sqlx::query(sql::DELETE)
                    .bind(name)
                    .bind(tenant_clause(scope))
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

            async fn due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::schedules::ScheduleRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.due");
                let rows = sqlx::query(sql::DUE)
                    .bind(db_time(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
                rows.iter().map(decode_schedule).collect()
            }

            async fn reschedule(
                &self,
                name: &str,
                expected: chrono::DateTime<chrono::Utc>,
                next: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<bool> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.reschedule");
                let mut tx = self.platform_tx(Intent::Write).await?;
                let n = sqlx::query(sql::RESCHEDULE)
                    .bind(name)
                    .bind(db_time(expected))
                    .bind(db_time(next))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn fire(
                &self,
                name: &str,
                fired: chrono::DateTime<chrono::Utc>,
                next: chrono::DateTime<chrono::Utc>,
                job: &$crate::jobs::NewJob,
            ) -> $crate::StoreResult<bool> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "schedules.fire");
                let mut tx = self.platform_tx(Intent::Write).await?;
                let n = sqlx::query(sql::FIRE)
                    .bind(name)
                    .bind(db_time(fired))
                    .bind(db_time(next))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let out = insert_jobs(&mut tx, std::slice::from_ref(job)).await?;
                let enqueued = out
                    .iter()
                    .any(|e| matches!(e, $crate::jobs::Enqueued::New(_)));
                if enqueued {
                    tx.mark_enqueued();
                }
                tx.commit().await?;
                if enqueued {
                    self.after_enqueue();
                }
                Ok(true)
            }
        }
    };
}

pub(crate) use schedule_store;
