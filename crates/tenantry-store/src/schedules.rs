//! The schedules port: named cron or interval schedules, each the platform's or one tenant's.
//!
//! A tenant's schedules are stored under `<tenant id>:<name>` ([`stored_name`]) so that two tenants
//! may both have a `nightly`; isolation does not rest on that prefix but on the [`JobScope`] every
//! tenant-facing method takes first (the adapter's tenant transaction, and row-level security on
//! PostgreSQL). The scheduler's own methods work on the platform's view of every schedule.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tenantry_domain::TenantId;

use crate::jobs::{JobScope, NewJob};
use crate::{Changes, StoreResult};

/// A named schedule: fires `kind` with `payload` on a cron expression (UTC) or a fixed interval.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRecord {
    pub name: String,
    pub tenant_id: Option<TenantId>,
    pub cron: Option<String>,
    pub interval_ms: Option<i64>,
    pub kind: String,
    pub payload: Value,
    pub enabled: bool,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ScheduleRecord {
    /// The name its owner gave it (the stored name without the tenant prefix).
    pub fn display_name(&self) -> &str {
        match self.tenant_id {
            Some(t) => self
                .name
                .strip_prefix(&format!("{t}:"))
                .unwrap_or(&self.name),
            None => &self.name,
        }
    }
}

/// The stored name of the schedule `name` of `tenant` (or of the platform).
pub fn stored_name(tenant: Option<TenantId>, name: &str) -> String {
    match tenant {
        Some(t) => format!("{t}:{name}"),
        None => name.to_owned(),
    }
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Creates or replaces a schedule (by stored name), with the audit of the change. A tenant
    /// scope writes only its own tenant's schedules.
    async fn put(
        &self,
        scope: JobScope<'_>,
        schedule: &ScheduleRecord,
        changes: &Changes,
    ) -> StoreResult<()>;

    async fn get(&self, scope: JobScope<'_>, name: &str) -> StoreResult<Option<ScheduleRecord>>;

    /// Schedules by name.
    async fn list(&self, scope: JobScope<'_>) -> StoreResult<Vec<ScheduleRecord>>;

    /// `false` when there was no such schedule in scope.
    async fn delete(&self, scope: JobScope<'_>, name: &str, changes: &Changes)
    -> StoreResult<bool>;

    // the scheduler: the platform's view of every schedule
    /// Enabled schedules whose next fire time is at or before `now`: the platform's, and those of
    /// active tenants (a suspended or deleted tenant's schedules wait; once the tenant is active
    /// again they fire at their next due time, without backfilling what was missed).
    async fn due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<ScheduleRecord>>;

    /// Moves a schedule's next fire time from `expected` to `next` without firing (start-up
    /// catch-up). Compare-and-swap: `false` if someone else moved it.
    async fn reschedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Fires a schedule: if its next fire time is still `fired`, enqueues `job` (whose unique key
    /// names the fire time) and sets the next fire time, in one transaction. `false` if another
    /// scheduler fired it first.
    async fn fire(
        &self,
        name: &str,
        fired: DateTime<Utc>,
        next: DateTime<Utc>,
        job: &NewJob,
    ) -> StoreResult<bool>;
}
