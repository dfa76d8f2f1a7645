//! The telemetry port: device events, stored once per `(tenant, event_id)` and read back by
//! device in `recorded_at` order. Tenant data: every method but the partition upkeep takes the
//! tenant's scope first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tenantry_domain::telemetry::TelemetryEvent;
use tenantry_domain::{Cursor, TenantScope};

use crate::StoreResult;

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

#[async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Stores the events whose `event_id` the tenant does not have yet, in one transaction; the
    /// uniqueness is the database's, in that same transaction.
    async fn insert(
        &self,
        scope: &TenantScope,
        events: &[TelemetryEvent],
        received_at: DateTime<Utc>,
    ) -> StoreResult<Inserted>;

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
