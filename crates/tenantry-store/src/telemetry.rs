//! The telemetry port: device events, stored once per `(tenant, event_id)` and read back by
//! device in `recorded_at` order. Tenant data: every method but the partition upkeep takes the
//! tenant's scope first.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use tenantry_domain::telemetry::TelemetryEvent;
use tenantry_domain::{Cursor, TenantId, TenantScope};

use crate::{Changes, DeviceRecord, StoreResult};

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Orders events of the same instant (insertion order); never reused.
    pub seq: i64,
    pub event: TelemetryEvent,
    pub received_at: DateTime<Utc>,
}

/// What an insert did: events stored now, and events whose `event_id` the tenant had already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    pub stored: usize,
    pub duplicates: usize,
}

impl Inserted {
    /// Of `sent` events, `stored` rows were written: the others were duplicates.
    pub(crate) fn of(sent: usize, stored: u64) -> Self {
        let stored = usize::try_from(stored).unwrap_or(sent).min(sent);
        Self {
            stored,
            duplicates: sent - stored,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl Order {
    /// The comparison that continues after a position, and the direction of `ORDER BY`.
    pub(crate) fn sql(self) -> (&'static str, &'static str) {
        match self {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        }
    }
}

/// Which events of one device to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryFilter {
    pub device_id: String,
    /// `recorded_at >= from`
    pub from: Option<DateTime<Utc>>,
    /// `recorded_at < to`
    pub to: Option<DateTime<Utc>>,
    pub event_type: Option<String>,
    pub order: Order,
}

/// A place in a device's events: after (or, descending, before) this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub recorded_at: DateTime<Utc>,
    pub seq: i64,
}

impl Position {
    pub fn of(e: &StoredEvent) -> Self {
        Self {
            recorded_at: e.event.recorded_at,
            seq: e.seq,
        }
    }

    /// As a page cursor: microseconds and sequence in the cursor's 128 bits.
    pub fn to_cursor(self) -> Cursor {
        let micros = self.recorded_at.timestamp_micros();
        let bits = (u128::from(micros as u64) << 64) | u128::from(self.seq as u64);
        Cursor(uuid::Uuid::from_u128(bits))
    }

    pub fn from_cursor(c: Cursor) -> Option<Self> {
        let bits = c.0.as_u128();
        let micros = (bits >> 64) as u64 as i64;
        let seq = bits as u64 as i64;
        Some(Self {
            recorded_at: DateTime::from_timestamp_micros(micros)?,
            seq,
        })
    }
}

/// Which events to summarise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsFilter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub device_id: Option<String>,
    pub event_type: Option<String>,
    /// The buckets' width, in seconds; buckets start at multiples of it since the Unix epoch.
    pub bucket_seconds: i64,
}

/// One bucket's summary: every event is counted; min, max, avg and last are of the events that
/// carry a `value` (last: the latest recorded, ties by insertion).
#[derive(Clone, Debug, PartialEq)]
pub struct BucketStats {
    pub start: DateTime<Utc>,
    pub count: i64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub last: Option<f64>,
}

/// A tenant's retention settings; the defaults (no hold, the edition's archival) when none are
/// stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Retention skips the tenant: nothing of it is removed or archived.
    pub legal_hold: bool,
    /// Archive expired events before removing them; `None`: the edition decides.
    pub archive: Option<bool>,
}

/// Builds what must commit with a removal, from the number of events removed (its audit).
pub type RemovalChanges<'a> = dyn Fn(u64) -> Changes + Send + Sync + 'a;

/// Builds what must commit with a device registered by its first event (audit record, event).
pub type Registration<'a> = dyn Fn(&DeviceRecord) -> Changes + Send + Sync + 'a;

/// What happens to the events of a device the tenant has not registered.
#[derive(Clone, Copy)]
pub enum UnknownDevices<'a> {
    /// The device is registered in the transaction that stores its first events, with the
    /// changes this builds for it.
    Register(&'a Registration<'a>),
    /// Its events are not stored; the outcome names the device.
    Reject,
}

impl std::fmt::Debug for UnknownDevices<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnknownDevices::Register(_) => "Register",
            UnknownDevices::Reject => "Reject",
        })
    }
}

/// One request's events, to be stored with others in one transaction (group commit).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub scope: &'a TenantScope,
    pub events: &'a [TelemetryEvent],
    pub received_at: DateTime<Utc>,
    pub unknown_devices: UnknownDevices<'a>,
}

