//! Tenant use cases: create, read, list, update (conditional), lifecycle transitions.

use serde::Deserialize;
use serde_json::json;
use tenantry_domain::tenant::TenantPatch;
use tenantry_domain::{
    EditionKey, EventEnvelope, Isolation, Page, PageRequest, Region, Slug, Tenant, TenantId,
    TenantName, TenantRef, TenantStatus, ValidationErrors,
};
use tenantry_store::{Changes, Constraint, StoreError, TenantFilter, TenantJobs};

use crate::platform::views::{TenantView, to_json};
use crate::platform::{App, AppError, AppResult, Ctx, Idem, now};

/// `POST /v1/tenants` input.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    pub slug: Option<String>,
    pub edition: Option<String>,
    pub region: Option<String>,
    pub isolation: Option<String>,
}

/// `PATCH /v1/tenants/{id}` input (JSON merge patch): absent fields stay, `region: null` clears.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatchIn {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub edition: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub region: Option<Option<String>>,
}

/// Distinguishes a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A lifecycle operation (`POST /v1/tenants/{id}:<op>`, `DELETE /v1/tenants/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Suspend,
    Resume,
    Delete,
    Restore,
}

impl Lifecycle {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "suspend" => Some(Self::Suspend),
            "resume" => Some(Self::Resume),
            "delete" => Some(Self::Delete),
            "restore" => Some(Self::Restore),
            _ => None,
        }
    }
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Suspend => ("tenant.suspend", "tenant.suspended.v1"),
            Self::Resume => ("tenant.resume", "tenant.resumed.v1"),
            Self::Delete => ("tenant.delete", "tenant.deleted.v1"),
            Self::Restore => ("tenant.restore", "tenant.restored.v1"),
        }
    }
}

fn tenant_event(ctx: &Ctx, event_type: &str, t: &Tenant) -> EventEnvelope {
    EventEnvelope::v1(
        event_type,
        t.id.to_string(),
        Some(t.id),
        Some(t.edition.clone()),
        ctx.trace_id(),
        t.updated_at,
        json!({ "tenant": to_json(&TenantView::from(t)) }),
    )
}

/// Whether `If-Match` names the current version: `*` or a list of strong tags.
pub fn if_match_satisfied(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag)
}

impl App {
    async fn edition_exists(&self, key: &EditionKey) -> AppResult<bool> {
        Ok(self.store.editions().get(key).await?.is_some())
    }

    pub async fn create_tenant(
        &self,
        ctx: &Ctx,
        input: NewTenant,
        idem: Idem<'_, Tenant>,
    ) -> AppResult<Tenant> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", TenantName::parse(&input.name));
        let explicit_slug = input
            .slug
            .as_deref()
            .and_then(|s| errors.check("slug", Slug::parse(s)));
        let edition = match input.edition.as_deref() {
            None => Some(EditionKey::free()),
            Some(e) => errors.check("edition", EditionKey::parse(e)),
        };
        let region = input
            .region
            .as_deref()
            .and_then(|r| errors.check("region", Region::parse(r)));
        let isolation = match input.isolation.as_deref() {
            None | Some("pooled") => Some(Isolation::Pooled),
            Some(other) => {
                let msg = match other.parse::<Isolation>() {
                    Ok(_) => format!(
                        "isolation '{other}' is not available yet; only 'pooled' can be created"
                    ),
                    Err(e) => e,
                };
                errors.push("isolation", msg);
                None
            }
        };
        if let Some(e) = &edition
            && !self.edition_exists(e).await?
        {
            errors.push("edition", format!("no edition '{e}'; see GET /v1/editions"));
        }
        errors.clone().into_result()?;
        let (Some(name), Some(edition), Some(isolation)) = (name, edition, isolation) else {
            return Err(errors.into());
        };

