//! `sync.run`: one run of a source, on the job engine. The scheduler (a source's schedule) or
//! `POST /v1/sources/{id}:run` only enqueues it; a worker runs it: pages are fetched one after
//! another and each is stored with the run's checkpoint in one transaction, so a retried or
//! recovered attempt continues from the last stored page. A complete run marks the records it
//! did not see removed; a failed one removes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_domain::job::RetryPolicy;
use tenantry_domain::sync::{Checkpoint, HttpJsonConfig, Item, Limits, RunCounts};
use tenantry_domain::{Actor, EventEnvelope, TenantId, TenantRef, TenantScope};
use tenantry_store::jobs::NewJob;
use tenantry_store::sync::{
    PageWrite, QuarantineWrite, RecordWrite, RunClaim, RunEnd, RunStart, SourceRecord,
};
use tenantry_store::{Changes, StoreError};
use uuid::Uuid;

use super::fetch::{FetchError, Upstream, fetch_page, first_page};
use crate::jobs::workers::registry::payload_as;
use crate::jobs::workers::{JobContext, JobError, JobHandler, JobKind, Registry};
use crate::platform::{App, Ctx, now};

pub const RUN: &str = "sync.run";

/// Attempts of a run when its payload does not say (sources always do).
const DEFAULT_ATTEMPTS: u32 = 3;

/// `sync.run`'s payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPayload {
    pub source: Uuid,
    #[serde(default)]
    pub manual: bool,
    #[serde(default)]
    pub triggered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

pub fn payload(
    source: Uuid,
    manual: bool,
    triggered_at: Option<DateTime<Utc>>,
    max_attempts: u32,
) -> Value {
    let mut p = json!({"source": source, "manual": manual, "max_attempts": max_attempts});
    if let Some(t) = triggered_at {
        p["triggered_at"] = json!(t);
    }
    p
}

/// The unique key of a source's runs: one pending or running at a time.
fn unique_key(tenant: TenantId, source: Uuid) -> String {
    format!("sync.run:{tenant}:{source}")
}

/// Every `sync.run` job, however enqueued: one per source at a time, its attempts from the
/// source, its trigger time stamped.
fn prepare(job: &mut NewJob) {
    let Ok(p) = serde_json::from_value::<RunPayload>(job.payload.clone()) else {
        return; // refused by validate
    };
    if let Some(t) = job.tenant_id {
        job.unique_key = Some(unique_key(t, p.source));
        job.unique_window = Duration::ZERO;
    }
    if let Some(m) = p.max_attempts {
        job.max_attempts = m.clamp(1, 20);
    }
    if p.triggered_at.is_none() {
        job.payload["triggered_at"] = json!(job.created_at);
    }
}

/// A manual run's job.
pub fn run_job(
    tenant: TenantId,
    source: Uuid,
    manual: bool,
    at: DateTime<Utc>,
    max_attempts: u32,
    retry: RetryPolicy,
    lease: Duration,
) -> NewJob {
    let mut job = NewJob::new(RUN, payload(source, manual, Some(at), max_attempts), at);
    job.tenant_id = Some(tenant);
    job.lease = lease;
    job.retry = retry;
    prepare(&mut job);
    job
}

struct Run(App);

#[async_trait]
impl JobHandler for Run {
    async fn run(&self, job: &mut JobContext) -> Result<(), JobError> {
        let p: RunPayload = payload_as(&job.payload).map_err(JobError::Permanent)?;
        let Some(tenant_id) = job.tenant_id else {
            return Err(JobError::Permanent(
                "a sync run belongs to a tenant: enqueue it with one".into(),
            ));
        };
        let tenant = self
            .0
            .store()
            .tenants()
            .get(&TenantRef::Id(tenant_id))
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?
            .ok_or_else(|| JobError::Permanent(format!("no tenant {tenant_id}")))?;
        let scope = crate::access::scope::system_scope(&tenant, "sync.run");
        self.0.sync_attempt(&scope, job, &p).await
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        let p: RunPayload = payload_as(payload)?;
        if p.max_attempts.is_some_and(|m| !(1..=20).contains(&m)) {
            return Err("max_attempts: must be between 1 and 20".into());
        }
        Ok(())
    }
}

