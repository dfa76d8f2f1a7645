//! `GET /v1/events` (the event log), `GET /v1/event-types` (the catalog) and `GET /v1/stream`
//! (realtime server-sent events with exact resume).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tenantry_domain::{EditionKey, Page, Scope, TenantRef, TenantScope};
use tenantry_store::Store;
use tenantry_store::events::{EventFilter, LogPartition, LoggedEvent};
use tokio::sync::broadcast::error::RecvError;

use super::catalog;
use super::hub::{Hub, Item, Slot};
use super::runtime::source;
use crate::access::scope::Deleted;
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiQuery, PlatformOrTenantCtx, TenantCtx, need};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};

pub fn register(api: Api) -> Api {
    api.add_queried(
        Method::GET,
        "/v1/events",
        Access::Tenant(Scope::EventsRead),
        list,
    )
    .doc(
        Doc::new(
            "The tenant's events as CloudEvents, in commit order (the log's `sequence`), kept for \
             the edition's retention. Operators name a tenant (`tenant`), or `platform` for the \
             events of no tenant",
        )
        .page::<serde_json::Value>()
        .query(&PAGING)
        .query(&[
            QueryParam::string(
                "type",
                "an exact type, or a prefix ending in `.*` (`device.*`)",
            ),
            QueryParam::string("subject", "the resource the events are about"),
            QueryParam::string("from", "RFC 3339: events at or after"),
            QueryParam::string("to", "RFC 3339: events before"),
            QueryParam::string(
                "tenant",
                "operators (required): a tenant id or slug, or `platform`",
            ),
        ]),
    )
    .add(
        Method::GET,
        "/v1/event-types",
        Access::Tenant(Scope::EventsRead),
        types,
    )
    .doc(Doc::new(
        "The catalog of event types: each with its version, audience, description and the JSON \
         Schema (2020-12) of its `data`",
    ))
    .add_queried(
        Method::GET,
        "/v1/stream",
        Access::Tenant(Scope::EventsRead),
        stream,
    )
    .doc(
        Doc::new(
            "Server-sent events of the caller's tenant, written through any instance: `id` is \
             the event's id, `event` its type, `data` the CloudEvent. With `Last-Event-ID` (or \
             `last_event_id`), exactly the events committed after that one. A comment every \
             `[events] stream_heartbeat_seconds`; a client too slow to keep up gets a final \
             `resume` event and is disconnected (reconnect with `Last-Event-ID`)",
        )
        .content_type("text/event-stream")
        .query(&[
            QueryParam::string(
                "types",
                "comma-separated types or prefixes (`device.*,tenant.*`); absent: all",
            ),
            QueryParam::string(
                "last_event_id",
                "as the `Last-Event-ID` header (for clients that cannot set headers)",
            ),
        ]),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    subject: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    tenant: Option<String>,
}

/// A log position as a page cursor's id.
fn position_id(seq: i64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0, u64::try_from(seq).unwrap_or(0))
}

fn cloud_event(e: &LoggedEvent) -> serde_json::Value {
    serde_json::to_value(e.event.to_logged_cloud_event(source(), e.seq)).unwrap_or_default()
}

