//! `Idempotency-Key` support: the same key with the same request replays the first response; the
//! same key with a different request is refused. The record commits with the write it describes
//! (see [`tenantry_store::Changes::idempotency`]), so a retry can never create a second resource.

use sha2::{Digest, Sha256};
use tenantry_store::IdempotencyRecord;

use crate::platform::{App, AppError, AppResult, now};

/// A validated `Idempotency-Key` with the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotentRequest {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
pub struct InvalidKey;

impl IdempotentRequest {
    /// `principal` and the operation (`method` + `path`) scope the key; `body` is hashed in its
    /// canonical form (object keys sorted), so reformatting the same JSON is the same request.
    pub fn new(
        principal: &str,
        method: &str,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<Self, InvalidKey> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidKey);
        }
        let canonical = serde_json::to_vec(body).unwrap_or_default();
        let request_hash = hex::encode(Sha256::digest(&canonical));
        Ok(Self {
            scope: format!("{principal}:{method} {path}"),
            key: key.to_owned(),
            request_hash,
        })
    }

    /// The record to store with the write, for the response it produced.
    pub fn record(
        &self,
        app: &App,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    ) -> IdempotencyRecord {
        let created_at = now();
        IdempotencyRecord {
            scope: self.scope.clone(),
            key: self.key.clone(),
            request_hash: self.request_hash.clone(),
            status,
            headers,
            body,
            created_at,
            expires_at: created_at + app.settings().idempotency_ttl,
        }
    }
}

impl App {
    /// The stored response for this request, if it was already processed; an error if the key
    /// was used for a different request.
    pub async fn idempotent_replay(
        &self,
        req: &IdempotentRequest,
    ) -> AppResult<Option<IdempotencyRecord>> {
        match self
            .store()
            .idempotency()
            .find(&req.scope, &req.key, now())
            .await?
        {
            Some(r) if r.request_hash == req.request_hash => Ok(Some(r)),
            Some(_) => Err(AppError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }
}

/// Deletes expired idempotency records (the hourly housekeeping of the platform).
pub(crate) fn housekeeping(app: &App, _config: &crate::config::Config) -> Option<crate::Task> {
    let store = std::sync::Arc::clone(app.store());
    Some(Box::pin(async move {
        match store.idempotency().purge(now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired idempotency keys"),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_hash_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"name":"A","slug":"abc"}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str("{ \"slug\": \"abc\",\n \"name\": \"A\" }").unwrap();
        let ra = IdempotentRequest::new("op:1", "POST", "/v1/tenants", "k", &a).unwrap();
        let rb = IdempotentRequest::new("op:1", "POST", "/v1/tenants", "k", &b).unwrap();
        assert_eq!(ra.request_hash, rb.request_hash);
        let rc = IdempotentRequest::new("op:1", "POST", "/v1/tenants", "k", &json!({"name": "B"}))
            .unwrap();
        assert_ne!(ra.request_hash, rc.request_hash);
        assert_eq!(
            IdempotentRequest::new("op:1", "POST", "/", "", &a).unwrap_err(),
            InvalidKey
        );
        assert!(IdempotentRequest::new("op:1", "POST", "/", "has space", &a).is_err());
    }
}
