//! Jobs: the durable job engine's console and API ([`service`], [`http`]), schedules
//! ([`schedules`]), and the background work of the `worker` and `scheduler` roles ([`workers`]).

pub mod config;
pub mod http;
pub mod schedules;
pub mod service;
pub mod workers;

use std::time::Duration;

use crate::{Runtime, Task};

/// What this capability adds to the server.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "jobs",
    routes: http::register,
    job_kinds: workers::Registry::register_builtins,
    background,
    housekeeping,
    metrics: METRICS,
    ..crate::Capability::NONE
};

use crate::observability::Metric;

const METRICS: &[Metric] = &[
    Metric::counter("jobs_completed_total", "Jobs completed, by kind"),
    Metric::counter(
        "jobs_failed_total",
        "Job attempts that failed, by kind and the state they went to (retryable, dead)",
    ),
    Metric::counter(
        "jobs_dead_total",
        "Jobs that went to the dead-letter state, by kind",
    ),
    Metric::counter(
        "jobs_claim_errors_total",
        "Claims that failed (the store did not answer)",
    ),
    Metric::counter(
        "job_leases_lost_total",
        "Running jobs stopped because their lease was taken over",
    ),
    Metric::counter(
        "job_lease_expirations_total",
        "Expired leases recovered (each counts as a failed attempt)",
    ),
    Metric::seconds(
        "job_enqueue_to_start_seconds",
        "Time from a job's run_at to the start of its attempt, by kind",
    ),
    Metric::seconds(
        "job_run_duration_seconds",
        "Duration of a job attempt, by kind",
    ),
    Metric::seconds(
        "job_queue_tidy_seconds",
        "Duration of a queue-table vacuum (PostgreSQL)",
    ),
    Metric::gauge("job_queue_depth", "Unfinished jobs, by state and kind"),
    Metric::gauge(
        "tenant_jobs_running",
        "Jobs this process is running, by tenant (the tenants of tenant_metrics by id, the others as `other`)",
    ),
    Metric::gauge(
        "job_dead_letter_depth",
        "Dead jobs waiting to be replayed or purged",
    ),
    Metric::gauge(
        "job_dead_letter_oldest_age_seconds",
        "Age of the oldest dead job, in seconds (0 when there is none)",
    ),
    Metric::gauge(
        "scheduler_leader",
        "1 while this process leads the scheduler, else 0",
    ),
    Metric::counter(
        "scheduler_leadership_changes_total",
        "Times this process took the scheduler lease",
    ),
    Metric::counter(
        "schedule_fired_total",
        "Schedule firings (each enqueues one job)",
    ),
];

/// The worker role: the worker, lease recovery, queue tidying and gauges; the scheduler role:
/// the scheduler.
fn background(rt: &Runtime<'_>) -> Vec<Task> {
    let store = || std::sync::Arc::clone(rt.app.store());
    let mut tasks: Vec<Task> = Vec::new();
    if rt.roles.worker {
        let c = rt.config;
        let settings = workers::WorkerSettings {
            queues: rt.config.jobs.queues(),
            concurrency: c.jobs.worker_concurrency as usize,
            shutdown_grace: rt.grace,
            tenant_cap: (c.jobs.tenant_max_running > 0).then_some(c.jobs.tenant_max_running),
            tenant_labels: crate::observability::TenantLabels::new(
                c.tenant_metric_ids().unwrap_or_default(),
            ),
            ..workers::WorkerSettings::default()
        };
        let worker = workers::Worker::new(
            store(),
            std::sync::Arc::clone(rt.registry),
            workers::worker_id(),
            settings,
        );
        tasks.push(Box::pin(worker.run(rt.stop.clone())));
        tasks.push(Box::pin(workers::runner::recover_loop(
            store(),
            Duration::from_secs(2),
            rt.stop.clone(),
        )));
        tasks.push(Box::pin(workers::runner::tidy_loop(
            store(),
            Duration::from_secs(1),
            rt.stop.clone(),
        )));
        tasks.push(Box::pin(workers::runner::gauges_loop(
            store(),
            Duration::from_secs(15),
            rt.stop.clone(),
        )));
    }
    if rt.roles.scheduler {
        tasks.push(Box::pin(workers::scheduler::run(
            store(),
            std::sync::Arc::clone(rt.registry),
            workers::scheduler::SchedulerSettings {
                stagger: Duration::from_millis(rt.config.jobs.schedule_stagger_ms),
                ..workers::scheduler::SchedulerSettings::default()
            },
            rt.stop.clone(),
        )));
    }
    tasks
}

/// Removes finished jobs past their retention (safe on any number of replicas).
fn housekeeping(app: &crate::platform::App, config: &crate::config::Config) -> Option<Task> {
    let store = std::sync::Arc::clone(app.store());
    let retention = chrono::Duration::days(i64::from(config.jobs.retention_days));
    Some(Box::pin(async move {
        match store
            .jobs()
            .prune_jobs(crate::platform::now() - retention, 10_000)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "finished jobs past retention removed"),
            Err(e) => tracing::warn!(error = %e, "could not prune finished jobs"),
        }
    }))
}
