//! `/v1/schedules`: named cron or interval schedules that enqueue jobs.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry_domain::Scope;
use tenantry_store::schedules::ScheduleRecord;

use crate::jobs::schedules::ScheduleRequest;
use crate::platform::http::AppState;
use crate::platform::http::extract::PlatformOrTenantCtx;
use crate::platform::http::extract::{ApiJson, ApiQuery, NoParams, need};
use crate::platform::http::problem::Problem;
use crate::platform::http::routes::{Access, Api};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/schedules",
        Access::Tenant(Scope::JobsManage),
        put,
    )
    .add(
        Method::GET,
        "/v1/schedules",
        Access::Tenant(Scope::JobsRead),
        list,
    )
    .add(
        Method::GET,
        "/v1/schedules/{name}",
        Access::Tenant(Scope::JobsRead),
        show,
    )
    .add(
        Method::DELETE,
        "/v1/schedules/{name}",
        Access::Tenant(Scope::JobsManage),
        delete,
    )
}

#[derive(Serialize)]
struct ScheduleView {
    name: String,
    tenant_id: Option<String>,
    cron: Option<String>,
    interval_seconds: Option<u64>,
    kind: String,
    payload: Value,
    enabled: bool,
    next_fire_at: Option<DateTime<Utc>>,
    last_fired_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ScheduleRecord> for ScheduleView {
    fn from(s: ScheduleRecord) -> Self {
        Self {
            name: s.display_name().to_owned(),
            tenant_id: s.tenant_id.map(|t| t.to_string()),
            cron: s.cron,
            // intervals are whole seconds (the API and the CLI take seconds)
            interval_seconds: s.interval_ms.and_then(|ms| u64::try_from(ms / 1000).ok()),
            kind: s.kind,
            payload: s.payload,
            enabled: s.enabled,
            next_fire_at: if s.enabled { s.next_fire_at } else { None },
            last_fired_at: s.last_fired_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

async fn put(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsManage>,
    body: ApiJson<ScheduleRequest>,
) -> Result<Response, Problem> {
    let (record, created) = state
        .app
        .put_schedule(&j.ctx, j.access(), &state.jobs, body.value)
        .await?;
    let location = format!("/v1/schedules/{}", record.display_name());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, location)],
        axum::Json(ScheduleView::from(record)),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsRead>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Response, Problem> {
    let items: Vec<ScheduleView> = state
        .app
        .list_schedules(j.access())
        .await?
        .into_iter()
        .map(ScheduleView::from)
        .collect();
    let count = items.len();
    Ok(axum::Json(serde_json::json!({
        "items": items,
        "page_info": { "next_cursor": null, "has_next_page": false, "count": count },
    }))
    .into_response())
}

async fn show(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsRead>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let s = state.app.get_schedule(j.access(), &name).await?;
    Ok(axum::Json(ScheduleView::from(s)).into_response())
}

/// `?tenant=`: the tenant whose schedule an operator removes (it may be suspended or deleted).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    tenant: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsManage>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Response, Problem> {
    state
        .app
        .delete_schedule(&j.ctx, j.access(), &name, q.tenant.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
