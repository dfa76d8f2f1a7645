/// [`EditionStore`](crate::EditionStore). SQL: `LIST`, `GET`, `INSERT`.
macro_rules! edition_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::EditionStore for $store {
            async fn list(&self) -> $crate::StoreResult<Vec<tenantry_domain::Edition>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "editions.list");
                let rows = sqlx::query(sql::LIST)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
                rows.iter()
                    .map(|row| $crate::sql::rows::decode_edition!(row, err))
                    .collect()
            }

            async fn get(
                &self,
                key: &tenantry_domain::EditionKey,
            ) -> $crate::StoreResult<Option<tenantry_domain::Edition>> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "editions.get");
                let row = sqlx::query(sql::GET)
                    .bind(key.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                row.map(|row| $crate::sql::rows::decode_edition!(&row, err))
                    .transpose()
            }

            async fn insert(
                &self,
                e: &tenantry_domain::Edition,
                changes: &$crate::Changes,
            ) -> $crate::StoreResult<()> {
                let _timed = crate::sql::timing::Timed::new(super::DB_SYSTEM, "editions.insert");
                let mut tx = self.platform_tx(Intent::Write).await?;
                Self::write_changes(&mut tx, changes).await?;
                $crate::sql::binds::bind_edition!(sqlx::query(sql::INSERT), e)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await
            }
        }
    };
}

pub(crate) use edition_store;
