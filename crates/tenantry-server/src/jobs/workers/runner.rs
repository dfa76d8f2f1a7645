//! The worker: claims jobs in batches (prefetch up to its free slots), runs each in its own task,
//! completes successes in batches, heartbeats every job it holds in one call per interval, and
//! recovers other workers' expired leases. Idle, it waits for the queue's wake-up signal (an
//! in-process notification, and `LISTEN/NOTIFY` on PostgreSQL) rather than polling.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use tenantry_domain::job::FailureKind;
use tenantry_store::Store;
use tenantry_store::jobs::{Fence, JobRecord, Lease, Outcome};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::observability::traces;
use uuid::Uuid;

use crate::jobs::workers::registry::{JobContext, JobError, Registry};
use crate::platform::now;

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// How often held leases are renewed (keep it well under the shortest lease).
    pub heartbeat: Duration,
    /// Longest wait between two looks at the queue when nothing signals (jobs whose `run_at`
    /// arrives are found this way).
    pub poll: Duration,
    /// Time running jobs get to finish on shutdown before they are cancelled and released.
    pub shutdown_grace: Duration,
    /// Most jobs one tenant may have running at once across every worker (`None`: no cap).
    pub tenant_cap: Option<u32>,
    /// The tenants whose running jobs are counted under their own label (`tenant_metrics`).
    pub tenant_labels: crate::observability::TenantLabels,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            queues: vec!["default".into()],
            concurrency: 16,
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
            tenant_cap: None,
            tenant_labels: crate::observability::TenantLabels::default(),
        }
    }
}

/// A unique name for this worker process: `host:pid:random`.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let tag: u32 = rand::random();
    format!("{host}:{}:{tag:08x}", std::process::id())
}

struct Running {
    fence: Fence,
    kind: String,
    /// A third of the lease: renew at least this often.
    renew_every: Duration,
    renewed: Instant,
    cancel: Arc<AtomicBool>,
    abort: tokio::task::AbortHandle,
    /// Its tenant's `tenant_jobs_running` label, counted while it is here.
    tenant: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.tenant.take() {
            metrics::gauge!("tenant_jobs_running", "tenant" => t).decrement(1.0);
        }
    }
}

struct Done {
    fence: Fence,
    started_at: chrono::DateTime<chrono::Utc>,
    ended_at: chrono::DateTime<chrono::Utc>,
    result: Result<(), JobError>,
    elapsed: Duration,
}

