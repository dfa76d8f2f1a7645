//! Devices: registered per tenant, each with its own key that speaks only for it.

use serde::Deserialize;
use serde_json::json;
use tenantry_domain::api_key::{KeyKind, PresentedKey};
use tenantry_domain::telemetry::valid_device_id;
use tenantry_domain::{
    ApiKeyId, EventEnvelope, Page, PageRequest, Scope, TenantScope, ValidationErrors,
};
use tenantry_store::{
    ApiKeyRecord, Changes, Constraint, DeviceRecord, IdempotencyRecord, StoreError,
};

use crate::access::keys::{IssuedKey, generate_key, hash_key};
use crate::platform::{App, AppError, AppResult, Ctx, Idem, now};

/// `POST /v1/devices` input.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub device_id: String,
    pub name: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// A device that was just registered, with its key (shown once).
#[derive(Debug)]
pub struct RegisteredDevice {
    pub device: DeviceRecord,
    pub key: IssuedKey,
}

pub(crate) fn device_event(
    ctx: &Ctx,
    scope: &TenantScope,
    event_type: &str,
    d: &DeviceRecord,
) -> EventEnvelope {
    EventEnvelope::v1(
        event_type,
        d.device_id.clone(),
        Some(scope.tenant_id()),
        Some(scope.edition().clone()),
        ctx.trace_id(),
        now(),
        json!({ "device_id": d.device_id, "name": d.name }),
    )
}

impl App {
    pub async fn register_device(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        input: NewDevice,
        idem: Idem<'_, RegisteredDevice>,
    ) -> AppResult<RegisteredDevice> {
        let mut errors = ValidationErrors::default();
        if !valid_device_id(&input.device_id) {
            errors.push(
                "device_id",
                "must be 1 to 128 characters of A-Z, a-z, 0-9 and . _ : -",
            );
        }
        if input
            .name
            .as_ref()
            .is_some_and(|n| n.chars().count() > 200 || n.trim().is_empty())
        {
            errors.push("name", "must be 1 to 200 characters long");
        }
        if let Some(problem) = input
            .name
            .as_deref()
            .and_then(tenantry_domain::validation::name_problem)
        {
            errors.push("name", problem);
        }
        let metadata = input.metadata.unwrap_or_else(|| json!({}));
        if metadata.is_object() {
            crate::platform::check_document(&mut errors, "metadata", &metadata);
        } else {
            errors.push("metadata", "must be a JSON object");
        }
        errors.into_result()?;
        let device = DeviceRecord {
            id: uuid::Uuid::now_v7(),
            tenant_id: scope.tenant_id(),
            device_id: input.device_id,
            name: input.name.map(|n| n.trim().to_owned()),
            metadata,
            created_at: now(),
        };
        let secret = generate_key(KeyKind::Device);
        let record = ApiKeyRecord {
            id: ApiKeyId::new(),
            kind: KeyKind::Device,
            lookup: PresentedKey::parse(&secret)
                .map(|p| p.lookup.to_owned())
                .unwrap_or_default(),
            secret_hash: hash_key(&secret),
            name: format!("device {}", device.device_id),
            tenant_id: Some(scope.tenant_id()),
            created_at: device.created_at,
            expires_at: None,
            revoked_at: None,
            scopes: vec![Scope::TelemetryWrite],
            roles: Vec::new(),
            rate_limit_per_minute: None,
            device_id: Some(device.device_id.clone()),
            rotated_to: None,
            last_used_at: None,
        };
        let registered = RegisteredDevice {
            device,
            key: IssuedKey { record, secret },
        };
        let details = json!({ "device_id": registered.device.device_id, "key_id": registered.key.record.id, "prefix": registered.key.record.lookup });
        let audit = ctx.audit(
            "device.create",
            "device",
            registered.device.device_id.clone(),
            Some(scope.tenant_id()),
            details,
        );
        let mut changes = Changes::new(
            audit,
            device_event(ctx, scope, "device.created.v1", &registered.device),
        );
        changes.idempotency = idem.map(|f| f(&registered));
        match self
            .store
            .access()
            .insert_device(scope, &registered.device, &registered.key.record, &changes)
            .await
        {
            Ok(()) => Ok(registered),
            Err(StoreError::Duplicate(Constraint::DeviceId)) => {
                Err(AppError::DeviceExists(registered.device.device_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_devices(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> AppResult<Page<DeviceRecord>> {
        Ok(self.store.access().list_devices(scope, page).await?)
    }

    pub async fn get_device(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> AppResult<DeviceRecord> {
        self.store
            .access()
            .get_device(scope, device_id)
            .await?
            .ok_or_else(|| AppError::DeviceNotFound(device_id.to_owned()))
    }

    pub async fn delete_device(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        device_id: &str,
        idem: Option<IdempotencyRecord>,
    ) -> AppResult<()> {
        let device = self.get_device(scope, device_id).await?;
        let audit = ctx.audit(
            "device.delete",
            "device",
            device.device_id.clone(),
            Some(scope.tenant_id()),
            json!({ "device_id": device.device_id }),
        );
        let mut changes = Changes::new(
            audit,
            device_event(ctx, scope, "device.deleted.v1", &device),
        );
        changes.idempotency = idem;
        match self
            .store
            .access()
            .delete_device(scope, device_id, now(), &changes)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(AppError::DeviceNotFound(device_id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }
}
