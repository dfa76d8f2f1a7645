/// [`WebhookStore`](crate::webhooks::WebhookStore), written once for both adapters. SQL (the
/// adapter's `sql` module): `SUB_LOCK`, `SUB_COUNT`, `SUB_INSERT`, `SUB_UPDATE`, `SUB_GET`,
/// `SUB_LIST`, `SUB_ENABLED`, `SUB_FAILING`, `SUB_DELETE_CHILDREN`, `SUB_DELETE`, `SAVE_CURSOR`,
/// `ATTEMPT_LIST`, `MESSAGE_LIST`, `RESCHEDULE`, `STATS`, `PRUNE`, `DISPATCH_SETTINGS`; and the adapter's
/// `insert_messages`, `claim_messages`, `record_results` (its batch writes). Tenant data through
/// `tenant_tx`; the dispatcher's fan-out, claims and records through `platform_tx`.
macro_rules! webhook_store {
    ($store:ty) => {
        /// A subscription row.
        macro_rules! subscription {
            ($row:expr) => {{
                use sqlx::Row;
                use $crate::sql::rows::Times;
                let row = $row;
                let json = |c: &str| -> $crate::StoreResult<serde_json::Value> {
                    Ok(row
                        .try_get::<sqlx::types::Json<serde_json::Value>, _>(c)
                        .map_err(err)?
                        .0)
                };
                let ordering: String = row.try_get("ordering").map_err(err)?;
                Ok::<_, $crate::StoreError>($crate::webhooks::SubscriptionRecord {
                    id: row.try_get("id").map_err(err)?,
                    tenant_id: tenantry_domain::TenantId::from_uuid(
                        row.try_get("tenant_id").map_err(err)?,
                    ),
                    url: row.try_get("url").map_err(err)?,
                    event_types: serde_json::from_value(json("event_types")?).map_err(|e| {
                        $crate::StoreError::corrupt(format!("subscription event_types: {e}"))
                    })?,
                    filter: row.try_get("filter").map_err(err)?,
                    description: row.try_get("description").map_err(err)?,
                    enabled: row.try_get("enabled").map_err(err)?,
                    disabled_reason: row.try_get("disabled_reason").map_err(err)?,
                    policy: serde_json::from_value(json("policy")?).map_err(|e| {
                        $crate::StoreError::corrupt(format!("subscription policy: {e}"))
                    })?,
                    rate_limit_per_minute: row
                        .try_get::<Option<i32>, _>("rate_limit_per_minute")
                        .map_err(err)?
                        .and_then(|n| u32::try_from(n).ok()),
                    ordering: tenantry_domain::webhook::Ordering::parse(&ordering).ok_or_else(
                        || {
                            $crate::StoreError::corrupt(format!(
                                "subscription ordering '{ordering}'"
                            ))
                        },
                    )?,
                    secrets: serde_json::from_value(json("secrets")?).map_err(|e| {
                        $crate::StoreError::corrupt(format!("subscription secrets: {e}"))
                    })?,
                    failing_since: row.opt_time("failing_since").map_err(err)?,
                    created_at: row.time("created_at").map_err(err)?,
                    updated_at: row.time("updated_at").map_err(err)?,
                })
            }};
        }

        /// Binds a subscription's columns in `SUB_INSERT` order (`$1`–`$13`).
        macro_rules! bind_subscription {
            ($q:expr, $s:expr) => {{
                let s = $s;
                $q.bind(s.id)
                    .bind(s.tenant_id.as_uuid())
                    .bind(&s.url)
                    .bind(sqlx::types::Json(&s.event_types))
                    .bind(&s.filter)
                    .bind(&s.description)
                    .bind(s.enabled)
                    .bind(&s.disabled_reason)
                    .bind(sqlx::types::Json(&s.policy))
                    .bind(
                        s.rate_limit_per_minute
                            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                    )
                    .bind(s.ordering.as_str())
                    .bind(sqlx::types::Json(&s.secrets))
                    .bind(s.failing_since.map(db_time))
            }};
        }

        #[async_trait::async_trait]
        impl $crate::webhooks::WebhookStore for $store {
            async fn create_subscription(
                &self,
                scope: &tenantry_domain::TenantScope,
                s: &$crate::webhooks::SubscriptionRecord,
                limit: u32,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<$crate::webhooks::Created> {
                let _timed = crate::sql::timing::Timed::new(
                    super::DB_SYSTEM,
                    "webhooks.create_subscription",
                )
                .tenant(Some(scope.tenant_id()));
                $crate::error::ensure_same_tenant(scope, Some(s.tenant_id))?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                sqlx::query(sql::SUB_LOCK)
                    .bind(scope.tenant_id().to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let used: i64 = sqlx::query_scalar(sql::SUB_COUNT)
                    .bind(scope.tenant_id().as_uuid())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                let used = u64::try_from(used).unwrap_or(0);
                if used >= u64::from(limit) {
                    return Ok($crate::webhooks::Created::AtLimit { used });
                }
                bind_subscription!(sqlx::query(sql::SUB_INSERT), s)
                    .bind(db_time(s.created_at))
                    .bind(db_time(s.updated_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await?;
                Ok($crate::webhooks::Created::Created)
            }

            async fn update_subscription(
                &self,
                scope: &tenantry_domain::TenantScope,
                s: &$crate::webhooks::SubscriptionRecord,
                expected: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(
                    super::DB_SYSTEM,
                    "webhooks.update_subscription",
                )
                .tenant(Some(scope.tenant_id()));
                $crate::error::ensure_same_tenant(scope, Some(s.tenant_id))?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let n = bind_subscription!(sqlx::query(sql::SUB_UPDATE), s)
                    .bind(db_time(s.updated_at))
                    .bind(db_time(expected))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n == 0 {
                    let exists = sqlx::query(sql::SUB_GET)
                        .bind(scope.tenant_id().as_uuid())
                        .bind(s.id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(err)?
                        .is_some();
                    return Err(if exists {
                        $crate::StoreError::VersionConflict
                    } else {
                        $crate::StoreError::NotFound
                    });
                }
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }

            async fn get_subscription(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: uuid::Uuid,
            ) -> $crate::StoreResult<Option<$crate::webhooks::SubscriptionRecord>> {
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::SUB_GET)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                row.as_ref().map(|r| subscription!(r)).transpose()
            }

            async fn list_subscriptions(
                &self,
                scope: &tenantry_domain::TenantScope,
            ) -> $crate::StoreResult<Vec<$crate::webhooks::SubscriptionRecord>> {
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::SUB_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                rows.iter().map(|r| subscription!(r)).collect()
            }

            async fn delete_subscription(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: uuid::Uuid,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                for statement in sql::SUB_DELETE_CHILDREN {
                    sqlx::query(statement)
                        .bind(scope.tenant_id().as_uuid())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                let n = sqlx::query(sql::SUB_DELETE)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id)
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

            async fn enabled_subscriptions(
                &self,
            ) -> $crate::StoreResult<Vec<$crate::webhooks::SubscriptionRecord>> {
                let mut tx = self.platform_tx(Intent::Read).await?;
                let rows = sqlx::query(sql::SUB_ENABLED)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                rows.iter().map(|r| subscription!(r)).collect()
            }

            async fn set_failing_since(
                &self,
                id: uuid::Uuid,
                since: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.platform_tx(Intent::Write).await?;
                sqlx::query(sql::SUB_FAILING)
                    .bind(id)
                    .bind(since.map(db_time))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await
            }

            async fn enqueue(
                &self,
                scope: &tenantry_domain::TenantScope,
                messages: &[$crate::webhooks::NewMessage],
            ) -> $crate::StoreResult<()> {
                for m in messages {
                    $crate::error::ensure_same_tenant(scope, Some(m.tenant_id))?;
                }
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                insert_messages(&mut *tx, messages).await?;
                tx.commit().await
            }

            async fn fan_out(
                &self,
                cursor: &str,
                position: i64,
                messages: &[$crate::webhooks::NewMessage],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "webhooks.fan_out");
                let mut tx = self.platform_tx(Intent::Write).await?;
                for &setting in sql::DISPATCH_SETTINGS {
                    sqlx::query(setting).execute(&mut *tx).await.map_err(err)?;
                }
                insert_messages(&mut *tx, messages).await?;
                sqlx::query(sql::SAVE_CURSOR)
                    .bind(cursor)
                    .bind(position)
                    .bind(db_time(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await
            }

            async fn claim(
                &self,
                claims: &[$crate::webhooks::Claim],
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<Vec<$crate::webhooks::ClaimedMessage>> {
                if claims.is_empty() {
                    return Ok(Vec::new());
                }
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "webhooks.claim");
                let mut tx = self.platform_tx(Intent::Write).await?;
                for &setting in sql::DISPATCH_SETTINGS {
                    sqlx::query(setting).execute(&mut *tx).await.map_err(err)?;
                }
                let claimed = claim_messages(&mut *tx, claims, now, lease_until).await?;
                tx.commit().await?;
                Ok(claimed)
            }

            async fn record(
                &self,
                results: &[$crate::webhooks::AttemptResult],
            ) -> $crate::StoreResult<()> {
                if results.is_empty() {
                    return Ok(());
                }
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "webhooks.record");
                let mut tx = self.platform_tx(Intent::Write).await?;
                for &setting in sql::DISPATCH_SETTINGS {
                    sqlx::query(setting).execute(&mut *tx).await.map_err(err)?;
                }
                record_results(&mut *tx, results).await?;
                tx.commit().await
            }

            async fn list_attempts(
                &self,
                scope: &tenantry_domain::TenantScope,
                f: &$crate::webhooks::AttemptFilter,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::webhooks::AttemptRecord>> {
                use sqlx::Row;
                use $crate::sql::rows::Times;
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::ATTEMPT_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .bind($crate::sql::before(&page))
                    .bind(f.subscription_id)
                    .bind(f.outcome.map(|o| o.as_str()))
                    .bind(&f.event_type)
                    .bind(f.from.map(db_time))
                    .bind(f.to.map(db_time))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let items = rows
                    .iter()
                    .map(|row| {
                        let outcome: String = row.try_get("outcome").map_err(err)?;
                        Ok($crate::webhooks::AttemptRecord {
                            id: row.try_get("id").map_err(err)?,
                            subscription_id: row.try_get("subscription_id").map_err(err)?,
                            message_id: row.try_get("message_id").map_err(err)?,
                            event_type: row.try_get("event_type").map_err(err)?,
                            attempt: u32::try_from(row.try_get::<i32, _>("attempt").map_err(err)?)
                                .unwrap_or(0),
                            outcome: $crate::webhooks::AttemptOutcome::parse(&outcome).ok_or_else(
                                || {
                                    $crate::StoreError::corrupt(format!(
                                        "attempt outcome '{outcome}'"
                                    ))
                                },
                            )?,
                            status_code: row
                                .try_get::<Option<i32>, _>("status_code")
                                .map_err(err)?
                                .and_then(|c| u16::try_from(c).ok()),
                            latency_ms: u32::try_from(
                                row.try_get::<i32, _>("latency_ms").map_err(err)?,
                            )
                            .unwrap_or(0),
                            response: row.try_get("response").map_err(err)?,
                            error: row.try_get("error").map_err(err)?,
                            at: row.time("at").map_err(err)?,
                        })
                    })
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    items,
                    page.limit,
                    |a| a.id,
                ))
            }

            async fn messages(
                &self,
                scope: &tenantry_domain::TenantScope,
                f: &$crate::webhooks::MessageFilter,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::webhooks::MessageSummary>> {
                use sqlx::Row;
                use $crate::sql::rows::Times;
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::MESSAGE_LIST)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(f.subscription_id)
                    .bind(db_time(f.from))
                    .bind(db_time(f.to))
                    .bind(&f.status)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::webhooks::MessageSummary {
                            id: row.try_get("id").map_err(err)?,
                            event_type: row.try_get("event_type").map_err(err)?,
                            status: row.try_get("status").map_err(err)?,
                            created_at: row.time("created_at").map_err(err)?,
                        })
                    })
                    .collect()
            }

            async fn reschedule(
                &self,
                scope: &tenantry_domain::TenantScope,
                due: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<u64> {
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let mut n = 0;
                for (id, at) in due {
                    n += sqlx::query(sql::RESCHEDULE)
                        .bind(scope.tenant_id().as_uuid())
                        .bind(id)
                        .bind(db_time(*at))
                        .bind(db_time(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(n)
            }

            async fn stats(&self) -> $crate::StoreResult<$crate::webhooks::WebhookStats> {
                use sqlx::Row;
                let mut tx = self.platform_tx(Intent::Read).await?;
                let row = sqlx::query(sql::STATS)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let n = |c: &str| -> $crate::StoreResult<u64> {
                    Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(err)?).unwrap_or(0))
                };
                Ok($crate::webhooks::WebhookStats {
                    pending: n("pending")?,
                    dead: n("dead")?,
                })
            }

            async fn prune(
                &self,
                edition: &str,
                before: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::StoreResult<u64> {
                let mut tx = self.platform_tx(Intent::Write).await?;
                let mut n = 0;
                for statement in sql::PRUNE {
                    n += sqlx::query(statement)
                        .bind(edition)
                        .bind(db_time(before))
                        .bind(i64::from(limit))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(n)
            }
        }
    };
}

pub(crate) use webhook_store;
