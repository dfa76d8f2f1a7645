//! Pulling one page from an upstream API: through the egress guard, with a timeout, retries
//! (backoff with full jitter, `Retry-After` honoured on 429 and 503), a circuit breaker per
//! upstream host and tenant (one tenant's failing credentials never open another tenant's
//! circuit to the same vendor), a size cap on the body; and where the next page is (each pagination style).

use std::time::Duration;

use opentelemetry::trace::FutureExt as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tenantry_domain::sync::Pagination;

use super::runtime::SyncRuntime;
use crate::observability::traces;
use crate::platform::egress::EgressError;

/// Why a page could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Retrying will not help until the source's configuration (or the upstream) changes: the
    /// run goes to the dead-letter state at once.
    #[error("{0}")]
    Permanent(String),
    /// This attempt gave up (its retries spent, the circuit open, a `Retry-After` too long); a
    /// later attempt resumes from the checkpoint.
    #[error("{0}")]
    Failed(String),
}

/// A page: its items (taken out of the body) and where the next one is.
pub struct Fetched {
    pub items: Vec<Value>,
    pub next: Option<String>,
    pub next_page: Option<i64>,
    pub bytes: usize,
}

/// What one try came to.
enum Try {
    Page(Fetched),
    /// Worth another try, after the delay when the upstream named one.
    Again(String, Option<Duration>, bool),
    Stop(FetchError),
}

/// What every page request of a run shares.
pub struct Upstream<'a> {
    pub tenant: tenantry_domain::TenantId,
    pub headers: &'a HeaderMap,
    pub timeout: Duration,
    /// JSON pointer to a page's items.
    pub items: &'a str,
    pub pagination: &'a Pagination,
}

/// Fetches the page at `url` (page number `page` for `page` pagination).
pub async fn fetch_page(
    rt: &SyncRuntime,
    up: &Upstream<'_>,
    url: &str,
    page: Option<i64>,
) -> Result<Fetched, FetchError> {
    let tenant = up.tenant;
    let config = rt.config();
    let parsed = Url::parse(url).map_err(|e| FetchError::Permanent(format!("{url}: {e}")))?;
    let host = format!(
        "{}:{}",
        parsed.host_str().unwrap_or_default(),
        parsed.port_or_known_default().unwrap_or_default()
    );
    let breaker = format!("{tenant}/{host}");
    let attempts = config.request_attempts.max(1);
    let mut last = String::new();
    for n in 1..=attempts {
        if let Err(wait) = rt.breaker_allows(&breaker) {
            return Err(FetchError::Failed(format!(
                "the circuit for {host} is open after repeated failures (retry in {}s){}",
                wait.as_secs().max(1),
                if last.is_empty() {
                    String::new()
                } else {
                    format!("; last error: {last}")
                }
            )));
        }
        let call = traces::client_span("GET", url);
        let outcome = one_try(rt, up, &parsed, page)
            .with_context(call.cx.clone())
            .await;
        match outcome {
            Try::Page(p) => {
                traces::end(&call.cx, true);
                rt.breaker_success(&breaker);
                return Ok(p);
            }
            Try::Stop(e) => {
                traces::end(&call.cx, false);
                return Err(e);
            }
            Try::Again(why, after, host_failed) => {
                traces::end(&call.cx, false);
                if host_failed {
                    rt.breaker_failure(&breaker);
                }
                metrics::counter!("sync_request_retries_total").increment(1);
                last = why;
                if n == attempts {
                    break;
                }
                let delay = match after {
                    Some(d)
                        if d > Duration::from_secs(u64::from(config.max_retry_after_seconds)) =>
                    {
                        return Err(FetchError::Failed(format!(
                            "{last}; the upstream asks to wait {}s, longer than sync.max_retry_after_seconds",
                            d.as_secs()
                        )));
                    }
                    Some(d) => d,
                    None => backoff(config.backoff_base_ms, config.backoff_max_ms, n),
                };
                tokio::time::sleep(delay).await;
            }
        }
    }
    Err(FetchError::Failed(format!(
        "{last} (after {attempts} tries)"
    )))
}

