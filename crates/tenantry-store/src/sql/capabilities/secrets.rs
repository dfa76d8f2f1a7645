/// [`SecretStore`](crate::secrets::SecretStore). SQL: `INSERT_IF_ABSENT`, `SELECT`.
macro_rules! secret_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::secrets::SecretStore for $store {
            async fn get_or_create(
                &self,
                name: &str,
                candidate: &[u8],
            ) -> $crate::StoreResult<Vec<u8>> {
                let _timed =
                    crate::sql::timing::Timed::new(super::DB_SYSTEM, "secrets.get_or_create");
                let mut tx = self.platform_tx(Intent::Write).await?;
                sqlx::query(sql::INSERT_IF_ABSENT)
                    .bind(name)
                    .bind(candidate)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let value: Vec<u8> = sqlx::query_scalar(sql::SELECT)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await?;
                Ok(value)
            }
        }
    };
}

pub(crate) use secret_store;
