//! `/healthz` (the process is up), `/readyz` (the store is reachable and migrated), `/metrics`
//! (Prometheus text format).

use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::platform::http::AppState;
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc};

pub fn register(api: Api) -> Api {
    api.add(Method::GET, "/healthz", Access::Public, healthz)
        .doc(Doc::new("Liveness: the process is up"))
        .add(Method::GET, "/readyz", Access::Public, readyz)
        .doc(Doc::new(
            "Readiness: the store is reachable and migrated; the optional backends' state",
        ))
        .add(Method::GET, "/metrics", Access::Public, metrics)
        .doc(Doc::new("Prometheus metrics (text format)").content_type("text/plain"))
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready when the store is reachable and migrated. The optional backends are reported too: rate
/// limits shared through Redis, or each instance's own (a Redis outage degrades them to the
/// instance's own limits, which keeps the instance serving, so it stays ready).
async fn readyz(State(state): State<AppState>) -> Result<Response, Problem> {
    let store = state.app.store();
    let limits = match (state.limits_shared, state.limiter.backend()) {
        (false, backend) => json!({ "status": "ok", "backend": backend, "shared": false }),
        (true, "redis") => json!({ "status": "ok", "backend": "redis", "shared": true }),
        (true, backend) => json!({
            "status": "degraded",
            "backend": backend,
            "shared": false,
            "detail": "Redis is unreachable: each instance limits alone until it answers",
        }),
    };
    match store.check_ready().await {
        Ok(()) => {
            // schedules fire only while some process holds the scheduler lease
            let scheduler = match store
                .leases()
                .holder("scheduler", crate::platform::now())
                .await
            {
                Ok(Some(leader)) => json!({ "status": "ok", "leader": leader }),
                Ok(None) => json!({
                    "status": "none",
                    "detail": "no process holds the scheduler lease: schedules do not fire (run a process with the scheduler role)",
                }),
                Err(e) => json!({ "status": "unknown", "detail": e.to_string() }),
            };
            Ok(axum::Json(json!({
                "status": "ready",
                "checks": {
                    "store": { "status": "ok", "backend": store.backend().as_str() },
                    "rate_limits": limits,
                    "scheduler": scheduler,
                }
            }))
            .into_response())
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(Problem::new(
                Kind::ServiceUnavailable,
                format!("store ({}): {e}", store.backend().as_str()),
            ))
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
