//! tenantry's store: a narrow root [`Store`] that opens, migrates and reports on the database, and
//! hands out one port per capability (`store.tenants()`, `store.access()`, `store.jobs()`, …).
//!
//! Layout (docs/architecture.md has the whole map):
//! - one file per capability port at the crate root (`tenants.rs`, `access.rs`, `jobs.rs`, …):
//!   its trait, records and filters;
//! - `sqlite/` and `postgres/`: one adapter file per capability, and in `mod.rs` the adapter's
//!   connection, its unit-of-work writer and its one tenant-routing point;
//! - `sql/`: what both adapters share and is not SQL text (row decoding, record binding,
//!   migrations, enqueue coalescing);
//! - `conformance/` (feature `testing`): one case module per port, run on every backend.

pub mod access;
pub mod audit;
mod changes;
pub mod editions;
mod error;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod leases;
pub mod schedules;
pub mod secrets;
pub mod sync;
pub mod telemetry;
pub mod tenants;
pub mod usage;
pub mod webhooks;

mod postgres;
mod sql;
mod sqlite;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;

pub use access::{AccessStore, ApiKeyRecord, DeviceRecord};
pub use audit::{AuditFilter, AuditStore};
pub use changes::{Changes, IdempotencyRecord, TenantJobs};
pub use editions::EditionStore;
pub use error::{Constraint, StoreError, StoreResult};
pub use events::EventStore;
pub use idempotency::IdempotencyStore;
pub use jobs::{JobConsole, JobQueue};
pub use leases::LeaseStore;
pub use postgres::PgStore;
pub use schedules::ScheduleStore;
pub use secrets::SecretStore;
pub use sqlite::SqliteStore;
pub use sync::SyncStore;
pub use telemetry::TelemetryStore;
pub use tenants::{TenantFilter, TenantStore};
pub use usage::{TenantFootprint, UsageStore};
pub use webhooks::WebhookStore;

/// Which adapter is behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The store: the database's lifecycle, and one port per capability. Implemented by
/// [`SqliteStore`] and [`PgStore`]; both pass every suite in `conformance`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations under a database lock; returns the versions this call applied.
    async fn migrate(&self) -> StoreResult<Vec<i64>>;
    /// Reachable and migrated to the version this binary expects.
    async fn check_ready(&self) -> StoreResult<()>;
    async fn close(&self);

    fn tenants(&self) -> &dyn TenantStore;
    fn editions(&self) -> &dyn EditionStore;
    fn access(&self) -> &dyn AccessStore;
    fn audit(&self) -> &dyn AuditStore;
    fn idempotency(&self) -> &dyn IdempotencyStore;
    fn jobs(&self) -> &dyn JobQueue;
    fn job_console(&self) -> &dyn JobConsole;
    fn schedules(&self) -> &dyn ScheduleStore;
    fn leases(&self) -> &dyn LeaseStore;
    fn secrets(&self) -> &dyn SecretStore;
    fn usage(&self) -> &dyn UsageStore;
    fn telemetry(&self) -> &dyn TelemetryStore;
    fn sync(&self) -> &dyn SyncStore;
    fn events(&self) -> &dyn EventStore;
    fn webhooks(&self) -> &dyn WebhookStore;
}

/// Implements the root [`Store`]'s capability accessors for an adapter that implements every
/// capability port itself.
macro_rules! capability_accessors {
    () => {
        fn tenants(&self) -> &dyn $crate::TenantStore {
            self
        }
        fn editions(&self) -> &dyn $crate::EditionStore {
            self
        }
        fn access(&self) -> &dyn $crate::AccessStore {
            self
        }
        fn audit(&self) -> &dyn $crate::AuditStore {
            self
        }
        fn idempotency(&self) -> &dyn $crate::IdempotencyStore {
            self
        }
        fn jobs(&self) -> &dyn $crate::JobQueue {
            self
        }
        fn job_console(&self) -> &dyn $crate::JobConsole {
            self
        }
        fn schedules(&self) -> &dyn $crate::ScheduleStore {
            self
        }
        fn leases(&self) -> &dyn $crate::LeaseStore {
            self
        }
        fn secrets(&self) -> &dyn $crate::SecretStore {
            self
        }
        fn usage(&self) -> &dyn $crate::UsageStore {
            self
        }
        fn telemetry(&self) -> &dyn $crate::TelemetryStore {
            self
        }
        fn sync(&self) -> &dyn $crate::SyncStore {
            self
        }
        fn events(&self) -> &dyn $crate::EventStore {
            self
        }
        fn webhooks(&self) -> &dyn $crate::WebhookStore {
            self
        }
    };
}
pub(crate) use capability_accessors;

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
