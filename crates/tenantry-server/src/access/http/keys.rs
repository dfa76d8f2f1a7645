//! `/v1/tenants/{tenant}/api-keys`: a tenant's API keys — create, list, revoke, rotate.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::{Role, Scope};
use tenantry_store::{ApiKeyRecord, IdempotencyRecord};

use crate::access::keys::IssuedKey;
use crate::access::tenant_keys::{NewTenantKey, RotateKey};
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiJson, ApiQuery, TenantCtx, need, parse_json};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING};
use crate::platform::now;

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/tenants/{tenant}/api-keys",
        Access::Tenant(Scope::KeysManage),
        create,
    )
    .doc(
        Doc::new("Create a tenant API key (its secret is shown once)")
            .body::<crate::access::tenant_keys::NewTenantKey>()
            .ok::<IssuedView<'static>>(201),
    )
    .add_queried(
        Method::GET,
        "/v1/tenants/{tenant}/api-keys",
        Access::Tenant(Scope::KeysRead),
        list,
    )
    .doc(
        Doc::new("List the tenant's API keys (never their secrets)")
            .page::<KeyView>()
            .query(&PAGING),
    )
    .add(
        Method::DELETE,
        "/v1/tenants/{tenant}/api-keys/{key}",
        Access::Tenant(Scope::KeysManage),
        revoke,
    )
    .doc(Doc::new("Revoke an API key").no_content())
    .add(
        Method::POST,
        "/v1/tenants/{tenant}/api-keys/{key}:rotate",
        Access::Tenant(Scope::KeysManage),
        rotate,
    )
    .doc(
        Doc::new("Rotate an API key: a successor, the old secret valid for a grace period")
            .optional_body::<crate::access::tenant_keys::RotateKey>()
            .ok::<IssuedView<'static>>(201),
    )
}

/// A key as listed: never its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    id: String,
    kind: &'static str,
    name: String,
    /// The public start of the key, to recognise it.
    prefix: String,
    status: &'static str,
    #[schema(value_type = Vec<String>)]
    scopes: Vec<Scope>,
    #[schema(value_type = Vec<String>)]
    roles: Vec<Role>,
    rate_limit_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotated_to: Option<String>,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now()) {
            "expired"
        } else if k.rotated_to.is_some() {
            "rotating"
        } else {
            "active"
        };
        Self {
            id: k.id.to_string(),
            kind: k.kind.as_str(),
            name: k.name.clone(),
            prefix: k.lookup.clone(),
            status,
            scopes: k.scopes.clone(),
            roles: k.roles.clone(),
            rate_limit_per_minute: k.rate_limit_per_minute,
            device_id: k.device_id.clone(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            rotated_to: k.rotated_to.map(|id| id.to_string()),
        }
    }
}

/// A key just issued: the secret is in `key`, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct IssuedView<'a> {
    #[serde(flatten)]
    view: KeyView,
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

pub(super) const SECRET_NOT_REPLAYED: &str = "the secret is shown only once and is not stored; this is a replay of the original response — rotate the key if the secret was lost";

/// The response to a key creation, and its idempotency replay (the same, without the secret).
fn issued_reply(issued: &IssuedKey, tenant: &str, with_secret: bool) -> Reply {
    let view = IssuedView {
        view: KeyView::from(&issued.record),
        key: with_secret.then_some(issued.secret.as_str()),
        note: (!with_secret).then_some(SECRET_NOT_REPLAYED),
    };
    let location = format!("/v1/tenants/{tenant}/api-keys/{}", issued.record.id);
    Reply::json(
        StatusCode::CREATED,
        vec![(header::LOCATION.to_string(), location)],
        &view,
    )
}

async fn create(
    State(state): State<AppState>,
    t: TenantCtx<need::KeysManage>,
    headers: HeaderMap,
    body: ApiJson<NewTenantKey>,
) -> Result<Response, Problem> {
    let tenant = t.access.tenant.id.to_string();
    let path = format!("/v1/tenants/{tenant}/api-keys");
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
    let record = |k: &IssuedKey| -> IdempotencyRecord {
        issued_reply(k, &tenant, false)
            .record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&IssuedKey) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state
        .app
        .create_tenant_key(&t.ctx, t.scope(), &t.principal, body.value, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, |k| {
        issued_reply(k, &tenant, true)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    t: TenantCtx<need::KeysRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let list = format!("api-keys:{}", t.access.tenant.id);
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let keys = state.app.list_tenant_keys(t.scope(), page).await?;
    Ok(axum::Json(
        state
            .cursors
            .seal(&list, keys.map(|k| KeyView::from(&k)))
            .await?,
    )
    .into_response())
}

async fn revoke(
    State(state): State<AppState>,
    t: TenantCtx<need::KeysManage>,
    Path((_, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let path = format!("/v1/tenants/{}/api-keys/{key}", t.access.tenant.id);
    idempotency::delete(&state, &t.principal, &path, &headers, |record| async {
        state
            .app
            .revoke_tenant_key(&t.ctx, t.scope(), &key, record)
            .await
    })
    .await
}

async fn rotate(
    State(state): State<AppState>,
    t: TenantCtx<need::KeysManage>,
    Path((_, key_op)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let Some((key, "rotate")) = key_op.rsplit_once(':') else {
        return Err(Problem::new(
            Kind::NotFound,
            format!("no operation on '{key_op}'; use POST …/api-keys/{{id}}:rotate"),
        ));
    };
    // the body is optional: `{"grace_seconds": 3600}` or nothing
    let (input, document) = if body.iter().all(u8::is_ascii_whitespace) {
        (RotateKey::default(), serde_json::Value::Null)
    } else {
        let parsed = parse_json::<RotateKey>(&body)?;
        (parsed.value, parsed.document)
    };
    let tenant = t.access.tenant.id.to_string();
    let path = format!("/v1/tenants/{tenant}/api-keys/{key}:rotate");
    let idem = match idempotency::prepare(&state, &t.principal, "POST", &path, &headers, &document)
        .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |k: &IssuedKey| -> IdempotencyRecord {
        issued_reply(k, &tenant, false)
            .record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&IssuedKey) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state
        .app
        .rotate_tenant_key(&t.ctx, t.scope(), key, input, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, |k| {
        issued_reply(k, &tenant, true)
    })
    .await
}
