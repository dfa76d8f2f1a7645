//! The source-sync port (issue 13): a tenant's sources, the runs that pull them, the records they
//! bring, and the items quarantined on the way.
//!
//! A run is one job of the job engine (same id). Each attempt claims the run
//! ([`SyncStore::start_run`]) under an owner token; every later write of the attempt names that
//! owner, so an attempt whose lease was lost (and whose run another worker claimed) can no longer
//! write: two workers never write the same run. Each page's records, quarantines and the run's
//! checkpoint commit in one transaction ([`SyncStore::write_page`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tenantry_domain::sync::{Checkpoint, RunCounts, RunStatus};
use tenantry_domain::{Page, PageRequest, TenantId, TenantScope};
use uuid::Uuid;

use crate::schedules::ScheduleRecord;
use crate::{Changes, StoreResult};

/// A stored source. Its header values are sealed (encrypted by the service) in `sealed_headers`.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: String,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub max_attempts: u32,
    pub config: Value,
    pub sealed_headers: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A run, as its history shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub source_id: Uuid,
    pub status: RunStatus,
    pub manual: bool,
    pub triggered_at: DateTime<Utc>,
    pub attempts: u32,
    /// Whether an attempt continued from an earlier attempt's checkpoint.
    pub resumed: bool,
    pub checkpoint: Option<Checkpoint>,
    pub counts: RunCounts,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A manual run to queue (its id is its job's).
#[derive(Clone, Debug)]
pub struct QueuedRun {
    pub source_id: Uuid,
    pub triggered_at: DateTime<Utc>,
}

/// A run to claim for an attempt.
#[derive(Clone, Debug)]
pub struct RunClaim<'a> {
    pub id: Uuid,
    pub source_id: Uuid,
    pub manual: bool,
    pub triggered_at: DateTime<Utc>,
    /// Names this attempt; later writes must name it.
    pub owner: &'a str,
    pub at: DateTime<Utc>,
}

/// What claiming a run found.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStart {
    /// The attempt owns the run; it continues from the checkpoint, if any.
    Started {
        checkpoint: Option<Checkpoint>,
        attempts: u32,
    },
    /// The run already completed (a duplicate delivery of its job): nothing to do.
    AlreadyCompleted,
    /// The source is gone.
    NoSource,
}

/// One record of a page.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordWrite {
    pub key: String,
    pub data: Value,
    pub hash: String,
}

/// One quarantined item of a page.
#[derive(Clone, Debug, PartialEq)]
pub struct QuarantineWrite {
    pub item_index: u64,
    pub key: Option<String>,
    pub reason: String,
    /// The start of the item as received (at most 1 KiB).
    pub excerpt: String,
}

/// One page of a run.
#[derive(Clone, Debug)]
pub struct PageWrite<'a> {
    pub run_id: Uuid,
    pub source_id: Uuid,
    pub owner: &'a str,
    pub record_type: &'a str,
    /// The page's number in the run (from 1).
    pub page: u64,
    pub records: &'a [RecordWrite],
    pub quarantined: &'a [QuarantineWrite],
    /// The checkpoint after this page. Its counts include this page's pages, quarantined and
    /// truncated; the store adds the page's upserted and unchanged, which only it knows.
    pub checkpoint: &'a Checkpoint,
    pub at: DateTime<Utc>,
}

/// What a page write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// New or changed records.
    pub upserted: u64,
    /// Records seen with the same hash: not rewritten (only seen).
    pub unchanged: u64,
}

/// How an attempt ends.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    /// Every page was stored: records of the source not seen in this run are marked removed.
    Completed,
    /// The attempt failed; `dead` when no attempt follows.
    Failed { error: String, dead: bool },
}

/// Which records to read.
#[derive(Clone, Debug, Default)]
pub struct RecordFilter {
    pub source_id: Option<Uuid>,
    pub record_type: Option<String>,
    /// Records created, changed or removed after this time.
    pub changed_since: Option<DateTime<Utc>>,
}

