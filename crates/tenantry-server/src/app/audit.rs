//! Reading the audit log.

use tenantry_domain::{AuditRecord, Page, PageRequest};
use tenantry_store::AuditFilter;

use super::{App, AppResult};

impl App {
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> AppResult<Page<AuditRecord>> {
        Ok(self.store.list_audit(filter, page).await?)
    }
}
