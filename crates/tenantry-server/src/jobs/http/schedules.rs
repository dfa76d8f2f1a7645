//! `/v1/schedules`: named cron or interval schedules that enqueue jobs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry_domain::Scope;
use tenantry_store::IdempotencyRecord;
use tenantry_store::schedules::ScheduleRecord;

use crate::jobs::schedules::ScheduleRequest;
use crate::platform::http::AppState;
use crate::platform::http::extract::PlatformOrTenantCtx;
use crate::platform::http::extract::{ApiJson, ApiQuery, NoParams, need};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::Problem;
use crate::platform::http::routes::{Access, Api, Doc, QueryParam};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/schedules",
        Access::Tenant(Scope::JobsManage),
        put,
    )
    .doc(
        Doc::new("Create or replace a schedule")
            .body::<crate::jobs::schedules::ScheduleRequest>()
            .ok::<ScheduleView>(201)
            .also(200),
    )
    .add(
        Method::GET,
        "/v1/schedules",
        Access::Tenant(Scope::JobsRead),
        list,
    )
    .doc(Doc::new("List schedules").page::<ScheduleView>())
    .add(
        Method::GET,
        "/v1/schedules/{name}",
        Access::Tenant(Scope::JobsRead),
        show,
    )
    .doc(Doc::new("Read a schedule").ok::<ScheduleView>(200))
    .add_queried(
        Method::DELETE,
        "/v1/schedules/{name}",
        Access::Tenant(Scope::JobsManage),
        delete,
    )
    .doc(
        Doc::new("Delete a schedule")
            .no_content()
            .query(&[QueryParam::string(
                "tenant",
                "operators: whose schedule (id or slug)",
            )]),
    )
}

#[derive(Serialize, utoipa::ToSchema)]
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
    headers: HeaderMap,
    body: ApiJson<ScheduleRequest>,
) -> Result<Response, Problem> {
    let idem = match idempotency::prepare(
        &state,
        &j.principal,
        "POST",
        "/v1/schedules",
        &headers,
        &body.document,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let reply = |(record, created): &(ScheduleRecord, bool)| {
        let status = if *created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let location = format!("/v1/schedules/{}", record.display_name());
        Reply::json(
            status,
            vec![(header::LOCATION.to_string(), location)],
            &ScheduleView::from(record.clone()),
        )
    };
    let record = |answer: &(ScheduleRecord, bool)| -> IdempotencyRecord {
        reply(answer).record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: crate::platform::Idem<'_, (ScheduleRecord, bool)> =
        idem.as_ref().map(|_| &record as _);
    let result = state
        .app
        .put_schedule(&j.ctx, j.access(), &state.jobs, body.value, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, reply).await
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
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let path = format!(
        "/v1/schedules/{name}?tenant={}",
        q.tenant.as_deref().unwrap_or_default()
    );
    idempotency::delete(&state, &j.principal, &path, &headers, |record| async {
        state
            .app
            .delete_schedule(&j.ctx, j.access(), &name, q.tenant.as_deref(), record)
            .await
    })
    .await
}
