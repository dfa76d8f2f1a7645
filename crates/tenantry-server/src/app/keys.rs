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
use tenantry_domain::{Actor, ActorKind, ApiKeyId, EventEnvelope};
use tenantry_store::{ApiKeyRecord, Changes, Constraint, StoreError};

use super::{App, AppResult, Ctx, now};

/// Who is calling, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Operator { key_id: ApiKeyId },
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator { key_id } => Actor {
                kind: ActorKind::OperatorKey,
                id: key_id.to_string(),
            },
        }
    }
    /// A stable, non-secret name of the principal (for idempotency scopes).
    pub fn scope_id(&self) -> String {
        match self {
            Principal::Operator { key_id } => format!("op:{key_id}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs an operator API key: Authorization: Bearer tnt_op_…")]
    Missing,
    #[error("the credential is not a valid API key")]
    Invalid,
    #[error("this endpoint needs an operator key; the presented key is a {0} key")]
    WrongKind(KeyKind),
    #[error(transparent)]
    Store(#[from] StoreError),
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
            ctx.trace_id.clone(),
            record.created_at,
            details,
        );
        self.store
            .insert_api_key(&record, &Changes::new(audit, event))
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
            match self.store.find_api_key(presented.lookup).await? {
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
                | Err(super::AppError::Store(StoreError::Duplicate(Constraint::ApiKeyLookup))) => {
                    Ok(None)
                }
                Err(e) => Err(e),
            };
        }
        if self.store.count_active_operator_keys(now()).await? > 0 {
            return Ok(None);
        }
        let issued = self
            .create_operator_key(&ctx, "bootstrap", None, None)
            .await?;
        Ok(Some(issued.secret))
    }

    /// Checks an `Authorization: Bearer` credential and returns the principal it stands for.
    pub async fn authenticate_operator(
        &self,
        bearer: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let bearer = bearer.ok_or(AuthError::Missing)?;
        let presented = PresentedKey::parse(bearer).map_err(|_| AuthError::Invalid)?;
        let record = self
            .store
            .find_api_key(presented.lookup)
            .await?
            .ok_or(AuthError::Invalid)?;
        let matches: bool = record.secret_hash.ct_eq(&hash_key(presented.full)).into();
        if !matches {
            return Err(AuthError::Invalid);
        }
        let at = now();
        if record.revoked_at.is_some() || record.expires_at.is_some_and(|e| e <= at) {
            return Err(AuthError::Invalid);
        }
        if record.kind != KeyKind::Operator {
            return Err(AuthError::WrongKind(record.kind));
        }
        Ok(Principal::Operator { key_id: record.id })
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
