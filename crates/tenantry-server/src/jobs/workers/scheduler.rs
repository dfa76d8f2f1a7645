//! The scheduler: fires named schedules (cron or interval) as jobs. Any number of scheduler
//! processes may run; one leads at a time through a [`WorkerLease`]. Each firing is a
//! compare-and-swap on the schedule's next fire time together with an enqueue whose unique key
//! names the fire time, so even two leaders (a paused leader waking after a take-over) enqueue a
//! fire time once. At leadership start, overdue schedules fire once, now, staggered — never a
//! backfill storm, never "one interval later".

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use tenantry_domain::job::{ScheduleSpec, catch_up_fire_time, fire_key};
use tenantry_store::Store;
use tenantry_store::jobs::NewJob;
use tenantry_store::schedules::ScheduleRecord;
use tokio::sync::watch;
use tracing::Instrument;

use crate::observability::traces;

use crate::jobs::workers::registry::Registry;
use crate::platform::now;

/// A named singleton lease (`worker_leases` row): whoever holds it runs the loop it guards.
/// Take-overs and losses are logged.
pub struct WorkerLease {
    store: Arc<dyn Store>,
    name: String,
    owner: String,
    ttl: Duration,
    held: bool,
}

impl WorkerLease {
    pub fn new(store: Arc<dyn Store>, name: &str, owner: String, ttl: Duration) -> Self {
        Self {
            store,
            name: name.to_owned(),
            owner,
            ttl,
            held: false,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes or renews the lease; `true` while this process holds it.
    pub async fn hold(&mut self) -> bool {
        let at = now();
        let until = at + chrono::Duration::from_std(self.ttl).unwrap_or_default();
        let held = match self
            .store
            .leases()
            .acquire(&self.name, &self.owner, at, until)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "could not renew lease; assuming it is lost");
                false
            }
        };
        if held && !self.held {
            tracing::info!(lease = %self.name, owner = %self.owner, "lease taken: this process leads");
        } else if !held && self.held {
            tracing::warn!(lease = %self.name, owner = %self.owner, "lease lost: another process leads");
        }
        self.held = held;
        held
    }

    pub async fn release(&mut self) {
        if self.held {
            if let Err(e) = self.store.leases().release(&self.name, &self.owner).await {
                tracing::warn!(lease = %self.name, error = %e, "could not release lease; it will expire");
            } else {
                tracing::info!(lease = %self.name, owner = %self.owner, "lease released");
            }
            self.held = false;
        }
    }
}

#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    /// Leadership lease; a dead leader is replaced within this time.
    pub lease: Duration,
    /// How often due schedules are looked for.
    pub tick: Duration,
    /// Offset between overdue schedules fired at leadership start.
    pub stagger: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            tick: Duration::from_millis(200),
            stagger: Duration::from_millis(250),
        }
    }
}

/// A schedule's timing.
pub fn spec_of(s: &ScheduleRecord) -> Option<ScheduleSpec> {
    match (&s.cron, s.interval_ms) {
        (Some(c), _) => ScheduleSpec::cron(c).ok(),
        (None, Some(ms)) => u64::try_from(ms)
            .ok()
            .map(|ms| ScheduleSpec::Interval(Duration::from_millis(ms))),
        (None, None) => None,
    }
}

/// Runs the scheduler loop until `stop`.
pub async fn run(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    settings: SchedulerSettings,
    mut stop: watch::Receiver<bool>,
) {
    run_as(
        store,
        registry,
        settings,
        crate::jobs::workers::worker_id(),
        &mut stop,
    )
    .await;
}

