//! Tenant API keys: create (with scopes, roles, expiry and an optional lower rate limit), list,
//! revoke, rotate with a grace period.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use tenantry_domain::api_key::{KeyKind, PresentedKey};
use tenantry_domain::{
    ApiKeyId, EventEnvelope, Page, PageRequest, Principal, Role, Scope, ScopeSet, TenantScope,
    ValidationErrors,
};
use tenantry_store::{ApiKeyRecord, Changes, IdempotencyRecord, StoreError};

use crate::access::keys::{IssuedKey, generate_key, hash_key};
use crate::platform::{App, AppError, AppResult, Ctx, Idem, now};

/// `POST /v1/tenants/{tenant}/api-keys` input.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantKey {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<u32>,
}

/// `POST …/api-keys/{id}:rotate` input.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working (default: `key_rotation_grace_hours`).
    pub grace_seconds: Option<u64>,
}

fn key_event(
    ctx: &Ctx,
    scope: &TenantScope,
    event_type: &str,
    details: &serde_json::Value,
) -> EventEnvelope {
    EventEnvelope::v1(
        event_type,
        details["key_id"].as_str().unwrap_or_default().to_owned(),
        Some(scope.tenant_id()),
        Some(scope.edition().clone()),
        ctx.trace_id(),
        now(),
        details.clone(),
    )
}

/// The most entries a scope or role list may have (the catalogs are far smaller; duplicates are
/// folded).
const MAX_LIST: usize = 64;

/// Parses a list of catalog names: bounded, each name once (in the order first given).
fn catalog_list<T: std::str::FromStr + PartialEq>(
    field: &'static str,
    names: &[String],
    errors: &mut ValidationErrors,
) -> Vec<T>
where
    T::Err: std::fmt::Display,
{
    if names.len() > MAX_LIST {
        errors.push(field, format!("at most {MAX_LIST} entries"));
        return Vec::new();
    }
    let mut out: Vec<T> = Vec::new();
    for name in names {
        if let Some(v) = errors.check(field, name.parse::<T>())
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    out
}

/// Validates requested scopes and roles: known names, bounded lists stored without duplicates,
/// no operator role. Returns them and the first scope they would grant that the caller does not
/// hold (nobody grants more than they have: the caller gets `403 insufficient_scope` for it).
pub(crate) fn grantable(
    caller: &Principal,
    scopes: &[String],
    roles: &[String],
    errors: &mut ValidationErrors,
) -> (Vec<Scope>, Vec<Role>, Option<Scope>) {
    let nothing_asked = scopes.is_empty() && roles.is_empty();
    let scopes: Vec<Scope> = catalog_list("scopes", scopes, errors);
    let roles: Vec<Role> = catalog_list("roles", roles, errors);
    if roles.contains(&Role::Operator) {
        errors.push("roles", "a tenant key cannot have the operator role");
    }
    let beyond = ScopeSet::granted(&scopes, &roles)
        .iter()
        .find(|s| !caller.scopes.contains(*s));
    if nothing_asked {
        errors.push("scopes", "give at least one scope or role");
    }
    (scopes, roles, beyond)
}

fn new_key(
    kind: KeyKind,
    scope: &TenantScope,
    name: String,
    scopes: Vec<Scope>,
    roles: Vec<Role>,
) -> (ApiKeyRecord, String) {
    let secret = generate_key(kind);
    let lookup = PresentedKey::parse(&secret)
        .map(|p| p.lookup.to_owned())
        .unwrap_or_default();
    let record = ApiKeyRecord {
        id: ApiKeyId::new(),
        kind,
        lookup,
        secret_hash: hash_key(&secret),
        name,
        tenant_id: Some(scope.tenant_id()),
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        scopes,
        roles,
        rate_limit_per_minute: None,
        device_id: None,
        rotated_to: None,
        last_used_at: None,
    };
    (record, secret)
}

pub(crate) fn key_details(k: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "key_id": k.id,
        "prefix": k.lookup,
        "name": k.name,
        "kind": k.kind.as_str(),
        "scopes": k.scopes,
        "roles": k.roles,
        "expires_at": k.expires_at,
        "device_id": k.device_id,
    })
}

