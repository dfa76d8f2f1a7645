//! `GET /v1/whoami`: what the presented credential is, and the tenant it resolves to. Useful to
//! check a key; also the route the auth benchmark measures (authentication, tenant resolution and
//! rate limiting, and no other work).

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tenantry_domain::Scope;

use crate::platform::http::extract::{TenantCtx, need};
use crate::platform::http::problem::Problem;
use crate::platform::http::routes::{Access, Api, Doc};

pub fn register(api: Api) -> Api {
    api.add(
        Method::GET,
        "/v1/whoami",
        Access::Tenant(Scope::TenantsRead),
        whoami,
    )
    .doc(Doc::new("The calling credential and its tenant"))
}

async fn whoami(t: TenantCtx<need::TenantsRead>) -> Result<Response, Problem> {
    let p = &t.principal;
    Ok(axum::Json(json!({
        "credential": p.credential,
        "subject": p.subject,
        "device_id": p.device_id,
        "scopes": p.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "tenant": {
            "id": t.access.tenant.id,
            "slug": t.access.tenant.slug,
            "status": t.access.tenant.status,
            "edition": t.access.tenant.edition,
        },
    }))
    .into_response())
}
