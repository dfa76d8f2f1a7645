//! `GET /v1/audit`: the audit log, newest first, filtered by tenant, action and time. Operators
//! read the platform's log; a tenant credential with `audit:read`, its own tenant's.

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tenantry_domain::TenantRef;
use tenantry_store::AuditFilter;

use crate::access::scope::Deleted;
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiQuery, PlatformOrTenantCtx, need};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};

pub fn register(api: Api) -> Api {
    api.add_queried(
        Method::GET,
        "/v1/audit",
        Access::Tenant(tenantry_domain::Scope::AuditRead),
        list,
    )
    .doc(
        Doc::new("Audit records, newest first")
            .page::<serde_json::Value>()
            .query(&PAGING)
            .query(&[
                QueryParam::string("tenant", "operators: one tenant's records (id or slug)"),
                QueryParam::string("action", "e.g. tenant.create"),
                QueryParam::string("since", "RFC 3339"),
                QueryParam::string("until", "RFC 3339"),
            ]),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Tenant id or slug.
    tenant: Option<String>,
    action: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

async fn list(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::AuditRead>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, Problem> {
    let list = match &j.tenant {
        Some(t) => format!("audit:{}", t.access.tenant.id),
        None => "audit".to_owned(),
    };
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    if let Some(t) = &j.tenant {
        // a tenant's own log; naming another tenant in the query is naming it wrongly
        state
            .app
            .named_tenant(j.access(), q.tenant.as_deref(), Deleted::Allowed)
            .await?;
        let filter = AuditFilter {
            tenant_id: Some(t.access.tenant.id),
            action: q.action,
            since: q.since,
            until: q.until,
        };
        let records = state
            .app
            .list_tenant_audit(t.scope(), &filter, page)
            .await?;
        return Ok(axum::Json(state.cursors.seal(&list, records).await?).into_response());
    }
    let op = &j;
    let tenant_id = match q.tenant.as_deref() {
        None => None,
        Some(s) => match TenantRef::parse(s) {
            Some(TenantRef::Id(id)) => Some(id),
            Some(r @ TenantRef::Slug(_)) => Some(state.app.get_tenant(&op.ctx, &r).await?.id),
            None => {
                return Err(Problem::new(
                    Kind::InvalidQuery,
                    format!("tenant: '{s}' is not a tenant id or slug"),
                ));
            }
        },
    };
    let filter = AuditFilter {
        tenant_id,
        action: q.action,
        since: q.since,
        until: q.until,
    };
    let records = state.app.list_audit(&filter, page).await?;
    Ok(axum::Json(state.cursors.seal(&list, records).await?).into_response())
}