impl App {
    pub async fn create_tenant_key(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        caller: &Principal,
        input: NewTenantKey,
        idem: Idem<'_, IssuedKey>,
    ) -> AppResult<IssuedKey> {
        let mut errors = ValidationErrors::default();
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push("name", "must be 1 to 200 characters long");
        }
        if let Some(problem) = tenantry_domain::validation::name_problem(&name) {
            errors.push("name", problem);
        }
        let (scopes, roles, beyond) = grantable(caller, &input.scopes, &input.roles, &mut errors);
        if input.expires_at.is_some_and(|e| e <= now()) {
            errors.push("expires_at", "must be in the future");
        }
        if input.rate_limit_per_minute == Some(0) {
            errors.push("rate_limit_per_minute", "must be at least 1");
        }
        // a key's limit lowers its tenant's edition rate; it cannot raise it
        if let Some(rpm) = input.rate_limit_per_minute
            && let Some(edition) = self.store.editions().get(scope.edition()).await?
            && rpm > edition.limits.requests_per_minute
        {
            errors.push(
                "rate_limit_per_minute",
                format!(
                    "at most the {} edition's {} requests per minute (a key's limit can only lower it)",
                    edition.key, edition.limits.requests_per_minute
                ),
            );
        }
        errors.into_result()?;
        if let Some(s) = beyond {
            return Err(AppError::InsufficientScope(s));
        }
        let (mut record, secret) = new_key(KeyKind::TenantSecret, scope, name, scopes, roles);
        record.expires_at = input
            .expires_at
            .map(tenantry_domain::clock::to_stored_precision);
        record.rate_limit_per_minute = input.rate_limit_per_minute;
        let issued = IssuedKey { record, secret };
        let details = key_details(&issued.record);
        let audit = ctx.audit(
            "api_key.create",
            "api_key",
            issued.record.id.to_string(),
            Some(scope.tenant_id()),
            details.clone(),
        );
        let mut changes =
            Changes::new(audit, key_event(ctx, scope, "api_key.created.v1", &details));
        changes.idempotency = idem.map(|f| f(&issued));
        match self
            .store
            .access()
            .insert_tenant_key(scope, &issued.record, &changes)
            .await
        {
            Ok(()) => Ok(issued),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_tenant_keys(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> AppResult<Page<ApiKeyRecord>> {
        Ok(self.store.access().list_tenant_keys(scope, page).await?)
    }

    fn parse_key_id(raw: &str) -> AppResult<ApiKeyId> {
        raw.parse()
            .map_err(|_| AppError::KeyNotFound(raw.to_owned()))
    }

    pub async fn revoke_tenant_key(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        key_id: &str,
        idem: Option<IdempotencyRecord>,
    ) -> AppResult<()> {
        let id = Self::parse_key_id(key_id)?;
        let key = self
            .store
            .access()
            .get_tenant_key(scope, id)
            .await?
            .ok_or_else(|| AppError::KeyNotFound(key_id.to_owned()))?;
        let details = key_details(&key);
        let audit = ctx.audit(
            "api_key.revoke",
            "api_key",
            id.to_string(),
            Some(scope.tenant_id()),
            details.clone(),
        );
        let mut changes =
            Changes::new(audit, key_event(ctx, scope, "api_key.revoked.v1", &details));
        changes.idempotency = idem;
        match self
            .store
            .access()
            .revoke_tenant_key(scope, id, now(), &changes)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(AppError::KeyNotFound(key_id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn rotate_tenant_key(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        key_id: &str,
        input: RotateKey,
        idem: Idem<'_, IssuedKey>,
    ) -> AppResult<IssuedKey> {
        let id = Self::parse_key_id(key_id)?;
        let old = self
            .store
            .access()
            .get_tenant_key(scope, id)
            .await?
            .ok_or_else(|| AppError::KeyNotFound(key_id.to_owned()))?;
        if old.revoked_at.is_some()
            || old.rotated_to.is_some()
            || old.expires_at.is_some_and(|e| e <= now())
        {
            return Err(AppError::KeyNotRotatable(key_id.to_owned()));
        }
        let grace = match input.grace_seconds {
            Some(s) if s > 30 * 24 * 3600 => {
                return Err(
                    ValidationErrors::single("grace_seconds", "must be at most 30 days").into(),
                );
            }
            Some(s) => Duration::seconds(i64::try_from(s).unwrap_or(0)),
            None => self.settings.key_rotation_grace,
        };
        let (mut successor, secret) = new_key(
            old.kind,
            scope,
            old.name.clone(),
            old.scopes.clone(),
            old.roles.clone(),
        );
        successor.expires_at = old.expires_at;
        successor.rate_limit_per_minute = old.rate_limit_per_minute;
        successor.device_id = old.device_id.clone();
        let old_expires_at = now() + grace;
        let issued = IssuedKey {
            record: successor,
            secret,
        };
        let details = json!({ "key_id": old.id, "successor": key_details(&issued.record), "old_expires_at": old_expires_at });
        let audit = ctx.audit(
            "api_key.rotate",
            "api_key",
            old.id.to_string(),
            Some(scope.tenant_id()),
            details.clone(),
        );
        let mut changes =
            Changes::new(audit, key_event(ctx, scope, "api_key.rotated.v1", &details));
        changes.idempotency = idem.map(|f| f(&issued));
        match self
            .store
            .access()
            .rotate_tenant_key(scope, id, old_expires_at, &issued.record, &changes)
            .await
        {
            Ok(()) => Ok(issued),
            Err(StoreError::NotFound) => Err(AppError::KeyNotRotatable(key_id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }
}