async fn list(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::EventsRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    if let Some(t) = q.event_type.as_deref()
        && (!catalog::valid_pattern(t) || t == "*")
    {
        return Err(Problem::new(
            Kind::InvalidQuery,
            format!("type: '{t}' is not an event type or a prefix ending in `.*`"),
        ));
    }
    let filter = EventFilter {
        event_type: q.event_type.clone(),
        subject: q.subject.clone(),
        from: q.from,
        until: q.to,
    };
    let store = state.app.store();
    let (list, partition) = match &j.tenant {
        Some(t) => {
            // a tenant's own log; naming another tenant in the query is naming it wrongly
            state
                .app
                .named_tenant(j.access(), q.tenant.as_deref(), Deleted::Allowed)
                .await?;
            (format!("events:{}", t.access.tenant.id), None)
        }
        None => {
            let partition = match q.tenant.as_deref() {
                Some("platform") => LogPartition::Platform,
                Some(s) => match TenantRef::parse(s) {
                    Some(TenantRef::Id(id)) => LogPartition::Tenant(id),
                    Some(r @ TenantRef::Slug(_)) => {
                        LogPartition::Tenant(state.app.get_tenant(&j.ctx, &r).await?.id)
                    }
                    None => {
                        return Err(Problem::new(
                            Kind::InvalidQuery,
                            format!("tenant: '{s}' is not a tenant id or slug, or `platform`"),
                        ));
                    }
                },
                None => {
                    return Err(Problem::new(
                        Kind::InvalidQuery,
                        "tenant: operators name whose log to read (a tenant id or slug, or `platform`)",
                    ));
                }
            };
            let name = match partition {
                LogPartition::Tenant(id) => format!("events:{id}"),
                LogPartition::Platform => "events:platform".to_owned(),
            };
            (name, Some(partition))
        }
    };
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let after = page.after.map_or(0, |c| {
        i64::try_from(c.0.as_u64_pair().1).unwrap_or(i64::MAX)
    });
    let fetched = match (&j.tenant, partition) {
        (Some(t), _) => {
            store
                .events()
                .list_tenant(t.scope(), &filter, after, page.limit + 1)
                .await
        }
        (None, p) => {
            let p = p.unwrap_or(LogPartition::Platform);
            store.events().list(p, &filter, after, page.limit + 1).await
        }
    }
    .map_err(|e| Problem::from(crate::platform::AppError::from(e)))?;
    let page =
        Page::from_fetched(fetched, page.limit, |e| position_id(e.seq)).map(|e| cloud_event(&e));
    Ok(axum::Json(state.cursors.seal(&list, page).await?).into_response())
}

