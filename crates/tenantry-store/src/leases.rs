//! The leases port: named singleton leases (one scheduler leads at a time). Platform data.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreResult;

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the named lease for `owner` until `until`. Succeeds when the lease is
    /// free, expired, or already `owner`'s.
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Gives the lease up (if `owner` holds it).
    async fn release(&self, name: &str, owner: &str) -> StoreResult<()>;

    /// Who holds the named lease at `now` (none when it is free or expired).
    async fn holder(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Option<String>>;
}
