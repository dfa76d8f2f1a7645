//! Editions: named bundles of limits. The defaults come from the platform seeds; custom editions
//! are data.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// An edition's key: `[a-z0-9-]{2,63}` (`free`, `standard`, `healthcare-pack`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EditionKey(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 2 to 63 characters of a-z, 0-9 and '-'")]
pub struct EditionKeyError;

impl EditionKey {
    pub fn parse(s: &str) -> Result<Self, EditionKeyError> {
        let ok = (2..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(EditionKeyError)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn free() -> Self {
        Self("free".into())
    }
}
impl TryFrom<String> for EditionKey {
    type Error = EditionKeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<EditionKey> for String {
    fn from(k: EditionKey) -> String {
        k.0
    }
}
impl fmt::Display for EditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limits an edition grants. All are positive; enforcement comes with the capabilities that
/// use them (rate limiting, storage, webhooks, retention).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditionLimits {
    pub requests_per_minute: u32,
    pub burst: u32,
    pub concurrency: u32,
    pub storage_gb: u32,
    pub webhook_subscriptions: u32,
    pub retention_days: u32,
    /// The shortest interval between two firings of a schedule a tenant creates (interval or
    /// cron), in seconds. Absent in editions stored before it existed: 60.
    #[serde(default = "default_min_schedule_interval")]
    pub min_schedule_interval_seconds: u32,
}

fn default_min_schedule_interval() -> u32 {
    60
}

impl EditionLimits {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let fields = [
            ("limits.requests_per_minute", self.requests_per_minute),
            ("limits.burst", self.burst),
            ("limits.concurrency", self.concurrency),
            ("limits.storage_gb", self.storage_gb),
            ("limits.webhook_subscriptions", self.webhook_subscriptions),
            ("limits.retention_days", self.retention_days),
            (
                "limits.min_schedule_interval_seconds",
                self.min_schedule_interval_seconds,
            ),
        ];
        for (field, value) in fields {
            if value == 0 {
                errors.push(field, "must be at least 1");
            }
        }
        if self.burst < self.requests_per_minute.min(1) {
            errors.push("limits.burst", "must be at least 1");
        }
        errors.into_result()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edition {
    pub key: EditionKey,
    pub name: String,
    pub description: Option<String>,
    pub limits: EditionLimits,
    /// Built-in editions ship with tenantry; custom ones are created through the API.
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
}

impl Edition {
    /// The default catalog: Free, Standard and Enterprise with the limits of the platform seeds.
    pub fn defaults(now: DateTime<Utc>) -> Vec<Edition> {
        let e = |key: &str, name: &str, description: &str, limits: EditionLimits| Edition {
            key: EditionKey(key.into()),
            name: name.into(),
            description: Some(description.into()),
            limits,
            builtin: true,
            created_at: now,
        };
        vec![
            e(
                "free",
                "Free",
                "Trial and evaluation tenants: minimal features, strict quotas.",
                EditionLimits {
                    requests_per_minute: 60,
                    burst: 120,
                    concurrency: 10,
                    storage_gb: 1,
                    webhook_subscriptions: 1,
                    retention_days: 7,
                    min_schedule_interval_seconds: 300,
                },
            ),
            e(
                "standard",
                "Standard",
                "The full baseline capability pack with medium quotas.",
                EditionLimits {
                    requests_per_minute: 600,
                    burst: 1200,
                    concurrency: 50,
                    storage_gb: 50,
                    webhook_subscriptions: 5,
                    retention_days: 30,
                    min_schedule_interval_seconds: 60,
                },
            ),
            e(
                "enterprise",
                "Enterprise",
                "Advanced features and premium quotas.",
                EditionLimits {
                    requests_per_minute: 3000,
                    burst: 6000,
                    concurrency: 200,
                    storage_gb: 500,
                    webhook_subscriptions: 20,
                    retention_days: 90,
                    min_schedule_interval_seconds: 10,
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seeds() {
        let d = Edition::defaults(Utc::now());
        let rpm: Vec<_> = d
            .iter()
            .map(|e| (e.key.as_str(), e.limits.requests_per_minute, e.limits.burst))
            .collect();
        assert_eq!(
            rpm,
            vec![
                ("free", 60, 120),
                ("standard", 600, 1200),
                ("enterprise", 3000, 6000)
            ]
        );
        assert!(d.iter().all(|e| e.limits.validate().is_ok()));
    }

    #[test]
    fn keys_and_limits_are_validated() {
        assert!(EditionKey::parse("f").is_err());
        assert!(EditionKey::parse("Free").is_err());
        assert!(EditionKey::parse("healthcare-pack").is_ok());
        let mut l = Edition::defaults(Utc::now())[0].limits;
        l.concurrency = 0;
        let err = l.validate().unwrap_err();
        assert_eq!(err.0[0].field, "limits.concurrency");
    }
}
