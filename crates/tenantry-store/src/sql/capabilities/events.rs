/// [`EventStore`](crate::events::EventStore). SQL: `HEAD_LOCK`, `SEQUENCE`, `SET_HEAD`,
/// `READ_AFTER`, `LIST_TENANT`, `LIST_PLATFORM`, `POSITION`, `CURSOR`, `SAVE_CURSOR`, `STATS`,
/// `PRUNE_EDITION`, `PRUNE_PLATFORM`. The adapter supplies `fn events_signal(&self)`.
macro_rules! event_store {
    ($store:ty) => {
        /// The log's columns, in the order every read selects them.
        macro_rules! logged {
            ($row:expr) => {{
                use sqlx::Row;
                let row = $row;
                Ok::<_, $crate::StoreError>($crate::events::LoggedEvent {
                    seq: row.try_get("seq").map_err(err)?,
                    event: $crate::sql::rows::decode_event!(row, err)?,
                })
            }};
        }

        impl $store {
            async fn read_log(
                &self,
                tx: Option<&mut Tx>,
                statement: &'static str,
                tenant: Option<tenantry_domain::TenantId>,
                f: &$crate::events::EventFilter,
                after: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::events::LoggedEvent>> {
                let (exact, like) = f.type_binds();
                let q = sqlx::query(statement)
                    .bind(after)
                    .bind(tenant.map(uuid::Uuid::from))
                    .bind(exact)
                    .bind(like)
                    .bind(f.subject.as_deref())
                    .bind(f.from.map(db_time))
                    .bind(f.until.map(db_time))
                    .bind(i64::from(limit));
                let rows = match tx {
                    Some(tx) => q.fetch_all(&mut **tx).await,
                    None => q.fetch_all(&self.pool).await,
                }
                .map_err(err)?;
                rows.iter().map(|row| logged!(row)).collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::events::EventStore for $store {
            async fn sequence(&self, limit: u32) -> $crate::StoreResult<u32> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.sequence");
                let mut tx = self.platform_tx(Intent::Write).await?;
                let head: i64 = sqlx::query_scalar(sql::HEAD_LOCK)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                let n = sqlx::query(sql::SEQUENCE)
                    .bind(head)
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n == 0 {
                    tx.commit().await?;
                    return Ok(0);
                }
                sqlx::query(sql::SET_HEAD)
                    .bind(head + n as i64)
                    .bind(db_time(chrono::Utc::now()))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }

            async fn read_after(
                &self,
                after: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::events::LoggedEvent>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.read_after");
                let rows = sqlx::query(sql::READ_AFTER)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
                rows.iter().map(|row| logged!(row)).collect()
            }

            async fn list_tenant(
                &self,
                scope: &tenantry_domain::TenantScope,
                f: &$crate::events::EventFilter,
                after: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::events::LoggedEvent>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.list_tenant")
                    .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let events = self
                    .read_log(
                        Some(&mut tx),
                        sql::LIST_TENANT,
                        Some(scope.tenant_id()),
                        f,
                        after,
                        limit,
                    )
                    .await?;
                tx.commit().await?;
                Ok(events)
            }

            async fn list(
                &self,
                partition: $crate::events::LogPartition,
                f: &$crate::events::EventFilter,
                after: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::events::LoggedEvent>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.list");
                match partition {
                    $crate::events::LogPartition::Tenant(t) => {
                        self.read_log(None, sql::LIST_TENANT, Some(t), f, after, limit)
                            .await
                    }
                    $crate::events::LogPartition::Platform => {
                        self.read_log(None, sql::LIST_PLATFORM, None, f, after, limit)
                            .await
                    }
                }
            }

            async fn position(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: tenantry_domain::EventId,
            ) -> $crate::StoreResult<Option<i64>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.position")
                    .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let seq: Option<i64> = sqlx::query_scalar(sql::POSITION)
                    .bind(id.as_uuid())
                    .bind(uuid::Uuid::from(scope.tenant_id()))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                Ok(seq)
            }

            async fn cursor(&self, name: &str) -> $crate::StoreResult<i64> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.cursor");
                let p: Option<i64> = sqlx::query_scalar(sql::CURSOR)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(p.unwrap_or(0))
            }

            async fn save_cursor(
                &self,
                name: &str,
                position: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.save_cursor");
                let mut tx = self.platform_tx(Intent::Write).await?;
                sqlx::query(sql::SAVE_CURSOR)
                    .bind(name)
                    .bind(position)
                    .bind(db_time(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await
            }

            async fn stats(&self) -> $crate::StoreResult<$crate::events::LogStats> {
                use sqlx::Row;
                use $crate::sql::rows::Times;
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.stats");
                let row = sqlx::query(sql::STATS)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(err)?;
                Ok($crate::events::LogStats {
                    head: row
                        .try_get::<Option<i64>, _>("head")
                        .map_err(err)?
                        .unwrap_or(0),
                    unsequenced: row.try_get("unsequenced").map_err(err)?,
                    oldest_unsequenced: row.opt_time("oldest").map_err(err)?,
                })
            }

            async fn prune(
                &self,
                policy: &$crate::events::PrunePolicy,
            ) -> $crate::StoreResult<u64> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "events.prune");
                let mut removed = 0;
                for (edition, before) in &policy.editions {
                    let mut tx = self.platform_tx(Intent::Write).await?;
                    removed += sqlx::query(sql::PRUNE_EDITION)
                        .bind(edition.as_str())
                        .bind(policy.through)
                        .bind(db_time(*before))
                        .bind(i64::from(policy.limit))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?
                        .rows_affected();
                    tx.commit().await?;
                }
                let mut tx = self.platform_tx(Intent::Write).await?;
                removed += sqlx::query(sql::PRUNE_PLATFORM)
                    .bind(policy.through)
                    .bind(db_time(policy.platform))
                    .bind(i64::from(policy.limit))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                tx.commit().await?;
                Ok(removed)
            }

            fn event_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
                self.events_signal()
            }
        }
    };
}
pub(crate) use event_store;
