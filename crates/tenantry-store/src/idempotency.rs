//! The idempotency port, read side: records are written through [`Changes`](crate::Changes).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{IdempotencyRecord, StoreResult};

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// The live record of `key` used by `scope` (`<principal>:<method> <path>`).
    async fn find(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// Deletes expired records; returns how many.
    async fn purge(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}
