//! The HTTP plumbing every capability's routes share: the router and its middleware (the edge:
//! traces, logs, metrics, Problem+JSON for every error), extractors, idempotency, the route table.

pub mod cursor;
pub mod edge;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod serve;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::platform::App;
use problem::{Kind, Problem};

#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub metrics: PrometheusHandle,
    /// Subdomains of this host name tenants (`None`: subdomain resolution off).
    pub tenant_base_host: Option<std::sync::Arc<str>>,
    pub limiter: std::sync::Arc<dyn tenantry_limiter::RateLimiter>,
    /// Whether rate limits are meant to be shared through Redis (`[limits] redis_url`).
    pub limits_shared: bool,
    /// Origins allowed to call the API from a browser (`cors_allowed_origins`; empty: no CORS).
    pub cors_origins: std::sync::Arc<[axum::http::HeaderValue]>,
    pub limits: std::sync::Arc<crate::access::limits::LimitPolicy>,
    pub tokens: std::sync::Arc<crate::access::tokens::TokenVerifier>,
    /// Seals and opens pagination cursors.
    pub cursors: cursor::Cursors,
    /// The job kinds this process knows (enqueue validates against it).
    pub jobs: std::sync::Arc<crate::jobs::workers::Registry>,
    /// The tenants whose metrics carry their id (`tenant_metrics`).
    pub tenant_labels: crate::observability::TenantLabels,
}

async fn not_found(method: Method, uri: Uri) -> Problem {
    Problem::new(
        Kind::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

/// The whole API with its middleware.
/// CORS for browser apps on other origins: off unless origins are configured (`cors_allowed_origins`).
/// Preflight requests are answered here, before authentication; the request headers the API reads
/// are allowed and the response headers it sets are exposed.
pub fn cors(origins: &[axum::http::HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let h = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                h("idempotency-key"),
                h("x-tenant-id"),
                h("x-request-id"),
                h("traceparent"),
                h("tracestate"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                h("ratelimit-limit"),
                h("ratelimit-remaining"),
                h("ratelimit-reset"),
                h("idempotent-replayed"),
                h("x-request-id"),
                h("traceparent"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

pub fn router(state: AppState, body_limit: usize) -> Router {
    let cors = cors(&state.cors_origins);
    let limited = routes::api()
        .into_router()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::access::http::limits::enforce,
        ));
    let labels = axum::Extension(state.tenant_labels.clone());
    let api = with_edge(limited, body_limit)
        .layer(labels)
        .with_state(state);
    // `/t/{tenant}/…` is rewritten before routing, so it works for every route.
    let prefixed = tower::Layer::layer(
        &axum::middleware::from_fn(extract::strip_tenant_prefix),
        api,
    );
    let router = Router::new()
        .fallback_service(prefixed)
        .layer(axum::middleware::from_fn(routes::allow_from_the_table));
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// Only `/healthz`, `/readyz` and `/metrics`: processes without the `api` role.
pub fn ops_router(state: AppState) -> Router {
    let ops = health::register(routes::Api::new()).into_router();
    with_edge(ops, 1024).with_state(state)
}

/// The middleware every route gets: body limits, panics as problems, and the edge (trace, logs,
/// metrics, Problem+JSON for every error).
fn with_edge<S: Clone + Send + Sync + 'static>(routes: Router<S>, body_limit: usize) -> Router<S> {
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(axum::middleware::from_fn(extract::refuse_nul_in_uri))
        .layer(CatchPanicLayer::custom(edge::panic_response))
        .layer(axum::middleware::from_fn(edge::edge))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panic_is_an_opaque_500_problem_with_a_trace_id() {
        async fn boom() -> &'static str {
            panic!("secret internal detail")
        }
        let app = super::with_edge(axum::Router::new().route("/boom", get(boom)), 1024);
        let resp = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(p["type"], "urn:tenantry:problem:internal");
        assert_eq!(p["traceId"].as_str().map(str::len), Some(32));
        assert!(!p.to_string().contains("secret internal detail"), "{p}");
    }
}
