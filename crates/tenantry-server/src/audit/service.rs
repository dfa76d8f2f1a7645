//! Reading the audit log.

use tenantry_domain::{AuditRecord, Page, PageRequest};
use tenantry_store::AuditFilter;

use crate::platform::{App, AppResult};

impl App {
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> AppResult<Page<AuditRecord>> {
        Ok(self.store.audit().list(filter, page).await?)
    }

    /// A tenant's own audit log (`filter.tenant_id` is the scope's).
    pub async fn list_tenant_audit(
        &self,
        scope: &tenantry_domain::TenantScope,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> AppResult<Page<AuditRecord>> {
        Ok(self.store.audit().list_tenant(scope, filter, page).await?)
    }
}
