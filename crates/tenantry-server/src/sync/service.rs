//! Source sync's use cases: a tenant's sources (validated, header secrets sealed, scheduled on
//! the job engine), manual runs, and reading runs, records and quarantined items.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenantry_domain::job::ScheduleSpec;
use tenantry_domain::sync::{HttpJsonConfig, KINDS, Pagination, RunCounts, RunStatus};
use tenantry_domain::{EventEnvelope, Page, PageRequest, TenantScope, ValidationErrors};
use tenantry_store::jobs::Enqueued;
use tenantry_store::schedules::{ScheduleRecord, stored_name};
use tenantry_store::sync::{
    QuarantinedItem, QueuedRun, RecordFilter, RunRecord, ScheduleChange, SourceRecord, SyncedRecord,
};
use tenantry_store::{Changes, Constraint, IdempotencyRecord, StoreError};
use uuid::Uuid;

use super::workers;
use crate::platform::{App, AppError, AppResult, Ctx, now};

/// Most headers of one source.
const MAX_HEADERS: usize = 32;
/// Headers a source may not set: the client sets them, or they change how a message is framed.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "keep-alive",
];

/// A source as written (`POST`), and the document a `PATCH` merges into.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// Unique in the tenant: 1–100 characters.
    pub name: String,
    /// `http_json`.
    #[serde(default = "http_json")]
    pub kind: String,
    /// When it runs (cron, UTC; 5 fields, or 6 with seconds). None: only when run by hand.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Attempts of one run before it is dead-lettered (1–20, default 3).
    #[serde(default = "three")]
    pub max_attempts: u32,
    pub config: ConfigInput,
}

fn http_json() -> String {
    "http_json".into()
}
fn yes() -> bool {
    true
}
fn three() -> u32 {
    3
}

/// An `http_json` source's configuration.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    /// The first page (`https://…`; `http://` too).
    pub url: String,
    /// Request headers (credentials): sealed at rest, never shown again.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON pointer to the items of a page (`""`: the body is the array).
    pub items: String,
    /// JSON pointer to an item's key.
    pub key: String,
    pub record_type: String,
    #[serde(default)]
    pub pagination: Pagination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_field_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

impl ConfigInput {
    fn split(self) -> (HttpJsonConfig, BTreeMap<String, String>) {
        (
            HttpJsonConfig {
                url: self.url,
                items: self.items,
                key: self.key,
                record_type: self.record_type,
                pagination: self.pagination,
                max_field_bytes: self.max_field_bytes,
                timeout_ms: self.timeout_ms,
            },
            self.headers,
        )
    }
}

/// A source as shown: its configuration without header values.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub max_attempts: u32,
    /// The configuration, with `header_names` in place of the (sealed) headers.
    #[schema(value_type = Object)]
    pub config: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The latest run, if any (`dead`: every attempt failed).
    pub last_run: Option<RunView>,
}

