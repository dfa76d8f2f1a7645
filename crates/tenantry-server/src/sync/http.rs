//! `/v1/sources` (a tenant's sources, their runs and quarantined items) and `/v1/records` (what
//! the sources brought).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::Scope;
use tenantry_store::IdempotencyRecord;

use super::service::{QuarantineView, RecordView, RunView, SourceInput, SourceView};
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiJson, ApiQuery, NoParams, TenantCtx, need};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::Problem;
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/sources",
        Access::Tenant(Scope::SourcesManage),
        create,
    )
    .doc(
        Doc::new("Create a source (its header values are sealed and never shown again)")
            .body::<SourceInput>()
            .ok::<SourceView>(201),
    )
    .add_queried(
        Method::GET,
        "/v1/sources",
        Access::Tenant(Scope::SourcesRead),
        list,
    )
    .doc(Doc::new("List the tenant's sources, by name").ok::<SourceList>(200))
    .add(
        Method::GET,
        "/v1/sources/{source}",
        Access::Tenant(Scope::SourcesRead),
        show,
    )
    .doc(Doc::new("Read a source, with its latest run").ok::<SourceView>(200))
    .add(
        Method::PATCH,
        "/v1/sources/{source}",
        Access::Tenant(Scope::SourcesManage),
        patch,
    )
    .doc(
        Doc::new("Change a source (JSON merge patch; `config.headers.X: null` removes a header)")
            .body::<serde_json::Value>()
            .ok::<SourceView>(200),
    )
    .add(
        Method::DELETE,
        "/v1/sources/{source}",
        Access::Tenant(Scope::SourcesManage),
        delete,
    )
    .doc(Doc::new("Delete a source with its schedule, runs and records").no_content())
    .add(
        Method::POST,
        "/v1/sources/{source}:run",
        Access::Tenant(Scope::SourcesManage),
        run,
    )
    .doc(
        Doc::new(
            "Run a source now (202); while one of its runs is pending or running, that run (200)",
        )
        .ok::<RunView>(202)
        .also(200)
        .idempotent_by_itself(),
    )
    .add_queried(
        Method::GET,
        "/v1/sources/{source}/runs",
        Access::Tenant(Scope::SourcesRead),
        runs,
    )
    .doc(
        Doc::new("A source's runs, newest first")
            .page::<RunView>()
            .query(&PAGING),
    )
    .add_queried(
        Method::GET,
        "/v1/sources/{source}/quarantine",
        Access::Tenant(Scope::SourcesRead),
        quarantine,
    )
    .doc(
        Doc::new("Items of a source that could not be read, oldest first")
            .page::<QuarantineView>()
            .query(&PAGING),
    )
    .add_queried(
        Method::GET,
        "/v1/records",
        Access::Tenant(Scope::SourcesRead),
        records,
    )
    .doc(
        Doc::new("Records the tenant's sources brought, in the order first seen")
            .page::<RecordView>()
            .query(&PAGING)
            .query(&[
                QueryParam::string("source", "one source's records (its id)"),
                QueryParam::string("type", "one record type"),
                QueryParam::string(
                    "changed_since",
                    "RFC 3339: records created, changed or removed after this time",
                ),
            ]),
    )
}

#[derive(Serialize, utoipa::ToSchema)]
struct SourceList {
    items: Vec<SourceView>,
}

fn etag_of(v: &SourceView) -> String {
    format!("\"{}\"", v.updated_at.timestamp_micros())
}

fn source_reply(status: StatusCode, v: &SourceView) -> Reply {
    let mut headers = vec![(header::ETAG.to_string(), etag_of(v))];
    if status == StatusCode::CREATED {
        headers.push((
            header::LOCATION.to_string(),
            format!("/v1/sources/{}", v.id),
        ));
    }
    Reply::json(status, headers, v)
}

