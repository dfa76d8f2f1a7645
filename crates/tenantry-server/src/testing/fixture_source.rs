//! The fixture upstream API of source sync's tests and benchmarks (`tenantry dev fixture-source`): serves N
//! generated devices (`/devices`) and vulnerabilities (`/vulnerabilities`) page by page, in any
//! of the pagination styles, and injects faults on request. Pages are generated on the fly, so
//! the fixture's memory does not grow with N.
//!
//! Query parameters (all optional; put them in the source's URL):
//! - `count` (default 10 000 devices / 50 000 vulnerabilities), `limit` (page size, default 500)
//! - `style`: `next_link` (default: `{"items": […], "next": "/…"}`), `link_header` (the body is the
//!   array; `Link: <…>; rel="next"`), `cursor` (`{"items": […], "next_cursor": "…"}`, sent back as
//!   `cursor`), `page` (`{"items": […]}`, `page` from 1, an empty page ends)
//! - `version`: records whose number is a multiple of 7 change with it (an upstream change)
//! - `skip`: every `skip`-th record is left out (records removed upstream)
//! - `status=500`: every request fails; `flaky=K`: each page fails with 500 its first K times;
//!   `throttle=K`: each page answers 429 `Retry-After: 1` its first K times
//! - `slow_ms`: each page waits this long; `garbage=P`: page P (from 0) is not JSON
//! - `bad_every=K`: every K-th item has no `id`; `oversize_every=K`: every K-th item has a
//!   40 KiB `notes`; `huge_every=K`: every K-th item is over 1 MiB
//!
//! `GET /_stats` answers how many times each page was served (`{"<path>?<offset>": n}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Default)]
struct Fixture {
    /// Requests per page (`<dataset>?<offset>`) and per page and fault (for `flaky`/`throttle`).
    served: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    count: Option<u64>,
    limit: Option<u64>,
    style: Option<String>,
    offset: Option<u64>,
    cursor: Option<String>,
    page: Option<u64>,
    version: Option<u64>,
    skip: Option<u64>,
    status: Option<u16>,
    flaky: Option<u64>,
    throttle: Option<u64>,
    slow_ms: Option<u64>,
    garbage: Option<u64>,
    bad_every: Option<u64>,
    oversize_every: Option<u64>,
    huge_every: Option<u64>,
}

/// The fixture's router.
pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/_stats", axum::routing::get(stats))
        .route("/{dataset}", axum::routing::get(page))
        .with_state(Arc::new(Fixture::default()))
}

/// Serves the fixture on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

/// Starts the fixture on a free loopback port; its base URL (`http://127.0.0.1:port`).
pub async fn spawn() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = serve(listener).await;
    });
    Ok(format!("http://{addr}"))
}

async fn stats(State(f): State<Arc<Fixture>>) -> Response {
    let served = f
        .served
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(k, _)| !k.contains('#'))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect::<serde_json::Map<_, _>>();
    axum::Json(Value::Object(served)).into_response()
}

fn bump(f: &Fixture, key: String) -> u64 {
    let mut map = f
        .served
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let n = map.entry(key).or_default();
    *n += 1;
    *n
}

/// The `i`-th record of a dataset.
fn record(dataset: &str, i: u64, p: &Params) -> Value {
    let changed = p.version.unwrap_or(0) > 0 && i.is_multiple_of(7);
    let version = if changed { p.version.unwrap_or(0) } else { 0 };
    if p.bad_every.is_some_and(|k| k > 0 && i % k == k - 1) {
        return json!({"name": format!("no id {i}"), "note": "this item has no id"});
    }
    let mut r = if dataset == "vulnerabilities" {
        let severity = ["low", "medium", "high", "critical"][(i % 4) as usize];
        json!({
            "id": format!("vuln-{i:07}"),
            "device_id": format!("dev-{:06}", i % 10_000),
            "cve": format!("CVE-20{:02}-{:05}", 10 + i % 15, i % 99_991),
            "severity": severity,
            "cvss": (i % 100) as f64 / 10.0,
            "status": if i.is_multiple_of(5) { "fixed" } else { "open" },
            "title": format!("Remote code execution in component {} (advisory {})", i % 977, version),
            "description": "An attacker who can reach the service may execute code as the service user. Update the component to the fixed release, or restrict network access to the service until then.",
            "first_found": "2026-11-02T08:00:00Z",
            "version": version,
        })
    } else {
        let os = ["windows", "linux", "macos"][(i % 3) as usize];
        json!({
            "id": format!("dev-{i:06}"),
            "hostname": format!("host-{i:06}.corp.example"),
            "os": os,
            "os_version": format!("{}.{}", 10 + i % 5, i % 10),
            "ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            "tags": ["fleet", format!("site-{}", i % 40)],
            "owner": format!("team-{}", i % 120),
            "risk": (i * 37) % 100,
            "agent": {"version": format!("7.{}.{}", version, i % 20), "healthy": !i.is_multiple_of(11)},
            "last_seen": "2026-12-01T10:00:00Z",
        })
    };
    if p.oversize_every.is_some_and(|k| k > 0 && i % k == k - 1) {
        r["notes"] = json!("n".repeat(40 * 1024));
    }
    if p.huge_every.is_some_and(|k| k > 0 && i % k == k - 1) {
        let parts: Vec<String> = (0..40).map(|_| "h".repeat(30_000)).collect();
        r["blobs"] = json!(parts);
    }
    r
}

