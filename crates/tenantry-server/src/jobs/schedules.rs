//! Schedule use cases. A tenant's schedules are stored under `<tenant id>:<name>` (the store's
//! [`stored_name`]) so that two tenants may both have a `nightly`; the API shows the name the
//! tenant chose. A tenant credential reads and writes through its own `TenantScope`.

use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_domain::job::ScheduleSpec;
use tenantry_domain::{EventEnvelope, TenantId, ValidationErrors};
use tenantry_store::jobs::JobScope;
use tenantry_store::schedules::{ScheduleRecord, stored_name};
use tenantry_store::{Changes, IdempotencyRecord};

use crate::access::scope::Deleted;
use crate::jobs::workers::Registry;
use crate::platform::PlatformOrTenant;
use crate::platform::{App, AppError, AppResult, Ctx, Idem, now};

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    pub name: String,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    pub kind: String,
    #[serde(default)]
    pub payload: Option<Value>,
    /// Tenant id or slug (operators); a tenant credential's schedules are always its tenant's.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn check_name(name: &str) -> Result<(), ValidationErrors> {
    let ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValidationErrors::single(
            "name",
            "1 to 100 characters: letters, digits, '-', '_', '.'",
        ))
    }
}

impl App {
    /// Creates or replaces a schedule. Returns it and whether it is new.
    pub async fn put_schedule(
        &self,
        ctx: &Ctx,
        access: PlatformOrTenant<'_>,
        registry: &Registry,
        r: ScheduleRequest,
        idem: Idem<'_, (ScheduleRecord, bool)>,
    ) -> AppResult<(ScheduleRecord, bool)> {
        check_name(&r.name)?;
        let Some(kind) = registry.get(&r.kind) else {
            return Err(ValidationErrors::single(
                "kind",
                format!(
                    "unknown job kind '{}'; registered: {}",
                    r.kind,
                    registry.names().join(", ")
                ),
            )
            .into());
        };
        let payload = r.payload.clone().unwrap_or(json!({}));
        let mut errors = ValidationErrors::default();
        crate::platform::check_document(&mut errors, "payload", &payload);
        if let Err(m) = kind.handler.validate(&payload) {
            errors.push("payload", format!("not a valid {} payload: {m}", kind.name));
        }
        if !errors.0.is_empty() {
            return Err(errors.into());
        }
        let spec = match (&r.cron, r.interval_seconds) {
            (Some(c), None) => ScheduleSpec::cron(c)
                .map_err(|e| ValidationErrors::single("cron", e.to_string()))?,
            (None, Some(s)) => ScheduleSpec::interval_seconds(s)
                .map_err(|e| ValidationErrors::single("interval_seconds", e.to_string()))?,
            _ => {
                return Err(ValidationErrors::single(
                    "cron",
                    "give exactly one of cron and interval_seconds",
                )
                .into());
            }
        };
        let tenant_id = self
            .named_tenant(access, r.tenant.as_deref(), Deleted::Refused)
            .await?;
        let at = now();
        // a tenant's own schedules fire at most as often as its edition allows (operators,
        // who run the platform, may schedule anything)
        if let PlatformOrTenant::Tenant(s) = access
            && let Some(edition) = self.store.editions().get(s.edition()).await?
        {
            let min = u64::from(edition.limits.min_schedule_interval_seconds);
            let gap = spec
                .shortest_gap(at)
                .map_err(|e| ValidationErrors::single("cron", e.to_string()))?;
            if gap.as_secs() < min {
                let field = if r.cron.is_some() {
                    "cron"
                } else {
                    "interval_seconds"
                };
                return Err(ValidationErrors::single(
                    field,
                    format!(
                        "fires every {} s; the {} edition allows schedules at most every {min} s",
                        gap.as_secs(),
                        edition.key
                    ),
                )
                .into());
            }
        }
        let name = stored_name(tenant_id, &r.name);
        let scope = access.scope();
        let existing = self.store.schedules().get(scope, &name).await?;
        let (cron, interval_ms) = match &spec {
            ScheduleSpec::Cron(c) => (Some(c.clone()), None),
            ScheduleSpec::Interval(d) => (None, i64::try_from(d.as_millis()).ok()),
        };
        let same_timing = existing
            .as_ref()
            .is_some_and(|e| e.cron == cron && e.interval_ms == interval_ms);
        let next_fire_at = match &existing {
            Some(e) if same_timing && e.next_fire_at.is_some() => e.next_fire_at,
            _ => Some(
                spec.first_fire(at)
                    .map_err(|e| ValidationErrors::single("cron", e.to_string()))?,
            ),
        };
        let record = ScheduleRecord {
            name: name.clone(),
            tenant_id,
            cron,
            interval_ms,
            kind: r.kind,
            payload,
            enabled: r.enabled,
            next_fire_at,
            last_fired_at: existing.as_ref().and_then(|e| e.last_fired_at),
            created_at: existing.as_ref().map_or(at, |e| e.created_at),
            updated_at: at,
        };
        let details = json!({
            "name": r.name, "kind": record.kind, "cron": record.cron,
            "interval_ms": record.interval_ms, "enabled": record.enabled,
        });
        let action = if existing.is_some() {
            "schedule.update"
        } else {
            "schedule.create"
        };
        let audit = ctx.audit(action, "schedule", name.clone(), tenant_id, details.clone());
        let event = EventEnvelope::v1(
            if existing.is_some() {
                "schedule.updated.v1"
            } else {
                "schedule.created.v1"
            },
            name,
            tenant_id,
            None,
            ctx.trace_id(),
            at,
            details,
        );
        let answer = (record, existing.is_none());
        let mut changes = Changes::new(audit, event);
        changes.idempotency = idem.map(|f| f(&answer));
        self.store
            .schedules()
            .put(scope, &answer.0, &changes)
            .await?;
        Ok(answer)
    }

