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
};

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
