//! The audit port, read side: audit records are written through [`Changes`](crate::Changes), in
//! the transaction of the change they record (outbox events too; they are read through
//! [`EventStore`](crate::EventStore)).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tenantry_domain::{AuditRecord, Page, PageRequest, TenantId, TenantScope};

use crate::StoreResult;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant_id: Option<TenantId>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Newest first (operators: the platform-wide log, optionally filtered by tenant).
    async fn list(&self, filter: &AuditFilter, page: PageRequest)
    -> StoreResult<Page<AuditRecord>>;
    /// The scope's tenant's own records, newest first (`filter.tenant_id` is ignored).
    async fn list_tenant(
        &self,
        scope: &TenantScope,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>>;
}
