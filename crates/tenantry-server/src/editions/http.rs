//! `/v1/editions`: the catalog of editions and their limits.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tenantry_domain::{Edition, Scope};
use tenantry_store::IdempotencyRecord;

use crate::editions::service::NewEdition;
use crate::platform::EditionView;
use crate::platform::http::AppState;
use crate::platform::http::extract::{
    ApiJson, ApiQuery, NoParams, Operator, PlatformOrTenantCtx, need,
};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::Problem;
use crate::platform::http::routes::{Access, Api, Doc};

pub fn register(api: Api) -> Api {
    api.add(
        Method::GET,
        "/v1/editions",
        Access::Tenant(Scope::EditionsRead),
        list,
    )
    .doc(Doc::new("The editions catalog").page::<crate::platform::views::EditionView>())
    .add(Method::POST, "/v1/editions", Access::Operator, create)
    .doc(
        Doc::new("Create a custom edition")
            .body::<crate::editions::service::NewEdition>()
            .ok::<crate::platform::views::EditionView>(201),
    )
    .add(
        Method::GET,
        "/v1/editions/{key}",
        Access::Tenant(Scope::EditionsRead),
        show,
    )
    .doc(Doc::new("Read an edition").ok::<crate::platform::views::EditionView>(200))
}

fn edition_reply(status: StatusCode, e: &Edition) -> Reply {
    let mut headers = Vec::new();
    if status == StatusCode::CREATED {
        headers.push((
            header::LOCATION.to_string(),
            format!("/v1/editions/{}", e.key),
        ));
    }
    Reply::json(status, headers, &EditionView::from(e))
}

/// The catalog: operators, and tenant credentials with `editions:read` (it is the same for every
/// tenant; naming another tenant is refused like on any tenant route).
async fn list(
    State(state): State<AppState>,
    _caller: PlatformOrTenantCtx<need::EditionsRead>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Response, Problem> {
    let items: Vec<EditionView> = state
        .app
        .list_editions()
        .await?
        .iter()
        .map(EditionView::from)
        .collect();
    let count = items.len();
    Ok(axum::Json(json!({ "items": items, "page_info": { "next_cursor": null, "has_next_page": false, "count": count } }))
        .into_response())
}

async fn show(
    State(state): State<AppState>,
    _caller: PlatformOrTenantCtx<need::EditionsRead>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let e = state.app.get_edition(&key).await?;
    Ok(edition_reply(StatusCode::OK, &e).into_response())
}

async fn create(
    State(state): State<AppState>,
    op: Operator,
    headers: HeaderMap,
    body: ApiJson<NewEdition>,
) -> Result<Response, Problem> {
    let idem = match idempotency::prepare(
        &state,
        &op.principal,
        "POST",
        "/v1/editions",
        &headers,
        &body.document,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |e: &Edition| -> IdempotencyRecord {
        edition_reply(StatusCode::CREATED, e)
            .record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&Edition) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state.app.create_edition(&op.ctx, body.value, builder).await;
    idempotency::finish(&state, idem.as_ref(), result, |e| {
        edition_reply(StatusCode::CREATED, e)
    })
    .await
}