pub fn register(r: &mut Registry, app: &App) {
    r.register(JobKind {
        name: RUN,
        description: "pulls one source of a tenant page by page, checkpointed (tenant)",
        lease: app.sync().config().run_lease(),
        retry: app.sync().config().run_retry(),
        handler: Arc::new(Run(app.clone())),
        prepare,
    });
}

/// How an attempt ended short of completing.
enum Stop {
    /// Retry later (or dead-letter when no attempt remains).
    Failed(String),
    /// Will not get better by retrying: dead now.
    Permanent(String),
    /// Another attempt owns the run, or the job was cancelled: stop without a word.
    Fenced,
    Cancelled,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionConflict => Stop::Fenced,
            e => Stop::Failed(format!("store: {e}")),
        }
    }
}

/// The run's context: the system, in the job's trace (which continues the enqueuing request's
/// or schedule firing's), so audit records and events of the run carry it.
fn job_ctx(job: &JobContext) -> Ctx {
    Ctx::new(Actor::system(), job.trace)
}

fn run_event(
    ctx: &Ctx,
    scope: &TenantScope,
    kind: &str,
    source: &SourceRecord,
    run: Uuid,
    data: Value,
) -> EventEnvelope {
    let mut body = json!({"source_id": source.id, "source": source.name, "run_id": run});
    if let (Value::Object(b), Value::Object(d)) = (&mut body, data) {
        b.extend(d);
    }
    EventEnvelope::v1(
        kind,
        source.id.to_string(),
        Some(scope.tenant_id()),
        Some(scope.edition().clone()),
        ctx.trace_id(),
        now(),
        body,
    )
}

