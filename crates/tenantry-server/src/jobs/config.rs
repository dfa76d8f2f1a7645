//! `[jobs]`: the worker's and the scheduler's settings.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs one worker process runs at once.
    pub worker_concurrency: u32,
    /// Queues this process's worker claims from, comma-separated.
    pub worker_queues: String,
    /// Jobs one tenant may have running at once across every worker (0: no cap; fair order
    /// alone). Give every worker the same value.
    pub tenant_max_running: u32,
    /// Days completed and cancelled jobs are kept (dead jobs are kept until replayed or purged).
    pub retention_days: u32,
    /// Milliseconds between overdue schedules fired together when a scheduler takes the lead.
    pub schedule_stagger_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            worker_concurrency: 16,
            worker_queues: "default".into(),
            tenant_max_running: 0,
            retention_days: 7,
            schedule_stagger_ms: 250,
        }
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("worker_concurrency", "jobs.worker_concurrency"),
    ("worker_queues", "jobs.worker_queues"),
    ("job_tenant_max_running", "jobs.tenant_max_running"),
    ("job_retention_days", "jobs.retention_days"),
    ("schedule_stagger_ms", "jobs.schedule_stagger_ms"),
];

impl JobsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.worker_concurrency) {
            return Err(invalid(
                "jobs.worker_concurrency",
                "must be between 1 and 1024",
            ));
        }
        if self.queues().is_empty() {
            return Err(invalid("jobs.worker_queues", "name at least one queue"));
        }
        for q in self.queues() {
            let mut errors = tenantry_domain::ValidationErrors::default();
            crate::platform::check_queue(&mut errors, "queue", &q);
            if !errors.0.is_empty() {
                return Err(invalid(
                    "jobs.worker_queues",
                    format!("'{q}': a queue is 1 to 64 letters, digits, '-' or '_'"),
                ));
            }
        }
        if !(1..=3650).contains(&self.retention_days) {
            return Err(invalid("jobs.retention_days", "must be between 1 and 3650"));
        }
        if self.schedule_stagger_ms > 60_000 {
            return Err(invalid("jobs.schedule_stagger_ms", "must be at most 60000"));
        }
        Ok(())
    }

    pub fn queues(&self) -> Vec<String> {
        self.worker_queues
            .split(',')
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
