//! Singleton leases on SQLite (platform data).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::jobs::us;
use super::{Intent, SqliteStore, err};
use crate::StoreResult;
use crate::leases::LeaseStore;

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.platform_tx(Intent::Write).await?;
        let n = sqlx::query(
            "INSERT INTO worker_leases (name, owner, expires_at, acquired_at) VALUES (?1, ?2, ?4, ?3)
             ON CONFLICT (name) DO UPDATE SET
                 acquired_at = CASE WHEN worker_leases.owner = excluded.owner THEN worker_leases.acquired_at ELSE excluded.acquired_at END,
                 owner = excluded.owner, expires_at = excluded.expires_at
             WHERE worker_leases.owner = excluded.owner OR worker_leases.expires_at < ?3",
        )
        .bind(name)
        .bind(owner)
        .bind(us(now))
        .bind(us(until))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        let mut tx = self.platform_tx(Intent::Write).await?;
        sqlx::query("DELETE FROM worker_leases WHERE name = ?1 AND owner = ?2")
            .bind(name)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await
    }
}