pub struct Worker {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    owner: Arc<str>,
    settings: WorkerSettings,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        owner: String,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            store,
            registry,
            owner: Arc::from(owner),
            settings,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `stop` turns true, then stops claiming, lets running jobs finish within the
    /// grace period, cancels and releases the rest.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let signal = self.store.jobs().job_signal();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut running: HashMap<Uuid, Running> = HashMap::new();
        // checked often; a heartbeat goes out when the job closest to its lease needs one
        let mut heartbeat = tokio::time::interval(Duration::from_millis(100));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping_since: Option<Instant> = None;
        let mut claim_errors = 0u32;
        tracing::info!(worker = %self.owner, concurrency = self.settings.concurrency, queues = ?self.settings.queues, "worker started");
        loop {
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free = self.settings.concurrency.saturating_sub(running.len());
            let mut claimed_all = false;
            // claim in batches: wait until a quarter of the slots are free (or nothing runs)
            let batch_ready = free >= (self.settings.concurrency / 4).max(1) || running.is_empty();
            if stopping_since.is_none() && free > 0 && batch_ready {
                match self
                    .store
                    .jobs()
                    .claim_capped(
                        &self.owner,
                        &self.settings.queues,
                        u32::try_from(free).unwrap_or(u32::MAX),
                        self.settings.tenant_cap,
                        now(),
                    )
                    .await
                {
                    Ok(jobs) => {
                        claim_errors = 0;
                        claimed_all = jobs.len() == free;
                        for job in jobs {
                            self.start(job, &done_tx, &mut running).await;
                        }
                    }
                    Err(e) => {
                        claim_errors += 1;
                        tracing::warn!(error = %e, "claiming jobs failed");
                        metrics::counter!("jobs_claim_errors_total").increment(1);
                    }
                }
            }
            let idle_wait = if claim_errors > 0 {
                Duration::from_millis(200 * u64::from(claim_errors.min(25)))
            } else if claimed_all {
                // the queue may hold more: look again as soon as a slot frees up
                self.settings.poll
            } else {
                self.settings.poll
            };
            let can_take_more =
                stopping_since.is_none() && running.len() < self.settings.concurrency;
            tokio::select! {
                biased;
                _ = stop.changed(), if stopping_since.is_none() => {
                    stopping_since = Some(Instant::now());
                    tracing::info!(worker = %self.owner, running = running.len(), "worker stopping: no new claims");
                }
                Some(first) = done_rx.recv() => {
                    let mut batch = vec![first];
                    while let Ok(more) = done_rx.try_recv() {
                        batch.push(more);
                    }
                    // more are about to finish: one round trip for all of them
                    if batch.len() < running.len() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        while let Ok(more) = done_rx.try_recv() {
                            batch.push(more);
                        }
                    }
                    self.finish(batch, &mut running).await;
                }
                _ = heartbeat.tick() => self.heartbeat(&mut running).await,
                _ = &mut notified, if can_take_more => {}
                _ = tokio::time::sleep(idle_wait), if can_take_more || stopping_since.is_some() => {}
            }
            if let Some(since) = stopping_since {
                if running.is_empty() {
                    break;
                }
                if since.elapsed() >= self.settings.shutdown_grace {
                    self.abandon(&mut running).await;
                    break;
                }
            }
        }
        // anything that finished while we were stopping
        let mut rest = Vec::new();
        while let Ok(d) = done_rx.try_recv() {
            rest.push(d);
        }
        if !rest.is_empty() {
            self.finish(rest, &mut running).await;
        }
        tracing::info!(worker = %self.owner, "worker stopped");
    }

    async fn start(
        &self,
        job: JobRecord,
        done_tx: &mpsc::UnboundedSender<Done>,
        running: &mut HashMap<Uuid, Running>,
    ) {
        let wait = (now() - job.run_at).to_std().unwrap_or_default();
        metrics::histogram!("job_enqueue_to_start_seconds", "kind" => metric_kind(&self.registry, &job.kind))
            .record(wait.as_secs_f64());
        let fence = job.fence();
        let Some(kind) = self.registry.get(&job.kind) else {
            let outcome = Outcome::Failed {
                kind: FailureKind::UnknownKind,
                message: format!("no handler for kind '{}' on this worker", job.kind),
            };
            if let Err(e) = self
                .store
                .jobs()
                .fail(&self.owner, fence, &outcome, now(), rand::random())
                .await
            {
                tracing::warn!(error = %e, job.id = %job.id, "could not fail a job of unknown kind");
            }
            return;
        };
        let cancel = Arc::new(AtomicBool::new(job.cancel_requested));
        let handler = Arc::clone(&kind.handler);
        let mut ctx = JobContext {
            id: job.id,
            kind: job.kind.clone(),
            tenant_id: job.tenant_id,
            attempt: job.attempt,
            payload: job.payload,
            checkpoint: job.checkpoint,
            trace: None,
            fence,
            owner: Arc::clone(&self.owner),
            store: Arc::clone(&self.store),
            cancel: Arc::clone(&cancel),
        };
        // the run continues the trace that enqueued the job (a request's, a schedule firing's)
        let parent = job
            .trace_parent
            .as_deref()
            .map(traces::extract_traceparent)
            .unwrap_or_default();
        let traced = traces::start(
            || format!("job {}", job.kind).into(),
            SpanKind::Consumer,
            || {
                let mut attrs = vec![
                    KeyValue::new("job.kind", job.kind.clone()),
                    KeyValue::new("job.id", job.id.to_string()),
                    KeyValue::new("job.attempt", i64::from(job.attempt)),
                    KeyValue::new("job.queue", job.queue.clone()),
                ];
                if let Some(t) = job.tenant_id {
                    attrs.push(KeyValue::new("tenant.id", t.to_string()));
                }
                attrs
            },
            &parent,
        );
        let span = tracing::info_span!(
            "job",
            job.kind = %job.kind,
            job.id = %job.id,
            job.attempt = job.attempt,
            tenant_id = job.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
            trace_id = %traced.trace.trace_id_hex(),
            span_id = %traced.trace.span_id_hex(),
        );
        ctx.trace = Some(traced.trace);
        let otel_cx = traced.cx;
        let tx = done_tx.clone();
        let task = tokio::spawn(
            async move {
                let started = Instant::now();
                let started_at = chrono::Utc::now();
                // a panicking handler fails its attempt instead of taking the worker down
                let run = async move { handler.run(&mut ctx).await }
                    .in_current_span()
                    .with_current_context();
                let result = match tokio::spawn(run).await {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => {
                        tracing::error!("job handler panicked");
                        Err(JobError::Retryable("the handler panicked".into()))
                    }
                    Err(_) => Err(JobError::Cancelled),
                };
                traces::end(&opentelemetry::Context::current(), result.is_ok());
                let _ = tx.send(Done {
                    fence,
                    started_at,
                    ended_at: chrono::Utc::now(),
                    result,
                    elapsed: started.elapsed(),
                });
            }
            .with_context(otel_cx)
            .instrument(span),
        );
        let tenant = job.tenant_id.map(|t| self.settings.tenant_labels.label(t));
        if let Some(t) = &tenant {
            metrics::gauge!("tenant_jobs_running", "tenant" => t.clone()).increment(1.0);
        }
        running.insert(
            job.id,
            Running {
                tenant,
                fence,
                kind: job.kind,
                renew_every: (job.lease / 3)
                    .clamp(Duration::from_millis(100), self.settings.heartbeat),
                renewed: Instant::now(),
                cancel,
                abort: task.abort_handle(),
            },
        );
    }

    async fn finish(&self, batch: Vec<Done>, running: &mut HashMap<Uuid, Running>) {
        let mut completed = Vec::with_capacity(batch.len());
        let mut kinds: HashMap<Uuid, String> = HashMap::new();
        for d in batch {
            let Some(r) = running.remove(&d.fence.id) else {
                continue; // lease lost earlier; nothing to report
            };
            let kind = metric_kind(&self.registry, &r.kind);
            // one line per execution (target `tenantry::job_runs`, debug): the exactly-once and
            // no-overlap process tests read these
            tracing::debug!(
                target: "tenantry::job_runs",
                job_id = %d.fence.id,
                owner = %self.owner,
                attempt = d.fence.attempt,
                started_us = d.started_at.timestamp_micros(),
                ended_us = d.ended_at.timestamp_micros(),
                ok = d.result.is_ok(),
                "job run"
            );
            metrics::histogram!("job_run_duration_seconds", "kind" => kind.clone())
                .record(d.elapsed.as_secs_f64());
            let outcome = match d.result {
                Ok(()) => {
                    completed.push(d.fence);
                    kinds.insert(d.fence.id, kind);
                    continue;
                }
                Err(JobError::Cancelled) => Outcome::Cancelled,
                Err(JobError::Retryable(message)) => Outcome::Failed {
                    kind: FailureKind::Retryable,
                    message,
                },
                Err(JobError::Permanent(message)) => Outcome::Failed {
                    kind: FailureKind::Permanent,
                    message,
                },
            };
            match self
                .store
                .jobs()
                .fail(&self.owner, d.fence, &outcome, now(), rand::random())
                .await
            {
                Ok(Some(state)) => {
                    metrics::counter!("jobs_failed_total", "kind" => kind.clone(), "state" => state.as_str()).increment(1);
                    if state == tenantry_domain::job::JobState::Dead {
                        metrics::counter!("jobs_dead_total", "kind" => kind).increment(1);
                        tracing::warn!(job.id = %d.fence.id, job.kind = %r.kind, attempt = d.fence.attempt, "job is dead (dead-letter)");
                    }
                }
                Ok(None) => {
                    tracing::info!(job.id = %d.fence.id, "lease lost before the failure was recorded")
                }
                Err(e) => {
                    tracing::warn!(error = %e, job.id = %d.fence.id, "could not record a job failure; its lease will expire")
                }
            }
        }
        if completed.is_empty() {
            return;
        }
        match self
            .store
            .jobs()
            .complete(&self.owner, &completed, now())
            .await
        {
            Ok(done) => {
                if done.len() < completed.len() {
                    tracing::warn!(
                        lost = completed.len() - done.len(),
                        "completions rejected: the leases were lost (another worker owns those attempts)"
                    );
                }
                let mut per_kind: HashMap<&str, u64> = HashMap::new();
                for f in &done {
                    if let Some(k) = kinds.get(&f.id) {
                        *per_kind.entry(k.as_str()).or_default() += 1;
                    }
                }
                for (k, n) in per_kind {
                    metrics::counter!("jobs_completed_total", "kind" => k.to_owned()).increment(n);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = completed.len(), "could not record completions; their leases will expire and they will run again")
            }
        }
    }

    async fn heartbeat(&self, running: &mut HashMap<Uuid, Running>) {
        if !running
            .values()
            .any(|r| r.renewed.elapsed() >= r.renew_every)
        {
            return;
        }
        let sent = Instant::now();
        for r in running.values_mut() {
            r.renewed = sent;
        }
        let fences: Vec<Fence> = running.values().map(|r| r.fence).collect();
        match self
            .store
            .jobs()
            .heartbeat(&self.owner, &fences, now())
            .await
        {
            Ok(states) => {
                for (fence, lease) in states {
                    match lease {
                        Lease::Held { cancel: true } => {
                            if let Some(r) = running.get(&fence.id) {
                                r.cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        Lease::Held { cancel: false } => {}
                        Lease::Lost => {
                            if let Some(r) = running.remove(&fence.id) {
                                r.cancel.store(true, Ordering::Relaxed);
                                r.abort.abort();
                                metrics::counter!("job_leases_lost_total").increment(1);
                                tracing::warn!(job.id = %fence.id, attempt = fence.attempt, "lease lost: job stopped here (another worker may run it)");
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }

    /// Shutdown grace is over: stop what still runs and give it back without counting the attempt.
    async fn abandon(&self, running: &mut HashMap<Uuid, Running>) {
        let fences: Vec<Fence> = running
            .drain()
            .map(|(_, r)| {
                r.cancel.store(true, Ordering::Relaxed);
                r.abort.abort();
                r.fence
            })
            .collect();
        match self.store.jobs().release(&self.owner, &fences, now()).await {
            Ok(n) => tracing::info!(released = n, "released unfinished jobs on shutdown"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release jobs; their leases will expire")
            }
        }
    }
}

/// Recovers expired leases (crashed workers) until `stop`; safe to run on every instance.
pub async fn recover_loop(store: Arc<dyn Store>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        loop {
            match store
                .jobs()
                .recover_expired(now(), 500, rand::random())
                .await
            {
                Ok(r) if r.is_empty() => break,
                Ok(r) => {
                    metrics::counter!("job_lease_expirations_total").increment(r.len() as u64);
                    for (id, state) in &r {
                        tracing::warn!(job.id = %id, new_state = %state, "lease expired: attempt counted as failed");
                    }
                    if r.len() < 500 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease recovery failed");
                    break;
                }
            }
        }
    }
}

/// Dead row versions in the jobs table (two per job run: the claim's and the completion's) after
/// which `tidy_loop` reclaims them: about a second of work at 10 000 jobs/s.
pub const TIDY_AFTER_DEAD_ROWS: u64 = 20_000;

/// Keeps the queue table tidy under sustained load (`JobQueue::tidy_queue`) until `stop`: it
/// checks every `every` and reclaims once `TIDY_AFTER_DEAD_ROWS` dead row versions piled up.
/// Safe on every instance (concurrent vacuums skip each other).
pub async fn tidy_loop(store: Arc<dyn Store>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        match store.jobs().tidy_queue(TIDY_AFTER_DEAD_ROWS).await {
            Ok(true) => {
                metrics::histogram!("job_queue_tidy_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "tidying the job queue failed"),
        }
    }
}

/// Publishes queue depth and dead-letter gauges until `stop`.
pub async fn gauges_loop(store: Arc<dyn Store>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if let Ok(depth) = store.jobs().queue_depth().await {
            for d in depth {
                metrics::gauge!("job_queue_depth", "state" => d.state.as_str(), "kind" => d.kind)
                    .set(d.count as f64);
            }
        }
        if let Ok(dl) = store.jobs().dead_letters().await {
            metrics::gauge!("job_dead_letter_depth").set(dl.count as f64);
            let age = dl
                .oldest
                .map(|t| (now() - t).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("job_dead_letter_oldest_age_seconds").set(age);
        }
    }
}

/// Registered kinds keep their name as a metric label; anything else is `other` (bounded
/// cardinality).
fn metric_kind(registry: &Registry, kind: &str) -> String {
    if registry.get(kind).is_some() {
        kind.to_owned()
    } else {
        "other".into()
    }
}