/// A run of a source.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: Uuid,
    pub source_id: Uuid,
    pub status: RunStatus,
    pub manual: bool,
    pub pages: u64,
    pub upserted: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub quarantined: u64,
    pub truncated: u64,
    pub attempts: u32,
    /// Whether an attempt continued from an earlier attempt's checkpoint.
    pub resumed: bool,
    pub error: Option<String>,
    pub triggered_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&RunRecord> for RunView {
    fn from(r: &RunRecord) -> Self {
        let RunCounts {
            pages,
            upserted,
            unchanged,
            removed,
            quarantined,
            truncated,
        } = r.counts;
        Self {
            id: r.id,
            source_id: r.source_id,
            status: r.status,
            manual: r.manual,
            pages,
            upserted,
            unchanged,
            removed,
            quarantined,
            truncated,
            attempts: r.attempts,
            resumed: r.resumed,
            error: r.error.clone(),
            triggered_at: r.triggered_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// A record a source brought.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub key: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub source_id: Uuid,
    #[schema(value_type = Object)]
    pub data: Value,
    pub hash: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// When its data last changed (or it was removed).
    pub changed_at: DateTime<Utc>,
    /// Set when a complete run no longer saw it.
    pub removed_at: Option<DateTime<Utc>>,
}

impl From<&SyncedRecord> for RecordView {
    fn from(r: &SyncedRecord) -> Self {
        Self {
            key: r.key.clone(),
            record_type: r.record_type.clone(),
            source_id: r.source_id,
            data: r.data.clone(),
            hash: r.hash.clone(),
            first_seen_at: r.first_seen_at,
            last_seen_at: r.last_seen_at,
            changed_at: r.changed_at,
            removed_at: r.removed_at,
        }
    }
}

/// An item a run could not read.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct QuarantineView {
    pub id: Uuid,
    pub run_id: Uuid,
    pub page: u64,
    pub item_index: u64,
    pub key: Option<String>,
    pub reason: String,
    /// The start of the item as received (at most 1 KiB).
    pub excerpt: String,
    pub created_at: DateTime<Utc>,
}

impl From<&QuarantinedItem> for QuarantineView {
    fn from(q: &QuarantinedItem) -> Self {
        Self {
            id: q.id,
            run_id: q.run_id,
            page: q.page,
            item_index: q.item_index,
            key: q.key.clone(),
            reason: q.reason.clone(),
            excerpt: q.excerpt.clone(),
            created_at: q.created_at,
        }
    }
}

/// What a request to run a source did.
pub struct RunRequested {
    pub run: RunView,
    /// `false`: a run of the source was already pending or running (that one is named).
    pub queued: bool,
}

/// A source's entity tag: its version is its last change.
pub fn etag(s: &SourceRecord) -> String {
    format!("\"{}\"", s.updated_at.timestamp_micros())
}

/// The schedule that fires a source's runs.
pub fn schedule_name(scope: &TenantScope, source: Uuid) -> String {
    stored_name(Some(scope.tenant_id()), &format!("source:{source}"))
}

/// What a source's header secrets are bound to.
pub(crate) fn seal_binding(tenant: tenantry_domain::TenantId, source: Uuid) -> String {
    format!("sync-source:{tenant}:{source}")
}

fn source_event(ctx: &Ctx, scope: &TenantScope, kind: &str, s: &SourceRecord) -> EventEnvelope {
    EventEnvelope::v1(
        kind,
        s.id.to_string(),
        Some(scope.tenant_id()),
        Some(scope.edition().clone()),
        ctx.trace_id(),
        now(),
        json!({"source_id": s.id, "name": s.name, "kind": s.kind}),
    )
}

impl App {
    /// Checks a source document: every problem named by its field.
    fn check_source(&self, input: &SourceInput, errors: &mut ValidationErrors) {
        if let Some(p) = tenantry_domain::validation::name_problem(&input.name) {
            errors.push("name", p);
        }
        if !KINDS.contains(&input.kind.as_str()) {
            errors.push(
                "kind",
                format!("unknown kind '{}'; known: {}", input.kind, KINDS.join(", ")),
            );
        }
        if let Some(cron) = &input.schedule
            && let Err(e) = ScheduleSpec::cron(cron)
        {
            errors.push("schedule", e.to_string());
        }
        if !(1..=20).contains(&input.max_attempts) {
            errors.push("max_attempts", "must be between 1 and 20");
        }
        let c = &input.config;
        match reqwest::Url::parse(&c.url) {
            Err(e) => errors.push("config.url", format!("is not a URL: {e}")),
            Ok(u) => {
                if !u.username().is_empty() || u.password().is_some() {
                    errors.push(
                        "config.url",
                        "must not carry credentials; send them in config.headers (sealed at rest)",
                    );
                } else if c.url.len() > 2048 {
                    errors.push("config.url", "must be at most 2048 characters");
                } else {
                    match self.sync().egress() {
                        Ok(egress) => {
                            if let Err(e) = egress.check_url(&u) {
                                errors.push("config.url", e.to_string());
                            }
                        }
                        Err(e) => errors.push("config.url", e),
                    }
                }
            }
        }
        if c.headers.len() > MAX_HEADERS {
            errors.push("config.headers", format!("at most {MAX_HEADERS} headers"));
        }
        for (name, value) in &c.headers {
            let field = format!("config.headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(field, "is not a valid header name");
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errors.push(field, "is set by the client and may not be configured");
            } else if value.len() > 8192 {
                errors.push(field, "must be at most 8192 bytes");
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                errors.push(field, "is not a valid header value (visible ASCII)");
            }
        }
        let (config, _) = c.clone().split();
        config.check("config", errors);
    }

    /// The source record for `input` (headers sealed), and its schedule change.
    async fn source_record(
        &self,
        scope: &TenantScope,
        id: Uuid,
        input: SourceInput,
        created_at: DateTime<Utc>,
    ) -> AppResult<SourceRecord> {
        let (config, headers) = input.config.split();
        let sealed_headers = if headers.is_empty() {
            None
        } else {
            let plain = serde_json::to_vec(&headers)
                .map_err(|e| AppError::Store(StoreError::corrupt(format!("headers: {e}"))))?;
            Some(
                self.sync()
                    .sealer()
                    .seal(&plain, &seal_binding(scope.tenant_id(), id))
                    .await
                    .map_err(|e| AppError::Store(StoreError::corrupt(e.to_string())))?,
            )
        };
        Ok(SourceRecord {
            id,
            tenant_id: scope.tenant_id(),
            name: input.name,
            kind: input.kind,
            schedule: input.schedule,
            enabled: input.enabled,
            max_attempts: input.max_attempts,
            config: serde_json::to_value(&config).unwrap_or_default(),
            sealed_headers,
            created_at,
            updated_at: now(),
        })
    }

    fn schedule_of(&self, scope: &TenantScope, s: &SourceRecord) -> Option<ScheduleRecord> {
        let cron = s.schedule.clone()?;
        let at = now();
        let next = ScheduleSpec::cron(&cron).ok()?.first_fire(at).ok();
        Some(ScheduleRecord {
            name: schedule_name(scope, s.id),
            tenant_id: Some(scope.tenant_id()),
            cron: Some(cron),
            interval_ms: None,
            kind: workers::RUN.into(),
            payload: workers::payload(s.id, false, None, s.max_attempts),
            enabled: s.enabled,
            next_fire_at: next,
            last_fired_at: None,
            created_at: at,
            updated_at: at,
        })
    }

    async fn write_source(
        &self,
        scope: &TenantScope,
        record: &SourceRecord,
        expected: Option<DateTime<Utc>>,
        changes: &Changes,
    ) -> AppResult<()> {
        let schedule = self.schedule_of(scope, record);
        let name = schedule_name(scope, record.id);
        let change = match &schedule {
            Some(s) => ScheduleChange::Put(s),
            None => ScheduleChange::Remove(&name),
        };
        match self
            .store
            .sync()
            .put_source(scope, record, expected, change, changes)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::Duplicate(Constraint::SourceName)) => {
                Err(AppError::SourceExists(record.name.clone()))
            }
            // changed between the If-Match check and the write: name the version now stored
            Err(StoreError::VersionConflict) => {
                let current = match self.store.sync().get_source(scope, record.id).await {
                    Ok(Some(now_stored)) => etag(&now_stored),
                    _ => return Err(AppError::SourceNotFound(record.id.to_string())),
                };
                Err(AppError::PreconditionFailed { current })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_source(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        input: SourceInput,
        idem: crate::platform::Idem<'_, SourceView>,
    ) -> AppResult<SourceView> {
        let mut errors = ValidationErrors::default();
        self.check_source(&input, &mut errors);
        errors.into_result()?;
        let header_names: Vec<String> = input.config.headers.keys().cloned().collect();
        let record = self
            .source_record(scope, Uuid::now_v7(), input, now())
            .await?;
        let audit = ctx.audit(
            "source.create",
            "source",
            record.id.to_string(),
            Some(scope.tenant_id()),
            json!({"name": record.name, "kind": record.kind, "schedule": record.schedule, "header_names": header_names}),
        );
        let mut changes = Changes::new(
            audit,
            source_event(ctx, scope, "source.created.v1", &record),
        );
        let view = self.source_view(&record, None, &header_names);
        changes.idempotency = idem.map(|f| f(&view));
        self.write_source(scope, &record, None, &changes).await?;
        Ok(view)
    }

    /// A source as shown: `header_names` in place of its sealed headers.
    pub fn source_view(
        &self,
        s: &SourceRecord,
        last_run: Option<&RunRecord>,
        header_names: &[String],
    ) -> SourceView {
        let mut config = s.config.clone();
        if let Value::Object(map) = &mut config {
            map.insert("header_names".into(), json!(header_names));
        }
        SourceView {
            id: s.id,
            name: s.name.clone(),
            kind: s.kind.clone(),
            schedule: s.schedule.clone(),
            enabled: s.enabled,
            max_attempts: s.max_attempts,
            config,
            created_at: s.created_at,
            updated_at: s.updated_at,
            last_run: last_run.map(RunView::from),
        }
    }

    /// A source's headers (opening its sealed value).
    pub(crate) async fn source_headers(
        &self,
        s: &SourceRecord,
    ) -> AppResult<BTreeMap<String, String>> {
        let Some(sealed) = &s.sealed_headers else {
            return Ok(BTreeMap::new());
        };
        let plain = self
            .sync()
            .sealer()
            .open(sealed, &seal_binding(s.tenant_id, s.id))
            .await
            .map_err(|e| AppError::Store(StoreError::corrupt(format!("source headers: {e}"))))?;
        serde_json::from_slice(&plain)
            .map_err(|e| AppError::Store(StoreError::corrupt(format!("source headers: {e}"))))
    }

    async fn full_view(&self, scope: &TenantScope, s: &SourceRecord) -> AppResult<SourceView> {
        let last = self
            .store
            .sync()
            .list_runs(scope, s.id, PageRequest::first(1))
            .await?;
        let names: Vec<String> = self.source_headers(s).await?.into_keys().collect();
        Ok(self.source_view(s, last.items.first(), &names))
    }

    async fn find_source(&self, scope: &TenantScope, id: &str) -> AppResult<SourceRecord> {
        let Ok(uuid) = Uuid::parse_str(id) else {
            return Err(AppError::SourceNotFound(id.to_owned()));
        };
        self.store
            .sync()
            .get_source(scope, uuid)
            .await?
            .ok_or_else(|| AppError::SourceNotFound(id.to_owned()))
    }

    pub async fn get_source(&self, scope: &TenantScope, id: &str) -> AppResult<SourceView> {
        let s = self.find_source(scope, id).await?;
        self.full_view(scope, &s).await
    }

    pub async fn list_sources(&self, scope: &TenantScope) -> AppResult<Vec<SourceView>> {
        let sources = self.store.sync().list_sources(scope).await?;
        let mut out = Vec::with_capacity(sources.len());
        for s in &sources {
            out.push(self.full_view(scope, s).await?);
        }
        Ok(out)
    }

    /// Changes a source by a JSON merge patch (RFC 7396) of its document (headers included:
    /// `"headers": {"X-Old": null}` removes one).
    pub async fn patch_source(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
        if_match: Option<&str>,
        patch: Value,
    ) -> AppResult<SourceView> {
        let s = self.find_source(scope, id).await?;
        match if_match {
            None => return Err(AppError::PreconditionRequired),
            Some(tag) if tag != "*" && tag != etag(&s) => {
                return Err(AppError::PreconditionFailed { current: etag(&s) });
            }
            Some(_) => {}
        }
        if !patch.is_object() {
            return Err(
                ValidationErrors::single("body", "must be a JSON object (a merge patch)").into(),
            );
        }
        let headers = self.source_headers(&s).await?;
        let mut config = s.config.clone();
        if let Value::Object(map) = &mut config {
            map.insert("headers".into(), json!(headers));
        }
        let mut doc = json!({
            "name": s.name, "kind": s.kind, "schedule": s.schedule, "enabled": s.enabled,
            "max_attempts": s.max_attempts, "config": config,
        });
        tenantry_domain::sync::merge_patch(&mut doc, &patch);
        let input: SourceInput = serde_path_to_error::deserialize(doc).map_err(|e| {
            let at = e.path().to_string();
            ValidationErrors::single(
                if at == "." { "body".to_owned() } else { at },
                e.into_inner().to_string(),
            )
        })?;
        let mut errors = ValidationErrors::default();
        self.check_source(&input, &mut errors);
        errors.into_result()?;
        let changed: Vec<&String> = patch
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let record = self.source_record(scope, s.id, input, s.created_at).await?;
        let audit = ctx.audit(
            "source.update",
            "source",
            s.id.to_string(),
            Some(scope.tenant_id()),
            json!({"name": record.name, "changed": changed}),
        );
        let changes = Changes::new(
            audit,
            source_event(ctx, scope, "source.updated.v1", &record),
        );
        self.write_source(scope, &record, Some(s.updated_at), &changes)
            .await?;
        self.full_view(scope, &record).await
    }

    pub async fn delete_source(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
        idem: Option<IdempotencyRecord>,
    ) -> AppResult<()> {
        let s = self.find_source(scope, id).await?;
        let audit = ctx.audit(
            "source.delete",
            "source",
            s.id.to_string(),
            Some(scope.tenant_id()),
            json!({"name": s.name}),
        );
        let mut changes = Changes::new(audit, source_event(ctx, scope, "source.deleted.v1", &s));
        changes.idempotency = idem;
        let deleted = self
            .store
            .sync()
            .delete_source(scope, s.id, &schedule_name(scope, s.id), &changes)
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(AppError::SourceNotFound(id.to_owned()))
        }
    }

    /// Queues a manual run, unless one of the source is pending or running (then that one).
    pub async fn run_source(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
    ) -> AppResult<RunRequested> {
        let s = self.find_source(scope, id).await?;
        let at = now();
        let mut job = workers::run_job(
            scope.tenant_id(),
            s.id,
            true,
            at,
            s.max_attempts,
            self.sync().config().run_retry(),
            self.sync().config().run_lease(),
        );
        job.trace_parent = ctx.trace_parent();
        let audit = ctx.audit(
            "source.run",
            "source",
            s.id.to_string(),
            Some(scope.tenant_id()),
            json!({"name": s.name, "run_id": job.id}),
        );
        let changes = Changes {
            audit: vec![audit],
            ..Changes::default()
        };
        let queued = self
            .store
            .sync()
            .queue_run(
                scope,
                &QueuedRun {
                    source_id: s.id,
                    triggered_at: at,
                },
                &job,
                &changes,
            )
            .await?;
        let (run_id, fresh) = match queued {
            Enqueued::New(id) => (id, true),
            Enqueued::Existing(id) => (id, false),
        };
        let run = match self.store.sync().get_run(scope, run_id).await? {
            Some(r) => RunView::from(&r),
            // a scheduled run whose worker has not claimed it yet
            None => RunView {
                id: run_id,
                source_id: s.id,
                status: RunStatus::Queued,
                manual: false,
                pages: 0,
                upserted: 0,
                unchanged: 0,
                removed: 0,
                quarantined: 0,
                truncated: 0,
                attempts: 0,
                resumed: false,
                error: None,
                triggered_at: at,
                started_at: at,
                finished_at: None,
            },
        };
        Ok(RunRequested { run, queued: fresh })
    }

    pub async fn list_runs(
        &self,
        scope: &TenantScope,
        id: &str,
        page: PageRequest,
    ) -> AppResult<Page<RunView>> {
        let s = self.find_source(scope, id).await?;
        Ok(self
            .store
            .sync()
            .list_runs(scope, s.id, page)
            .await?
            .map(|r| RunView::from(&r)))
    }

    pub async fn list_quarantine(
        &self,
        scope: &TenantScope,
        id: &str,
        page: PageRequest,
    ) -> AppResult<Page<QuarantineView>> {
        let s = self.find_source(scope, id).await?;
        Ok(self
            .store
            .sync()
            .list_quarantine(scope, s.id, page)
            .await?
            .map(|q| QuarantineView::from(&q)))
    }

    pub async fn list_records(
        &self,
        scope: &TenantScope,
        source: Option<&str>,
        record_type: Option<String>,
        changed_since: Option<DateTime<Utc>>,
        page: PageRequest,
    ) -> AppResult<Page<RecordView>> {
        let source_id = match source {
            Some(id) => Some(self.find_source(scope, id).await?.id),
            None => None,
        };
        let filter = RecordFilter {
            source_id,
            record_type,
            changed_since,
        };
        Ok(self
            .store
            .sync()
            .list_records(scope, &filter, page)
            .await?
            .map(|r| RecordView::from(&r)))
    }
}
