//! `/v1/jobs`: enqueue registered kinds, inspect, cancel, retry and replay (the dead-letter
//! console). Tenant credentials work on their tenant's jobs; an operator who names no tenant works
//! on the platform's (every job).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry_domain::Scope;
use tenantry_domain::job::{AttemptError, FailureKind, JobState};
use tenantry_store::IdempotencyRecord;
use tenantry_store::jobs::{Enqueued, JobFilter, JobRecord, ReplayFilter};
use uuid::Uuid;

use crate::access::scope::Deleted;
use crate::jobs::service::JobRequest;
use crate::platform::http::AppState;
use crate::platform::http::extract::PlatformOrTenantCtx;
use crate::platform::http::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery, need};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/jobs",
        Access::Tenant(Scope::JobsManage),
        enqueue,
    )
    .doc(
        Doc::new("Enqueue a job, or up to 1 000 at once")
            .body::<EnqueueBody>()
            .ok::<EnqueueAnswer>(201)
            .also(200),
    )
    .add_queried(
        Method::GET,
        "/v1/jobs",
        Access::Tenant(Scope::JobsRead),
        list,
    )
    .doc(
        Doc::new("List jobs, newest first")
            .page::<JobView>()
            .query(&PAGING)
            .query(&[
                QueryParam::one_of("state", "the job state", JOB_STATES),
                QueryParam::string("kind", "a job kind"),
                QueryParam::string("tenant", "operators: one tenant's jobs (id or slug)"),
            ]),
    )
    .add(
        Method::GET,
        "/v1/jobs/{job}",
        Access::Tenant(Scope::JobsRead),
        show,
    )
    .doc(Doc::new("Read a job, with its errors").ok::<JobView>(200))
    .add(
        Method::POST,
        "/v1/jobs/{job}:retry",
        Access::Tenant(Scope::JobsManage),
        act,
    )
    .doc(Doc::new("Send a job back to the queue now").ok::<JobView>(200))
    .add(
        Method::POST,
        "/v1/jobs/{job}:cancel",
        Access::Tenant(Scope::JobsManage),
        act,
    )
    .doc(Doc::new("Cancel a job").ok::<JobView>(200))
    .add(
        Method::POST,
        "/v1/jobs:replay",
        Access::Tenant(Scope::JobsManage),
        replay,
    )
    .doc(
        Doc::new("Replay dead (and optionally cancelled) jobs")
            .optional_body::<ReplayBody>()
            .idempotent_by_itself(),
    )
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobView {
    id: Uuid,
    queue: String,
    kind: String,
    tenant_id: Option<String>,
    unique_key: Option<String>,
    payload: Value,
    priority: i16,
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    run_at: DateTime<Utc>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
    cancel_requested: bool,
    checkpoint: Option<Value>,
    errors: Vec<AttemptError>,
    created_at: DateTime<Utc>,
    attempted_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<JobRecord> for JobView {
    fn from(j: JobRecord) -> Self {
        // tenant unique keys are stored as "<tenant>:<key>"; show the caller's key
        let unique_key = match (&j.unique_key, j.tenant_id) {
            (Some(k), Some(t)) => Some(k.strip_prefix(&format!("{t}:")).unwrap_or(k).to_owned()),
            (k, _) => k.clone(),
        };
        Self {
            id: j.id,
            queue: j.queue,
            kind: j.kind,
            tenant_id: j.tenant_id.map(|t| t.to_string()),
            unique_key,
            payload: j.payload,
            priority: j.priority,
            state: j.state,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            run_at: j.run_at,
            lease_owner: j.lease_owner,
            lease_expires_at: j.lease_expires_at,
            heartbeat_at: j.heartbeat_at,
            cancel_requested: j.cancel_requested,
            checkpoint: j.checkpoint,
            errors: j.errors,
            created_at: j.created_at,
            attempted_at: j.attempted_at,
            finished_at: j.finished_at,
        }
    }
}

/// One job, or `{"jobs": [...]}` (up to 1 000).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum EnqueueBody {
    Batch { jobs: Vec<JobRequest> },
    One(JobRequest),
}

