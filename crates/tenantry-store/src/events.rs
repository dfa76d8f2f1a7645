//! The event log port (issue 14, ADR 0023): the outbox read as one ordered log.
//!
//! Every change appends its events to the outbox in its own transaction (see
//! [`Changes`](crate::Changes)). An event enters the **log** when the sequencer gives it its
//! position `seq`: one contiguous number per event, handed out after the event committed, by one
//! sequencer at a time (PostgreSQL: a row lock on the log's head; SQLite: the one writer). So the
//! log's order is an order of commits — an event that commits late gets a later position than
//! everything sequenced before it, never a gap behind a reader — and a reader resuming after
//! position `n` gets exactly what came after it.
//!
//! Positions are platform data (the relay, the stream hub); a tenant's own log is read through
//! its [`TenantScope`]; operators read any tenant's, or the platform's events of no tenant.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tenantry_domain::{EditionKey, EventEnvelope, EventId, TenantId, TenantScope};

use crate::StoreResult;

/// An event with its position in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event: EventEnvelope,
}

/// Whose log an operator reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogPartition {
    Tenant(TenantId),
    /// The platform's events that belong to no tenant (editions, platform keys, …).
    Platform,
}

/// A filter over a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// An exact type (`device.created.v1`) or a prefix ending in `.*` (`device.*`).
    pub event_type: Option<String>,
    /// The resource the events are about (the envelope's key, CloudEvents' `subject`).
    pub subject: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// `(exact type, LIKE pattern)`: one of them is set when a type is asked for.
    pub(crate) fn type_binds(&self) -> (Option<String>, Option<String>) {
        match self.event_type.as_deref() {
            None => (None, None),
            Some(t) => match t.strip_suffix(".*") {
                Some(prefix) => (None, Some(format!("{}.%", escape_like(prefix)))),
                None => (Some(t.to_owned()), None),
            },
        }
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The log's state for metrics and readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// The last position handed out.
    pub head: i64,
    /// Committed events not sequenced yet.
    pub unsequenced: i64,
    /// The oldest such event's time.
    pub oldest_unsequenced: Option<DateTime<Utc>>,
}

/// What pruning removes: published events older than their tenant's edition's retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Only events at or before this position (what every reader that must see them has seen).
    pub through: i64,
    /// Per edition: events of its tenants older than this go.
    pub editions: Vec<(EditionKey, DateTime<Utc>)>,
    /// Events of no tenant (and of tenants gone) older than this go.
    pub platform: DateTime<Utc>,
    /// At most this many rows per call.
    pub limit: u32,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Gives up to `limit` committed, unsequenced events their positions (in the order the
    /// sequencer sees them; events seen together in id order). Returns how many.
    async fn sequence(&self, limit: u32) -> StoreResult<u32>;

    /// The whole log after position `after` (the relay, the stream hub), at most `limit`.
    async fn read_after(&self, after: i64, limit: u32) -> StoreResult<Vec<LoggedEvent>>;

    /// The scope's tenant's log after `after`, filtered, at most `limit`, in log order.
    async fn list_tenant(
        &self,
        scope: &TenantScope,
        filter: &EventFilter,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<LoggedEvent>>;

    /// An operator's read of one tenant's log or the platform's.
    async fn list(
        &self,
        partition: LogPartition,
        filter: &EventFilter,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<LoggedEvent>>;

    /// The position of the scope's tenant's event `id` (none: unknown, another tenant's, not
    /// sequenced yet, or pruned).
    async fn position(&self, scope: &TenantScope, id: EventId) -> StoreResult<Option<i64>>;

    /// A named reader's saved position (0 when it has none).
    async fn cursor(&self, name: &str) -> StoreResult<i64>;

    /// Saves a named reader's position; it only moves forward.
    async fn save_cursor(&self, name: &str, position: i64, now: DateTime<Utc>) -> StoreResult<()>;

    async fn stats(&self) -> StoreResult<LogStats>;

    /// Removes what `policy` allows; returns how many events went.
    async fn prune(&self, policy: &PrunePolicy) -> StoreResult<u64>;

    /// Woken after a commit that appended events (this process's; PostgreSQL: any process's,
    /// through `LISTEN`). A waiter still polls now and then: a signal can be missed.
    fn event_signal(&self) -> Arc<tokio::sync::Notify>;
}

/// The cursor holding the log's head (the last position handed out).
pub const HEAD_CURSOR: &str = "log_head";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_are_exact_or_prefixes() {
        let f = |t: &str| EventFilter {
            event_type: Some(t.into()),
            ..Default::default()
        };
        assert_eq!(
            f("device.created.v1").type_binds(),
            (Some("device.created.v1".into()), None)
        );
        assert_eq!(f("device.*").type_binds(), (None, Some("device.%".into())));
        assert_eq!(
            f("api_key.*").type_binds(),
            (None, Some("api\\_key.%".into()))
        );
        assert_eq!(EventFilter::default().type_binds(), (None, None));
    }
}
