//! The job queue port: durable jobs in the store's own database, so that a job can be enqueued in
//! the same transaction as the business change that causes it (see [`crate::Changes::jobs`]).
//!
//! Every state change a worker makes is *fenced*: it names the job, the worker (`owner`) and the
//! attempt it claimed. A worker whose lease expired (and whose job was claimed again, which bumps
//! the attempt) can no longer complete, fail or checkpoint it.
//!
//! Fairness: each job gets a `fair_key` at enqueue — the larger of the queue's head and the last
//! pending job of its tenant — and workers claim in `(priority desc, fair_key, id)` order. A tenant
//! that enqueues 10 000 jobs occupies keys far ahead; another tenant's jobs land near the head and run
//! next (start-time fair queuing without a per-tenant counter row to contend on).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tenantry_domain::job::{AttemptError, FailureKind, JobState, RetryPolicy};
use tenantry_domain::{Page, PageRequest, TenantId, TenantScope};
use uuid::Uuid;

use crate::{Changes, StoreResult};

/// A job to enqueue. `lease`, `retry` and `max_attempts` normally come from the kind's registration.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    /// While a job with this key is not finished (and for `unique_window` after it finished), an
    /// enqueue with the same key returns the existing job instead of adding one.
    pub unique_key: Option<String>,
    pub unique_window: std::time::Duration,
    pub payload: Value,
    pub priority: i16,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub lease: std::time::Duration,
    pub retry: RetryPolicy,
    pub created_at: DateTime<Utc>,
    /// The W3C `traceparent` of the span that enqueued the job: its run continues that trace.
    pub trace_parent: Option<String>,
}

impl NewJob {
    /// A job with the default queue, priority, lease and retry policy, runnable now.
    pub fn new(kind: &str, payload: Value, now: DateTime<Utc>) -> Self {
        let retry = RetryPolicy::default();
        Self {
            id: Uuid::now_v7(),
            queue: "default".into(),
            kind: kind.into(),
            tenant_id: None,
            unique_key: None,
            unique_window: std::time::Duration::ZERO,
            payload,
            priority: 0,
            max_attempts: retry.max_attempts,
            run_at: now,
            lease: std::time::Duration::from_secs(30),
            retry,
            created_at: now,
            trace_parent: None,
        }
    }
}

/// What an enqueue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    New(Uuid),
    /// A job with the same unique key exists; nothing was added.
    Existing(Uuid),
}

impl Enqueued {
    pub fn id(self) -> Uuid {
        match self {
            Self::New(id) | Self::Existing(id) => id,
        }
    }
}

/// A stored job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub unique_key: Option<String>,
    pub payload: Value,
    pub priority: i16,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    /// How long a claim or heartbeat holds the job.
    pub lease: std::time::Duration,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub checkpoint: Option<Value>,
    pub errors: Vec<AttemptError>,
    pub created_at: DateTime<Utc>,
    /// When the current (or last) attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` of the span that enqueued the job, if it was traced.
    pub trace_parent: Option<String>,
}

impl JobRecord {
    /// The fencing token of the current attempt.
    pub fn fence(&self) -> Fence {
        Fence {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// Names one attempt of one job: only the worker that claimed that attempt may change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    pub id: Uuid,
    pub attempt: u32,
}

/// What a heartbeat found for a job the worker believes it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Still ours; `cancel` when an operator asked to cancel it.
    Held { cancel: bool },
    /// Expired and taken over, finished, or never ours: stop working on it.
    Lost,
}

/// How an attempt ended without success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Failed {
        kind: FailureKind,
        message: String,
    },
    /// The handler stopped because cancellation was requested.
    Cancelled,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub tenant_id: Option<TenantId>,
}

/// Which dead (or cancelled) jobs a replay sends back to the queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    pub kind: Option<String>,
    pub tenant_id: Option<TenantId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only jobs whose last error has this kind.
    pub error_kind: Option<FailureKind>,
    /// Also cancelled jobs (default: dead only).
    pub include_cancelled: bool,
}

/// Builds the idempotency record of an enqueue from its outcome.
pub type RecordFn<'a> = dyn Fn(&[Enqueued]) -> crate::IdempotencyRecord + Send + Sync + 'a;

/// Whose jobs an operation may see: the platform's, or one tenant's.
#[derive(Clone, Copy, Debug)]
pub enum JobScope<'a> {
    System,
    Tenant(&'a TenantScope),
}