/// Full jitter: uniform in `[0, min(max, base·2^(n-1))]`.
fn backoff(base_ms: u32, max_ms: u32, n: u32) -> Duration {
    let ceiling = u64::from(base_ms)
        .saturating_mul(1u64 << n.saturating_sub(1).min(20))
        .min(u64::from(max_ms));
    Duration::from_millis((ceiling as f64 * rand::random::<f64>()) as u64)
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

async fn one_try(rt: &SyncRuntime, up: &Upstream<'_>, url: &Url, page: Option<i64>) -> Try {
    let (headers, timeout, items_pointer, pagination) =
        (up.headers, up.timeout, up.items, up.pagination);
    let egress = match rt.egress() {
        Ok(e) => e,
        Err(e) => return Try::Stop(FetchError::Failed(e)),
    };
    let mut traced = headers.clone();
    traces::inject_current(&mut traced);
    let request = match egress
        .request(reqwest::Method::GET, url.as_str())
        .headers(traced)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .build()
    {
        Ok(r) => r,
        Err(e) => return Try::Stop(FetchError::Permanent(format!("{url}: {e}"))),
    };
    let mut response = match egress.send(request).await {
        Ok(r) => r,
        Err(
            e @ (EgressError::Refused { .. }
            | EgressError::Scheme { .. }
            | EgressError::NoHost { .. }),
        ) => {
            return Try::Stop(FetchError::Permanent(e.to_string()));
        }
        Err(EgressError::Request(e)) if e.is_timeout() => {
            return Try::Again(
                format!(
                    "{} timed out after {} ms",
                    redacted(url),
                    timeout.as_millis()
                ),
                None,
                true,
            );
        }
        Err(e) => {
            return Try::Again(
                format!("{}: {}", redacted(url), error_chain(&e)),
                None,
                true,
            );
        }
    };
    let status = response.status();
    traces::record_status(status.as_u16());
    if !status.is_success() {
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let why = format!("{} answered {status}", redacted(url));
        return match status {
            StatusCode::TOO_MANY_REQUESTS => Try::Again(why, after, false),
            StatusCode::SERVICE_UNAVAILABLE => Try::Again(why, after, true),
            StatusCode::REQUEST_TIMEOUT => Try::Again(why, None, true),
            s if s.is_server_error() => Try::Again(why, after, true),
            s if s.is_redirection() => Try::Stop(FetchError::Permanent(format!(
                "{why}: redirects are not followed (configure the final URL)"
            ))),
            _ => Try::Stop(FetchError::Failed(why)),
        };
    }
    let link = response
        .headers()
        .get(reqwest::header::LINK)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // the body, up to the page limit
    let max = rt.config().max_page_bytes;
    if response.content_length().is_some_and(|n| n > max) {
        return Try::Stop(FetchError::Failed(format!(
            "{} sent a page larger than sync.max_page_bytes ({max})",
            redacted(url)
        )));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > max {
                    return Try::Stop(FetchError::Failed(format!(
                        "{} sent a page larger than sync.max_page_bytes ({max})",
                        redacted(url)
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let why = if e.is_timeout() {
                    format!("{} timed out while sending its page", redacted(url))
                } else {
                    format!("{}: {}", redacted(url), error_chain(&e))
                };
                return Try::Again(why, None, true);
            }
        }
    }
    let bytes = body.len();
    let mut doc: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Try::Again(
                format!("{} sent a page that is not JSON: {e}", redacted(url)),
                None,
                true,
            );
        }
    };
    drop(body);
    let (next, next_page) = match next_of(pagination, url, &doc, link.as_deref(), page) {
        Ok(n) => n,
        Err(why) => return Try::Again(format!("{}: {why}", redacted(url)), None, true),
    };
    let items = match doc.pointer_mut(items_pointer).map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None if items_pointer.is_empty() => Vec::new(),
        None => {
            return Try::Again(
                format!(
                    "{} sent a page without items at '{items_pointer}'",
                    redacted(url)
                ),
                None,
                true,
            );
        }
        Some(other) => {
            return Try::Again(
                format!(
                    "{} sent a page whose '{items_pointer}' is not an array ({})",
                    redacted(url),
                    match other {
                        Value::Object(_) => "an object",
                        Value::String(_) => "a string",
                        Value::Number(_) => "a number",
                        Value::Bool(_) => "a boolean",
                        _ => "null",
                    }
                ),
                None,
                true,
            );
        }
    };
    // `page` pagination ends on an empty page
    let (next, next_page) = if matches!(pagination, Pagination::Page { .. }) && items.is_empty() {
        (None, None)
    } else {
        (next, next_page)
    };
    if next.as_deref() == Some(url.as_str()) {
        return Try::Stop(FetchError::Permanent(format!(
            "{}: the next page is the page itself",
            redacted(url)
        )));
    }
    Try::Page(Fetched {
        items,
        next,
        next_page,
        bytes,
    })
}

/// The URL for messages: credentials and secret-looking query parameters masked.
fn redacted(url: &Url) -> String {
    crate::config::redact_url(url.as_str())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// `url` with the query parameter `param` set to `value` (replacing it).
pub fn with_param(url: &Url, param: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut u = url.clone();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, value);
    u
}

