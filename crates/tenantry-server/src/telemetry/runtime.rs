//! What ingestion holds while the process runs: the in-flight budget, the group committer and
//! the live feed of accepted events.
//!
//! **Group commit.** A request hands its checked events to the committer and waits for its
//! outcome. The committer's workers each take whatever requests are waiting (up to
//! `[telemetry] max_commit_events` events) and store them in one transaction, each batch under
//! its own tenant's fence; every request is answered once that transaction has committed. A
//! group that fails is retried a request at a time, so one request's failure is its own.
//! Requests arriving while a commit runs form the next group: the busier the server, the
//! larger the transactions.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tenantry_domain::TenantScope;
use tenantry_domain::telemetry::TelemetryEvent;
use tenantry_store::telemetry::{Batch, Outcome, Registration, UnknownDevices};
use tenantry_store::{Store, StoreResult};
use tokio::sync::{Mutex, Semaphore, broadcast, mpsc, oneshot};

use opentelemetry::context::FutureExt as _;

use super::config::TelemetryConfig;
use crate::platform::{AppError, AppResult};

/// One request's events waiting for a commit.
struct Pending {
    scope: TenantScope,
    events: Vec<TelemetryEvent>,
    received_at: DateTime<Utc>,
    /// `None`: events of unknown devices are refused.
    register: Option<Box<Registration<'static>>>,
    queued: std::time::Instant,
    /// The request's span, linked from the group commit's.
    trace: Option<opentelemetry::trace::SpanContext>,
    reply: oneshot::Sender<(Vec<TelemetryEvent>, StoreResult<Outcome>)>,
}

impl Pending {
    fn batch(&self) -> Batch<'_> {
        Batch {
            scope: &self.scope,
            events: &self.events,
            received_at: self.received_at,
            unknown_devices: match &self.register {
                Some(r) => UnknownDevices::Register(r.as_ref()),
                None => UnknownDevices::Reject,
            },
        }
    }
}

/// Events a request stored, as the live feed carries them.
#[derive(Debug)]
pub struct Accepted {
    pub scope: TenantScope,
    pub events: Vec<TelemetryEvent>,
    pub received_at: DateTime<Utc>,
}

