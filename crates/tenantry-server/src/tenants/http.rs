//! `/v1/tenants`: create, read, list, update, and lifecycle operations (operators only).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenantry_domain::{Scope, Tenant, TenantRef, TenantStatus};
use tenantry_store::{IdempotencyRecord, TenantFilter};

use crate::platform::AppError;
use crate::platform::TenantView;
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiJson, ApiQuery, Operator, PlatformOrTenantCtx, need};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};
use crate::tenants::{Lifecycle, NewTenant, TenantPatchIn};

pub fn register(api: Api) -> Api {
    api.add_queried(Method::GET, "/v1/tenants", Access::Operator, list)
        .doc(
            Doc::new("List tenants, oldest first")
                .page::<TenantView>()
                .query(&PAGING)
                .query(&[
                    QueryParam::string("status", "provisioning, active, suspended or deleted"),
                    QueryParam::string("edition", "an edition key"),
                ]),
        )
        .add(Method::POST, "/v1/tenants", Access::Operator, create)
        .doc(
            Doc::new("Create a tenant")
                .body::<crate::tenants::service::NewTenant>()
                .ok::<TenantView>(201),
        )
        .add(
            Method::GET,
            "/v1/tenants/{target}",
            Access::Tenant(Scope::TenantsRead),
            show,
        )
        .doc(Doc::new("Read a tenant (by id or slug)").ok::<TenantView>(200))
        .add(
            Method::PATCH,
            "/v1/tenants/{target}",
            Access::Operator,
            update,
        )
        .doc(
            Doc::new("Change a tenant (JSON merge patch; needs If-Match)")
                .body::<crate::tenants::service::TenantPatchIn>()
                .ok::<TenantView>(200),
        )
        .add(
            Method::DELETE,
            "/v1/tenants/{target}",
            Access::Operator,
            delete,
        )
        .doc(
            Doc::new("Delete a tenant (soft: restorable within the grace period)")
                .ok::<TenantView>(200),
        )
        .add(
            Method::POST,
            "/v1/tenants/{target}:suspend",
            Access::Operator,
            operation,
        )
        .doc(Doc::new("Suspend a tenant").ok::<TenantView>(200))
        .add(
            Method::POST,
            "/v1/tenants/{target}:resume",
            Access::Operator,
            operation,
        )
        .doc(Doc::new("Resume a suspended tenant").ok::<TenantView>(200))
        .add(
            Method::POST,
            "/v1/tenants/{target}:restore",
            Access::Operator,
            operation,
        )
        .doc(Doc::new("Restore a deleted tenant within its grace period").ok::<TenantView>(200))
}

fn tenant_reply(status: StatusCode, t: &Tenant) -> Reply {
    let mut headers = vec![(header::ETAG.to_string(), t.etag())];
    if status == StatusCode::CREATED {
        headers.push((
            header::LOCATION.to_string(),
            format!("/v1/tenants/{}", t.id),
        ));
    }
    Reply::json(status, headers, &TenantView::from(t))
}

