/// [`LeaseStore`](crate::LeaseStore). SQL: `ACQUIRE`, `RELEASE`, `HOLDER`. Times are bound through the
/// adapter's `db_time`.
macro_rules! lease_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::LeaseStore for $store {
            async fn acquire(
                &self,
                name: &str,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<bool> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "leases.acquire");
                let mut tx = self.platform_tx(Intent::Write).await?;
                let n = sqlx::query(sql::ACQUIRE)
                    .bind(name)
                    .bind(owner)
                    .bind(db_time(now))
                    .bind(db_time(until))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn release(&self, name: &str, owner: &str) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "leases.release");
                let mut tx = self.platform_tx(Intent::Write).await?;
                sqlx::query(sql::RELEASE)
                    .bind(name)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await
            }

            async fn holder(
                &self,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<Option<String>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "leases.holder");
                sqlx::query_scalar(sql::HOLDER)
                    .bind(name)
                    .bind(db_time(now))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)
            }
        }
    };
}

pub(crate) use lease_store;
