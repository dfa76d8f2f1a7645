//! Job use cases: enqueue registered kinds, read, cancel, retry and replay. A tenant's credential
//! works on its own tenant's jobs only; operators see the platform (every job).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_domain::job::{FailureKind, JobState};
use tenantry_domain::{EventEnvelope, Page, PageRequest, ValidationErrors};
use tenantry_store::Changes;
use tenantry_store::jobs::{Enqueued, JobFilter, JobRecord, NewJob, ReplayFilter};
use uuid::Uuid;

use crate::access::scope::Deleted;
use crate::jobs::workers::Registry;
use crate::platform::{App, AppResult, Ctx, Idem, PlatformOrTenant, now};

/// Most jobs one call may enqueue.
pub const MAX_BATCH: usize = 1000;

/// A job as the API accepts it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub kind: String,
    #[serde(default)]
    pub payload: Option<Value>,
    /// Tenant id or slug (operators); a tenant credential's jobs are always its tenant's.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub priority: Option<i16>,
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub unique_key: Option<String>,
    /// Seconds the unique key stays taken after the job finished.
    #[serde(default)]
    pub unique_window_seconds: Option<u64>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Overrides the kind's lease: how long an attempt may go without a heartbeat.
    #[serde(default)]
    pub lease_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("no job '{0}'")]
    NotFound(Uuid),
    #[error("the job is {0}; only dead, cancelled, retryable or scheduled jobs can be retried")]
    NotRetryable(JobState),
    #[error("the job is already {0}")]
    AlreadyFinished(JobState),
}

fn check_text(errors: &mut ValidationErrors, field: &str, value: &str, max: usize) {
    if value.is_empty()
        || value.len() > max
        || !value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        errors.push(
            field,
            format!("must be 1 to {max} visible ASCII characters"),
        );
    }
}