pub(super) fn parse_ref(s: &str) -> Result<TenantRef, Problem> {
    TenantRef::parse(s).ok_or_else(|| {
        Problem::new(
            Kind::TenantNotFound,
            format!("no tenant '{s}': not an id or a slug"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<String>,
    edition: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _op: Operator,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let page = state
        .cursors
        .page_request("tenants", q.limit, q.cursor.as_deref())
        .await?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<TenantStatus>)
        .transpose()
        .map_err(|e| Problem::new(Kind::InvalidQuery, format!("status: {e}")))?;
    let edition = q
        .edition
        .as_deref()
        .map(tenantry_domain::EditionKey::parse)
        .transpose()
        .map_err(|e| Problem::new(Kind::InvalidQuery, format!("edition: {e}")))?;
    let page = state
        .app
        .list_tenants(&TenantFilter { status, edition }, page)
        .await?;
    Ok(axum::Json(
        state
            .cursors
            .seal("tenants", page.map(|t| TenantView::from(&t)))
            .await?,
    )
    .into_response())
}

async fn create(
    State(state): State<AppState>,
    op: Operator,
    headers: HeaderMap,
    body: ApiJson<NewTenant>,
) -> Result<Response, Problem> {
    let idem = match idempotency::prepare(
        &state,
        &op.principal,
        "POST",
        "/v1/tenants",
        &headers,
        &body.document,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |t: &Tenant| -> IdempotencyRecord {
        tenant_reply(StatusCode::CREATED, t)
            .record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&Tenant) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state.app.create_tenant(&op.ctx, body.value, builder).await;
    idempotency::finish(&state, idem.as_ref(), result, |t| {
        tenant_reply(StatusCode::CREATED, t)
    })
    .await
}

/// Operators read any tenant (deleted ones included: they restore them); a tenant credential with
/// `tenants:read` reads its own, and another tenant is, to it, no tenant at all (`404`).
async fn show(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::TenantsRead>,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    let wanted = parse_ref(&target)?;
    let t = match &j.tenant {
        None => state.app.get_tenant(&j.ctx, &wanted).await?,
        Some(own) => {
            let own = &own.access.tenant;
            let same = match &wanted {
                TenantRef::Id(id) => *id == own.id,
                TenantRef::Slug(s) => *s == own.slug,
            };
            if !same {
                return Err(AppError::TenantNotFound(target).into());
            }
            own.clone()
        }
    };
    Ok(tenant_reply(StatusCode::OK, &t).into_response())
}

async fn update(
    State(state): State<AppState>,
    op: Operator,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: ApiJson<TenantPatchIn>,
) -> Result<Response, Problem> {
    let if_match = crate::platform::http::extract::if_match(&headers)?;
    let t = state
        .app
        .update_tenant(&op.ctx, &parse_ref(&target)?, if_match, body.value)
        .await?;
    Ok(tenant_reply(StatusCode::OK, &t).into_response())
}

async fn delete(
    State(state): State<AppState>,
    op: Operator,
    Path(target): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    lifecycle(state, op, &target, Lifecycle::Delete, headers, "DELETE").await
}

/// `POST /v1/tenants/{id}:suspend|resume|restore` (custom methods in the AIP-136 style).
async fn operation(
    State(state): State<AppState>,
    op: Operator,
    Path(target): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    // a POST without a verb is a 405 whatever it carries; with one, it takes no body
    if target.contains(':') && crate::platform::http::extract::has_body(&headers) {
        return Err(Problem::new(
            Kind::BadRequest,
            format!("POST /v1/tenants/{target} takes no body; send none"),
        ));
    }
    let Some((id, verb)) = target.rsplit_once(':') else {
        return Err(Problem::new(
            Kind::MethodNotAllowed,
            format!("POST is not allowed on /v1/tenants/{target}; use POST /v1/tenants/{target}:suspend, :resume or :restore"),
        )
        .with_header(header::ALLOW, "GET, PATCH, DELETE"));
    };
    match Lifecycle::parse(verb) {
        Some(action @ (Lifecycle::Suspend | Lifecycle::Resume | Lifecycle::Restore)) => {
            lifecycle(state, op, id, action, headers, "POST").await
        }
        _ => Err(Problem::new(
            Kind::NotFound,
            format!("unknown tenant operation ':{verb}'; use :suspend, :resume or :restore"),
        )),
    }
}

async fn lifecycle(
    state: AppState,
    op: Operator,
    target: &str,
    action: Lifecycle,
    headers: HeaderMap,
    method: &str,
) -> Result<Response, Problem> {
    let r = parse_ref(target)?;
    let path = format!("/v1/tenants/{target}:{action:?}");
    let idem = match idempotency::prepare(
        &state,
        &op.principal,
        method,
        &path,
        &headers,
        &serde_json::Value::Null,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |t: &Tenant| -> IdempotencyRecord {
        tenant_reply(StatusCode::OK, t)
            .record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&Tenant) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let if_match = crate::platform::http::extract::if_match(&headers)?;
    let result = state
        .app
        .transition_tenant(&op.ctx, &r, action, if_match, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, |t| {
        tenant_reply(StatusCode::OK, t)
    })
    .await
}
