//! API keys: generation, the bootstrap operator key, and authentication.
//!
//! Keys are random (≈262 bits), so a fast hash is the right tool: SHA-256 of the whole key is
//! stored, the key is found by its public lookup prefix, and hashes are compared in constant time.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tenantry_domain::api_key::{GENERATED_RANDOM_LEN, KeyKind, PresentedKey};
use tenantry_domain::{Actor, ApiKeyId, CredentialKind, EventEnvelope, Principal, ScopeSet};
use tenantry_store::{ApiKeyRecord, Changes, Constraint, StoreError};

use crate::platform::{App, AppResult, Ctx, now};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs a credential: Authorization: Bearer <API key or token>")]
    Missing,
    #[error("the credential is not valid (unknown, revoked, expired or malformed)")]
    Invalid,
    #[error("the bearer token is not accepted: {0}")]
    InvalidToken(String),
    #[error("this endpoint is for operators; the presented credential is a {0} key")]
    NotOperator(KeyKind),
    #[error("this endpoint is for operators; bearer tokens are always tenant-bound")]
    NotOperatorToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stable, non-secret name of a principal (for idempotency scopes and logs).
pub fn scope_id(p: &Principal) -> String {
    match p.key_id {
        Some(id) => format!("key:{id}"),
        None => match p.tenant {
            Some(t) => format!("sub:{t}:{}", p.subject),
            None => format!("sub:{}", p.subject),
        },
    }
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random key of `kind`.
pub fn generate_key(kind: KeyKind) -> String {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(GENERATED_RANDOM_LEN)
        .map(char::from)
        .collect();
    format!("{}{random}", kind.prefix())
}

/// A key that was just created: the secret is shown once and never stored.
#[derive(Debug)]
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub secret: String,
}

