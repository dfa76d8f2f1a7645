//! The store port: everything the application needs from persistence, and nothing about how.
//!
//! Writes are *units of work*: each write method takes the business change together with the
//! [`Changes`] that must commit with it (audit records, outbox events, the idempotency record of the
//! request that caused it). An adapter writes all of them in one transaction or none.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tenantry_domain::api_key::KeyKind;
use tenantry_domain::{
    ApiKeyId, AuditRecord, Edition, EditionKey, EventEnvelope, Page, PageRequest, Role, Scope,
    Tenant, TenantId, TenantRef, TenantScope, TenantStatus,
};
use uuid::Uuid;

/// What must commit together with a business change.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub audit: Vec<AuditRecord>,
    pub events: Vec<EventEnvelope>,
    /// The response of the request that made this change, replayed for retries with the same
    /// `Idempotency-Key`. Written first: a duplicate key fails the whole unit of work with
    /// [`StoreError::Duplicate`]`(`[`Constraint::IdempotencyKey`]`)`.
    pub idempotency: Option<IdempotencyRecord>,
    /// Jobs enqueued only if the change commits (unique keys already taken are skipped).
    pub jobs: Vec<crate::jobs::NewJob>,
}

impl Changes {
    pub fn new(audit: AuditRecord, event: EventEnvelope) -> Self {
        Self {
            audit: vec![audit],
            events: vec![event],
            idempotency: None,
            jobs: Vec::new(),
        }
    }
}

/// A stored response for an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Who used the key and on which operation (`<principal>:<method> <path>`): the same key from
    /// another caller is another key.
    pub scope: String,
    pub key: String,
    /// Hash of the canonical request body.
    pub request_hash: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A stored API key. The secret itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub kind: KeyKind,
    /// The public lookup handle (`tnt_op_` + 12 characters).
    pub lookup: String,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub tenant_id: Option<TenantId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub scopes: Vec<Scope>,
    pub roles: Vec<Role>,
    /// A per-key limit below the tenant edition's (requests per minute).
    pub rate_limit_per_minute: Option<u32>,
    /// For device keys: the device.
    pub device_id: Option<String>,
    /// Set on a rotated key: its successor.
    pub rotated_to: Option<ApiKeyId>,
    /// Recorded at most about once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A registered device of a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    /// Internal, time-ordered id (pagination).
    pub id: Uuid,
    pub tenant_id: TenantId,
    /// The tenant's own name for the device.
    pub device_id: String,
    pub name: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub edition: Option<EditionKey>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant_id: Option<TenantId>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A uniqueness rule a write ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    TenantSlug,
    TenantId,
    EditionKey,
    ApiKeyLookup,
    DeviceId,
    IdempotencyKey,
    Other,
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
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// Classifies a driver error; `constraint_of` names the unique rule from the backend's error.
    pub(crate) fn from_sqlx(
        e: sqlx::Error,
        constraint_of: impl Fn(&dyn sqlx::error::DatabaseError) -> Constraint,
    ) -> Self {
        match e {
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                StoreError::Duplicate(constraint_of(db.as_ref()))
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

/// The persistence port. Implemented by [`crate::SqliteStore`] and [`crate::PgStore`]; both pass
/// [`crate::conformance`].
#[async_trait]
pub trait Store: crate::jobs::JobQueue + Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies pending migrations under a database lock; returns the versions this call applied.
    async fn migrate(&self) -> StoreResult<Vec<i64>>;
    /// Reachable and migrated to the version this binary expects.
    async fn check_ready(&self) -> StoreResult<()>;
    async fn close(&self);

    // tenants
    async fn insert_tenant(&self, tenant: &Tenant, changes: &Changes) -> StoreResult<()>;
    /// Writes `tenant` if the stored version is still `expected_version`, else
    /// [`StoreError::VersionConflict`] (or [`StoreError::NotFound`]).
    async fn update_tenant(
        &self,
        tenant: &Tenant,
        expected_version: i64,
        changes: &Changes,
    ) -> StoreResult<()>;
    async fn get_tenant(&self, tenant: &TenantRef) -> StoreResult<Option<Tenant>>;
    /// Ordered by id (creation order).
    async fn list_tenants(
        &self,
        filter: &TenantFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Tenant>>;

    // editions
    async fn list_editions(&self) -> StoreResult<Vec<Edition>>;
    async fn get_edition(&self, key: &EditionKey) -> StoreResult<Option<Edition>>;
    async fn insert_edition(&self, edition: &Edition, changes: &Changes) -> StoreResult<()>;

    // API keys
    async fn insert_api_key(&self, key: &ApiKeyRecord, changes: &Changes) -> StoreResult<()>;
    async fn find_api_key(&self, lookup: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn count_active_operator_keys(&self, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Records that a key was used (platform context: authentication precedes the tenant).
    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()>;

    // tenant-scoped API keys and devices: reachable only through a TenantScope
    /// Inserts a key of the scope's tenant (its `tenant_id` must be the scope's).
    async fn insert_tenant_key(
        &self,
        scope: &TenantScope,
        key: &ApiKeyRecord,
        changes: &Changes,
    ) -> StoreResult<()>;
    /// Keys of the scope's tenant, oldest first (revoked ones included).
    async fn list_tenant_keys(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> StoreResult<Page<ApiKeyRecord>>;
    async fn get_tenant_key(
        &self,
        scope: &TenantScope,
        id: ApiKeyId,
    ) -> StoreResult<Option<ApiKeyRecord>>;
    /// Sets `revoked_at` on a live key of the scope's tenant; `NotFound` if there is none.
    async fn revoke_tenant_key(
        &self,
        scope: &TenantScope,
        id: ApiKeyId,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()>;
    /// Inserts `successor` and makes `old` expire at `old_expires_at` (the grace period).
    async fn rotate_tenant_key(
        &self,
        scope: &TenantScope,
        old: ApiKeyId,
        old_expires_at: DateTime<Utc>,
        successor: &ApiKeyRecord,
        changes: &Changes,
    ) -> StoreResult<()>;
    /// Registers a device with its first key.
    async fn insert_device(
        &self,
        scope: &TenantScope,
        device: &DeviceRecord,
        key: &ApiKeyRecord,
        changes: &Changes,
    ) -> StoreResult<()>;
    async fn list_devices(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> StoreResult<Page<DeviceRecord>>;
    async fn get_device(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> StoreResult<Option<DeviceRecord>>;
    /// Removes a device and revokes its keys; `NotFound` if there is none.
    async fn delete_device(
        &self,
        scope: &TenantScope,
        device_id: &str,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()>;

    // audit and outbox (read side; they are written through `Changes`)
    /// Newest first.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>>;
    /// Undispatched outbox events in write order.
    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<EventEnvelope>>;

    // idempotency
    async fn find_idempotency(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    async fn purge_idempotency(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}

/// Refuses a record of another tenant than the scope's (a bug in the caller, never user input).
pub(crate) fn ensure_same_tenant(scope: &TenantScope, tenant: Option<TenantId>) -> StoreResult<()> {
    if tenant == Some(scope.tenant_id()) {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "record of tenant {tenant:?} written through the scope of {}",
            scope.tenant_id()
        )))
    }
}
