//! The secrets port: keys the platform makes for itself and every instance must share (the
//! cursor-sealing key), kept in the database so replicas agree without configuration.
//! Platform data.

use async_trait::async_trait;

use crate::StoreResult;

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret named `name`: the one stored, or `candidate` if there was none (stored now).
    /// Concurrent callers with different candidates all get the same, first stored, value.
    async fn get_or_create(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;
}
