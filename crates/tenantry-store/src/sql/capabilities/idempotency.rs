/// [`IdempotencyStore`](crate::IdempotencyStore). SQL: `FIND`, `PURGE`.
macro_rules! idempotency_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::IdempotencyStore for $store {
            async fn find(
                &self,
                scope: &str,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::StoreResult<Option<$crate::IdempotencyRecord>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "idempotency.find");
                let row = sqlx::query(sql::FIND)
                    .bind(scope)
                    .bind(key)
                    .bind(db_time(now))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                row.map(|row| $crate::sql::rows::decode_idempotency!(&row, err))
                    .transpose()
            }

            async fn purge(&self, now: chrono::DateTime<chrono::Utc>) -> $crate::StoreResult<u64> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "idempotency.purge");
                let r = sqlx::query(sql::PURGE)
                    .bind(db_time(now))
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(r.rows_affected())
            }
        }
    };
}

pub(crate) use idempotency_store;
