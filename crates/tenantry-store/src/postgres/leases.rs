//! Singleton leases on PostgreSQL (platform data).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{PgStore, err};
use crate::StoreResult;
use crate::leases::LeaseStore;

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "INSERT INTO worker_leases (name, owner, expires_at, acquired_at) VALUES ($1, $2, $4, $3)
             ON CONFLICT (name) DO UPDATE SET
                 acquired_at = CASE WHEN worker_leases.owner = excluded.owner THEN worker_leases.acquired_at ELSE excluded.acquired_at END,
                 owner = excluded.owner, expires_at = excluded.expires_at
             WHERE worker_leases.owner = excluded.owner OR worker_leases.expires_at < $3",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM worker_leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}
