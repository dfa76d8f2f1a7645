//! API key formats. A key is `<kind prefix><random base62>`, e.g. `tnt_op_8fK2…`. The first 12
//! random characters form the public *lookup prefix* (stored in clear, shown in listings); the whole
//! key is only ever stored as a hash.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Characters of randomness after the kind prefix in generated keys (base62: ~262 bits).
pub const GENERATED_RANDOM_LEN: usize = 44;
/// The shortest random part accepted (at least 128 bits of base62 are 22 characters; we ask 32).
pub const MIN_RANDOM_LEN: usize = 32;
/// Length of the public lookup part taken from the random characters.
pub const LOOKUP_LEN: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Operator,
    TenantSecret,
    Device,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::Operator, KeyKind::TenantSecret, KeyKind::Device];

    pub const fn prefix(self) -> &'static str {
        match self {
            KeyKind::Operator => "tnt_op_",
            KeyKind::TenantSecret => "tnt_sk_",
            KeyKind::Device => "tnt_dk_",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            KeyKind::Operator => "operator",
            KeyKind::TenantSecret => "tenant_secret",
            KeyKind::Device => "device",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown key kind '{s}'"))
    }
}

/// A key as presented by a client, split into its parts. Parsing checks only the shape; whether
/// the key is real is decided by comparing hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub kind: KeyKind,
    /// `<kind prefix><first 12 random characters>`: the non-secret lookup handle.
    pub lookup: &'a str,
    pub full: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("an API key starts with tnt_op_, tnt_sk_ or tnt_dk_")]
    UnknownKind,
    #[error("an API key has at least {MIN_RANDOM_LEN} characters of [A-Za-z0-9] after its prefix")]
    Shape,
}

impl<'a> PresentedKey<'a> {
    pub fn parse(s: &'a str) -> Result<Self, KeyFormatError> {
        let kind = KeyKind::ALL
            .into_iter()
            .find(|k| s.starts_with(k.prefix()))
            .ok_or(KeyFormatError::UnknownKind)?;
        let random = &s[kind.prefix().len()..];
        if random.len() < MIN_RANDOM_LEN
            || random.len() > 128
            || !random.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(KeyFormatError::Shape);
        }
        Ok(Self {
            kind,
            lookup: &s[..kind.prefix().len() + LOOKUP_LEN],
            full: s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        let key = format!("tnt_op_{}", "A1b2C3d4E5f6".repeat(3));
        let p = PresentedKey::parse(&key).unwrap();
        assert_eq!(p.kind, KeyKind::Operator);
        assert_eq!(p.lookup, "tnt_op_A1b2C3d4E5f6");
        assert_eq!(
            PresentedKey::parse("tnt_xx_abc"),
            Err(KeyFormatError::UnknownKind)
        );
        assert_eq!(
            PresentedKey::parse("tnt_op_short"),
            Err(KeyFormatError::Shape)
        );
        assert_eq!(
            PresentedKey::parse(&format!("tnt_sk_{}-", "a".repeat(40))),
            Err(KeyFormatError::Shape)
        );
    }
}