impl App {
    /// One attempt of a run: claim it, continue from its checkpoint, store page after page,
    /// complete it (reconciling) or record why it failed.
    pub(crate) async fn sync_attempt(
        &self,
        scope: &TenantScope,
        job: &mut JobContext,
        p: &RunPayload,
    ) -> Result<(), JobError> {
        let owner = format!("{}/{}", job.attempt, Uuid::now_v7());
        let max_attempts = p.max_attempts.unwrap_or(DEFAULT_ATTEMPTS);
        let claim = RunClaim {
            id: job.id,
            source_id: p.source,
            manual: p.manual,
            triggered_at: p.triggered_at.unwrap_or_else(now),
            owner: &owner,
            at: now(),
        };
        let start = self
            .store()
            .sync()
            .start_run(scope, &claim)
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        let checkpoint = match start {
            RunStart::AlreadyCompleted => return Ok(()),
            RunStart::NoSource => {
                return Err(JobError::Permanent(format!(
                    "source {} does not exist in this tenant (deleted?)",
                    p.source
                )));
            }
            RunStart::Started { checkpoint, .. } => checkpoint,
        };
        let Some(source) = self
            .store()
            .sync()
            .get_source(scope, p.source)
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?
        else {
            return Err(JobError::Permanent(format!("source {} is gone", p.source)));
        };
        let resumed = checkpoint.is_some();
        if resumed {
            metrics::counter!("sync_run_resumes_total").increment(1);
        }
        let started = Instant::now();
        let limit = Duration::from_secs(u64::from(self.sync().config().run_timeout_seconds));
        let outcome =
            match tokio::time::timeout(limit, self.pull(scope, job, &source, &owner, checkpoint))
                .await
            {
                Ok(o) => o,
                Err(_) => Err(Stop::Failed(format!(
                    "the attempt took longer than sync.run_timeout_seconds ({}s)",
                    limit.as_secs()
                ))),
            };
        let seconds = started.elapsed().as_secs_f64();
        let ctx = job_ctx(job);
        let (error, permanent) = match outcome {
            Ok(counts) => {
                let event = run_event(
                    &ctx,
                    scope,
                    "source.run.completed.v1",
                    &source,
                    job.id,
                    json!({"counts": counts, "resumed": resumed}),
                );
                let changes = Changes {
                    events: vec![event],
                    ..Changes::default()
                };
                return match self
                    .store()
                    .sync()
                    .finish_run(scope, job.id, &owner, &RunEnd::Completed, now(), &changes)
                    .await
                {
                    Ok(removed) => {
                        metrics::counter!("sync_runs_total", "outcome" => "completed").increment(1);
                        metrics::histogram!("sync_run_duration_seconds").record(seconds);
                        tracing::info!(
                            source.id = %source.id, run.id = %job.id, pages = counts.pages,
                            upserted = counts.upserted, unchanged = counts.unchanged,
                            removed, quarantined = counts.quarantined, truncated = counts.truncated,
                            seconds, "source run completed"
                        );
                        Ok(())
                    }
                    Err(StoreError::VersionConflict) => Err(JobError::Cancelled),
                    Err(e) => Err(JobError::Retryable(e.to_string())),
                };
            }
            Err(Stop::Fenced) => return Err(JobError::Cancelled),
            Err(Stop::Cancelled) => ("cancelled".to_owned(), true),
            Err(Stop::Failed(e)) => (e, false),
            Err(Stop::Permanent(e)) => (e, true),
        };
        let dead = permanent || job.attempt >= max_attempts;
        let event = run_event(
            &ctx,
            scope,
            "source.run.failed.v1",
            &source,
            job.id,
            json!({"error": error, "attempt": job.attempt, "dead": dead}),
        );
        let audit = ctx.audit(
            if dead {
                "source.run.dead"
            } else {
                "source.run.failed"
            },
            "source",
            source.id.to_string(),
            Some(scope.tenant_id()),
            json!({"run_id": job.id, "attempt": job.attempt, "error": error}),
        );
        let changes = Changes::new(audit, event);
        match self
            .store()
            .sync()
            .finish_run(
                scope,
                job.id,
                &owner,
                &RunEnd::Failed {
                    error: error.clone(),
                    dead,
                },
                now(),
                &changes,
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::VersionConflict) => return Err(JobError::Cancelled),
            Err(e) => tracing::warn!(error = %e, run.id = %job.id, "cannot record a failed run"),
        }
        metrics::counter!("sync_runs_total", "outcome" => if dead { "dead" } else { "failed" })
            .increment(1);
        metrics::histogram!("sync_run_duration_seconds").record(seconds);
        tracing::warn!(source.id = %source.id, run.id = %job.id, attempt = job.attempt, dead, error = %error, "source run failed");
        if error == "cancelled" {
            Err(JobError::Cancelled)
        } else if permanent {
            Err(JobError::Permanent(error))
        } else {
            Err(JobError::Retryable(error))
        }
    }

    /// Pulls the pages from the checkpoint on; the run's counts when the last page is stored.
    async fn pull(
        &self,
        scope: &TenantScope,
        job: &JobContext,
        source: &SourceRecord,
        owner: &str,
        checkpoint: Option<Checkpoint>,
    ) -> Result<RunCounts, Stop> {
        let config: HttpJsonConfig =
            serde_json::from_value(source.config.clone()).map_err(|e| {
                Stop::Permanent(format!("the source's configuration cannot be read: {e}"))
            })?;
        let headers = self
            .source_headers(source)
            .await
            .map_err(|e| Stop::Permanent(e.to_string()))?;
        let mut header_map = reqwest::header::HeaderMap::new();
        for (k, v) in &headers {
            let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) else {
                return Err(Stop::Permanent(format!("the header '{k}' is not valid")));
            };
            let mut value = value;
            value.set_sensitive(true);
            header_map.insert(name, value);
        }
        let sync = self.sync().config().clone();
        let timeout = Duration::from_millis(u64::from(
            config.timeout_ms.unwrap_or(sync.request_timeout_ms),
        ));
        let limits = Limits {
            max_field_bytes: config.max_field_bytes(),
            max_record_bytes: usize::try_from(sync.max_record_bytes).unwrap_or(usize::MAX),
        };
        let mut cp = match checkpoint {
            Some(cp) => cp,
            None => {
                let (url, page) =
                    first_page(&config.url, &config.pagination).map_err(Stop::Permanent)?;
                Checkpoint {
                    next: Some(url),
                    page,
                    counts: RunCounts::default(),
                }
            }
        };
        let ctx = job_ctx(job);
        let upstream = Upstream {
            tenant: scope.tenant_id(),
            headers: &header_map,
            timeout,
            items: &config.items,
            pagination: &config.pagination,
        };
        while let Some(url) = cp.next.clone() {
            if job.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            if cp.counts.pages >= sync.max_pages {
                return Err(Stop::Permanent(format!(
                    "more than sync.max_pages ({}) pages: the upstream does not stop paginating",
                    sync.max_pages
                )));
            }
            let fetched = fetch_page(self.sync(), &upstream, &url, cp.page)
                .await
                .map_err(|e| match e {
                    FetchError::Permanent(m) => Stop::Permanent(m),
                    FetchError::Failed(m) => Stop::Failed(m),
                })?;
            let page_no = cp.counts.pages + 1;
            metrics::counter!("sync_pages_total").increment(1);
            metrics::counter!("sync_page_bytes_total").increment(fetched.bytes as u64);
            let mut records = Vec::with_capacity(fetched.items.len());
            let mut quarantined = Vec::new();
            let mut audits = Vec::new();
            let mut truncated = 0u64;
            for (i, item) in fetched.items.into_iter().enumerate() {
                match tenantry_domain::sync::read_item(item, &config.key, limits) {
                    Item::Record(r) => {
                        for t in &r.truncations {
                            truncated += 1;
                            audits.push(ctx.audit(
                                "source.record.truncated",
                                "sync_record",
                                r.key.clone(),
                                Some(scope.tenant_id()),
                                json!({"source_id": source.id, "run_id": job.id, "record_type": config.record_type,
                                       "field": t.field, "original_bytes": t.original_bytes, "kept_bytes": t.kept_bytes}),
                            ));
                        }
                        records.push(RecordWrite {
                            key: r.key,
                            data: r.data,
                            hash: r.hash,
                        });
                    }
                    Item::Quarantined {
                        key,
                        reason,
                        excerpt,
                    } => {
                        audits.push(ctx.audit(
                            "source.record.quarantined",
                            "sync_record",
                            key.clone().unwrap_or_default(),
                            Some(scope.tenant_id()),
                            json!({"source_id": source.id, "run_id": job.id, "page": page_no,
                                   "item_index": i, "reason": reason}),
                        ));
                        quarantined.push(QuarantineWrite {
                            item_index: i as u64,
                            key,
                            reason,
                            excerpt,
                        });
                    }
                }
            }
            let mut next = Checkpoint {
                next: fetched.next,
                page: fetched.next_page,
                counts: cp.counts,
            };
            next.counts.pages += 1;
            next.counts.quarantined += quarantined.len() as u64;
            next.counts.truncated += truncated;
            let changes = Changes {
                audit: audits,
                ..Changes::default()
            };
            let write = PageWrite {
                run_id: job.id,
                source_id: source.id,
                owner,
                record_type: &config.record_type,
                page: page_no,
                records: &records,
                quarantined: &quarantined,
                checkpoint: &next,
                at: now(),
            };
            let out = self.write_page_retrying(scope, &write, &changes).await?;
            next.counts.upserted += out.upserted;
            next.counts.unchanged += out.unchanged;
            metrics::counter!("sync_records_total", "result" => "upserted").increment(out.upserted);
            metrics::counter!("sync_records_total", "result" => "unchanged")
                .increment(out.unchanged);
            metrics::counter!("sync_records_total", "result" => "quarantined")
                .increment(quarantined.len() as u64);
            metrics::counter!("sync_truncations_total").increment(truncated);
            cp = next;
        }
        Ok(cp.counts)
    }

    /// A page write, tried again when it lost a lock conflict (nothing of it was written).
    async fn write_page_retrying(
        &self,
        scope: &TenantScope,
        write: &PageWrite<'_>,
        changes: &Changes,
    ) -> Result<tenantry_store::sync::PageOutcome, Stop> {
        let mut tries = 0;
        loop {
            match self.store().sync().write_page(scope, write, changes).await {
                Err(StoreError::Contention(_)) if tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20 * tries)).await;
                }
                other => return other.map_err(Stop::from),
            }
        }
    }
}
