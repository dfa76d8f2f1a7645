//! The unit of work: what must commit together with a business change.
//!
//! Every write method of a capability port takes the business change together with the
//! [`Changes`] that must commit with it (audit records, outbox events, the idempotency record of
//! the request that caused it, jobs). An adapter writes all of them in one transaction or none.

use chrono::{DateTime, Utc};
use tenantry_domain::{AuditRecord, EventEnvelope, TenantId};

/// What must commit together with a business change.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub audit: Vec<AuditRecord>,
    pub events: Vec<EventEnvelope>,
    /// The response of the request that made this change, replayed for retries with the same
    /// `Idempotency-Key`. Written first: a duplicate key fails the whole unit of work with
    /// [`StoreError::Duplicate`](crate::StoreError::Duplicate)`(`[`Constraint::IdempotencyKey`](crate::Constraint::IdempotencyKey)`)`.
    pub idempotency: Option<IdempotencyRecord>,
    /// Jobs enqueued only if the change commits (unique keys already taken are skipped).
    pub jobs: Vec<crate::jobs::NewJob>,
    /// Pauses or resumes a tenant's queued jobs with its lifecycle.
    pub tenant_jobs: Option<TenantJobs>,
}

/// A tenant's queued jobs follow its lifecycle: suspension and deletion pause them (`paused`:
/// never claimed), resume and restore put them back in the queue (`scheduled`, `available` or
/// `retryable`, from their `run_at` and attempts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantJobs {
    Pause(TenantId),
    Resume(TenantId, DateTime<Utc>),
}

impl Changes {
    pub fn new(audit: AuditRecord, event: EventEnvelope) -> Self {
        Self {
            audit: vec![audit],
            events: vec![event],
            idempotency: None,
            jobs: Vec::new(),
            tenant_jobs: None,
        }
    }
}

/// A stored response for an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Who used the key and on which operation (`<principal>:<method> <path>`): the same key from
    /// another caller is another key.
    pub scope: String,
    pub key: String,
    /// Hash of the canonical request body.
    pub request_hash: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
