//! `/v1/telemetry` (ingest) and `/v1/devices/{device_id}/telemetry` (a device's events).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::Scope;
use tenantry_domain::telemetry::{Rejection, RejectionKind, ndjson_events};
use tenantry_store::telemetry::{Order, StatsFilter, StoredEvent, TelemetryFilter};

use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiQuery, JsonOrLines, TenantCtx, need, nul_field};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/telemetry",
        Access::Tenant(Scope::TelemetryWrite),
        ingest,
    )
    .doc(
        Doc::new(
            "Send device events: {\"events\": [...]} as JSON, or one event per line as \
             application/x-ndjson. Each event is checked on its own; 202 once the accepted ones \
             are committed",
        )
        .body::<IngestIn>()
        .ok::<IngestView>(202)
        .idempotent_by_itself(),
    )
    .add_queried(
        Method::GET,
        "/v1/telemetry/stats",
        Access::Tenant(Scope::TelemetryRead),
        stats,
    )
    .doc(
        Doc::new(
            "Per-bucket count, min, max, avg and last value of the events recorded in [from, to)",
        )
        .ok::<Vec<BucketView>>(200)
        .query(&[
            QueryParam::string(
                "from",
                "the range's start, RFC 3339 (default: a day before `to`)",
            ),
            QueryParam::string("to", "the range's end (excluded), RFC 3339 (default: now)"),
            QueryParam::one_of(
                "bucket",
                "the buckets' width (default 1h)",
                &["1m", "5m", "1h", "1d"],
            ),
            QueryParam::string("device_id", "one device's events only"),
            QueryParam::string("type", "one type's events only"),
        ]),
    )
    .add(
        Method::GET,
        "/v1/tenants/{target}/telemetry-settings",
        Access::Operator,
        settings_show,
    )
    .doc(
        Doc::new("A tenant's telemetry retention settings: legal hold and archival")
            .ok::<SettingsView>(200),
    )
    .add(
        Method::PUT,
        "/v1/tenants/{target}/telemetry-settings",
        Access::Operator,
        settings_put,
    )
    .doc(
        Doc::new(
            "Place or lift a tenant's legal hold (retention then skips it) and choose whether its \
             expired events are archived (null: its edition decides); audited",
        )
        .body::<SettingsView>()
        .ok::<SettingsView>(200)
        .idempotent_by_itself(),
    )
    .add_queried(
        Method::GET,
        "/v1/telemetry/stream",
        Access::Tenant(Scope::TelemetryRead),
        stream,
    )
    .doc(
        Doc::new(
            "Server-sent events: each newly stored event of the caller's tenant (on this instance), \
             as an SSE event `telemetry` whose data is the event; `lagged` when a slow reader \
             skipped events; a comment every 15 s keeps the connection alive",
        )
        .ok::<EventView>(200)
        .content_type("text/event-stream")
        .query(&[
            QueryParam::string("device_id", "one device's events only"),
            QueryParam::string("type", "one type's events only"),
        ]),
    )
    .add_queried(
        Method::GET,
        "/v1/devices/{device_id}/telemetry",
        Access::Tenant(Scope::TelemetryRead),
        device_events,
    )
    .doc(
        Doc::new("A device's events, in recorded_at order")
            .page::<EventView>()
            .query(&PAGING)
            .query(&[
                QueryParam::string("from", "recorded_at ≥ this RFC 3339 time"),
                QueryParam::string("to", "recorded_at < this RFC 3339 time"),
                QueryParam::string("type", "only events of this type"),
                QueryParam::one_of("order", "asc (default) or desc", &["asc", "desc"]),
            ]),
    )
}

/// A batch of events (see the event's rules in docs/telemetry.md).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IngestIn {
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RejectedView {
    index: usize,
    #[serde(rename = "type")]
    kind: &'static str,
    detail: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct IngestView {
    /// Events stored by this request.
    accepted: usize,
    /// Events stored before (a retry) or repeated in the batch.
    duplicates: usize,
    rejected: Vec<RejectedView>,
}

fn kind_name(k: RejectionKind) -> &'static str {
    match k {
        RejectionKind::InvalidEvent => "invalid_event",
        RejectionKind::RecordedInTheFuture => "recorded_in_the_future",
        RejectionKind::OlderThanRetention => "older_than_retention",
        RejectionKind::WrongDevice => "wrong_device",
        RejectionKind::UnknownDevice => "unknown_device",
    }
}