impl App {
    /// Validates and enqueues jobs (one transaction). Returns each job's outcome in order.
    pub async fn enqueue_jobs(
        &self,
        ctx: &Ctx,
        access: PlatformOrTenant<'_>,
        registry: &Registry,
        requests: Vec<JobRequest>,
        record: Option<&tenantry_store::jobs::RecordFn<'_>>,
    ) -> AppResult<Vec<Enqueued>> {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(ValidationErrors::single(
                "jobs",
                format!("between 1 and {MAX_BATCH} jobs per call"),
            )
            .into());
        }
        let at = now();
        let mut errors = ValidationErrors::default();
        let mut jobs = Vec::with_capacity(requests.len());
        let trace_parent = ctx.trace_parent();
        let mut tenants: std::collections::HashMap<String, tenantry_domain::TenantId> =
            std::collections::HashMap::new();
        for (i, r) in requests.into_iter().enumerate() {
            let field = |f: &str| format!("jobs[{i}].{f}");
            let Some(kind) = registry.get(&r.kind) else {
                errors.push(
                    field("kind"),
                    format!(
                        "unknown job kind '{}'; registered: {}",
                        r.kind,
                        registry.names().join(", ")
                    ),
                );
                continue;
            };
            let tenant_id = match (access, &r.tenant) {
                // a batch naming many tenants looks each one up once
                (PlatformOrTenant::Platform, Some(t)) if tenants.contains_key(t) => {
                    tenants.get(t).copied()
                }
                (_, named) => {
                    let id = self
                        .named_tenant(access, named.as_deref(), Deleted::RefusedWithSuspended)
                        .await?;
                    if let (PlatformOrTenant::Platform, Some(t), Some(id)) = (access, named, id) {
                        tenants.insert(t.clone(), id);
                    }
                    id
                }
            };
            let mut job = NewJob::new(kind.name, r.payload.unwrap_or(json!({})), at);
            job.tenant_id = tenant_id;
            // the job's run continues this request's trace
            job.trace_parent = trace_parent.clone();
            job.lease = kind.lease;
            job.retry = kind.retry;
            job.max_attempts = kind.retry.max_attempts;
            crate::platform::check_document(&mut errors, &field("payload"), &job.payload);
            if let Err(m) = kind.handler.validate(&job.payload) {
                errors.push(
                    field("payload"),
                    format!("not a valid {} payload: {m}", kind.name),
                );
            }
            if let Some(q) = r.queue {
                crate::platform::check_queue(&mut errors, &field("queue"), &q);
                job.queue = q;
            }
            if let Some(p) = r.priority {
                if !(-100..=100).contains(&p) {
                    errors.push(field("priority"), "must be between -100 and 100");
                }
                job.priority = p;
            }
            if let Some(run_at) = r.run_at {
                job.run_at = tenantry_domain::clock::to_stored_precision(run_at).max(at);
            }
            if let Some(key) = r.unique_key {
                check_text(&mut errors, &field("unique_key"), &key, 200);
                // a tenant's keys never collide with another tenant's
                job.unique_key = Some(match tenant_id {
                    Some(t) => format!("{t}:{key}"),
                    None => key,
                });
            }
            if let Some(w) = r.unique_window_seconds {
                if w > 366 * 24 * 3600 {
                    errors.push(field("unique_window_seconds"), "must be at most a year");
                }
                job.unique_window = std::time::Duration::from_secs(w);
            }
            if let Some(l) = r.lease_seconds {
                if !(1..=3600).contains(&l) {
                    errors.push(field("lease_seconds"), "must be between 1 and 3600");
                }
                job.lease = std::time::Duration::from_secs(l);
            }
            if let Some(m) = r.max_attempts {
                if !(1..=100).contains(&m) {
                    errors.push(field("max_attempts"), "must be between 1 and 100");
                }
                job.max_attempts = m;
            }
            // what the kind derives from its payload (a unique key of its own)
            (kind.prepare)(&mut job);
            jobs.push(job);
        }
        if !errors.0.is_empty() {
            return Err(errors.into());
        }
        if let PlatformOrTenant::Tenant(s) = access {
            ctx.note_tenant(s.tenant_id());
        }
        match self.store.jobs().enqueue_recorded(&jobs, record).await {
            Ok(out) => Ok(out),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_job(&self, access: PlatformOrTenant<'_>, id: Uuid) -> AppResult<JobRecord> {
        self.store
            .job_console()
            .get_job(access.scope(), id)
            .await?
            .ok_or_else(|| JobsError::NotFound(id).into())
    }

    pub async fn list_jobs(
        &self,
        access: PlatformOrTenant<'_>,
        filter: &JobFilter,
        page: PageRequest,
    ) -> AppResult<Page<JobRecord>> {
        Ok(self
            .store
            .job_console()
            .list_jobs(access.scope(), filter, page)
            .await?)
    }

    fn job_changes(
        ctx: &Ctx,
        action: &str,
        id: String,
        tenant: Option<tenantry_domain::TenantId>,
        details: Value,
    ) -> Changes {
        let audit = ctx.audit(action, "job", id.clone(), tenant, details.clone());
        let event = EventEnvelope::v1(
            match action {
                "job.cancel" => "job.cancelled.v1",
                "job.retry" => "job.retried.v1",
                _ => "job.replayed.v1",
            },
            id,
            tenant,
            None,
            ctx.trace_id(),
            now(),
            details,
        );
        Changes::new(audit, event)
    }

    /// Cancels a job: pending → cancelled; running → asked to stop at its next heartbeat.
    /// `idem` records the job as this answer shows it (an `Idempotency-Key` replays that).
    pub async fn cancel_job(
        &self,
        ctx: &Ctx,
        access: PlatformOrTenant<'_>,
        id: Uuid,
        idem: Idem<'_, JobRecord>,
    ) -> AppResult<JobRecord> {
        let job = self.get_job(access, id).await?;
        if job.state.is_finished() {
            return Err(JobsError::AlreadyFinished(job.state).into());
        }
        let at = now();
        let mut changes = Self::job_changes(
            ctx,
            "job.cancel",
            id.to_string(),
            job.tenant_id,
            json!({ "job_id": id, "kind": job.kind, "state_before": job.state }),
        );
        let mut after = job;
        if after.state.is_queued() {
            after.state = JobState::Cancelled;
            after.finished_at = Some(at);
        } else {
            after.cancel_requested = true;
        }
        changes.idempotency = idem.map(|f| f(&after));
        // the answer is the job as this change left it (what a replay shows too), not as a
        // worker may have changed it since
        match self
            .store
            .job_console()
            .cancel_job(access.scope(), id, at, &changes)
            .await?
        {
            None => Err(JobsError::NotFound(id).into()),
            Some(s) if s.is_finished() && s != JobState::Cancelled => {
                Err(JobsError::AlreadyFinished(s).into())
            }
            Some(s) if s == after.state => Ok(after),
            Some(_) => self.get_job(access, id).await,
        }
    }

    /// Sends a dead, cancelled, retryable or scheduled job back to the queue now.
    pub async fn retry_job(
        &self,
        ctx: &Ctx,
        access: PlatformOrTenant<'_>,
        id: Uuid,
        idem: Idem<'_, JobRecord>,
    ) -> AppResult<JobRecord> {
        let job = self.get_job(access, id).await?;
        if !job.state.can_retry() {
            return Err(JobsError::NotRetryable(job.state).into());
        }
        let at = now();
        let mut changes = Self::job_changes(
            ctx,
            "job.retry",
            id.to_string(),
            job.tenant_id,
            json!({ "job_id": id, "kind": job.kind, "state_before": job.state }),
        );
        let after = JobRecord {
            state: JobState::Available,
            attempt: 0,
            run_at: at,
            finished_at: None,
            cancel_requested: false,
            lease_owner: None,
            lease_expires_at: None,
            ..job
        };
        changes.idempotency = idem.map(|f| f(&after));
        match self
            .store
            .job_console()
            .retry_job(access.scope(), id, at, &changes)
            .await?
        {
            None => Err(JobsError::NotFound(id).into()),
            Some(JobState::Available) => Ok(after),
            Some(s) => Err(JobsError::NotRetryable(s).into()),
        }
    }

    /// Replays dead (and optionally cancelled) jobs matching the filter; `dry_run` only counts.
    pub async fn replay_jobs(
        &self,
        ctx: &Ctx,
        access: PlatformOrTenant<'_>,
        mut filter: ReplayFilter,
        tenant: Option<&str>,
        dry_run: bool,
    ) -> AppResult<u64> {
        if tenant.is_some() {
            filter.tenant_id = self.named_tenant(access, tenant, Deleted::Allowed).await?;
        }
        let tenant_id = match access {
            PlatformOrTenant::Tenant(s) => Some(s.tenant_id()),
            PlatformOrTenant::Platform => filter.tenant_id,
        };
        let changes = Self::job_changes(
            ctx,
            "job.replay",
            "replay".into(),
            tenant_id,
            json!({
                "kind": filter.kind, "tenant_id": tenant_id, "since": filter.since,
                "until": filter.until, "error_kind": filter.error_kind.map(FailureKind::as_str),
                "include_cancelled": filter.include_cancelled,
            }),
        );
        Ok(self
            .store
            .job_console()
            .replay_jobs(access.scope(), &filter, dry_run, now(), &changes)
            .await?)
    }
}
