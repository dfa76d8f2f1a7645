//! The editions port: the catalog of editions and their limits (platform data).

use async_trait::async_trait;
use tenantry_domain::{Edition, EditionKey};

use crate::{Changes, StoreResult};

#[async_trait]
pub trait EditionStore: Send + Sync {
    /// Built-ins first (in tier order), then custom editions by creation.
    async fn list(&self) -> StoreResult<Vec<Edition>>;
    async fn get(&self, key: &EditionKey) -> StoreResult<Option<Edition>>;
    async fn insert(&self, edition: &Edition, changes: &Changes) -> StoreResult<()>;
}
