//! Tenant resolution and authorization: from a verified principal and the request's tenant
//! sources to a [`TenantScope`] — the only way to reach tenant data.

use tenantry_domain::resolution::{self, ResolutionError, Source};
use tenantry_domain::{Principal, Scope, Tenant, TenantRef, TenantScope, TenantStatus};

use crate::platform::{App, AppError, AppResult, Ctx, PlatformOrTenant};

/// A request resolved to one tenant, with the right to touch its data.
#[derive(Clone, Debug)]
pub struct TenantAccess {
    pub tenant: Tenant,
    pub scope: TenantScope,
    pub source: Source,
}

/// Which deleted tenants a body or query may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Refused,
    Allowed,
    /// Deleted refused, and suspended too (`TenantSuspended`): new work for the tenant, such as
    /// jobs, which would only wait paused.
    RefusedWithSuspended,
}

impl App {
    /// The tenant a request body or query names (`"tenant": "<id or slug>"`), checked against the
    /// caller: a tenant's credential may name only its own tenant (`TenantMismatch` otherwise);
    /// the platform, any tenant that exists (`TenantNotFound` otherwise, and for deleted tenants
    /// unless `deleted` allows them). Naming none is the caller's own tenant, or the platform.
    pub async fn named_tenant(
        &self,
        caller: PlatformOrTenant<'_>,
        named: Option<&str>,
        deleted: Deleted,
    ) -> AppResult<Option<tenantry_domain::TenantId>> {
        let Some(raw) = named else {
            return Ok(caller.tenant_id());
        };
        let found = match TenantRef::parse(raw) {
            Some(r) => self.store.tenants().get(&r).await?,
            None => None,
        };
        match (caller, found) {
            (PlatformOrTenant::Platform, Some(t))
                if deleted == Deleted::RefusedWithSuspended
                    && t.status == TenantStatus::Suspended =>
            {
                Err(AppError::TenantSuspended)
            }
            (PlatformOrTenant::Tenant(s), Some(t)) if t.id == s.tenant_id() => Ok(Some(t.id)),
            (PlatformOrTenant::Tenant(_), _) => Err(AppError::TenantMismatch),
            (PlatformOrTenant::Platform, Some(t))
                if t.status != TenantStatus::Deleted || deleted == Deleted::Allowed =>
            {
                Ok(Some(t.id))
            }
            (PlatformOrTenant::Platform, _) => Err(AppError::TenantNotFound(raw.to_owned())),
        }
    }

    /// Resolves the tenant of a request. `explicit` are the tenant names the request carried
    /// (header, subdomain, path), in any order.
    pub async fn resolve_tenant(
        &self,
        ctx: &Ctx,
        principal: &Principal,
        explicit: &[(Source, String)],
    ) -> AppResult<TenantAccess> {
        let mut named = Vec::with_capacity(explicit.len());
        for (source, raw) in explicit {
            let found = match TenantRef::parse(raw) {
                Some(r) => self.store.tenants().get(&r).await?,
                None => None,
            };
            match found {
                Some(t) if t.status != TenantStatus::Deleted => named.push((*source, t)),
                // a tenant credential learns nothing about other tenants, existing or not
                _ if principal.tenant.is_some() => return Err(AppError::TenantMismatch),
                _ => return Err(AppError::TenantNotFound(raw.clone())),
            }
        }
        let ids: Vec<_> = named.iter().map(|(s, t)| (*s, t.id)).collect();
        let (id, source) = resolution::decide(&ids, principal.tenant).map_err(|e| match e {
            ResolutionError::Ambiguous { .. } => AppError::TenantAmbiguous(e.to_string()),
            ResolutionError::Missing => AppError::TenantRequired,
            ResolutionError::WrongTenant => AppError::TenantMismatch,
        })?;
        let tenant = match named.into_iter().find(|(_, t)| t.id == id) {
            Some((_, t)) => t,
            None => self
                .store
                .tenants()
                .get(&TenantRef::Id(id))
                .await?
                .filter(|t| t.status != TenantStatus::Deleted)
                .ok_or_else(|| AppError::TenantNotFound(id.to_string()))?,
        };
        ctx.note_tenant(tenant.id);
        let scope =
            TenantScope::for_verified_request(tenant.id, tenant.edition.clone(), principal.actor());
        Ok(TenantAccess {
            tenant,
            scope,
            source,
        })
    }
}

impl TenantAccess {
    /// Refuses writes to a suspended tenant (operators excepted: they must be able to clean up).
    pub fn require_writable(&self, principal: &Principal) -> AppResult<()> {
        if self.tenant.status == TenantStatus::Suspended && !principal.is_operator() {
            return Err(AppError::TenantSuspended);
        }
        Ok(())
    }
}

/// Refuses a principal without `scope`.
pub fn require_scope(principal: &Principal, scope: Scope) -> AppResult<()> {
    if principal.scopes.contains(scope) {
        Ok(())
    } else {
        Err(AppError::InsufficientScope(scope))
    }
}

/// The scope of a system task that works on one tenant's data on the platform's behalf (the
/// per-tenant utilisation metrics, telemetry retention and restores, tests' back-dated data);
/// its actor is the system, named by `reason`.
pub fn system_scope(tenant: &tenantry_domain::Tenant, reason: &'static str) -> TenantScope {
    TenantScope::system(tenant.id, tenant.edition.clone(), reason)
}