pub struct TelemetryRuntime {
    budget: Arc<Semaphore>,
    /// Request bodies being read or parsed, in KiB (`[telemetry] max_in_flight_bytes`).
    bytes: Arc<Semaphore>,
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
    workers: usize,
    max_commit_events: usize,
    live: broadcast::Sender<Arc<Accepted>>,
    /// Where archives go (`[telemetry] archive_url`), opened on first use.
    archive_url: String,
    archive: OnceLock<Result<Arc<dyn tenantry_blob::BlobStore>, String>>,
    /// `true` once the process stops: live streams end so that shutdown is not held up.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Accepted batches the live feed holds for a slow subscriber before it skips ahead.
const LIVE_BACKLOG: usize = 1024;

impl TelemetryRuntime {
    pub fn new(config: &TelemetryConfig) -> Self {
        Self {
            archive_url: config.archive_url.clone(),
            archive: OnceLock::new(),
            budget: Arc::new(Semaphore::new(config.max_in_flight_events as usize)),
            bytes: Arc::new(Semaphore::new(
                config.max_in_flight_bytes.div_ceil(1024) as usize
            )),
            queue: OnceLock::new(),
            workers: config.commit_workers as usize,
            max_commit_events: config.max_commit_events as usize,
            live: broadcast::channel(LIVE_BACKLOG).0,
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// The archive's blob store.
    pub fn archive(&self) -> Result<Arc<dyn tenantry_blob::BlobStore>, String> {
        self.archive
            .get_or_init(|| {
                tenantry_blob::ObjectBlobs::open(&self.archive_url)
                    .map(|b| Arc::new(b) as Arc<dyn tenantry_blob::BlobStore>)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// The in-flight budget of device events (tests hold it to simulate load).
    pub fn budget(&self) -> &Arc<Semaphore> {
        &self.budget
    }

    /// Reserves room for a request body of `length` bytes (at most a whole request's worth),
    /// or `None` when the bytes budget is spent.
    pub(crate) fn reserve_bytes(&self, length: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = length
            .clamp(1, super::config::MAX_REQUEST_BYTES)
            .div_ceil(1024);
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX))
            .ok()
    }

    /// Newly stored events of every tenant of this process, as they commit.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Accepted>> {
        self.live.subscribe()
    }

    /// Resolves when the process stops (immediately if it has).
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends the live streams (the process is stopping).
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    pub(crate) fn has_subscribers(&self) -> bool {
        self.live.receiver_count() > 0
    }

    pub(crate) fn publish(&self, accepted: Accepted) {
        if !accepted.events.is_empty() {
            let _ = self.live.send(Arc::new(accepted));
        }
    }

    /// Stores one request's events in the next group commit; returns once it has committed,
    /// with the events back.
    pub(crate) async fn commit(
        &self,
        store: &Arc<dyn Store>,
        scope: TenantScope,
        events: Vec<TelemetryEvent>,
        received_at: DateTime<Utc>,
        register: Option<Box<Registration<'static>>>,
    ) -> (Vec<TelemetryEvent>, AppResult<Outcome>) {
        let queue = self.queue.get_or_init(|| self.start(store));
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            scope,
            events,
            received_at,
            register,
            queued: std::time::Instant::now(),
            trace: crate::observability::traces::current_span_context(),
            reply,
        };
        if let Err(mpsc::error::SendError(pending)) = queue.send(pending) {
            // the workers are gone (the runtime is shutting down): commit alone
            let result = commit_alone(store, &pending).await;
            return (pending.events, result.map_err(AppError::from));
        }
        match outcome.await {
            Ok((events, result)) => (events, result.map_err(AppError::from)),
            Err(_) => (
                Vec::new(),
                Err(AppError::OutcomeUnknown(
                    "the telemetry committer stopped before answering: the events may or may not be stored; resend them (their event_id makes that safe)",
                )),
            ),
        }
    }

    fn start(&self, store: &Arc<dyn Store>) -> mpsc::UnboundedSender<Pending> {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        // SQLite has one writer: a second committer would only wait for it, and split the
        // groups it could have joined
        let workers = match store.backend() {
            tenantry_store::Backend::Sqlite => 1,
            _ => self.workers.max(1),
        };
        for _ in 0..workers {
            tokio::spawn(work(
                Arc::clone(store),
                Arc::clone(&rx),
                self.max_commit_events,
            ));
        }
        tx
    }
}

/// A committer worker: takes the requests waiting, commits them together, answers each.
async fn work(
    store: Arc<dyn Store>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    max_events: usize,
) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut events = first.events.len();
            let mut group = vec![first];
            while events < max_events {
                match queue.try_recv() {
                    Ok(p) => {
                        events += p.events.len();
                        group.push(p);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        commit_group(&store, group).await;
    }
}

async fn commit_group(store: &Arc<dyn Store>, group: Vec<Pending>) {
    let events: usize = group.iter().map(|p| p.events.len()).sum();
    for p in &group {
        metrics::histogram!("telemetry_commit_wait_seconds")
            .record(p.queued.elapsed().as_secs_f64());
    }
    let batches: Vec<Batch<'_>> = group.iter().map(Pending::batch).collect();
    // one span for the shared transaction, linked to every request's span; the store's span is
    // its child
    let tenants: std::collections::HashSet<_> = group.iter().map(|p| p.scope.tenant_id()).collect();
    let cx = crate::observability::traces::start_linked(
        "telemetry group commit",
        || {
            vec![
                opentelemetry::KeyValue::new("telemetry.requests", group.len() as i64),
                opentelemetry::KeyValue::new("telemetry.events", events as i64),
                opentelemetry::KeyValue::new("telemetry.tenants", tenants.len() as i64),
            ]
        },
        group.iter().filter_map(|p| p.trace.clone()),
    );
    let result = store
        .telemetry()
        .insert_group(&batches)
        .with_context(cx.clone())
        .await;
    crate::observability::traces::end(&cx, result.is_ok());
    drop(batches);
    match result {
        Ok(outcomes) => {
            metrics::histogram!("telemetry_commit_events").record(events as f64);
            for (p, o) in group.into_iter().zip(outcomes) {
                let _ = p.reply.send((p.events, Ok(o)));
            }
        }
        Err(e) if group.len() == 1 && !matches!(e, tenantry_store::StoreError::Contention(_)) => {
            if let Some(p) = group.into_iter().next() {
                let _ = p.reply.send((p.events, Err(e)));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, requests = group.len(), "a telemetry group commit failed; committing its requests one by one");
            for p in group {
                let result = commit_alone(store, &p).await;
                let _ = p.reply.send((p.events, result));
            }
        }
    }
}

/// One request's batch in a transaction of its own. A lost lock conflict (two groups writing the
/// same new ids in different orders deadlock, and PostgreSQL rolls one back) is retried a few
/// times after a short random pause: nothing of the attempt was written.
async fn commit_alone(store: &Arc<dyn Store>, p: &Pending) -> StoreResult<Outcome> {
    let mut attempt = 0;
    loop {
        match store.telemetry().insert_group(&[p.batch()]).await {
            Ok(mut out) => {
                metrics::histogram!("telemetry_commit_events").record(p.events.len() as f64);
                return Ok(out.pop().unwrap_or_default());
            }
            Err(tenantry_store::StoreError::Contention(_)) if attempt < 5 => {
                attempt += 1;
                let pause = rand::random::<u64>() % (10 * attempt);
                tokio::time::sleep(std::time::Duration::from_millis(pause + 1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
