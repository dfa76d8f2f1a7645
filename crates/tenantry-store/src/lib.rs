//! tenantry's store port ([`Store`]) and its adapters: SQLite (embedded, the default) and
//! PostgreSQL (at scale). One [`conformance`] suite runs the same cases against both.

pub mod conformance;
mod enqueue_batch;
pub mod job_conformance;
pub mod jobs;
mod migrations;
mod port;
mod postgres;
mod rows;
mod sqlite;
pub mod testing;

use std::sync::Arc;

pub use port::{
    ApiKeyRecord, AuditFilter, Backend, Changes, Constraint, DeviceRecord, IdempotencyRecord,
    Store, StoreError, StoreResult, TenantFilter,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Connection settings common to both adapters.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`). Does not migrate.
pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, options).await?))
    } else {
        Err(StoreError::Corrupt(format!(
            "unsupported database URL scheme in '{}': use sqlite:// or postgres://",
            url.split(':').next().unwrap_or_default()
        )))
    }
}
