//! Rate limiting at the edge: every authenticated request is checked against its key, tenant and
//! global buckets before the handler runs. Answers carry `RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset` (and the `X-RateLimit-*` equivalents) for the binding bucket; a refusal is
//! `429 rate_limited` with `Retry-After`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tenantry_limiter::Check;

use crate::platform::http::AppState;
use crate::platform::http::extract::Caller;
use crate::platform::http::problem::{Kind, Problem};

fn seconds_ceil(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

fn set_headers(headers: &mut HeaderMap, limit: u64, remaining: u64, reset_s: u64) {
    for (names, value) in [
        (["ratelimit-limit", "x-ratelimit-limit"], limit),
        (["ratelimit-remaining", "x-ratelimit-remaining"], remaining),
        (["ratelimit-reset", "x-ratelimit-reset"], reset_s),
    ] {
        for name in names {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = Caller::from_request_parts(&mut parts, &state).await;
    let req = Request::from_parts(parts, body);
    // an invalid credential is the handler's to answer (401); nothing to count
    let Ok(caller) = caller else {
        return next.run(req).await;
    };
    let checks = match state.limits.checks(&state.app, &caller.principal).await {
        Ok(c) if c.is_empty() => return next.run(req).await,
        Ok(c) => c,
        Err(e) => return Problem::from(e).into_response(),
    };
    let plain: Vec<Check> = checks.iter().map(|(_, c)| c.clone()).collect();
    let verdict = match state.limiter.check(&plain).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "rate limiter failed; request let through");
            return next.run(req).await;
        }
    };
    let Some((i, decision)) = verdict.binding() else {
        return next.run(req).await;
    };
    let (bucket, check) = &checks[i];
    let limit = check.limit;
    let (remaining, reset_s) = (decision.remaining, seconds_ceil(decision.reset_after_us));
    if !verdict.allowed {
        if let Some(t) = caller.principal.tenant {
            caller.ctx.note_tenant(t);
        }
        metrics::counter!("rate_limited_total", "bucket" => bucket.as_str()).increment(1);
        let retry = seconds_ceil(decision.retry_after_us).max(1);
        let detail = format!(
            "the {} limit ({} requests per minute, burst {}) is exhausted; retry in {retry} s",
            bucket.as_str(),
            limit.rate,
            limit.burst
        );
        let mut resp = Problem::new(Kind::RateLimited, detail)
            .with_header(header::RETRY_AFTER, &retry.to_string())
            .into_response();
        set_headers(resp.headers_mut(), limit.burst, remaining, reset_s);
        return resp;
    }
    let mut resp = next.run(req).await;
    set_headers(resp.headers_mut(), limit.burst, remaining, reset_s);
    resp
}