/// A stored record.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncedRecord {
    pub id: Uuid,
    pub source_id: Uuid,
    pub record_type: String,
    pub key: String,
    pub data: Value,
    pub hash: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    pub last_run_id: Uuid,
}

/// A quarantined item.
#[derive(Clone, Debug, PartialEq)]
pub struct QuarantinedItem {
    pub id: Uuid,
    pub source_id: Uuid,
    pub run_id: Uuid,
    pub page: u64,
    pub item_index: u64,
    pub key: Option<String>,
    pub reason: String,
    pub excerpt: String,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Creates or replaces a source (by id) with its schedule (`None`: the source has no
    /// schedule, and a schedule it had is removed), in one transaction with `changes`. A second
    /// source of the tenant with the same name is `Duplicate(SourceName)`. With `expected`, the
    /// stored source must still have that `updated_at` (else `VersionConflict`).
    async fn put_source(
        &self,
        scope: &TenantScope,
        source: &SourceRecord,
        expected: Option<DateTime<Utc>>,
        schedule: ScheduleChange<'_>,
        changes: &Changes,
    ) -> StoreResult<()>;

    async fn get_source(&self, scope: &TenantScope, id: Uuid) -> StoreResult<Option<SourceRecord>>;

    /// The tenant's sources by name.
    async fn list_sources(&self, scope: &TenantScope) -> StoreResult<Vec<SourceRecord>>;

    /// Deletes a source with its schedule, runs, records and quarantine. `false` if absent.
    async fn delete_source(
        &self,
        scope: &TenantScope,
        id: Uuid,
        schedule_name: &str,
        changes: &Changes,
    ) -> StoreResult<bool>;

    /// Enqueues a manual run: the job and the run (status `queued`) in one transaction. While a
    /// run of the source is pending or running (the job's unique key), nothing is added and the
    /// pending job is named.
    async fn queue_run(
        &self,
        scope: &TenantScope,
        run: &QueuedRun,
        job: &crate::jobs::NewJob,
        changes: &Changes,
    ) -> StoreResult<crate::jobs::Enqueued>;

    /// Claims the run for an attempt: creates it (status `running`) or takes it over from an
    /// earlier attempt (its checkpoint returned, `resumed` set when it had one).
    async fn start_run(&self, scope: &TenantScope, claim: &RunClaim<'_>) -> StoreResult<RunStart>;

    /// Stores one page: new and changed records written, unchanged ones only marked seen, the
    /// quarantined items, and the checkpoint — one transaction with `changes`. Fails with
    /// `VersionConflict` when `owner` no longer owns the run.
    async fn write_page(
        &self,
        scope: &TenantScope,
        page: &PageWrite<'_>,
        changes: &Changes,
    ) -> StoreResult<PageOutcome>;

    /// Ends the attempt. A completed run marks the source's records not seen in it removed
    /// (returned: how many). Fails with `VersionConflict` when `owner` no longer owns the run.
    async fn finish_run(
        &self,
        scope: &TenantScope,
        run_id: Uuid,
        owner: &str,
        end: &RunEnd,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<u64>;

    async fn get_run(&self, scope: &TenantScope, id: Uuid) -> StoreResult<Option<RunRecord>>;

    /// A source's runs, newest first.
    async fn list_runs(
        &self,
        scope: &TenantScope,
        source_id: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<RunRecord>>;

    /// Records in id order (the order they were first seen).
    async fn list_records(
        &self,
        scope: &TenantScope,
        filter: &RecordFilter,
        page: PageRequest,
    ) -> StoreResult<Page<SyncedRecord>>;

    /// A source's quarantined items, oldest first.
    async fn list_quarantine(
        &self,
        scope: &TenantScope,
        source_id: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<QuarantinedItem>>;
}

/// What happens to a source's schedule when the source is written.
#[derive(Clone, Copy, Debug)]
pub enum ScheduleChange<'a> {
    Put(&'a ScheduleRecord),
    /// Remove the schedule of this stored name (if any).
    Remove(&'a str),
}