/// What storing one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub inserted: Inserted,
    /// The `event_id`s this batch stored (not its duplicates).
    pub stored_ids: Vec<String>,
    /// Devices this batch registered (`UnknownDevices::Register`).
    pub registered: Vec<String>,
    /// Devices unknown to the tenant whose events were not stored (`UnknownDevices::Reject`).
    pub unknown: Vec<String>,
}

/// The devices of `events`, each once, in first-seen order.
pub(crate) fn devices_of(events: &[TelemetryEvent]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| seen.insert(e.device_id.as_str()))
        .map(|e| e.device_id.clone())
        .collect()
}

/// A device registered by its first event: no name, no metadata.
pub(crate) fn first_seen_device(
    scope: &TenantScope,
    device_id: &str,
    at: DateTime<Utc>,
) -> DeviceRecord {
    DeviceRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id: scope.tenant_id(),
        device_id: device_id.to_owned(),
        name: None,
        metadata: serde_json::json!({}),
        created_at: at,
    }
}

#[async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Stores each batch's events whose `event_id` its tenant does not have yet, all batches in
    /// one transaction (each under its own tenant's fence); the uniqueness is the database's, in
    /// that same transaction. Batches' outcomes in their order. Any failure fails them all:
    /// nothing of any batch is stored.
    async fn insert_group(&self, batches: &[Batch<'_>]) -> StoreResult<Vec<Outcome>>;

    /// One batch of a tenant's events, its devices registered as needed (no changes recorded
    /// with them): a group of one.
    async fn insert(
        &self,
        scope: &TenantScope,
        events: &[TelemetryEvent],
        received_at: DateTime<Utc>,
    ) -> StoreResult<Inserted> {
        let none = |_: &DeviceRecord| Changes::default();
        let batch = Batch {
            scope,
            events,
            received_at,
            unknown_devices: UnknownDevices::Register(&none),
        };
        let mut out = self.insert_group(&[batch]).await?;
        Ok(out.pop().map(|o| o.inserted).unwrap_or_default())
    }

    /// Up to `limit + 1` events of one device after `after`, in `recorded_at` order (ties in
    /// insertion order); the extra one tells that there is a next page.
    async fn list(
        &self,
        scope: &TenantScope,
        filter: &TelemetryFilter,
        limit: u32,
        after: Option<Position>,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// Per-bucket summaries of `recorded_at` in `[from, to)`, oldest first; empty buckets are
    /// left out. A late event counts in the bucket of when it was recorded.
    async fn stats(
        &self,
        scope: &TenantScope,
        filter: &StatsFilter,
    ) -> StoreResult<Vec<BucketStats>>;

    /// A tenant's retention settings (platform: retention runs over every tenant).
    async fn settings(&self, tenant: TenantId) -> StoreResult<RetentionSettings>;

    /// Stores a tenant's retention settings with the audit of the change.
    async fn put_settings(
        &self,
        tenant: TenantId,
        settings: &RetentionSettings,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()>;

    /// Up to `limit` of the tenant's events recorded in `[from, to)`, every device, in
    /// `(recorded_at, seq)` order after `after` (archival reads a month in pages).
    async fn export(
        &self,
        scope: &TenantScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<Position>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// When the tenant's oldest event recorded before `before` was recorded.
    async fn oldest_before(
        &self,
        scope: &TenantScope,
        before: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>>;

    /// Removes the tenant's events recorded before `before` (with their ids), and writes what
    /// `changes` builds from the number removed, in one transaction. Returns the number.
    async fn remove_before(
        &self,
        scope: &TenantScope,
        before: DateTime<Utc>,
        changes: &RemovalChanges<'_>,
    ) -> StoreResult<u64>;

    /// Drops the month partitions that end at or before `before` and hold no event of any
    /// tenant (PostgreSQL; SQLite has none). Platform upkeep; returns the months dropped.
    async fn drop_empty_months(&self, before: DateTime<Utc>) -> StoreResult<Vec<NaiveDate>>;

    /// Makes sure events recorded from `from` to `to` have somewhere to go (PostgreSQL's monthly
    /// partitions; nothing to do on SQLite). Platform upkeep, idempotent.
    async fn prepare(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_cursors() {
        for (t, seq) in [
            ("2026-12-06T10:59:00.123456Z", 1_i64),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999999Z", i64::MAX),
        ] {
            let p = Position {
                recorded_at: t.parse().unwrap(),
                seq,
            };
            assert_eq!(Position::from_cursor(p.to_cursor()), Some(p));
        }
    }
}
