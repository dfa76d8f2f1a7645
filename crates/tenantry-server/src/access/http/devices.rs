//! `/v1/devices`: a tenant's devices, each registered with a key of its own.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::Scope;
use tenantry_store::{DeviceRecord, IdempotencyRecord};

use crate::access::devices::{NewDevice, RegisteredDevice};
use crate::access::http::keys::SECRET_NOT_REPLAYED;
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiJson, ApiQuery, TenantCtx, need};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::Problem;
use crate::platform::http::routes::{Access, Api, Doc, PAGING};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/devices",
        Access::Tenant(Scope::DevicesManage),
        create,
    )
    .doc(
        Doc::new("Register a device (its key is shown once)")
            .body::<crate::access::devices::NewDevice>()
            .ok::<RegisteredView<'static>>(201),
    )
    .add_queried(
        Method::GET,
        "/v1/devices",
        Access::Tenant(Scope::DevicesRead),
        list,
    )
    .doc(
        Doc::new("List the tenant's devices")
            .page::<DeviceView>()
            .query(&PAGING),
    )
    .add(
        Method::GET,
        "/v1/devices/{device_id}",
        Access::Tenant(Scope::DevicesRead),
        show,
    )
    .doc(Doc::new("Read a device").ok::<DeviceView>(200))
    .add(
        Method::DELETE,
        "/v1/devices/{device_id}",
        Access::Tenant(Scope::DevicesManage),
        delete,
    )
    .doc(Doc::new("Delete a device (and revoke its key)").no_content())
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeviceView {
    device_id: String,
    name: Option<String>,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<&DeviceRecord> for DeviceView {
    fn from(d: &DeviceRecord) -> Self {
        Self {
            device_id: d.device_id.clone(),
            name: d.name.clone(),
            metadata: d.metadata.clone(),
            created_at: d.created_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct RegisteredView<'a> {
    #[serde(flatten)]
    device: DeviceView,
    key_id: String,
    key_prefix: &'a str,
    /// The device's key, shown this once.
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

fn registered_reply(r: &RegisteredDevice, with_secret: bool) -> Reply {
    let view = RegisteredView {
        device: DeviceView::from(&r.device),
        key_id: r.key.record.id.to_string(),
        key_prefix: &r.key.record.lookup,
        key: with_secret.then_some(r.key.secret.as_str()),
        note: (!with_secret).then_some(SECRET_NOT_REPLAYED),
    };
    let location = format!("/v1/devices/{}", r.device.device_id);
    Reply::json(
        StatusCode::CREATED,
        vec![(header::LOCATION.to_string(), location)],
        &view,
    )
}

async fn create(
    State(state): State<AppState>,
    t: TenantCtx<need::DevicesManage>,
    headers: HeaderMap,
    body: ApiJson<NewDevice>,
) -> Result<Response, Problem> {
    let path = format!("/v1/devices?tenant={}", t.access.tenant.id);
    let idem = match idempotency::prepare(
        &state,
        &t.principal,
        "POST",
        &path,
        &headers,
        &body.document,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |r: &RegisteredDevice| -> IdempotencyRecord {
        registered_reply(r, false).record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&RegisteredDevice) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state
        .app
        .register_device(&t.ctx, t.scope(), body.value, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, |r| registered_reply(r, true)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    t: TenantCtx<need::DevicesRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let list = format!("devices:{}", t.access.tenant.id);
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let devices = state.app.list_devices(t.scope(), page).await?;
    Ok(axum::Json(
        state
            .cursors
            .seal(&list, devices.map(|d| DeviceView::from(&d)))
            .await?,
    )
    .into_response())
}

async fn show(
    State(state): State<AppState>,
    t: TenantCtx<need::DevicesRead>,
    Path(device_id): Path<String>,
) -> Result<Response, Problem> {
    let d = state.app.get_device(t.scope(), &device_id).await?;
    Ok(axum::Json(DeviceView::from(&d)).into_response())
}

async fn delete(
    State(state): State<AppState>,
    t: TenantCtx<need::DevicesManage>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let path = format!("/v1/devices/{device_id}?tenant={}", t.access.tenant.id);
    idempotency::delete(&state, &t.principal, &path, &headers, |record| async {
        state
            .app
            .delete_device(&t.ctx, t.scope(), &device_id, record)
            .await
    })
    .await
}