fn query_without(p: &[(String, String)], drop: &[&str]) -> Vec<(String, String)> {
    p.iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn url_with(path: &str, pairs: &[(String, String)]) -> String {
    let mut u = reqwest::Url::parse("http://fixture.invalid/").expect("a URL");
    u.set_path(path);
    u.query_pairs_mut().extend_pairs(pairs);
    format!("{}?{}", u.path(), u.query().unwrap_or_default())
}

async fn page(
    State(f): State<Arc<Fixture>>,
    Path(dataset): Path<String>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    if !matches!(dataset.as_str(), "devices" | "vulnerabilities") {
        return (StatusCode::NOT_FOUND, "no such dataset").into_response();
    }
    let p: Params = match serde_json::from_value(Value::Object(
        raw.iter()
            .map(|(k, v)| {
                let value = v.parse::<u64>().map_or_else(|_| json!(v), |n| json!(n));
                (k.clone(), value)
            })
            .collect(),
    )) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let count = p
        .count
        .unwrap_or(if dataset == "devices" { 10_000 } else { 50_000 });
    let limit = p.limit.unwrap_or(500).clamp(1, 10_000);
    let style = p.style.clone().unwrap_or_else(|| "next_link".into());
    let offset = match style.as_str() {
        "cursor" => p
            .cursor
            .as_deref()
            .and_then(|c| c.strip_prefix("c"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        "page" => p.page.unwrap_or(1).saturating_sub(1) * limit,
        _ => p.offset.unwrap_or(0),
    };
    let page_key = format!("/{dataset}?{offset}");
    let nth = bump(&f, page_key.clone());
    if let Some(ms) = p.slow_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(s) = p.status {
        let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "injected failure").into_response();
    }
    if p.flaky.is_some_and(|k| nth <= k) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "flaky").into_response();
    }
    if p.throttle.is_some_and(|k| nth <= k) {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response();
    }
    if p.garbage.is_some_and(|g| g * limit == offset) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"items\": [ this is not json",
        )
            .into_response();
    }
    let end = (offset + limit).min(count);
    let items: Vec<Value> = (offset..end)
        .filter(|i| !p.skip.is_some_and(|k| k > 0 && i % k == k - 1))
        .map(|i| record(&dataset, i, &p))
        .collect();
    let more = end < count;
    let path = format!("/{dataset}");
    match style.as_str() {
        "link_header" => {
            let mut h = HeaderMap::new();
            if more {
                let mut q = query_without(&raw, &["offset"]);
                q.push(("offset".into(), end.to_string()));
                let link = format!("<{}>; rel=\"next\"", url_with(&path, &q));
                if let Ok(v) = HeaderValue::from_str(&link) {
                    h.insert(header::LINK, v);
                }
            }
            (h, axum::Json(Value::Array(items))).into_response()
        }
        "cursor" => axum::Json(json!({
            "items": items,
            "next_cursor": more.then(|| format!("c{end}")),
        }))
        .into_response(),
        "page" => {
            let items = if offset >= count { Vec::new() } else { items };
            axum::Json(json!({"items": items})).into_response()
        }
        _ => {
            let next = more.then(|| {
                let mut q = query_without(&raw, &["offset"]);
                q.push(("offset".into(), end.to_string()));
                url_with(&path, &q)
            });
            axum::Json(json!({"items": items, "next": next})).into_response()
        }
    }
}
