//! The access port: API keys (operator, tenant, device) and devices.
//!
//! Authentication comes before the tenant is known, so looking a key up by its public handle is
//! platform access. Everything a tenant owns — its keys, its devices — is reached only through a
//! [`TenantScope`], first parameter of each such method.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tenantry_domain::api_key::KeyKind;
use tenantry_domain::{ApiKeyId, Page, PageRequest, Role, Scope, TenantId, TenantScope};
use uuid::Uuid;

use crate::{Changes, StoreResult};

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

#[async_trait]
pub trait AccessStore: Send + Sync {
    // platform: operator keys, and authentication (which precedes the tenant)
    /// Inserts an operator key (`tenant_id` none).
    async fn insert_operator_key(&self, key: &ApiKeyRecord, changes: &Changes) -> StoreResult<()>;
    /// Any key by its public handle: authentication, before the tenant is known.
    async fn find_key(&self, lookup: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn count_active_operator_keys(&self, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Records that a key was used.
    async fn touch_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()>;

    // tenant data: reachable only through a TenantScope
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
}