fn view(r: &Rejection) -> RejectedView {
    RejectedView {
        index: r.index,
        kind: kind_name(r.kind),
        detail: r.detail.clone(),
    }
}

fn overloaded() -> Problem {
    metrics::counter!("telemetry_overloaded_total").increment(1);
    let mut p = Problem::new(
        Kind::ServiceUnavailable,
        "too many events are being ingested right now; retry after a second (nothing of this request was stored)",
    );
    p.headers.push((
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    ));
    p
}

async fn ingest(
    State(state): State<AppState>,
    t: TenantCtx<need::TelemetryWrite>,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    // each event's id makes a retry safe (its events come back as duplicates)
    if req
        .headers()
        .contains_key(crate::platform::http::idempotency::HEADER)
    {
        return Err(Problem::new(
            Kind::InvalidHeader,
            "POST /v1/telemetry does not take an Idempotency-Key: each event's event_id makes a retry safe (events already stored are counted as duplicates)",
        ));
    }
    // the body is read and parsed only within the bytes budget: memory stays bounded however
    // many requests arrive at once (a body of unknown length reserves a whole request's worth)
    let length = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(super::config::MAX_REQUEST_BYTES);
    let _bytes = state
        .app
        .telemetry()
        .reserve_bytes(length)
        .ok_or_else(overloaded)?;
    let body =
        <JsonOrLines as axum::extract::FromRequest<AppState>>::from_request(req, &state).await?;
    let events: Vec<Result<serde_json::Value, String>> = match body {
        JsonOrLines::Json(doc) => {
            let batch: IngestIn = serde_json::from_value(doc.document).map_err(|e| {
                Problem::new(
                    Kind::ValidationFailed,
                    format!("expected {{\"events\": [...]}}: {e}"),
                )
            })?;
            batch.events.into_iter().map(Ok).collect()
        }
        JsonOrLines::Lines(text) => ndjson_events(&text)
            .into_iter()
            .map(|line| match line {
                Ok(v) => match nul_field(&v) {
                    Some(field) => Err(format!("{field}: must not contain U+0000")),
                    None => Ok(v),
                },
                Err(e) => Err(e),
            })
            .collect(),
    };
    let config = state.app.settings().telemetry.clone();
    let started = std::time::Instant::now();
    metrics::histogram!("telemetry_request_events").record(events.len() as f64);
    // a bounded amount of work in flight: past it, the client retries later (nothing stored)
    let wanted = u32::try_from(events.len()).unwrap_or(u32::MAX);
    let _permit = if wanted <= config.max_events {
        match state
            .app
            .telemetry()
            .budget()
            .clone()
            .try_acquire_many_owned(wanted)
        {
            Ok(p) => Some(p),
            Err(_) => return Err(overloaded()),
        }
    } else {
        None // refused below as too many for one request
    };
    // the edition's retention, from the limits cache the rate limiter keeps
    let retention_days = state
        .limits
        .edition_limits(&state.app, t.access.tenant.id)
        .await?
        .map_or(30, |l| l.retention_days);
    let out = state
        .app
        .ingest_telemetry(
            &t.ctx,
            t.scope(),
            t.principal.device_id.as_deref(),
            events,
            retention_days,
        )
        .await?;
    metrics::histogram!("telemetry_ingest_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    let tenant = state.tenant_labels.label(t.access.tenant.id);
    for (result, n) in [
        ("accepted", out.accepted),
        ("duplicate", out.duplicates),
        ("rejected", out.rejected.len()),
    ] {
        if n > 0 {
            metrics::counter!("telemetry_events_total", "tenant" => tenant.clone(), "result" => result)
                .increment(n as u64);
        }
    }
    let view = IngestView {
        accepted: out.accepted,
        duplicates: out.duplicates,
        rejected: out.rejected.iter().map(view).collect(),
    };
    if out.accepted == 0 && out.duplicates == 0 {
        // every event was rejected
        let mut p = Problem::new(
            Kind::ValidationFailed,
            format!(
                "every event was rejected; the first: #{} {}",
                view.rejected[0].index, view.rejected[0].detail
            ),
        );
        p.errors = out
            .rejected
            .iter()
            .map(|r| tenantry_domain::FieldError {
                field: format!("events[{}]", r.index),
                message: format!("{}: {}", kind_name(r.kind), r.detail),
            })
            .collect();
        return Err(p);
    }
    Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
    device_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct BucketView {
    start: DateTime<Utc>,
    count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<f64>,
}

async fn stats(
    State(state): State<AppState>,
    t: TenantCtx<need::TelemetryRead>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Response, Problem> {
    let bucket_seconds = match q.bucket.as_deref().unwrap_or("1h") {
        "1m" => 60,
        "5m" => 300,
        "1h" => 3600,
        "1d" => 86_400,
        other => {
            return Err(Problem::new(
                Kind::InvalidQuery,
                format!("bucket: '{other}' is not 1m, 5m, 1h or 1d"),
            ));
        }
    };
    // the last 24 hours unless said otherwise
    let to = time("to", q.to.as_deref())?.unwrap_or_else(crate::platform::now);
    let from = time("from", q.from.as_deref())?.unwrap_or(to - chrono::Duration::days(1));
    let filter = StatsFilter {
        from,
        to,
        device_id: q.device_id,
        event_type: q.event_type,
        bucket_seconds,
    };
    let buckets = state.app.telemetry_stats(t.scope(), &filter).await?;
    let view: Vec<BucketView> = buckets
        .into_iter()
        .map(|b| BucketView {
            start: b.start,
            count: b.count,
            min: b.min,
            max: b.max,
            avg: b.avg,
            last: b.last,
        })
        .collect();
    Ok(axum::Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    order: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EventView {
    event_id: String,
    device_id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    values: std::collections::BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    payload: Option<serde_json::Map<String, serde_json::Value>>,
    recorded_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

impl From<StoredEvent> for EventView {
    fn from(s: StoredEvent) -> Self {
        Self {
            event_id: s.event.event_id,
            device_id: s.event.device_id,
            event_type: s.event.event_type,
            value: s.event.value,
            values: s.event.values,
            payload: s.event.payload,
            recorded_at: s.event.recorded_at,
            received_at: s.received_at,
        }
    }
}

fn time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, Problem> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Problem::new(
                    Kind::InvalidQuery,
                    format!("{name}: not an RFC 3339 time ({e})"),
                )
            })
    })
    .transpose()
}

async fn device_events(
    State(state): State<AppState>,
    t: TenantCtx<need::TelemetryRead>,
    Path(device_id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, Problem> {
    let order = match q.order.as_deref() {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(other) => {
            return Err(Problem::new(
                Kind::InvalidQuery,
                format!("order: '{other}' is not asc or desc"),
            ));
        }
    };
    let filter = TelemetryFilter {
        device_id,
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        event_type: q.event_type,
        order,
    };
    // a cursor is good for the same device, filter and order only
    let list = format!(
        "telemetry:{}:{}:{:?}:{:?}:{:?}:{:?}",
        t.access.tenant.id,
        filter.device_id,
        filter.from,
        filter.to,
        filter.event_type,
        filter.order
    );
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let events = state.app.device_telemetry(t.scope(), &filter, page).await?;
    Ok(axum::Json(
        state
            .cursors
            .seal(&list, events.map(EventView::from))
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    device_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// What a live stream has yet to send, and where it gets more.
struct Live {
    feed: tokio::sync::broadcast::Receiver<std::sync::Arc<super::runtime::Accepted>>,
    closing: tokio::sync::watch::Receiver<bool>,
    tenant: tenantry_domain::TenantId,
    filter: StreamQuery,
    ready: std::collections::VecDeque<axum::response::sse::Event>,
}

impl Live {
    /// The next SSE event, or `None` when the process stops.
    async fn next(&mut self) -> Option<axum::response::sse::Event> {
        use axum::response::sse::Event;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            let received = tokio::select! {
                r = self.feed.recv() => r,
                _ = self.closing.wait_for(|c| *c) => return None,
            };
            match received {
                Ok(batch) if batch.scope.tenant_id() == self.tenant => {
                    for e in &batch.events {
                        let wanted = self
                            .filter
                            .device_id
                            .as_ref()
                            .is_none_or(|d| *d == e.device_id)
                            && self
                                .filter
                                .event_type
                                .as_ref()
                                .is_none_or(|t| *t == e.event_type);
                        if !wanted {
                            continue;
                        }
                        let view = EventView::from(StoredEvent {
                            seq: 0,
                            event: e.clone(),
                            received_at: batch.received_at,
                        });
                        if let Ok(sse) = Event::default().event("telemetry").json_data(&view) {
                            self.ready.push_back(sse);
                        }
                    }
                }
                Ok(_) => {} // another tenant's
                Err(RecvError::Lagged(n)) => {
                    // this reader fell behind the feed: say so rather than silently skip
                    self.ready.push_back(
                        Event::default()
                            .event("lagged")
                            .data(format!("{{\"skipped_batches\":{n}}}")),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

async fn stream(
    State(state): State<AppState>,
    t: TenantCtx<need::TelemetryRead>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, Problem> {
    let runtime = state.app.telemetry();
    let live = Live {
        feed: runtime.subscribe(),
        closing: runtime.closing(),
        tenant: t.scope().tenant_id(),
        filter: q,
        ready: std::collections::VecDeque::new(),
    };
    let events = futures_util::stream::unfold(live, |mut live| async move {
        let e = live.next().await?;
        Some((Ok::<_, std::convert::Infallible>(e), live))
    });
    Ok(axum::response::sse::Sse::new(events)
        .keep_alive(
            axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)),
        )
        .into_response())
}

/// A tenant's retention settings.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsView {
    /// Retention skips the tenant entirely while it is on hold.
    legal_hold: bool,
    /// Archive expired events before removing them; null (or absent): the edition decides
    /// (`[telemetry] archive_editions`).
    #[serde(default)]
    archive: Option<bool>,
}

async fn settings_tenant(
    state: &AppState,
    op: &crate::platform::http::extract::Operator,
    target: &str,
) -> Result<tenantry_domain::Tenant, Problem> {
    let r = tenantry_domain::TenantRef::parse(target).ok_or_else(|| {
        Problem::new(
            Kind::TenantNotFound,
            format!("no tenant '{target}': not an id or a slug"),
        )
    })?;
    Ok(state.app.get_tenant(&op.ctx, &r).await?)
}

async fn settings_show(
    State(state): State<AppState>,
    op: crate::platform::http::extract::Operator,
    Path(target): Path<String>,
) -> Result<Response, Problem> {
    let t = settings_tenant(&state, &op, &target).await?;
    let s = state.app.telemetry_settings(t.id).await?;
    Ok(axum::Json(SettingsView {
        legal_hold: s.legal_hold,
        archive: s.archive,
    })
    .into_response())
}

async fn settings_put(
    State(state): State<AppState>,
    op: crate::platform::http::extract::Operator,
    Path(target): Path<String>,
    headers: axum::http::HeaderMap,
    body: crate::platform::http::extract::ApiJson<SettingsView>,
) -> Result<Response, Problem> {
    if headers.contains_key(crate::platform::http::idempotency::HEADER) {
        return Err(Problem::new(
            Kind::InvalidHeader,
            "PUT …/telemetry-settings does not take an Idempotency-Key: it replaces the settings whole, so a retry is safe as it is",
        ));
    }
    let t = settings_tenant(&state, &op, &target).await?;
    let s = state
        .app
        .put_telemetry_settings(
            &op.ctx,
            t.id,
            tenantry_store::telemetry::RetentionSettings {
                legal_hold: body.value.legal_hold,
                archive: body.value.archive,
            },
        )
        .await?;
    Ok(axum::Json(SettingsView {
        legal_hold: s.legal_hold,
        archive: s.archive,
    })
    .into_response())
}
