//! The store's errors, and the one table that names every uniqueness rule on every backend.

use crate::Backend;

/// A uniqueness rule a write ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    TenantSlug,
    TenantId,
    EditionKey,
    ApiKeyLookup,
    DeviceId,
    IdempotencyKey,
    SourceName,
    Other,
}

/// Every uniqueness rule the application distinguishes: PostgreSQL reports a violated
/// constraint by its name, SQLite by a message that names the table and columns.
const UNIQUE_RULES: &[(Constraint, &str, &str)] = &[
    // (rule, PostgreSQL constraint name, SQLite message fragment)
    (Constraint::TenantSlug, "tenants_slug_key", "tenants.slug"),
    (Constraint::TenantId, "tenants_pkey", "tenants.id"),
    (Constraint::EditionKey, "editions_pkey", "editions.key"),
    (
        Constraint::ApiKeyLookup,
        "api_keys_lookup_key",
        "api_keys.lookup",
    ),
    (
        Constraint::DeviceId,
        "devices_tenant_device_key",
        "devices.tenant_id, devices.device_id",
    ),
    (
        Constraint::IdempotencyKey,
        "idempotency_keys_pkey",
        "idempotency_keys.",
    ),
    (
        Constraint::SourceName,
        "sync_sources_tenant_id_name_key",
        "sync_sources.tenant_id, sync_sources.name",
    ),
];

/// Names the uniqueness rule behind a unique violation reported by `backend`.
pub(crate) fn constraint_of(backend: Backend, db: &dyn sqlx::error::DatabaseError) -> Constraint {
    let hit = |&&(_, pg, lite): &&(Constraint, &str, &str)| match backend {
        Backend::Postgres => db.constraint() == Some(pg),
        Backend::Sqlite => db.message().contains(lite),
    };
    UNIQUE_RULES
        .iter()
        .find(hit)
        .map_or(Constraint::Other, |r| r.0)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with the same unique value exists ({0:?})")]
    Duplicate(Constraint),
    #[error("the record was changed by someone else since it was read")]
    VersionConflict,
    #[error("the record does not exist")]
    NotFound,
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database schema is not at the expected version (have {have:?}, want {want})")]
    NotMigrated { have: Option<i64>, want: i64 },
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The transaction lost a lock conflict with a concurrent one (a deadlock, a serialization
    /// failure, SQLite's busy writer): nothing of it was written, and running it again is safe.
    #[error("the transaction conflicted with a concurrent one and was rolled back: {0}")]
    Contention(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// Classifies a driver error of `backend` (unique violations through [`UNIQUE_RULES`]).
    pub(crate) fn from_sqlx(backend: Backend, e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                StoreError::Duplicate(constraint_of(backend, db.as_ref()))
            }
            // PostgreSQL: deadlock_detected, serialization_failure; SQLite: SQLITE_BUSY and
            // SQLITE_LOCKED (their extended codes end in the same byte)
            sqlx::Error::Database(ref db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001"))
                    || db
                        .code()
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| matches!(c & 0xff, 5 | 6)) =>
            {
                StoreError::Contention(e)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Refuses a record of another tenant than the scope's (a bug in the caller, never user input).
pub(crate) fn ensure_same_tenant(
    scope: &tenantry_domain::TenantScope,
    tenant: Option<tenantry_domain::TenantId>,
) -> StoreResult<()> {
    if tenant == Some(scope.tenant_id()) {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "record of tenant {tenant:?} written through the scope of {}",
            scope.tenant_id()
        )))
    }
}