pub async fn run_as(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    settings: SchedulerSettings,
    owner: String,
    stop: &mut watch::Receiver<bool>,
) {
    let mut lease = WorkerLease::new(Arc::clone(&store), "scheduler", owner, settings.lease);
    let renew_every = settings.lease / 3;
    let mut last_renew: Option<std::time::Instant> = None;
    let mut leading = false;
    loop {
        // The leader renews every third of its lease. A standby asks every tick (a compare-and-
        // swap that changes nothing while the leader lives), so that it takes over at most one
        // tick after the lease runs out: within one lease period of the leader's death.
        let due = if leading { renew_every } else { settings.tick };
        if last_renew.is_none_or(|t| t.elapsed() >= due) {
            let was = leading;
            leading = lease.hold().await;
            last_renew = Some(std::time::Instant::now());
            metrics::gauge!("scheduler_leader").set(if leading { 1.0 } else { 0.0 });
            if leading && !was {
                metrics::counter!("scheduler_leadership_changes_total").increment(1);
                catch_up(&store, settings.stagger).await;
            }
        }
        if leading {
            fire_due(&store, &registry).await;
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(settings.tick) => {}
        }
    }
    lease.release().await;
    metrics::gauge!("scheduler_leader").set(0.0);
}

/// Overdue schedules fire once, now, each a little after the previous one.
async fn catch_up(store: &Arc<dyn Store>, stagger: Duration) {
    let at = now();
    let Ok(due) = store.schedules().due(at, 10_000).await else {
        return;
    };
    for (i, s) in due.iter().enumerate() {
        let Some(next) = s.next_fire_at else { continue };
        let offset = stagger * u32::try_from(i).unwrap_or(u32::MAX);
        let when = catch_up_fire_time(next, at, offset);
        if when != next
            && let Err(e) = store.schedules().reschedule(&s.name, next, when).await
        {
            tracing::warn!(schedule = %s.name, error = %e, "could not reschedule an overdue schedule");
        }
    }
}

async fn fire_due(store: &Arc<dyn Store>, registry: &Registry) {
    let at = now();
    let due = match store.schedules().due(at, 100).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not read due schedules");
            return;
        }
    };
    for s in due {
        let Some(fired) = s.next_fire_at else {
            continue;
        };
        let Some(spec) = spec_of(&s) else {
            tracing::warn!(schedule = %s.name, "schedule has no valid cron or interval; skipped");
            continue;
        };
        let next = match spec.next_after_firing(fired, at) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(schedule = %s.name, error = %e, "schedule never fires again");
                continue;
            }
        };
        // each firing is the root of a trace that its job's run continues
        let firing = traces::start(
            || "schedule fire".into(),
            SpanKind::Producer,
            || {
                let mut attrs = vec![
                    KeyValue::new("schedule.name", s.name.clone()),
                    KeyValue::new("job.kind", s.kind.clone()),
                ];
                if let Some(t) = s.tenant_id {
                    attrs.push(KeyValue::new("tenant.id", t.to_string()));
                }
                attrs
            },
            &opentelemetry::Context::new(),
        );
        let trace = firing.trace;
        let span = tracing::info_span!(
            "schedule_fire",
            schedule.name = %s.name,
            job.kind = %s.kind,
            tenant_id = s.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
            trace_id = %trace.trace_id_hex(),
        );
        let mut job = NewJob::new(&s.kind, s.payload.clone(), at);
        job.trace_parent = Some(traces::traceparent(&trace));
        if let Some(kind) = registry.get(&s.kind) {
            job.lease = kind.lease;
            job.retry = kind.retry;
            job.max_attempts = kind.retry.max_attempts;
        }
        job.tenant_id = s.tenant_id;
        job.unique_key = Some(fire_key(&s.name, fired));
        job.unique_window = Duration::from_secs(24 * 3600);
        if let Some(kind) = registry.get(&s.kind) {
            (kind.prepare)(&mut job);
        }
        let fired_now = store
            .schedules()
            .fire(&s.name, fired, next, &job)
            .with_context(firing.cx.clone())
            .instrument(span.clone())
            .await;
        if firing.cx.has_active_span() {
            traces::end(&firing.cx, fired_now.is_ok());
        }
        match fired_now {
            Ok(true) => {
                metrics::counter!("schedule_fired_total").increment(1);
                span.in_scope(|| {
                    tracing::info!(schedule = %s.name, fire_time = %fired, next = %next, job.id = %job.id, "schedule fired");
                });
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(schedule = %s.name, error = %e, "could not fire schedule"),
        }
    }
}
