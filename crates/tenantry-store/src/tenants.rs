//! The tenants port: the platform's registry of tenants (platform data: the tenant row is what a
//! `TenantScope` is minted from, so it is reached without one).

use async_trait::async_trait;
use tenantry_domain::{EditionKey, Page, PageRequest, Tenant, TenantRef, TenantStatus};

use crate::{Changes, StoreResult};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub edition: Option<EditionKey>,
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn insert(&self, tenant: &Tenant, changes: &Changes) -> StoreResult<()>;
    /// Writes `tenant` if the stored version is still `expected_version`, else
    /// [`StoreError::VersionConflict`](crate::StoreError::VersionConflict) (or `NotFound`).
    async fn update(
        &self,
        tenant: &Tenant,
        expected_version: i64,
        changes: &Changes,
    ) -> StoreResult<()>;
    async fn get(&self, tenant: &TenantRef) -> StoreResult<Option<Tenant>>;
    /// Ordered by id (creation order).
    async fn list(&self, filter: &TenantFilter, page: PageRequest) -> StoreResult<Page<Tenant>>;
}