async fn types(
    State(_state): State<AppState>,
    _j: PlatformOrTenantCtx<need::EventsRead>,
) -> Response {
    let items: Vec<serde_json::Value> = catalog::TYPES
        .iter()
        .map(|t| {
            serde_json::json!({
                "type": t.name,
                "version": t.version(),
                "audience": t.audience,
                "description": t.description,
                "schema": t.schema(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "items": items })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    types: Option<String>,
    last_event_id: Option<String>,
}

/// Realtime streams a tenant may have open at once on one instance, by edition (issue 16 makes
/// this an entitlement; until then these are the edition defaults, 100 for custom editions).
pub fn stream_limit(edition: &EditionKey) -> u32 {
    match edition.as_str() {
        "free" => 5,
        "standard" => 100,
        "enterprise" => 1000,
        _ => 100,
    }
}

async fn stream(
    State(state): State<AppState>,
    t: TenantCtx<need::EventsRead>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, Problem> {
    if q.types.as_deref() == Some("") || q.last_event_id.as_deref() == Some("") {
        return Err(Problem::new(
            Kind::InvalidQuery,
            "types and last_event_id: give a value or leave the parameter out",
        ));
    }
    let patterns: Vec<String> = match q.types.as_deref() {
        None => Vec::new(),
        Some(list) => {
            let patterns: Vec<String> = list
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            if let Some(bad) = patterns.iter().find(|p| !catalog::valid_pattern(p)) {
                return Err(Problem::new(
                    Kind::InvalidQuery,
                    format!("types: '{bad}' is not an event type or a prefix ending in `.*`"),
                ));
            }
            patterns
        }
    };
    let rt = Arc::clone(state.app.events());
    let scope = t.scope().clone();
    let limit = stream_limit(scope.edition());
    let Some(slot) = Hub::open(&rt, scope.tenant_id(), limit) else {
        metrics::counter!("events_streams_refused_total").increment(1);
        return Err(Problem::new(
            Kind::QuotaExceeded,
            format!(
                "realtime streams: the {} edition allows {limit} open at once per instance, and {limit} are open",
                scope.edition()
            ),
        ));
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id);
    let store = Arc::clone(state.app.store());
    // subscribe before reading the log: what the log read misses, the subscription has
    let live = rt.hub().subscribe(scope.tenant_id());
    let after = match resume.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None if rt.hub().position() >= 0 => rt.hub().position(),
        // the hub has not started: from the log's head
        None => {
            store
                .events()
                .stats()
                .await
                .map_err(|e| Problem::from(crate::platform::AppError::from(e)))?
                .head
        }
        Some(id) => {
            let position = match id.parse::<tenantry_domain::EventId>().ok() {
                Some(id) => store
                    .events()
                    .position(&scope, id)
                    .await
                    .map_err(|e| Problem::from(crate::platform::AppError::from(e)))?,
                None => None,
            };
            position.ok_or_else(|| {
                Problem::new(
                    Kind::ResumeUnavailable,
                    format!(
                        "Last-Event-ID '{}' names no event of this tenant's log (unknown, or older than the retention): reconnect without it",
                        id.chars().take(64).collect::<String>()
                    ),
                )
            })?
        }
    };
    let heartbeat = std::time::Duration::from_secs(u64::from(rt.config().stream_heartbeat_seconds));
    let s = Stream {
        store,
        closing: rt.closing(),
        scope,
        patterns,
        after,
        last_id: resume,
        backfilled: false,
        live,
        ready: VecDeque::new(),
        finished: false,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(s, |mut s| async move {
        let e = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(e), s))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response())
}

/// One open stream: the log after `after` (backfill), then the hub's live events.
struct Stream {
    store: Arc<dyn Store>,
    closing: tokio::sync::watch::Receiver<bool>,
    scope: TenantScope,
    patterns: Vec<String>,
    /// The last position handled (sent, or skipped by the filter).
    after: i64,
    /// The id of the event at `after` (what a reconnect names in `Last-Event-ID`).
    last_id: Option<String>,
    backfilled: bool,
    live: tokio::sync::broadcast::Receiver<Arc<Item>>,
    ready: VecDeque<Event>,
    finished: bool,
    _slot: Slot,
}

impl Stream {
    fn wanted(&self, event_type: &str) -> bool {
        self.patterns.is_empty()
            || self
                .patterns
                .iter()
                .any(|p| catalog::matches(p, event_type))
    }

    fn handle(&mut self, item: &Item) {
        if item.seq <= self.after {
            return; // sent already (from the log, or a repeat)
        }
        self.after = item.seq;
        self.last_id = Some(item.id.clone());
        if self.wanted(&item.event_type) {
            let lag = (Utc::now() - item.time).as_seconds_f64().max(0.0);
            metrics::histogram!("events_delivery_lag_seconds").record(lag);
            self.ready.push_back(
                Event::default()
                    .id(item.id.clone())
                    .event(item.event_type.clone())
                    .data(String::from_utf8_lossy(&item.data)),
            );
        }
    }

    fn finish(&mut self, reason: &str) {
        let data = serde_json::json!({ "reason": reason, "last_event_id": self.last_id });
        let mut e = Event::default().event("resume").data(data.to_string());
        if let Some(id) = &self.last_id {
            e = e.id(id.clone()); // a client's EventSource resumes from here
        }
        self.ready.push_back(e);
        self.finished = true;
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            if self.finished {
                return None;
            }
            if !self.backfilled {
                let page = self
                    .store
                    .events()
                    .list_tenant(&self.scope, &EventFilter::default(), self.after, 500)
                    .await;
                match page {
                    Ok(page) if page.is_empty() => self.backfilled = true,
                    Ok(page) => {
                        for e in &page {
                            self.handle(&Item::of(e));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: cannot read the log");
                        self.finish("the server could not read the event log");
                    }
                }
                continue;
            }
            let received = tokio::select! {
                r = self.live.recv() => Some(r),
                _ = self.closing.wait_for(|c| *c) => None,
            };
            let Some(received) = received else {
                self.finish("the server is stopping");
                continue;
            };
            match received {
                Ok(item) => self.handle(&item),
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("events_streams_lagged_total").increment(1);
                    self.finish("the client fell behind: reconnect with Last-Event-ID");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