    pub async fn get_schedule(
        &self,
        access: PlatformOrTenant<'_>,
        name: &str,
    ) -> AppResult<ScheduleRecord> {
        let (scope, tenant) = scope_of(access);
        self.store
            .schedules()
            .get(scope, &stored_name(tenant, name))
            .await?
            .ok_or_else(|| AppError::ScheduleNotFound(name.to_owned()))
    }

    pub async fn list_schedules(
        &self,
        access: PlatformOrTenant<'_>,
    ) -> AppResult<Vec<ScheduleRecord>> {
        let (scope, _) = scope_of(access);
        Ok(self.store.schedules().list(scope).await?)
    }

    /// Deletes a schedule. An operator removes a tenant's schedule by naming the tenant
    /// (`tenant`), which may be suspended or deleted.
    pub async fn delete_schedule(
        &self,
        ctx: &Ctx,
        access: PlatformOrTenant<'_>,
        name: &str,
        tenant: Option<&str>,
        idem: Option<IdempotencyRecord>,
    ) -> AppResult<()> {
        let scope = access.scope();
        let tenant = match tenant {
            Some(_) => self.named_tenant(access, tenant, Deleted::Allowed).await?,
            None => access.tenant_id(),
        };
        let stored = stored_name(tenant, name);
        let details = json!({ "name": name });
        let audit = ctx.audit(
            "schedule.delete",
            "schedule",
            stored.clone(),
            tenant,
            details.clone(),
        );
        let event = EventEnvelope::v1(
            "schedule.deleted.v1",
            stored.clone(),
            tenant,
            None,
            ctx.trace_id(),
            now(),
            details,
        );
        if self
            .store
            .schedules()
            .delete(scope, &stored, &{
                let mut changes = Changes::new(audit, event);
                changes.idempotency = idem;
                changes
            })
            .await?
        {
            Ok(())
        } else {
            Err(AppError::ScheduleNotFound(name.to_owned()))
        }
    }
}

fn scope_of(access: PlatformOrTenant<'_>) -> (JobScope<'_>, Option<TenantId>) {
    let scope = access.scope();
    (scope, scope.tenant_id())
}