/// The first page's URL (and page number) of a source.
pub fn first_page(url: &str, pagination: &Pagination) -> Result<(String, Option<i64>), String> {
    let u = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    Ok(match pagination {
        Pagination::Page { param, start } => (
            with_param(&u, param, &start.to_string()).to_string(),
            Some(*start),
        ),
        _ => (u.to_string(), None),
    })
}

/// Where the page after this one is: its URL (and number, for `page` pagination), or `None` at
/// the end.
pub fn next_of(
    pagination: &Pagination,
    url: &Url,
    body: &Value,
    link: Option<&str>,
    page: Option<i64>,
) -> Result<(Option<String>, Option<i64>), String> {
    let join = |s: &str| {
        url.join(s)
            .map(|u| Some(u.to_string()))
            .map_err(|e| format!("the next page's URL '{s}' is not a URL: {e}"))
    };
    Ok(match pagination {
        Pagination::None => (None, None),
        Pagination::NextLink { next } => match body.pointer(next) {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(s)) if s.is_empty() => (None, None),
            Some(Value::String(s)) => (join(s)?, None),
            Some(_) => return Err(format!("the next link at '{next}' is not a string")),
        },
        Pagination::LinkHeader => match link {
            None => (None, None),
            Some(h) => {
                let links = parse_link_header::parse_with_rel(h)
                    .map_err(|e| format!("the Link header cannot be read: {e:?}"))?;
                match links.get("next") {
                    Some(l) => (join(&l.raw_uri)?, None),
                    None => (None, None),
                }
            }
        },
        Pagination::Cursor { param, next } => match body.pointer(next) {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(s)) if s.is_empty() => (None, None),
            Some(Value::String(s)) => (Some(with_param(url, param, s).to_string()), None),
            Some(Value::Number(n)) => (
                Some(with_param(url, param, &n.to_string()).to_string()),
                None,
            ),
            Some(_) => {
                return Err(format!(
                    "the cursor at '{next}' is not a string or a number"
                ));
            }
        },
        Pagination::Page { param, start } => {
            let next = page.unwrap_or(*start) + 1;
            (
                Some(with_param(url, param, &next.to_string()).to_string()),
                Some(next),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn each_pagination_style_finds_the_next_page() {
        let here = u("https://v.example/api/devices?limit=2");
        let next_link = Pagination::NextLink {
            next: "/next".into(),
        };
        assert_eq!(
            next_of(
                &next_link,
                &here,
                &json!({"next": "/api/devices?page=2"}),
                None,
                None
            )
            .unwrap(),
            (Some("https://v.example/api/devices?page=2".into()), None)
        );
        assert_eq!(
            next_of(&next_link, &here, &json!({"next": null}), None, None).unwrap(),
            (None, None)
        );
        assert_eq!(
            next_of(&next_link, &here, &json!({}), None, None).unwrap(),
            (None, None)
        );
        assert!(next_of(&next_link, &here, &json!({"next": 3}), None, None).is_err());

        let link = r#"<https://v.example/api/devices?page=3>; rel="next", <https://v.example/api/devices?page=9>; rel="last""#;
        assert_eq!(
            next_of(&Pagination::LinkHeader, &here, &json!([]), Some(link), None)
                .unwrap()
                .0
                .as_deref(),
            Some("https://v.example/api/devices?page=3")
        );
        let last_only = r#"<https://v.example/api/devices?page=9>; rel="last""#;
        assert_eq!(
            next_of(
                &Pagination::LinkHeader,
                &here,
                &json!([]),
                Some(last_only),
                None
            )
            .unwrap()
            .0,
            None
        );

        let cursor = Pagination::Cursor {
            param: "after".into(),
            next: "/meta/cursor".into(),
        };
        assert_eq!(
            next_of(
                &cursor,
                &u("https://v.example/x?limit=2&after=a1"),
                &json!({"meta": {"cursor": "b 2"}}),
                None,
                None
            )
            .unwrap()
            .0
            .as_deref(),
            Some("https://v.example/x?limit=2&after=b+2")
        );
        assert_eq!(
            next_of(&cursor, &here, &json!({"meta": {"cursor": ""}}), None, None)
                .unwrap()
                .0,
            None
        );

        let page = Pagination::Page {
            param: "page".into(),
            start: 1,
        };
        let (first, n) = first_page("https://v.example/x?limit=2", &page).unwrap();
        assert_eq!(
            (first.as_str(), n),
            ("https://v.example/x?limit=2&page=1", Some(1))
        );
        assert_eq!(
            next_of(&page, &u(&first), &json!([1]), None, n).unwrap(),
            (Some("https://v.example/x?limit=2&page=2".into()), Some(2))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for n in 1..10 {
            assert!(backoff(100, 1000, n) <= Duration::from_millis(1000));
        }
        assert!(backoff(100, 1000, 1) <= Duration::from_millis(100));
    }
}
