/// [`UsageStore`](crate::usage::UsageStore). SQL: `ACTIVE_DEVICES`, `storage_bytes()`. Tenant data
/// through the adapter's `tenant_tx`.
macro_rules! usage_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::usage::UsageStore for $store {
            async fn footprint(
                &self,
                scope: &tenantry_domain::TenantScope,
                active_since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<$crate::usage::TenantFootprint> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "usage.footprint")
                    .tenant(scope.tenant_id());
                let mut tx = self.tenant_tx(scope, Intent::Read).await?;
                let active_devices: i64 = sqlx::query_scalar(sql::ACTIVE_DEVICES)
                    .bind(scope.tenant_id().as_uuid())
                    .bind(db_time(active_since))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                let storage_bytes: i64 = sqlx::query_scalar(sql::storage_bytes())
                    .bind(scope.tenant_id().as_uuid())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                Ok($crate::usage::TenantFootprint {
                    active_devices,
                    storage_bytes,
                })
            }
        }
    };
}

pub(crate) use usage_store;
