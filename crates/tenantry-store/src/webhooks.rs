//! The webhooks port (issue 15): a tenant's subscriptions, the messages fanned out to them from
//! the event log, and the attempts made to deliver them.
//!
//! A message is one (subscription, event) pair — unique, so a fan-out that runs twice over the
//! same events (a crash between its write and its cursor) stores nothing twice: the pair is the
//! consumer's inbox key, and the fan-out's cursor is saved in the same transaction as its
//! messages ([`WebhookStore::fan_out`]). Messages are `pending` until `delivered` or `dead`; a
//! claimed message stays `pending` with its next attempt pushed to the claim's lease, so a
//! dispatcher that dies mid-flight leaves it to be tried again (at least once).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::webhook::{DeliveryPolicy, Ordering};
use tenantry_domain::{Page, PageRequest, TenantId, TenantScope};
use uuid::Uuid;

use crate::{Changes, StoreResult};

/// A signing secret, sealed by the service. During a rotation's grace period a subscription has
/// two: the new one (no expiry) and the old one (expiring).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub sealed: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionRecord {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub url: String,
    pub event_types: Vec<String>,
    pub filter: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub policy: DeliveryPolicy,
    pub rate_limit_per_minute: Option<u32>,
    pub ordering: Ordering,
    pub secrets: Vec<SealedSecret>,
    /// Since when every attempt has failed (none since the last success); `None` when healthy.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What creating a subscription found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The tenant has `used` subscriptions: its limit. Nothing was written.
    AtLimit {
        used: u64,
    },
}

/// A message to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub event_seq: i64,
    pub event_type: String,
    pub partition_key: String,
    /// The CloudEvent as sent (the bytes signed).
    pub body: String,
    pub trace_parent: Option<String>,
    pub at: DateTime<Utc>,
}

/// How many due messages to claim from one subscription.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub subscription_id: Uuid,
    pub take: u32,
    /// Only the oldest pending message of each partition key (per-key ordering).
    pub per_key: bool,
}

/// A message claimed for an attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedMessage {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub subscription_id: Uuid,
    pub event_type: String,
    pub partition_key: String,
    pub body: String,
    pub trace_parent: Option<String>,
    /// This attempt's number (from 1).
    pub attempt: u32,
    pub first_attempt_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again at the result's `next_attempt_at`.
    Failed,
    /// Failed, and no attempt follows: the message is dead-lettered.
    Dead,
    /// `410 Gone`: the message is dead-lettered and the subscription disabled.
    Gone,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Gone => "gone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            "gone" => Self::Gone,
            _ => return None,
        })
    }

    /// The message's status after an attempt with this outcome.
    pub fn message_status(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "pending",
            Self::Dead | Self::Gone => "dead",
        }
    }
}

/// One attempt, as it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptResult {
    pub id: Uuid,
    pub message_id: Uuid,
    pub tenant_id: TenantId,
    pub subscription_id: Uuid,
    pub event_type: String,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub status_code: Option<u16>,
    pub latency_ms: u32,
    /// The start of the response body (bounded).
    pub response: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    /// For `Failed`: when the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An attempt in the delivery log.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub message_id: Uuid,
    pub event_type: String,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub status_code: Option<u16>,
    pub latency_ms: u32,
    pub response: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default)]
pub struct AttemptFilter {
    pub subscription_id: Option<Uuid>,
    pub outcome: Option<AttemptOutcome>,
    pub event_type: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Which messages a replay takes.
#[derive(Clone, Debug)]
pub struct MessageFilter {
    pub subscription_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `pending`, `delivered` or `dead`; `None`: delivered and dead (a pending one is on its way).
    pub status: Option<String>,
}

/// A message as a replay sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageSummary {
    pub id: Uuid,
    pub event_type: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub pending: u64,
    pub dead: u64,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Creates a subscription unless the tenant already has `limit`: the count and the insert in
    /// one transaction, under a lock on the tenant, so concurrent creations cannot overshoot.
    async fn create_subscription(
        &self,
        scope: &TenantScope,
        s: &SubscriptionRecord,
        limit: u32,
        changes: &Changes,
    ) -> StoreResult<Created>;

    /// Replaces a subscription; it must still have `expected` as `updated_at` (else
    /// `VersionConflict`; `NotFound` when it is gone).
    async fn update_subscription(
        &self,
        scope: &TenantScope,
        s: &SubscriptionRecord,
        expected: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()>;

    async fn get_subscription(
        &self,
        scope: &TenantScope,
        id: Uuid,
    ) -> StoreResult<Option<SubscriptionRecord>>;

    /// The tenant's subscriptions, oldest first.
    async fn list_subscriptions(&self, scope: &TenantScope)
    -> StoreResult<Vec<SubscriptionRecord>>;

    /// Deletes a subscription with its messages and attempts. `false` if absent.
    async fn delete_subscription(
        &self,
        scope: &TenantScope,
        id: Uuid,
        changes: &Changes,
    ) -> StoreResult<bool>;

    /// Every tenant's enabled subscriptions (the dispatcher's view).
    async fn enabled_subscriptions(&self) -> StoreResult<Vec<SubscriptionRecord>>;

    /// Records since when a subscription has failed (`None`: it succeeded).
    async fn set_failing_since(&self, id: Uuid, since: Option<DateTime<Utc>>) -> StoreResult<()>;

    /// Stores one tenant's messages (a test delivery); an existing (subscription, event) pair is
    /// kept as it is.
    async fn enqueue(&self, scope: &TenantScope, messages: &[NewMessage]) -> StoreResult<()>;

    /// Stores the messages fanned out from the log through `position`, and moves the cursor
    /// `cursor` there, in one transaction. Pairs already stored are skipped.
    async fn fan_out(
        &self,
        cursor: &str,
        position: i64,
        messages: &[NewMessage],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Claims due messages (`next_attempt_at <= now`), oldest due first, up to each claim's
    /// `take`: each claimed message's attempt count goes up and its next attempt moves to
    /// `lease_until` (where a dispatcher that dies leaves it).
    async fn claim(
        &self,
        claims: &[Claim],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedMessage>>;

    /// Records attempts: each message's new status (and next attempt), and the log entry.
    async fn record(&self, results: &[AttemptResult]) -> StoreResult<()>;

    /// The delivery log, newest first.
    async fn list_attempts(
        &self,
        scope: &TenantScope,
        filter: &AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AttemptRecord>>;

    /// Messages of a subscription created in a window, oldest first, at most `limit`.
    async fn messages(
        &self,
        scope: &TenantScope,
        filter: &MessageFilter,
        limit: u32,
    ) -> StoreResult<Vec<MessageSummary>>;

    /// Makes messages pending again (a replay: same id, attempts from 0), each due at its time.
    async fn reschedule(
        &self,
        scope: &TenantScope,
        due: &[(Uuid, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    async fn stats(&self) -> StoreResult<WebhookStats>;

    /// Removes the attempts and finished (delivered or dead) messages of the tenants of
    /// `edition` older than `before`, at most `limit` rows of each table; the number removed.
    async fn prune(&self, edition: &str, before: DateTime<Utc>, limit: u32) -> StoreResult<u64>;
}
