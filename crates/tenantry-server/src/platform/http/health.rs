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

/// Milliseconds, to a tenth.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Ready when the store is reachable and migrated. Each dependency is reported with its state
/// and how long it took to answer. An optional one that fails degrades the instance without
/// making it unready: rate limits shared through Redis fall back to each instance's own (the
/// circuit opens, and this probe closes it as soon as Redis answers again); a trace receiver
/// that fails its last export loses spans, nothing else.
async fn readyz(State(state): State<AppState>) -> Result<Response, Problem> {
    let store = state.app.store();
    let limits = match (state.limits_shared, state.limiter.probe().await) {
        (false, _) | (_, None) => {
            json!({ "status": "ok", "backend": state.limiter.backend(), "shared": false })
        }
        (true, Some(Ok(latency))) => json!({
            "status": "ok", "backend": "redis", "shared": true, "latency_ms": ms(latency),
            "circuit": "closed",
        }),
        (true, Some(Err(e))) => json!({
            "status": "degraded",
            "backend": state.limiter.backend(),
            "shared": false,
            "circuit": if state.limiter.circuit_open() == Some(true) { "open" } else { "closed" },
            "detail": format!("Redis is unreachable ({e}): each instance limits alone until it answers"),
        }),
    };
    let started = std::time::Instant::now();
    match store.check_ready().await {
        Ok(()) => {
            let store_latency = started.elapsed();
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
            // the trace exporter, when traces are exported: a failing receiver loses spans only
            let otlp = crate::observability::traces::readiness();
            let events = events_readiness(&state).await;
            let degraded = limits["status"] != "ok"
                || otlp.as_ref().is_some_and(|o| o["status"] != "ok")
                || events["status"] != "ok";
            let mut checks = json!({
                "store": { "status": "ok", "backend": store.backend().as_str(),
                           "latency_ms": ms(store_latency) },
                "rate_limits": limits,
                "scheduler": scheduler,
                "events": events,
            });
            if let Some(otlp) = otlp {
                checks["otlp"] = otlp;
            }
            Ok(axum::Json(json!({
                "status": if degraded { "degraded" } else { "ready" },
                "checks": checks,
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

/// The event bus and the relay: an unreachable bus degrades the instance (writes go on, the
/// outbox grows, and everything is published when the bus answers again).
async fn events_readiness(state: &AppState) -> serde_json::Value {
    let events = state.app.events();
    let relay = events.relay_status();
    let started = std::time::Instant::now();
    let bus = match events.bus().await {
        Ok(bus) => {
            match tokio::time::timeout(std::time::Duration::from_secs(1), bus.check()).await {
                Ok(Ok(())) => Ok(started.elapsed()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 1 s".to_owned()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    let mut v = json!({
        "status": "ok",
        "bus": events.bus_kind(),
        "relay": if relay.leading { "leading" } else { "standby" },
    });
    if relay.leading {
        v["backlog"] = json!(relay.backlog);
        v["published_position"] = json!(relay.published);
    }
    match bus {
        Ok(latency) => v["latency_ms"] = json!(ms(latency)),
        Err(e) => {
            v["status"] = json!("degraded");
            v["detail"] = json!(format!(
                "the event bus is unreachable ({e}): writes go on and events wait in the outbox until it answers"
            ));
        }
    }
    if let Some((error, at)) = relay.error {
        v["status"] = json!("degraded");
        v["relay_error"] = json!(error);
        v["relay_error_at"] = json!(at.to_rfc3339());
    }
    v
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
