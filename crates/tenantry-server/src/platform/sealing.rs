//! Secrets at rest: values a tenant gives us to present elsewhere (a source's request headers, and
//! later webhook signing secrets) are sealed with AES-256-GCM (`ring`) before they are stored.
//!
//! The key comes from the configuration (`encryption_key`, 32 bytes in base64); retired keys
//! (`encryption_keys_previous`) still open what they sealed. Without a configured key, a key made
//! once and kept in the database (`platform_secrets`) is used, so that every instance shares it —
//! which protects nothing against someone holding the database, and start-up says so. Each sealed
//! value names its key (the first 4 bytes of the key's SHA-256) and is bound to what it belongs to
//! (the associated data: a tenant and a resource id), so a value copied onto another row does not
//! open.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, invalid};

const PREFIX: &str = "s1";
const DB_KEY_NAME: &str = "sealing_key_v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed value is not one this platform made")]
    Malformed,
    #[error(
        "the key that sealed this value ({0}) is not configured; add it to encryption_keys_previous"
    )]
    UnknownKey(String),
    #[error("the sealed value does not open (altered, or bound to another record)")]
    Open,
    #[error("the sealing key cannot be read: {0}")]
    Store(#[from] tenantry_store::StoreError),
}

struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn new(bytes: &[u8]) -> Option<Self> {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).ok()?);
        Some(Self { id, key })
    }
}

/// Reads a configured key: 32 bytes in standard or URL-safe base64.
pub fn parse_key(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    let bytes = STANDARD
        .decode(t)
        .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
        .ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// Checks `encryption_key` and `encryption_keys_previous`.
pub fn validate(current: Option<&str>, previous: &str) -> Result<(), ConfigError> {
    if let Some(k) = current
        && parse_key(k).is_none()
    {
        return Err(invalid(
            "encryption_key",
            "must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)",
        ));
    }
    for k in previous.split(',').filter(|k| !k.trim().is_empty()) {
        if parse_key(k).is_none() {
            return Err(invalid(
                "encryption_keys_previous",
                "must be keys of 32 bytes in base64, comma-separated",
            ));
        }
    }
    Ok(())
}

struct Keys {
    /// Seals new values.
    current: Key,
    /// Every key that may open a value, the current one included.
    all: Vec<Key>,
}

/// Seals and opens secrets.
#[derive(Clone)]
pub struct Sealer {
    configured: Option<Vec<u8>>,
    previous: Vec<Vec<u8>>,
    store: Option<Arc<dyn tenantry_store::Store>>,
    keys: Arc<tokio::sync::OnceCell<Keys>>,
}

impl Sealer {
    pub fn new(
        configured: Option<&str>,
        previous: &str,
        store: Option<Arc<dyn tenantry_store::Store>>,
    ) -> Self {
        Self {
            configured: configured.and_then(parse_key),
            previous: previous.split(',').filter_map(parse_key).collect(),
            store,
            keys: Arc::default(),
        }
    }

    /// Whether a key is configured (otherwise the database's own key seals).
    pub fn is_configured(&self) -> bool {
        self.configured.is_some()
    }

    async fn keys(&self) -> Result<&Keys, SealError> {
        self.keys
            .get_or_try_init(|| async {
                // the database's key: sealing without configuration, and opening what it sealed
                let mut candidate = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut candidate)
                    .map_err(|_| SealError::Malformed)?;
                let db_key = match &self.store {
                    Some(store) => {
                        store
                            .secrets()
                            .get_or_create(DB_KEY_NAME, &candidate)
                            .await?
                    }
                    None => candidate.to_vec(),
                };
                let mut all: Vec<Key> = Vec::new();
                for bytes in self
                    .configured
                    .iter()
                    .chain(self.previous.iter())
                    .chain(std::iter::once(&db_key))
                {
                    all.extend(Key::new(bytes));
                }
                let current = Key::new(self.configured.as_deref().unwrap_or(&db_key))
                    .ok_or(SealError::Malformed)?;
                Ok(Keys { current, all })
            })
            .await
    }

    /// Seals `plain`, bound to `aad` (what it belongs to).
    pub async fn seal(&self, plain: &[u8], aad: &str) -> Result<String, SealError> {
        let keys = self.keys().await?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Malformed)?;
        let mut data = plain.to_vec();
        keys.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Malformed)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}.{}.{}",
            keys.current.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Opens what [`Sealer::seal`] made with the same `aad`.
    pub async fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        let keys = self.keys().await?;
        let mut parts = sealed.splitn(3, '.');
        let (Some(PREFIX), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let key = keys
            .all
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Malformed)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_values_open_only_with_their_binding_and_a_known_key() {
        let k1 = STANDARD.encode([1u8; 32]);
        let k2 = STANDARD.encode([2u8; 32]);
        let old = Sealer::new(Some(&k1), "", None);
        let sealed = old.seal(b"Bearer abc", "t1/s1").await.unwrap();
        assert!(!sealed.contains("Bearer"));
        assert_eq!(old.open(&sealed, "t1/s1").await.unwrap(), b"Bearer abc");
        assert!(matches!(
            old.open(&sealed, "t2/s1").await,
            Err(SealError::Open)
        ));
        // rotated: the old key still opens, the new one seals
        let rotated = Sealer::new(Some(&k2), &k1, None);
        assert_eq!(rotated.open(&sealed, "t1/s1").await.unwrap(), b"Bearer abc");
        let again = rotated.seal(b"x", "a").await.unwrap();
        assert_ne!(again.split('.').nth(1), sealed.split('.').nth(1));
        // a key that is gone is named
        let forgot = Sealer::new(Some(&k2), "", None);
        assert!(matches!(
            forgot.open(&sealed, "t1/s1").await,
            Err(SealError::UnknownKey(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open(&tampered, "t1/s1").await.is_err());
        assert!(validate(Some("short"), "").is_err());
        assert!(validate(Some(&k1), &format!("{k2},")).is_ok());
    }
}