        let id = TenantId::new();
        let short = id.as_uuid().simple().to_string();
        let derived = explicit_slug.is_none();
        let mut slug =
            explicit_slug.unwrap_or_else(|| Slug::derive(name.as_str(), &short[short.len() - 8..]));
        for attempt in 0..2 {
            let tenant = Tenant::new(
                id,
                slug.clone(),
                name.clone(),
                edition.clone(),
                region.clone(),
                isolation,
                now(),
            );
            let audit = ctx.audit(
                "tenant.create",
                "tenant",
                id.to_string(),
                Some(id),
                json!({ "slug": tenant.slug.as_str(), "edition": tenant.edition.as_str(), "region": tenant.region.as_ref().map(Region::as_str) }),
            );
            let mut changes = Changes::new(audit, tenant_event(ctx, "tenant.created.v1", &tenant));
            changes.idempotency = idem.map(|f| f(&tenant));
            match self.store.tenants().insert(&tenant, &changes).await {
                Ok(()) => {
                    ctx.note_tenant(id);
                    tracing::info!(tenant_id = %id, slug = %tenant.slug, "tenant created");
                    return Ok(tenant);
                }
                Err(StoreError::Duplicate(Constraint::TenantSlug)) if derived && attempt == 0 => {
                    slug = slug.with_suffix(&short[short.len() - 6..]);
                }
                Err(StoreError::Duplicate(Constraint::TenantSlug)) => {
                    return Err(AppError::SlugTaken(slug.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::SlugTaken(slug.to_string()))
    }

    /// Reads a tenant by id or slug (deleted tenants included: operators restore them).
    pub async fn get_tenant(&self, ctx: &Ctx, r: &TenantRef) -> AppResult<Tenant> {
        let t = self
            .store
            .tenants()
            .get(r)
            .await?
            .ok_or_else(|| AppError::TenantNotFound(r.to_string()))?;
        ctx.note_tenant(t.id);
        Ok(t)
    }

    pub async fn list_tenants(
        &self,
        filter: &TenantFilter,
        page: PageRequest,
    ) -> AppResult<Page<Tenant>> {
        Ok(self.store.tenants().list(filter, page).await?)
    }

    pub async fn update_tenant(
        &self,
        ctx: &Ctx,
        r: &TenantRef,
        if_match: Option<&str>,
        input: TenantPatchIn,
    ) -> AppResult<Tenant> {
        let current = self.get_tenant(ctx, r).await?;
        let Some(if_match) = if_match else {
            return Err(AppError::PreconditionRequired);
        };
        if !if_match_satisfied(if_match, &current.etag()) {
            return Err(AppError::PreconditionFailed {
                current: current.etag(),
            });
        }
        let mut errors = ValidationErrors::default();
        let mut patch = TenantPatch::default();
        match input.name {
            Some(Some(n)) => patch.name = errors.check("name", TenantName::parse(&n)),
            Some(None) => errors.push("name", "cannot be removed"),
            None => {}
        }
        match input.edition {
            Some(Some(e)) => {
                patch.edition = errors.check("edition", EditionKey::parse(&e));
                if let Some(key) = &patch.edition
                    && !self.edition_exists(key).await?
                {
                    errors.push(
                        "edition",
                        format!("no edition '{key}'; see GET /v1/editions"),
                    );
                }
            }
            Some(None) => errors.push("edition", "cannot be removed"),
            None => {}
        }
        match input.region {
            Some(Some(r)) => patch.region = errors.check("region", Region::parse(&r)).map(Some),
            Some(None) => patch.region = Some(None),
            None => {}
        }
        errors.into_result()?;

        let next = current.update(patch, now())?;
        if next.version == current.version {
            return Ok(current);
        }
        let mut diff = serde_json::Map::new();
        let before = to_json(&TenantView::from(&current));
        let after = to_json(&TenantView::from(&next));
        for field in ["name", "edition", "region"] {
            if before[field] != after[field] {
                diff.insert(
                    field.into(),
                    json!({ "from": before[field], "to": after[field] }),
                );
            }
        }
        let audit = ctx.audit(
            "tenant.update",
            "tenant",
            next.id.to_string(),
            Some(next.id),
            json!({ "changes": diff }),
        );
        let changes = Changes::new(audit, tenant_event(ctx, "tenant.updated.v1", &next));
        self.commit_update(&current, &next, &changes).await?;
        Ok(next)
    }

    pub async fn transition_tenant(
        &self,
        ctx: &Ctx,
        r: &TenantRef,
        op: Lifecycle,
        if_match: Option<&str>,
        idem: Idem<'_, Tenant>,
    ) -> AppResult<Tenant> {
        let current = self.get_tenant(ctx, r).await?;
        if let Some(h) = if_match
            && !if_match_satisfied(h, &current.etag())
        {
            return Err(AppError::PreconditionFailed {
                current: current.etag(),
            });
        }
        let at = now();
        let next = match op {
            Lifecycle::Suspend => current.suspend(at),
            Lifecycle::Resume => current.resume(at),
            Lifecycle::Delete => current.delete(at, self.settings.delete_grace),
            Lifecycle::Restore => current.restore(at),
        }?;
        let (action, event_type) = op.names();
        let details = json!({ "from": current.status.as_str(), "to": next.status.as_str(), "purge_after": next.purge_after });
        let audit = ctx.audit(
            action,
            "tenant",
            next.id.to_string(),
            Some(next.id),
            details,
        );
        let mut changes = Changes::new(audit, tenant_event(ctx, event_type, &next));
        changes.idempotency = idem.map(|f| f(&next));
        // its queued jobs pause and resume with it (schedules skip inactive tenants by themselves)
        let inactive =
            |s: TenantStatus| matches!(s, TenantStatus::Suspended | TenantStatus::Deleted);
        changes.tenant_jobs = match (inactive(current.status), inactive(next.status)) {
            (_, true) => Some(TenantJobs::Pause(next.id)),
            (true, false) => Some(TenantJobs::Resume(next.id, at)),
            (false, false) => None,
        };
        self.commit_update(&current, &next, &changes).await?;
        tracing::info!(tenant_id = %next.id, action, "tenant {}", next.status);
        Ok(next)
    }

    async fn commit_update(
        &self,
        current: &Tenant,
        next: &Tenant,
        changes: &Changes,
    ) -> AppResult<()> {
        match self
            .store
            .tenants()
            .update(next, current.version, changes)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::VersionConflict) => {
                let latest = self.store.tenants().get(&TenantRef::Id(current.id)).await?;
                Err(AppError::PreconditionFailed {
                    current: latest.map_or_else(|| current.etag(), |t| t.etag()),
                })
            }
            Err(StoreError::NotFound) => Err(AppError::TenantNotFound(current.id.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_rules() {
        assert!(if_match_satisfied("\"3\"", "\"3\""));
        assert!(if_match_satisfied("\"1\", \"3\"", "\"3\""));
        assert!(if_match_satisfied("*", "\"3\""));
        assert!(
            !if_match_satisfied("W/\"3\"", "\"3\""),
            "weak tags never match If-Match"
        );
        assert!(!if_match_satisfied("\"2\"", "\"3\""));
    }

    #[test]
    fn merge_patch_distinguishes_null_from_absent() {
        let p: TenantPatchIn = serde_json::from_str(r#"{"region": null}"#).unwrap();
        assert_eq!(p.region, Some(None));
        assert_eq!(p.name, None);
        assert!(serde_json::from_str::<TenantPatchIn>(r#"{"nam": "x"}"#).is_err());
    }
}