async fn create(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesManage>,
    headers: HeaderMap,
    body: ApiJson<SourceInput>,
) -> Result<Response, Problem> {
    let path = format!("/v1/sources?tenant={}", t.access.tenant.id);
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
    let record = |v: &SourceView| -> IdempotencyRecord {
        source_reply(StatusCode::CREATED, v)
            .record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&SourceView) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state
        .app
        .create_source(&t.ctx, t.scope(), body.value, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, |v| {
        source_reply(StatusCode::CREATED, v)
    })
    .await
}

async fn list(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesRead>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Response, Problem> {
    let items = state.app.list_sources(t.scope()).await?;
    Ok(axum::Json(SourceList { items }).into_response())
}

async fn show(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesRead>,
    Path(source): Path<String>,
) -> Result<Response, Problem> {
    let v = state.app.get_source(t.scope(), &source).await?;
    Ok(source_reply(StatusCode::OK, &v).into_response())
}

async fn patch(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesManage>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: ApiJson<serde_json::Value>,
) -> Result<Response, Problem> {
    let if_match = crate::platform::http::extract::if_match(&headers)?;
    let v = state
        .app
        .patch_source(&t.ctx, t.scope(), &source, if_match, body.value)
        .await?;
    Ok(source_reply(StatusCode::OK, &v).into_response())
}

async fn delete(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesManage>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let path = format!("/v1/sources/{source}?tenant={}", t.access.tenant.id);
    idempotency::delete(&state, &t.principal, &path, &headers, |record| async {
        state
            .app
            .delete_source(&t.ctx, t.scope(), &source, record)
            .await
    })
    .await
}

async fn run(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesManage>,
    Path(source): Path<String>,
    headers: HeaderMap,
    _: crate::platform::http::extract::NoBody,
) -> Result<Response, Problem> {
    // a retry is safe as it is: while the run it queued is pending or running, it names that run
    if headers.contains_key(idempotency::HEADER) {
        return Err(Problem::new(
            crate::platform::http::problem::Kind::InvalidHeader,
            "POST /v1/sources/{id}:run does not take an Idempotency-Key: retrying it is safe as it is (while a run of the source is pending or running, it answers that run)",
        ));
    }
    let Some(id) = source.strip_suffix(":run") else {
        return Err(Problem::new(
            crate::platform::http::problem::Kind::NotFound,
            format!("no operation on '{source}'; use POST /v1/sources/{{id}}:run"),
        ));
    };
    let r = state.app.run_source(&t.ctx, t.scope(), id).await?;
    let status = if r.queued {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(r.run)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn runs(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesRead>,
    Path(source): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, Problem> {
    let list = format!("source-runs:{}:{source}", t.access.tenant.id);
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let runs = state.app.list_runs(t.scope(), &source, page).await?;
    Ok(axum::Json(state.cursors.seal(&list, runs).await?).into_response())
}

async fn quarantine(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesRead>,
    Path(source): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, Problem> {
    let list = format!("source-quarantine:{}:{source}", t.access.tenant.id);
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let items = state.app.list_quarantine(t.scope(), &source, page).await?;
    Ok(axum::Json(state.cursors.seal(&list, items).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    record_type: Option<String>,
    changed_since: Option<DateTime<Utc>>,
}

async fn records(
    State(state): State<AppState>,
    t: TenantCtx<need::SourcesRead>,
    ApiQuery(q): ApiQuery<RecordQuery>,
) -> Result<Response, Problem> {
    // the cursor is bound to the filter: a cursor of one filter is refused by another
    let list = format!(
        "records:{}:{}:{}:{}",
        t.access.tenant.id,
        q.source.as_deref().unwrap_or(""),
        q.record_type.as_deref().unwrap_or(""),
        q.changed_since.map(|t| t.to_rfc3339()).unwrap_or_default()
    );
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let records = state
        .app
        .list_records(
            t.scope(),
            q.source.as_deref(),
            q.record_type,
            q.changed_since,
            page,
        )
        .await?;
    Ok(axum::Json(state.cursors.seal(&list, records).await?).into_response())
}
