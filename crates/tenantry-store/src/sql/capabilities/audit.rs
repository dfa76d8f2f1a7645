/// [`AuditStore`](crate::AuditStore). SQL: `LIST`. A tenant's own log is read
/// through the adapter's `tenant_tx`.
macro_rules! audit_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::AuditStore for $store {
            async fn list(
                &self,
                f: &$crate::AuditFilter,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<tenantry_domain::AuditRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "audit.list");
                let rows = sqlx::query(sql::LIST)
                    .bind($crate::sql::before(&page))
                    .bind(f.tenant_id.map(uuid::Uuid::from))
                    .bind(f.action.as_deref())
                    .bind(f.since.map(db_time))
                    .bind(f.until.map(db_time))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
                let records = rows
                    .iter()
                    .map(|row| $crate::sql::rows::decode_audit!(row, err))
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    records,
                    page.limit,
                    |a| *a.id.as_uuid(),
                ))
            }

            async fn list_tenant(
                &self,
                scope: &tenantry_domain::TenantScope,
                f: &$crate::AuditFilter,
                page: tenantry_domain::PageRequest,
            ) -> $crate::StoreResult<tenantry_domain::Page<tenantry_domain::AuditRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "audit.list_tenant")
                    .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let rows = sqlx::query(sql::LIST)
                    .bind($crate::sql::before(&page))
                    .bind(Some(uuid::Uuid::from(scope.tenant_id())))
                    .bind(f.action.as_deref())
                    .bind(f.since.map(db_time))
                    .bind(f.until.map(db_time))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                let records = rows
                    .iter()
                    .map(|row| $crate::sql::rows::decode_audit!(row, err))
                    .collect::<$crate::StoreResult<Vec<_>>>()?;
                Ok(tenantry_domain::Page::from_fetched(
                    records,
                    page.limit,
                    |a| *a.id.as_uuid(),
                ))
            }
        }
    };
}

pub(crate) use audit_store;
