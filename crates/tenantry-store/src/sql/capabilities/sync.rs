/// [`SyncStore`](crate::sync::SyncStore), written once for both adapters. SQL (the adapter's
/// `sql` module): `SOURCE_UPSERT`, `SOURCE_GET`, `SOURCE_LIST`, `SOURCE_DELETE`, `RUN_GET`,
/// `RUN_INSERT`, `RUN_QUEUE`, `RUN_TAKE`, `RUN_PAGE`, `RUN_FINISH`, `RUN_LIST`, `SOURCE_EXISTS`,
/// and the adapter's `write_records` (a page's records: new and changed ones written, unchanged ones marked seen), `RECORD_RECONCILE`, `RECORD_LIST`,
/// `QUARANTINE_INSERT`, `QUARANTINE_LIST`; and the schedules' `UPSERT`/`DELETE` (`sched_sql`).
/// Tenant data only through `tenant_tx`.
macro_rules! sync_store {
    ($store:ty) => {
        fn decode_source<R>(row: &R) -> $crate::StoreResult<$crate::sync::SourceRecord>
        where
            R: sqlx::Row + $crate::sql::rows::Times,
            for<'c> &'c str: sqlx::ColumnIndex<R>,
            uuid::Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            sqlx::types::Json<serde_json::Value>:
                for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            Ok($crate::sync::SourceRecord {
                id: row.try_get("id").map_err(err)?,
                tenant_id: tenantry_domain::TenantId::from_uuid(
                    row.try_get("tenant_id").map_err(err)?,
                ),
                name: row.try_get("name").map_err(err)?,
                kind: row.try_get("kind").map_err(err)?,
                schedule: row.try_get("schedule").map_err(err)?,
                enabled: row.try_get("enabled").map_err(err)?,
                max_attempts: u32::try_from(row.try_get::<i32, _>("max_attempts").map_err(err)?)
                    .unwrap_or(1),
                config: row
                    .try_get::<sqlx::types::Json<serde_json::Value>, _>("config")
                    .map_err(err)?
                    .0,
                sealed_headers: row.try_get("sealed_headers").map_err(err)?,
                created_at: row.time("created_at").map_err(err)?,
                updated_at: row.time("updated_at").map_err(err)?,
            })
        }

        fn decode_run<R>(row: &R) -> $crate::StoreResult<$crate::sync::RunRecord>
        where
            R: sqlx::Row + $crate::sql::rows::Times,
            for<'c> &'c str: sqlx::ColumnIndex<R>,
            uuid::Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            sqlx::types::Json<serde_json::Value>:
                for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<sqlx::types::Json<serde_json::Value>>:
                for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            let status: String = row.try_get("status").map_err(err)?;
            let checkpoint = row
                .try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>("checkpoint")
                .map_err(err)?
                .map(|j| serde_json::from_value(j.0))
                .transpose()
                .map_err(|e| $crate::StoreError::corrupt(format!("run checkpoint: {e}")))?;
            let counts = serde_json::from_value(
                row.try_get::<sqlx::types::Json<serde_json::Value>, _>("counts")
                    .map_err(err)?
                    .0,
            )
            .map_err(|e| $crate::StoreError::corrupt(format!("run counts: {e}")))?;
            Ok($crate::sync::RunRecord {
                id: row.try_get("id").map_err(err)?,
                tenant_id: tenantry_domain::TenantId::from_uuid(
                    row.try_get("tenant_id").map_err(err)?,
                ),
                source_id: row.try_get("source_id").map_err(err)?,
                status: tenantry_domain::sync::RunStatus::parse(&status)
                    .ok_or_else(|| $crate::StoreError::corrupt(format!("run status '{status}'")))?,
                manual: row.try_get("manual").map_err(err)?,
                triggered_at: row.time("triggered_at").map_err(err)?,
                attempts: u32::try_from(row.try_get::<i32, _>("attempts").map_err(err)?)
                    .unwrap_or(0),
                resumed: row.try_get("resumed").map_err(err)?,
                checkpoint,
                counts,
                error: row.try_get("error").map_err(err)?,
                started_at: row.time("started_at").map_err(err)?,
                finished_at: row.opt_time("finished_at").map_err(err)?,
            })
        }

        fn decode_record<R>(row: &R) -> $crate::StoreResult<$crate::sync::SyncedRecord>
        where
            R: sqlx::Row + $crate::sql::rows::Times,
            for<'c> &'c str: sqlx::ColumnIndex<R>,
            uuid::Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            sqlx::types::Json<serde_json::Value>:
                for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            Ok($crate::sync::SyncedRecord {
                id: row.try_get("id").map_err(err)?,
                source_id: row.try_get("source_id").map_err(err)?,
                record_type: row.try_get("record_type").map_err(err)?,
                key: row.try_get("key").map_err(err)?,
                data: row
                    .try_get::<sqlx::types::Json<serde_json::Value>, _>("data")
                    .map_err(err)?
                    .0,
                hash: row.try_get("hash").map_err(err)?,
                first_seen_at: row.time("first_seen_at").map_err(err)?,
                last_seen_at: row.time("last_seen_at").map_err(err)?,
                changed_at: row.time("changed_at").map_err(err)?,
                removed_at: row.opt_time("removed_at").map_err(err)?,
                last_run_id: row.try_get("last_run_id").map_err(err)?,
            })
        }

        fn decode_quarantine<R>(row: &R) -> $crate::StoreResult<$crate::sync::QuarantinedItem>
        where
            R: sqlx::Row + $crate::sql::rows::Times,
            for<'c> &'c str: sqlx::ColumnIndex<R>,
            uuid::Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            Ok($crate::sync::QuarantinedItem {
                id: row.try_get("id").map_err(err)?,
                source_id: row.try_get("source_id").map_err(err)?,
                run_id: row.try_get("run_id").map_err(err)?,
                page: u64::try_from(row.try_get::<i64, _>("page").map_err(err)?).unwrap_or(0),
                item_index: u64::try_from(row.try_get::<i64, _>("item_index").map_err(err)?)
                    .unwrap_or(0),
                key: row.try_get("key").map_err(err)?,
                reason: row.try_get("reason").map_err(err)?,
                excerpt: row.try_get("excerpt").map_err(err)?,
                created_at: row.time("created_at").map_err(err)?,
            })
        }

        fn counts_json(
            c: &tenantry_domain::sync::RunCounts,
        ) -> sqlx::types::Json<serde_json::Value> {
            sqlx::types::Json(serde_json::to_value(c).unwrap_or_default())
        }

        fn checkpoint_json(
            c: &tenantry_domain::sync::Checkpoint,
        ) -> sqlx::types::Json<serde_json::Value> {
            sqlx::types::Json(serde_json::to_value(c).unwrap_or_default())
        }

        fn n64(n: u64) -> i64 {
            i64::try_from(n).unwrap_or(i64::MAX)
        }

        #[async_trait::async_trait]
        impl $crate::sync::SyncStore for $store {
            async fn put_source(
                &self,
                scope: &tenantry_domain::TenantScope,
                s: &$crate::sync::SourceRecord,
                expected: Option<chrono::DateTime<chrono::Utc>>,
                schedule: $crate::sync::ScheduleChange<'_>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.put_source")
                    .tenant(Some(scope.tenant_id()));
                $crate::error::ensure_same_tenant(scope, Some(s.tenant_id))?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let n = sqlx::query(sql::SOURCE_UPSERT)
                    .bind(s.id)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(&s.name)
                    .bind(&s.kind)
                    .bind(&s.schedule)
                    .bind(s.enabled)
                    .bind(i32::try_from(s.max_attempts).unwrap_or(i32::MAX))
                    .bind(sqlx::types::Json(&s.config))
                    .bind(&s.sealed_headers)
                    .bind(db_time(s.created_at))
                    .bind(db_time(s.updated_at))
                    .bind(expected.map(db_time))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::StoreError::VersionConflict);
                }
                match schedule {
                    $crate::sync::ScheduleChange::Put(sc) => {
                        $crate::error::ensure_same_tenant(scope, sc.tenant_id)?;
                        $crate::sql::binds::bind_schedule!(sqlx::query(sched_sql::UPSERT), sc)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                    }
                    $crate::sync::ScheduleChange::Remove(name) => {
                        sqlx::query(sched_sql::DELETE)
                            .bind(name)
                            .bind(Some(scope.tenant_id().as_uuid()))
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                    }
                }
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }

            async fn get_source(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: uuid::Uuid,
            ) -> $crate::StoreResult<Option<$crate::sync::SourceRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.get_source")
                    .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::SOURCE_GET)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                row.as_ref().map(decode_source).transpose()
            }

            async fn list_sources(
                &self,
                scope: &tenantry_domain::TenantScope,
            ) -> $crate::StoreResult<Vec<$crate::sync::SourceRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.list_sources")
                    .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::SOURCE_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                rows.iter().map(decode_source).collect()
            }

            async fn delete_source(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: uuid::Uuid,
                schedule_name: &str,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<bool> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.delete_source")
                    .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                // children first, each through its tenant-leading index
                for children in sql::SOURCE_DELETE_CHILDREN {
                    sqlx::query(children)
                        .bind(scope.tenant_id().as_uuid())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                let n = sqlx::query(sql::SOURCE_DELETE)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                sqlx::query(sched_sql::DELETE)
                    .bind(schedule_name)
                    .bind(Some(scope.tenant_id().as_uuid()))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn queue_run(
                &self,
                scope: &tenantry_domain::TenantScope,
                run: &$crate::sync::QueuedRun,
                job: &$crate::jobs::NewJob,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<$crate::jobs::Enqueued> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.queue_run")
                    .tenant(Some(scope.tenant_id()));
                $crate::error::ensure_same_tenant(scope, job.tenant_id)?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let out = insert_jobs(&mut tx, std::slice::from_ref(job)).await?;
                let Some(enqueued) = out.first().copied() else {
                    return Err($crate::StoreError::corrupt("an enqueue reported nothing"));
                };
                if let $crate::jobs::Enqueued::New(id) = enqueued {
                    sqlx::query(sql::RUN_QUEUE)
                        .bind(id)
                        .bind(*scope.tenant_id().as_uuid())
                        .bind(run.source_id)
                        .bind(db_time(run.triggered_at))
                        .bind(counts_json(&Default::default()))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                    Self::write_changes(&mut tx, changes).await?;
                    tx.mark_enqueued();
                }
                tx.commit().await?;
                if matches!(enqueued, $crate::jobs::Enqueued::New(_)) {
                    self.after_enqueue();
                }
                Ok(enqueued)
            }

            async fn start_run(
                &self,
                scope: &tenantry_domain::TenantScope,
                c: &$crate::sync::RunClaim<'_>,
            ) -> $crate::StoreResult<$crate::sync::RunStart> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.start_run")
                    .tenant(Some(scope.tenant_id()));
                let tenant = *scope.tenant_id().as_uuid();
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let row = sqlx::query(sql::RUN_GET)
                    .bind(tenant)
                    .bind(c.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                let out = match row.as_ref().map(decode_run).transpose()? {
                    Some(run) if run.status == tenantry_domain::sync::RunStatus::Completed => {
                        $crate::sync::RunStart::AlreadyCompleted
                    }
                    Some(run) => {
                        sqlx::query(sql::RUN_TAKE)
                            .bind(tenant)
                            .bind(c.id)
                            .bind(c.owner)
                            .bind(run.checkpoint.is_some())
                            .bind(db_time(c.at))
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                        $crate::sync::RunStart::Started {
                            checkpoint: run.checkpoint,
                            attempts: run.attempts + 1,
                        }
                    }
                    None => {
                        let exists = sqlx::query(sql::SOURCE_EXISTS)
                            .bind(tenant)
                            .bind(c.source_id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(err)?
                            .is_some();
                        if !exists {
                            $crate::sync::RunStart::NoSource
                        } else {
                            sqlx::query(sql::RUN_INSERT)
                                .bind(c.id)
                                .bind(tenant)
                                .bind(c.source_id)
                                .bind(c.manual)
                                .bind(db_time(c.triggered_at))
                                .bind(c.owner)
                                .bind(counts_json(&Default::default()))
                                .bind(db_time(c.at))
                                .execute(&mut *tx)
                                .await
                                .map_err(err)?;
                            $crate::sync::RunStart::Started {
                                checkpoint: None,
                                attempts: 1,
                            }
                        }
                    }
                };
                tx.commit().await?;
                Ok(out)
            }

            async fn write_page(
                &self,
                scope: &tenantry_domain::TenantScope,
                p: &$crate::sync::PageWrite<'_>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<$crate::sync::PageOutcome> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.write_page")
                    .tenant(Some(scope.tenant_id()));
                let tenant = *scope.tenant_id().as_uuid();
                let at = db_time(p.at);
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                // the fence first: it also holds the run's row for the transaction
                let owned = sqlx::query(sql::RUN_PAGE)
                    .bind(tenant)
                    .bind(p.run_id)
                    .bind(p.owner)
                    .bind(checkpoint_json(p.checkpoint))
                    .bind(counts_json(&p.checkpoint.counts))
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if owned == 0 {
                    return Err($crate::StoreError::VersionConflict);
                }
                let mut out = $crate::sync::PageOutcome::default();
                // a key twice in one page: its last occurrence is written, the earlier ones
                // count as unchanged
                let mut last = std::collections::HashMap::with_capacity(p.records.len());
                for (i, r) in p.records.iter().enumerate() {
                    last.insert(r.key.as_str(), i);
                }
                let records: Vec<&$crate::sync::RecordWrite> = p
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| last.get(r.key.as_str()) == Some(i))
                    .map(|(_, r)| r)
                    .collect();
                let repeated = (p.records.len() - records.len()) as u64;
                let (upserted, unchanged) = write_records(&mut tx, tenant, p, &records).await?;
                out.upserted = upserted;
                out.unchanged = unchanged;
                out.unchanged += repeated;
                for q in p.quarantined {
                    sqlx::query(sql::QUARANTINE_INSERT)
                        .bind(uuid::Uuid::now_v7())
                        .bind(tenant)
                        .bind(p.source_id)
                        .bind(p.run_id)
                        .bind(n64(p.page))
                        .bind(n64(q.item_index))
                        .bind(&q.key)
                        .bind(&q.reason)
                        .bind(&q.excerpt)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                // the checkpoint's counts with what this page did
                let mut checkpoint = p.checkpoint.clone();
                checkpoint.counts.upserted += out.upserted;
                checkpoint.counts.unchanged += out.unchanged;
                sqlx::query(sql::RUN_PAGE)
                    .bind(tenant)
                    .bind(p.run_id)
                    .bind(p.owner)
                    .bind(checkpoint_json(&checkpoint))
                    .bind(counts_json(&checkpoint.counts))
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn finish_run(
                &self,
                scope: &tenantry_domain::TenantScope,
                run_id: uuid::Uuid,
                owner: &str,
                end: &$crate::sync::RunEnd,
                at: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<u64> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.finish_run")
                    .tenant(Some(scope.tenant_id()));
                let tenant = *scope.tenant_id().as_uuid();
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let row = sqlx::query(sql::RUN_GET)
                    .bind(tenant)
                    .bind(run_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                let Some(run) = row.as_ref().map(decode_run).transpose()? else {
                    return Err($crate::StoreError::NotFound);
                };
                let mut counts = run.counts;
                let (status, error, removed) = match end {
                    $crate::sync::RunEnd::Completed => {
                        let removed = sqlx::query(sql::RECORD_RECONCILE)
                            .bind(tenant)
                            .bind(run.source_id)
                            .bind(run_id)
                            .bind(db_time(at))
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?
                            .rows_affected();
                        counts.removed = removed;
                        ("completed", None, removed)
                    }
                    $crate::sync::RunEnd::Failed { error, dead } => (
                        if *dead { "dead" } else { "failed" },
                        Some(error.as_str()),
                        0,
                    ),
                };
                let n = sqlx::query(sql::RUN_FINISH)
                    .bind(tenant)
                    .bind(run_id)
                    .bind(owner)
                    .bind(status)
                    .bind(error)
                    .bind(counts_json(&counts))
                    .bind(db_time(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::StoreError::VersionConflict);
                }
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await?;
                Ok(removed)
            }

            async fn get_run(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: uuid::Uuid,
            ) -> $crate::StoreResult<Option<$crate::sync::RunRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.get_run")
                    .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::RUN_GET)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                row.as_ref().map(decode_run).transpose()
            }

            async fn list_runs(
                &self,
                scope: &tenantry_domain::TenantScope,
                source_id: uuid::Uuid,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::sync::RunRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.list_runs")
                    .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::RUN_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(source_id)
                    .bind($crate::sql::before(&page))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let runs = rows
                    .iter()
                    .map(decode_run)
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(runs, page.limit, |r| {
                    r.id
                }))
            }

            async fn list_records(
                &self,
                scope: &tenantry_domain::TenantScope,
                f: &$crate::sync::RecordFilter,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::sync::SyncedRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.list_records")
                    .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::RECORD_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .bind($crate::sql::after(&page))
                    .bind(f.source_id)
                    .bind(&f.record_type)
                    .bind(f.changed_since.map(db_time))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let records = rows
                    .iter()
                    .map(decode_record)
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    records,
                    page.limit,
                    |r| r.id,
                ))
            }

            async fn list_quarantine(
                &self,
                scope: &tenantry_domain::TenantScope,
                source_id: uuid::Uuid,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::sync::QuarantinedItem>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "sync.list_quarantine")
                        .tenant(Some(scope.tenant_id()));
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::QUARANTINE_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(source_id)
                    .bind($crate::sql::after(&page))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let items = rows
                    .iter()
                    .map(decode_quarantine)
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    items,
                    page.limit,
                    |q| q.id,
                ))
            }
        }
    };
}

pub(crate) use sync_store;
