/// [`TenantStore`](crate::TenantStore). SQL: `INSERT`, `UPDATE`, `EXISTS`, `BY_ID`, `BY_SLUG`,
/// `LIST`.
macro_rules! tenant_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::TenantStore for $store {
            async fn insert(
                &self,
                t: &tenantry_domain::Tenant,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "tenants.insert");
                let mut tx = self.platform_tx(Intent::Write).await?;
                Self::write_changes(&mut tx, changes).await?;
                $crate::sql::binds::bind_tenant!(sqlx::query(sql::INSERT), t)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await
            }

            async fn update(
                &self,
                t: &tenantry_domain::Tenant,
                expected_version: i64,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "tenants.update");
                let mut tx = self.platform_tx(Intent::Write).await?;
                let updated = $crate::sql::binds::bind_tenant_update!(
                    sqlx::query(sql::UPDATE),
                    t,
                    expected_version
                )
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                if updated.rows_affected() == 0 {
                    let exists: bool = sqlx::query_scalar(sql::EXISTS)
                        .bind(t.id.as_uuid())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(err)?;
                    return Err(if exists {
                        $crate::StoreError::VersionConflict
                    } else {
                        $crate::StoreError::NotFound
                    });
                }
                Self::write_changes(&mut tx, changes).await?;
                tx.commit().await
            }

            async fn get(
                &self,
                r: &tenantry_domain::TenantRef,
            ) -> $crate::StoreResult<Option<tenantry_domain::Tenant>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "tenants.get");
                let row = match r {
                    tenantry_domain::TenantRef::Id(id) => {
                        sqlx::query(sql::BY_ID)
                            .bind(id.as_uuid())
                            .fetch_optional(&self.pool)
                            .await
                    }
                    tenantry_domain::TenantRef::Slug(s) => {
                        sqlx::query(sql::BY_SLUG)
                            .bind(s.as_str())
                            .fetch_optional(&self.pool)
                            .await
                    }
                }
                .map_err(err)?;
                row.map(|row| $crate::sql::rows::decode_tenant!(&row, err))
                    .transpose()
            }

            async fn list(
                &self,
                f: &$crate::TenantFilter,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<tenantry_domain::Tenant>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "tenants.list");
                let rows = sqlx::query(sql::LIST)
                    .bind($crate::sql::after(&page))
                    .bind(f.status.map(|s| s.as_str()))
                    .bind(f.edition.as_ref().map(tenantry_domain::EditionKey::as_str))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
                let tenants = rows
                    .iter()
                    .map(|row| $crate::sql::rows::decode_tenant!(row, err))
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    tenants,
                    page.limit,
                    |t| *t.id.as_uuid(),
                ))
            }
        }
    };
}

pub(crate) use tenant_store;