/// What `POST /v1/jobs` answers (documentation: the one shape or the other).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum EnqueueAnswer {
    Batch {
        jobs: Vec<EnqueuedView>,
        created: usize,
        existing: usize,
    },
    One(EnqueuedView),
}

#[derive(Serialize, utoipa::ToSchema)]
struct EnqueuedView {
    id: Uuid,
    /// `created`, or `existing` when a job with the same unique key is not finished.
    status: &'static str,
}

fn enqueue_reply(batch: bool, out: &[Enqueued]) -> Reply {
    let views: Vec<EnqueuedView> = out
        .iter()
        .map(|e| EnqueuedView {
            id: e.id(),
            status: match e {
                Enqueued::New(_) => "created",
                Enqueued::Existing(_) => "existing",
            },
        })
        .collect();
    if batch {
        let created = out.iter().filter(|e| matches!(e, Enqueued::New(_))).count();
        return Reply::json(
            StatusCode::CREATED,
            Vec::new(),
            &serde_json::json!({ "jobs": views, "created": created, "existing": out.len() - created }),
        );
    }
    let status = match out.first() {
        Some(Enqueued::Existing(_)) => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    let headers = out
        .first()
        .map(|e| vec![(header::LOCATION.to_string(), format!("/v1/jobs/{}", e.id()))])
        .unwrap_or_default();
    Reply::json(status, headers, &views.first())
}

async fn enqueue(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsManage>,
    headers: HeaderMap,
    body: ApiJson<Value>,
) -> Result<Response, Problem> {
    let parsed: EnqueueBody = match serde_json::from_value(body.value.clone()) {
        Ok(b) => b,
        Err(_) => {
            // re-parse strictly for a precise error (field paths, unknown fields)
            let strict = if body.value.get("jobs").is_some() {
                crate::platform::http::extract::parse_json::<BatchStrict>(
                    body.document.to_string().as_bytes(),
                )
                .map(|b| EnqueueBody::Batch { jobs: b.value.jobs })
            } else {
                crate::platform::http::extract::parse_json::<JobRequest>(
                    body.document.to_string().as_bytes(),
                )
                .map(|b| EnqueueBody::One(b.value))
            };
            strict?
        }
    };
    let (batch, requests) = match parsed {
        EnqueueBody::Batch { jobs } => (true, jobs),
        EnqueueBody::One(job) => (false, vec![job]),
    };
    let path = match &j.tenant {
        Some(t) => format!("/v1/jobs?tenant={}", t.access.tenant.id),
        None => "/v1/jobs".to_owned(),
    };
    let idem = match idempotency::prepare(
        &state,
        &j.principal,
        "POST",
        &path,
        &headers,
        &body.document,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |out: &[Enqueued]| {
        enqueue_reply(batch, out).record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&tenantry_store::jobs::RecordFn<'_>> = idem.as_ref().map(|_| &record as _);
    let mut result = state
        .app
        .enqueue_jobs(&j.ctx, j.access(), &state.jobs, requests, builder)
        .await;
    // the use case speaks of a batch (`jobs[0].kind`); a single-job body names its own fields
    if !batch && let Err(crate::platform::AppError::Validation(errors)) = &mut result {
        for e in &mut errors.0 {
            if let Some(rest) = e.field.strip_prefix("jobs[0].") {
                e.field = rest.to_owned();
            }
        }
    }
    idempotency::finish(&state, idem.as_ref(), result, |out| {
        enqueue_reply(batch, out)
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchStrict {
    jobs: Vec<JobRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    tenant: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

const JOB_STATES: &[&str] = &[
    "scheduled",
    "available",
    "running",
    "retryable",
    "paused",
    "completed",
    "cancelled",
    "dead",
];

/// A query parameter with a value it cannot take: `400 invalid_query`, like every query error.
fn bad_query(field: &str, message: String) -> Problem {
    Problem::new(Kind::InvalidQuery, format!("{field}: {message}"))
}

async fn list(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let list = match j.access().tenant_id() {
        Some(t) => format!("jobs:{t}"),
        None => "jobs".to_owned(),
    };
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let mut filter = JobFilter {
        state: q
            .state
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| bad_query("state", e))?,
        kind: q.kind,
        tenant_id: None,
    };
    if q.tenant.is_some() {
        filter.tenant_id = state
            .app
            .named_tenant(j.access(), q.tenant.as_deref(), Deleted::Allowed)
            .await?;
    }
    let jobs = state.app.list_jobs(j.access(), &filter, page).await?;
    Ok(axum::Json(state.cursors.seal(&list, jobs.map(JobView::from)).await?).into_response())
}

fn job_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| {
        Problem::new(
            Kind::JobNotFound,
            format!("no job '{raw}' (job ids are UUIDs)"),
        )
    })
}

async fn show(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsRead>,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let job = state.app.get_job(j.access(), job_id(&raw)?).await?;
    Ok(axum::Json(JobView::from(job)).into_response())
}

async fn act(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsManage>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    _: crate::platform::http::extract::NoBody,
) -> Result<Response, Problem> {
    let Some((id, verb)) = raw.rsplit_once(':') else {
        return Err(Problem::new(
            Kind::MethodNotAllowed,
            "POST on a job needs a verb: /v1/jobs/{id}:retry or /v1/jobs/{id}:cancel",
        ));
    };
    let id = job_id(id)?;
    if !matches!(verb, "retry" | "cancel") {
        return Err(Problem::new(
            Kind::NotFound,
            format!("no operation '{verb}' on jobs (retry, cancel)"),
        ));
    }
    let path = format!("/v1/jobs/{id}:{verb}");
    let idem =
        match idempotency::prepare(&state, &j.principal, "POST", &path, &headers, &Value::Null)
            .await?
        {
            Prepared::Replay(resp) => return Ok(resp),
            Prepared::Fresh(idem) => idem,
        };
    let reply =
        |job: &JobRecord| Reply::json(StatusCode::OK, Vec::new(), &JobView::from(job.clone()));
    let record = |job: &JobRecord| -> IdempotencyRecord {
        reply(job).record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&JobRecord) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = if verb == "retry" {
        state.app.retry_job(&j.ctx, j.access(), id, builder).await
    } else {
        state.app.cancel_job(&j.ctx, j.access(), id, builder).await
    };
    idempotency::finish(&state, idem.as_ref(), result, reply).await
}

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    kind: Option<String>,
    tenant: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    error_kind: Option<FailureKind>,
    #[serde(default)]
    include_cancelled: bool,
    #[serde(default)]
    dry_run: bool,
}

async fn replay(
    State(state): State<AppState>,
    j: PlatformOrTenantCtx<need::JobsManage>,
    headers: HeaderMap,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReplayBody>,
) -> Result<Response, Problem> {
    // its answer (how many jobs moved) is known only once it ran, so it cannot be recorded with
    // the change; a retry is safe as it is (it moves what is dead then, and creates nothing)
    if headers.contains_key(idempotency::HEADER) {
        return Err(Problem::new(
            Kind::InvalidHeader,
            "POST /v1/jobs:replay does not take an Idempotency-Key: retrying it is safe as it is (it sends back to the queue only jobs that are dead at that moment and never creates one)",
        ));
    }
    let b = body.value;
    let filter = ReplayFilter {
        kind: b.kind,
        tenant_id: None,
        since: b.since,
        until: b.until,
        error_kind: b.error_kind,
        include_cancelled: b.include_cancelled,
    };
    let n = state
        .app
        .replay_jobs(&j.ctx, j.access(), filter, b.tenant.as_deref(), b.dry_run)
        .await?;
    let key = if b.dry_run {
        "would_replay"
    } else {
        "replayed"
    };
    Ok(axum::Json(serde_json::json!({ key: n, "dry_run": b.dry_run })).into_response())
}
