//! The edge middleware every request passes: W3C trace context and request id (honoured and
//! echoed), a span carrying `trace_id` / `tenant_id`, the request-duration metric, one log line per
//! request, and the guarantee that every error leaves as Problem+JSON with `traceId`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use tracing::Instrument;

use crate::observability::traces;
use crate::platform::http::extract::RequestContext;
use crate::platform::http::problem::{self, Kind, Problem};

const REQUEST_ID: &str = "x-request-id";
const TRACEPARENT: &str = "traceparent";
/// Problem bodies are small; anything larger is not one of ours.
const MAX_PROBLEM_BODY: usize = 64 * 1024;

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

pub async fn edge(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    // the caller's trace context, read by OpenTelemetry's propagator (invalid: a new trace)
    let parent = traces::extract(req.headers());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    // the request's own method, for messages (the metric label folds unknown ones into OTHER)
    let method_named: String = req
        .method()
        .as_str()
        .chars()
        .filter(char::is_ascii_graphic)
        .take(20)
        .collect();
    let path = req.uri().path().to_owned();
    // the trace's server span, following the HTTP semantic conventions (named by method and
    // route template), continuing the caller's trace
    let server = traces::start(
        || format!("{method} {route}").into(),
        SpanKind::Server,
        || {
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route.clone()),
                KeyValue::new("url.path", path.clone()),
            ]
        },
        &parent,
    );
    let trace = server.trace;
    // the logs' span, with the same ids
    let span = tracing::info_span!(
        "http_request",
        http.request.method = method,
        http.route = %route,
        trace_id = %trace.trace_id_hex(),
        span_id = %trace.span_id_hex(),
        request_id = %request_id,
        tenant_id = tracing::field::Empty,
    );
    let ctx = RequestContext {
        trace,
        request_id: request_id.clone(),
        tenant: Arc::default(),
    };
    req.extensions_mut().insert(ctx.clone());
    let tenant_labels = req
        .extensions()
        .get::<crate::observability::TenantLabels>()
        .cloned();
    let mut resp = next
        .run(req)
        .with_context(server.cx.clone())
        .instrument(span.clone())
        .await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        resp = finish_problem(resp, &ctx, &path, &method_named).await;
    }
    if server.cx.has_active_span() {
        server.cx.span().set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if let Some(tenant) = ctx.tenant() {
            server
                .cx
                .span()
                .set_attribute(KeyValue::new("tenant.id", tenant.to_string()));
        }
        traces::end(&server.cx, !status.is_server_error());
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&traces::traceparent(&trace)) {
        headers.insert(TRACEPARENT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, v);
    }

    let elapsed = started.elapsed();
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route.clone(),
        "status" => status.as_u16().to_string(),
    )
    .record(elapsed.as_secs_f64());
    if let (Some(labels), Some(tenant)) = (&tenant_labels, ctx.tenant()) {
        let class = match status.as_u16() {
            500.. => "5xx",
            400..=499 => "4xx",
            _ => "2xx",
        };
        metrics::counter!("tenant_http_requests_total", "tenant" => labels.label(tenant), "class" => class)
            .increment(1);
    }
    let _enter = span.enter();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(http.status = status.as_u16(), duration_ms, "request failed");
    } else {
        tracing::info!(
            http.status = status.as_u16(),
            duration_ms,
            "request completed"
        );
    }
    resp
}

/// Makes an error response a complete problem: converts framework errors (unknown route, wrong
/// method, body too large…) and adds `traceId`, `tenantId` and `instance`.
async fn finish_problem(
    resp: Response,
    ctx: &RequestContext,
    path: &str,
    method: &str,
) -> Response {
    let (mut parts, body) = resp.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == problem::CONTENT_TYPE.as_bytes());
    let bytes = axum::body::to_bytes(body, MAX_PROBLEM_BODY)
        .await
        .unwrap_or_default();
    let mut doc: serde_json::Value = if is_problem {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}))
    } else {
        let kind = Kind::for_status(parts.status);
        let detail = match kind {
            Kind::NotFound => format!("no route for {method} {path}"),
            Kind::MethodNotAllowed => {
                let allow = parts
                    .headers
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .filter(|a| !a.is_empty());
                match allow {
                    Some(allow) => format!("{method} is not allowed on {path}; allowed: {allow}"),
                    // the router adds `Allow` after this layer has run
                    None => format!(
                        "{method} is not allowed on {path}; the Allow header lists the methods it takes"
                    ),
                }
            }
            Kind::PayloadTooLarge => {
                "the request body is larger than the server accepts".to_owned()
            }
            Kind::Internal => {
                "an internal error occurred; quote the traceId when reporting it".to_owned()
            }
            _ => String::from_utf8_lossy(&bytes).chars().take(500).collect(),
        };
        serde_json::to_value(Problem::new(kind, detail)).unwrap_or_default()
    };
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("traceId".into(), ctx.trace.trace_id_hex().into());
        obj.entry("instance").or_insert_with(|| path.into());
        if let Some(tenant) = ctx.tenant() {
            obj.insert("tenantId".into(), tenant.to_string().into());
        }
        if !obj.contains_key("status") {
            obj.insert("status".into(), parts.status.as_u16().into());
        }
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(problem::CONTENT_TYPE),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        Body::from(serde_json::to_vec(&doc).unwrap_or_default()),
    )
}

/// For `CatchPanicLayer`: a panic becomes an opaque 500 (the edge adds the trace id); the panic
/// message goes to the log only.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = msg, "handler panicked");
    let mut resp = Problem::new(
        Kind::Internal,
        "an internal error occurred; quote the traceId when reporting it",
    )
    .into_response();
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp
}