impl JobScope<'_> {
    pub fn tenant_id(&self) -> Option<TenantId> {
        match self {
            Self::System => None,
            Self::Tenant(s) => Some(s.tenant_id()),
        }
    }
}

/// Counts by state and kind (for metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    pub state: JobState,
    pub kind: String,
    pub count: i64,
}

/// Dead-letter summary.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeadLetters {
    pub count: i64,
    pub oldest: Option<DateTime<Utc>>,
}

/// The job queue. Implemented by every store adapter; one conformance suite checks them all.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds jobs (one transaction). Unique keys that are taken return [`Enqueued::Existing`].
    async fn enqueue(&self, jobs: &[NewJob]) -> StoreResult<Vec<Enqueued>> {
        self.enqueue_recorded(jobs, None).await
    }

    /// [`enqueue`](Self::enqueue), also storing the idempotency record `record` builds from the
    /// outcome, in the same transaction (a duplicate `Idempotency-Key` rolls everything back).
    async fn enqueue_recorded(
        &self,
        jobs: &[NewJob],
        record: Option<&RecordFn<'_>>,
    ) -> StoreResult<Vec<Enqueued>>;

    /// Claims up to `limit` runnable jobs of `queues` for `owner` in fair order, atomically: no job
    /// is handed to two workers. Each claim starts a new attempt with the job's lease.
    async fn claim(
        &self,
        owner: &str,
        queues: &[String],
        limit: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<JobRecord>> {
        self.claim_capped(owner, queues, limit, None, now).await
    }

    /// `claim`, and with `tenant_cap` no tenant ends up with more than that many running jobs
    /// across every worker (jobs without a tenant are not capped). A claim may then return fewer
    /// than `limit` jobs while capped tenants' jobs wait.
    async fn claim_capped(
        &self,
        owner: &str,
        queues: &[String],
        limit: u32,
        tenant_cap: Option<u32>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<JobRecord>>;

    /// Extends the leases of the listed attempts (one statement per call, not per job).
    async fn heartbeat(
        &self,
        owner: &str,
        jobs: &[Fence],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(Fence, Lease)>>;

    /// Marks attempts completed; returns those that were still held (the others are ignored).
    async fn complete(
        &self,
        owner: &str,
        jobs: &[Fence],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Fence>>;

    /// Ends an attempt without success: retried later with backoff, dead, or cancelled. `unit`
    /// is the jitter draw in `[0, 1)`. Returns the new state, or `None` if the lease was lost.
    async fn fail(
        &self,
        owner: &str,
        job: Fence,
        outcome: &Outcome,
        now: DateTime<Utc>,
        unit: f64,
    ) -> StoreResult<Option<JobState>>;

    /// Saves a checkpoint for the attempt; `false` if the lease was lost.
    async fn checkpoint(
        &self,
        owner: &str,
        job: Fence,
        checkpoint: &Value,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Gives attempts back without counting them (graceful shutdown).
    async fn release(&self, owner: &str, jobs: &[Fence], now: DateTime<Utc>) -> StoreResult<u64>;

    /// Ends attempts whose lease expired (the worker crashed or hung): each counts as a failed
    /// attempt (`lease_expired`) and is retried with backoff or, when exhausted, dead.
    async fn recover_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        unit: f64,
    ) -> StoreResult<Vec<(Uuid, JobState)>>;

    /// Jobs waiting or running, and dead ones, by state and kind (completed and cancelled jobs
    /// are history, not depth: counting them would scan every job kept for retention).
    async fn queue_depth(&self) -> StoreResult<Vec<QueueDepth>>;
    async fn dead_letters(&self) -> StoreResult<DeadLetters>;

    /// Deletes finished jobs that finished before `before` (keeps the hot table small).
    async fn prune_jobs(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64>;

    /// Reclaims what claims and completions leave behind once at least `after_dead_rows` dead
    /// row versions have piled up, so a claim stays a short index walk under sustained load
    /// (PostgreSQL: `VACUUM` of the jobs table, which autovacuum reaches only once per
    /// `autovacuum_naptime`; nothing to do on SQLite). Returns whether it ran. Safe to call from
    /// every instance at once.
    async fn tidy_queue(&self, after_dead_rows: u64) -> StoreResult<bool>;

    /// Notified when jobs may have become available (enqueued here, or — on PostgreSQL — by any
    /// instance): idle workers wait on it instead of polling.
    fn job_signal(&self) -> Arc<tokio::sync::Notify>;
}

/// The job console: what operators and tenants see of jobs, and the dead-letter actions. Every
/// method takes the [`JobScope`] first: the platform's view, or one tenant's.
#[async_trait]
pub trait JobConsole: Send + Sync {
    async fn get_job(&self, scope: JobScope<'_>, id: Uuid) -> StoreResult<Option<JobRecord>>;

    /// Jobs, newest first.
    async fn list_jobs(
        &self,
        scope: JobScope<'_>,
        filter: &JobFilter,
        page: PageRequest,
    ) -> StoreResult<Page<JobRecord>>;

    /// Cancels a pending job at once; a running one is flagged and stops at its next heartbeat.
    /// Returns the job's state after the call (`None`: no such job in scope).
    async fn cancel_job(
        &self,
        scope: JobScope<'_>,
        id: Uuid,
        now: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<Option<JobState>>;

    /// Sends a dead, cancelled, retryable or scheduled job back to the queue now with fresh
    /// attempts (its error history is kept). Returns the job's state after the call.
    async fn retry_job(
        &self,
        scope: JobScope<'_>,
        id: Uuid,
        now: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<Option<JobState>>;

    /// Sends every matching dead (and optionally cancelled) job back to the queue, or only counts
    /// them with `dry_run`.
    async fn replay_jobs(
        &self,
        scope: JobScope<'_>,
        filter: &ReplayFilter,
        dry_run: bool,
        now: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<u64>;
}

/// The pending states, as an SQL list.
macro_rules! pending {
    () => {
        "('scheduled','available','retryable')"
    };
}
pub(crate) use pending;

pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The columns of a job row, in the order both adapters select them.
macro_rules! job_columns {
    () => {
        "id, queue, kind, tenant_id, unique_key, payload, priority, state, attempt, max_attempts, run_at, lease_owner, lease_expires_at, heartbeat_at, cancel_requested, checkpoint, errors, created_at, attempted_at, finished_at, retry_base_ms, retry_cap_ms, unique_window_ms, lease_ms, trace_parent"
    };
}
pub(crate) use job_columns;

/// The fairness lane of a job: its tenant, or the platform lane.
pub(crate) fn lane(tenant: Option<TenantId>) -> String {
    tenant.map(|t| t.to_string()).unwrap_or_default()
}

/// The decision after an attempt ended without success, from the job's own retry policy.
pub(crate) struct FailureDecision {
    pub state: JobState,
    pub run_at: DateTime<Utc>,
    pub error: Option<AttemptError>,
}

pub(crate) fn decide_failure(
    attempt: u32,
    max_attempts: u32,
    retry_base_ms: i64,
    retry_cap_ms: i64,
    outcome: &Outcome,
    now: DateTime<Utc>,
    unit: f64,
) -> FailureDecision {
    match outcome {
        Outcome::Cancelled => FailureDecision {
            state: JobState::Cancelled,
            run_at: now,
            error: None,
        },
        Outcome::Failed { kind, message } => {
            let policy = RetryPolicy {
                max_attempts,
                base: std::time::Duration::from_millis(u64::try_from(retry_base_ms).unwrap_or(0)),
                cap: std::time::Duration::from_millis(u64::try_from(retry_cap_ms).unwrap_or(0)),
            };
            let error = AttemptError::new(attempt, *kind, message, now);
            match policy.after_failure(attempt, max_attempts, *kind, now, unit) {
                tenantry_domain::job::AfterFailure::Dead => FailureDecision {
                    state: JobState::Dead,
                    run_at: now,
                    error: Some(error),
                },
                tenantry_domain::job::AfterFailure::RetryAt(at) => FailureDecision {
                    state: JobState::Retryable,
                    run_at: at,
                    error: Some(error),
                },
            }
        }
    }
}

/// The smallest UUIDv7 of the millisecond `t`: every job created before `t` has a smaller id
/// (ids are UUIDv7), so `id < created_before(t)` bounds a scan to older jobs along the primary key.
pub(crate) fn created_before(t: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_before_bounds_v7_ids() {
        let t = Utc::now();
        let earlier = Uuid::now_v7();
        let floor = created_before(t + chrono::Duration::milliseconds(1));
        assert!(earlier < floor);
        assert_eq!(floor.get_version_num(), 7);
        assert!(created_before(t - chrono::Duration::seconds(1)) < earlier);
    }
}
