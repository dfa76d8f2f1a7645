//! The HTTP API: one router per resource, the edge middleware, Problem+JSON errors.

mod audit;
mod edge;
mod editions;
pub mod extract;
mod health;
mod idempotency;
pub mod problem;
mod tenants;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::App;
use problem::{Kind, Problem};

#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub metrics: PrometheusHandle,
}

async fn not_found(method: Method, uri: Uri) -> Problem {
    Problem::new(
        Kind::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

/// The whole API with its middleware.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .merge(tenants::routes())
        .merge(editions::routes())
        .merge(audit::routes())
        .merge(health::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(CatchPanicLayer::custom(edge::panic_response))
        .layer(axum::middleware::from_fn(edge::edge))
        .with_state(state)
}
