/// [`AccessStore`](crate::AccessStore). SQL: `INSERT_KEY`, `FIND_KEY`, `TOUCH_KEY`,
/// `COUNT_OPERATOR_KEYS`, `LIST_TENANT_KEYS`, `GET_TENANT_KEY`, `REVOKE_TENANT_KEY`,
/// `ROTATE_TENANT_KEY`, `INSERT_DEVICE`, `LIST_DEVICES`, `GET_DEVICE`, `REVOKE_DEVICE_KEYS`,
/// `DELETE_DEVICE`. Tenant data is opened through the adapter's `tenant_tx`.
macro_rules! access_store {
    ($store:ty, $conn:ty) => {
        async fn insert_key(conn: &mut $conn, k: &$crate::ApiKeyRecord) -> $crate::StoreResult<()> {
            $crate::sql::binds::bind_api_key!(sqlx::query(sql::INSERT_KEY), k)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::AccessStore for $store {
            async fn insert_operator_key(
                &self,
                k: &$crate::ApiKeyRecord,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.insert_operator_key");
                if k.tenant_id.is_some() {
                    return Err($crate::StoreError::corrupt(
                        "a tenant key written as an operator key",
                    ));
                }
                let mut tx = self.platform_tx(Intent::Write).await?;
                Self::write_changes(&mut tx, changes).await?;
                insert_key(&mut tx, k).await?;
                tx.commit().await
            }

            async fn find_key(
                &self,
                lookup: &str,
            ) -> $crate::StoreResult<Option<$crate::ApiKeyRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.find_key");
                let row = sqlx::query(sql::FIND_KEY)
                    .bind(lookup)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                row.map(|row| $crate::sql::rows::decode_api_key!(&row, err))
                    .transpose()
            }

            async fn touch_key(
                &self,
                id: tenantry_domain::ApiKeyId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.touch_key");
                sqlx::query(sql::TOUCH_KEY)
                    .bind(id.as_uuid())
                    .bind(db_time(at))
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(())
            }

            async fn count_active_operator_keys(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<i64> {
                let _timed = crate::sql::timing::Timed::new(
                    super::DB_SYSTEM,
                    "access.count_active_operator_keys",
                );
                sqlx::query_scalar(sql::COUNT_OPERATOR_KEYS)
                    .bind(db_time(now))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(err)
            }

            async fn insert_tenant_key(
                &self,
                scope: &tenantry_domain::TenantScope,
                k: &$crate::ApiKeyRecord,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.insert_tenant_key")
                        .tenant(scope.tenant_id());
                $crate::error::ensure_same_tenant(scope, k.tenant_id)?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                Self::write_changes(&mut tx, changes).await?;
                insert_key(&mut tx, k).await?;
                tx.commit().await
            }

            async fn list_tenant_keys(
                &self,
                scope: &tenantry_domain::TenantScope,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::ApiKeyRecord>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.list_tenant_keys")
                        .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::LIST_TENANT_KEYS)
                    .bind(scope.tenant_id().as_uuid())
                    .bind($crate::sql::after(&page))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let keys = rows
                    .iter()
                    .map(|row| $crate::sql::rows::decode_api_key!(row, err))
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(keys, page.limit, |k| {
                    *k.id.as_uuid()
                }))
            }

            async fn get_tenant_key(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: tenantry_domain::ApiKeyId,
            ) -> $crate::StoreResult<Option<$crate::ApiKeyRecord>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.get_tenant_key")
                        .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::GET_TENANT_KEY)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                row.map(|row| $crate::sql::rows::decode_api_key!(&row, err))
                    .transpose()
            }

            async fn revoke_tenant_key(
                &self,
                scope: &tenantry_domain::TenantScope,
                id: tenantry_domain::ApiKeyId,
                at: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.revoke_tenant_key")
                        .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let done = sqlx::query(sql::REVOKE_TENANT_KEY)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(id.as_uuid())
                    .bind(db_time(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }

            async fn rotate_tenant_key(
                &self,
                scope: &tenantry_domain::TenantScope,
                old: tenantry_domain::ApiKeyId,
                old_expires_at: chrono::DateTime<chrono::Utc>,
                successor: &$crate::ApiKeyRecord,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.rotate_tenant_key")
                        .tenant(scope.tenant_id());
                $crate::error::ensure_same_tenant(scope, successor.tenant_id)?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                let done = sqlx::query(sql::ROTATE_TENANT_KEY)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(old.as_uuid())
                    .bind(db_time(old_expires_at))
                    .bind(successor.id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                insert_key(&mut tx, successor).await?;
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }

            async fn insert_device(
                &self,
                scope: &tenantry_domain::TenantScope,
                d: &$crate::DeviceRecord,
                key: &$crate::ApiKeyRecord,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.insert_device")
                        .tenant(scope.tenant_id());
                $crate::error::ensure_same_tenant(scope, Some(d.tenant_id))?;
                $crate::error::ensure_same_tenant(scope, key.tenant_id)?;
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                Self::write_changes(&mut tx, changes).await?;
                $crate::sql::binds::bind_device!(sqlx::query(sql::INSERT_DEVICE), d)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                insert_key(&mut tx, key).await?;
                tx.commit().await
            }

            async fn list_devices(
                &self,
                scope: &tenantry_domain::TenantScope,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<$crate::DeviceRecord>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.list_devices")
                        .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::LIST_DEVICES)
                    .bind(scope.tenant_id().as_uuid())
                    .bind($crate::sql::after(&page))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let devices = rows
                    .iter()
                    .map(|row| $crate::sql::rows::decode_device!(row, err))
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    devices,
                    page.limit,
                    |d| d.id,
                ))
            }

            async fn get_device(
                &self,
                scope: &tenantry_domain::TenantScope,
                device_id: &str,
            ) -> $crate::StoreResult<Option<$crate::DeviceRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.get_device")
                    .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let row = sqlx::query(sql::GET_DEVICE)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(device_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                row.map(|row| $crate::sql::rows::decode_device!(&row, err))
                    .transpose()
            }

            async fn delete_device(
                &self,
                scope: &tenantry_domain::TenantScope,
                device_id: &str,
                at: chrono::DateTime<chrono::Utc>,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "access.delete_device")
                        .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Write).await?;
                sqlx::query(sql::REVOKE_DEVICE_KEYS)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(device_id)
                    .bind(db_time(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let done = sqlx::query(sql::DELETE_DEVICE)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }
        }
    };
}

pub(crate) use access_store;