impl App {
    /// Creates an operator key. `secret` installs a given key (bootstrap); otherwise one is generated.
    pub async fn create_operator_key(
        &self,
        ctx: &Ctx,
        name: &str,
        secret: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> AppResult<IssuedKey> {
        let secret = secret.map_or_else(|| generate_key(KeyKind::Operator), str::to_owned);
        let presented = PresentedKey::parse(&secret)
            .map_err(|e| tenantry_domain::ValidationErrors::single("key", e.to_string()))?;
        let record = ApiKeyRecord {
            id: ApiKeyId::new(),
            kind: KeyKind::Operator,
            lookup: presented.lookup.to_owned(),
            secret_hash: hash_key(&secret),
            name: name.to_owned(),
            tenant_id: None,
            created_at: now(),
            expires_at,
            revoked_at: None,
            scopes: Vec::new(),
            roles: vec![tenantry_domain::Role::Operator],
            rate_limit_per_minute: None,
            device_id: None,
            rotated_to: None,
            last_used_at: None,
        };
        let details = json!({ "key_id": record.id, "lookup": record.lookup, "name": record.name, "kind": "operator" });
        let audit = ctx.audit(
            "api_key.create",
            "api_key",
            record.id.to_string(),
            None,
            details.clone(),
        );
        let event = EventEnvelope::v1(
            "api_key.created.v1",
            record.id.to_string(),
            None,
            None,
            ctx.trace_id(),
            record.created_at,
            details,
        );
        self.store
            .access()
            .insert_operator_key(&record, &Changes::new(audit, event))
            .await?;
        Ok(IssuedKey { record, secret })
    }

    /// Makes sure an operator can get in. With `configured`, that key is installed if it is not
    /// yet (every start, idempotently). Without it, a key is generated only when no active operator
    /// key exists; the caller prints it once. Returns the newly generated secret, if any.
    pub async fn ensure_bootstrap_key(
        &self,
        configured: Option<&str>,
    ) -> AppResult<Option<String>> {
        let ctx = Ctx::new(Actor::system(), None);
        if let Some(key) = configured {
            let presented = PresentedKey::parse(key).map_err(|e| {
                tenantry_domain::ValidationErrors::single("bootstrap_operator_key", e.to_string())
            })?;
            match self.store.access().find_key(presented.lookup).await? {
                Some(existing) if bool::from(existing.secret_hash.ct_eq(&hash_key(key))) => {
                    return Ok(None);
                }
                Some(_) => {
                    return Err(tenantry_domain::ValidationErrors::single(
                        "bootstrap_operator_key",
                        "another key with the same prefix is installed; choose a different key",
                    )
                    .into());
                }
                None => {}
            }
            return match self
                .create_operator_key(&ctx, "bootstrap (configured)", Some(key), None)
                .await
            {
                Ok(_)
                | Err(crate::platform::AppError::Store(StoreError::Duplicate(
                    Constraint::ApiKeyLookup,
                ))) => Ok(None),
                Err(e) => Err(e),
            };
        }
        if self
            .store
            .access()
            .count_active_operator_keys(now())
            .await?
            > 0
        {
            return Ok(None);
        }
        let issued = self
            .create_operator_key(&ctx, "bootstrap", None, None)
            .await?;
        Ok(Some(issued.secret))
    }

    /// Checks an API key (`Authorization: Bearer tnt_…`) and returns the principal it stands for.
    pub async fn authenticate_key(&self, bearer: &str) -> Result<Principal, AuthError> {
        let presented = PresentedKey::parse(bearer).map_err(|_| AuthError::Invalid)?;
        let record = self
            .store
            .access()
            .find_key(presented.lookup)
            .await?
            .ok_or(AuthError::Invalid)?;
        let matches: bool = record.secret_hash.ct_eq(&hash_key(presented.full)).into();
        let at = now();
        if !matches
            || record.kind != presented.kind
            || record.revoked_at.is_some()
            || record.expires_at.is_some_and(|e| e <= at)
        {
            return Err(AuthError::Invalid);
        }
        let credential = match record.kind {
            KeyKind::Operator => CredentialKind::OperatorKey,
            KeyKind::TenantSecret => CredentialKind::TenantKey,
            KeyKind::Device => CredentialKind::DeviceKey,
        };
        let scopes = match record.kind {
            KeyKind::Operator => ScopeSet::all(),
            _ => ScopeSet::granted(&record.scopes, &record.roles),
        };
        self.touch_key(record.id);
        Ok(Principal {
            credential,
            subject: record.id.to_string(),
            key_id: Some(record.id),
            tenant: record.tenant_id,
            device_id: record.device_id,
            scopes,
            rate_limit_per_minute: record.rate_limit_per_minute,
        })
    }

    /// Operator-only endpoints.
    pub async fn authenticate_operator(
        &self,
        bearer: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let p = self
            .authenticate_key(bearer.ok_or(AuthError::Missing)?)
            .await?;
        match p.credential {
            CredentialKind::OperatorKey => Ok(p),
            CredentialKind::TenantKey => Err(AuthError::NotOperator(KeyKind::TenantSecret)),
            CredentialKind::DeviceKey => Err(AuthError::NotOperator(KeyKind::Device)),
            CredentialKind::Jwt => Err(AuthError::NotOperatorToken),
        }
    }

    /// Records `last_used_at`, at most once a minute per key and off the request path.
    fn touch_key(&self, id: ApiKeyId) {
        let due = {
            let mut seen = self
                .key_use
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = std::time::Instant::now();
            match seen.get(&id) {
                Some(last) if now.duration_since(*last) < std::time::Duration::from_secs(60) => {
                    false
                }
                _ => {
                    if seen.len() > 100_000 {
                        seen.clear();
                    }
                    seen.insert(id, now);
                    true
                }
            }
        };
        if due {
            let store = std::sync::Arc::clone(&self.store);
            tokio::spawn(async move {
                if let Err(e) = store.access().touch_key(id, now()).await {
                    tracing::debug!(error = %e, "could not record key use");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate_key(KeyKind::Operator);
        let b = generate_key(KeyKind::Operator);
        assert_ne!(a, b);
        let p = PresentedKey::parse(&a).unwrap();
        assert_eq!(p.kind, KeyKind::Operator);
        assert_eq!(p.lookup.len(), "tnt_op_".len() + 12);
        assert_eq!(hash_key(&a).len(), 32);
    }
}
