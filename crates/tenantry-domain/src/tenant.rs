//! Tenants: their validated attributes and their lifecycle state machine.
//!
//! ```text
//! provisioning ──activate──▶ active ◀──resume── suspended
//!      │                      │  └───suspend──────▶ │
//!      └──────delete──────────┴──────delete─────────┴──▶ deleted ──restore (within grace)──▶ previous
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::edition::EditionKey;
use crate::id::TenantId;

/// A tenant's URL-safe handle and DNS label (subdomain resolution uses it): `[a-z0-9-]{3,63}`,
/// neither starting nor ending with `-` and without `--` (reserved in DNS labels for encodings
/// such as `xn--`), never shaped like a UUID (so that `/v1/tenants/{id-or-slug}` is never
/// ambiguous).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("must be 3 to 63 characters long")]
    Length,
    #[error("may contain only lowercase letters a-z, digits and '-'")]
    Charset,
    #[error("must not be shaped like a UUID")]
    LooksLikeUuid,
    #[error("must start and end with a letter or digit, without '--' (a DNS label)")]
    Hyphens,
}

impl Slug {
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if !(3..=63).contains(&s.len()) {
            return Err(SlugError::Length);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SlugError::Charset);
        }
        if uuid::Uuid::try_parse(s).is_ok() {
            return Err(SlugError::LooksLikeUuid);
        }
        if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
            return Err(SlugError::Hyphens);
        }
        Ok(Self(s.to_owned()))
    }

    /// A slug read back from storage: the rules slugs were created under before they had to be
    /// DNS labels (length, charset, not a UUID), so that a tenant created then stays readable.
    pub fn from_stored(s: &str) -> Result<Self, SlugError> {
        match Self::parse(s) {
            Err(SlugError::Hyphens) => Ok(Self(s.to_owned())),
            other => other,
        }
    }

    /// Derives a slug from a display name: ASCII letters and digits are kept (lowercased), every
    /// other run of characters becomes one `-`. When too little is left, `fallback` (for example a
    /// piece of the tenant id) completes it.
    pub fn derive(name: &str, fallback: &str) -> Self {
        let mut out = String::with_capacity(name.len());
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        let mut s = out.trim_matches('-').to_owned();
        s.truncate(63);
        let s = s.trim_end_matches('-').to_owned();
        let candidate = if s.len() < 3 {
            format!("tenant-{fallback}")
        } else {
            s
        };
        Self::parse(&candidate)
            .unwrap_or_else(|_| Self(format!("tenant-{}", fallback.to_ascii_lowercase())))
    }

    /// The same slug with a disambiguating suffix, still within 63 characters.
    pub fn with_suffix(&self, suffix: &str) -> Self {
        let keep = 63usize.saturating_sub(suffix.len() + 1);
        let base: String = self.0.chars().take(keep).collect();
        Self(format!("{}-{suffix}", base.trim_end_matches('-')))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}
impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's display name: 1 to 200 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 200 characters long")]
    TooLong,
    #[error("must not contain control characters or bidirectional overrides")]
    Control,
}

impl TenantName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.chars().count() > 200 {
            return Err(NameError::TooLong);
        }
        if crate::validation::name_problem(s).is_some() {
            return Err(NameError::Control);
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for TenantName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<TenantName> for String {
    fn from(n: TenantName) -> String {
        n.0
    }
}

/// A data-residency region label such as `eu-west` or `us`: `[a-z0-9-]{2,32}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 2 to 32 characters of a-z, 0-9 and '-'")]
pub struct RegionError;

impl Region {
    pub fn parse(s: &str) -> Result<Self, RegionError> {
        let ok = (2..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RegionError)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Region {
    type Error = RegionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown value '{s}', expected one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// Where a tenant is in its lifecycle.
    TenantStatus {
        Provisioning => "provisioning",
        Active => "active",
        Suspended => "suspended",
        Deleted => "deleted",
    }
);

string_enum!(
    /// How a tenant's data is separated from the others'.
    Isolation {
        Pooled => "pooled",
        Schema => "schema",
        Database => "database",
    }
);

impl Isolation {
    /// Whether creating a tenant at this level needs asynchronous work (the tenant starts in
    /// `provisioning`).
    pub const fn needs_provisioning(self) -> bool {
        !matches!(self, Isolation::Pooled)
    }
}

/// A tenant as stored. `version` increases on every change and backs `ETag` / `If-Match`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: Slug,
    pub name: TenantName,
    pub status: TenantStatus,
    pub edition: EditionKey,
    pub region: Option<Region>,
    pub isolation: Isolation,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub purge_after: Option<DateTime<Utc>>,
    /// The status a deleted tenant returns to when restored.
    pub deleted_from: Option<TenantStatus>,
    pub version: i64,
}

/// How a caller names a tenant: by id or by slug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantRef {
    Id(TenantId),
    Slug(Slug),
}

impl TenantRef {
    /// Parses `{id-or-slug}`; `None` when it is neither.
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(id) = s.parse::<TenantId>() {
            return Some(Self::Id(id));
        }
        Slug::from_stored(s).ok().map(Self::Slug)
    }
}

impl fmt::Display for TenantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantRef::Id(id) => id.fmt(f),
            TenantRef::Slug(s) => s.fmt(f),
        }
    }
}

/// A lifecycle operation that the tenant's current status does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {action} a tenant that is {from}")]
    NotAllowed {
        action: &'static str,
        from: TenantStatus,
    },
    #[error("the restore window of this tenant closed at {purge_after}")]
    GraceExpired { purge_after: DateTime<Utc> },
}

impl Tenant {
    /// A new tenant. Pooled tenants are active at once; other isolation levels start in
    /// `provisioning` until their resources exist.
    pub fn new(
        id: TenantId,
        slug: Slug,
        name: TenantName,
        edition: EditionKey,
        region: Option<Region>,
        isolation: Isolation,
        now: DateTime<Utc>,
    ) -> Self {
        let status = if isolation.needs_provisioning() {
            TenantStatus::Provisioning
        } else {
            TenantStatus::Active
        };
        Self {
            id,
            slug,
            name,
            status,
            edition,
            region,
            isolation,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            purge_after: None,
            deleted_from: None,
            version: 1,
        }
    }

    /// The strong entity tag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    fn touched(mut self, now: DateTime<Utc>) -> Self {
        self.updated_at = now;
        self.version += 1;
        self
    }

    pub fn activate(&self, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.require("activate", &[TenantStatus::Provisioning])?;
        let mut t = self.clone();
        t.status = TenantStatus::Active;
        Ok(t.touched(now))
    }

    pub fn suspend(&self, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.require("suspend", &[TenantStatus::Active])?;
        let mut t = self.clone();
        t.status = TenantStatus::Suspended;
        Ok(t.touched(now))
    }

    pub fn resume(&self, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.require("resume", &[TenantStatus::Suspended])?;
        let mut t = self.clone();
        t.status = TenantStatus::Active;
        Ok(t.touched(now))
    }

    /// Soft delete: the tenant keeps its data until `now + grace`, and can be restored until then.
    pub fn delete(&self, now: DateTime<Utc>, grace: Duration) -> Result<Self, TransitionError> {
        self.require(
            "delete",
            &[
                TenantStatus::Provisioning,
                TenantStatus::Active,
                TenantStatus::Suspended,
            ],
        )?;
        let mut t = self.clone();
        t.deleted_from = Some(t.status);
        t.status = TenantStatus::Deleted;
        t.deleted_at = Some(now);
        t.purge_after = Some(now + grace);
        Ok(t.touched(now))
    }

    /// Undoes a soft delete inside the grace window; the tenant returns to the status it had.
    pub fn restore(&self, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.require("restore", &[TenantStatus::Deleted])?;
        if let Some(purge_after) = self.purge_after
            && now >= purge_after
        {
            return Err(TransitionError::GraceExpired { purge_after });
        }
        let mut t = self.clone();
        t.status = t.deleted_from.take().unwrap_or(TenantStatus::Active);
        t.deleted_at = None;
        t.purge_after = None;
        Ok(t.touched(now))
    }

    /// Applies a change of attributes; deleted tenants cannot be changed.
    pub fn update(&self, patch: TenantPatch, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.require(
            "update",
            &[
                TenantStatus::Provisioning,
                TenantStatus::Active,
                TenantStatus::Suspended,
            ],
        )?;
        let mut t = self.clone();
        if let Some(name) = patch.name {
            t.name = name;
        }
        if let Some(edition) = patch.edition {
            t.edition = edition;
        }
        if let Some(region) = patch.region {
            t.region = region;
        }
        if t == *self {
            return Ok(t);
        }
        Ok(t.touched(now))
    }

    fn require(
        &self,
        action: &'static str,
        allowed: &[TenantStatus],
    ) -> Result<(), TransitionError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(TransitionError::NotAllowed {
                action,
                from: self.status,
            })
        }
    }
}

/// A validated change of a tenant's attributes (`None` leaves a field as it is; for the region,
/// `Some(None)` clears it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPatch {
    pub name: Option<TenantName>,
    pub edition: Option<EditionKey>,
    pub region: Option<Option<Region>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant(isolation: Isolation) -> Tenant {
        Tenant::new(
            TenantId::new(),
            Slug::parse("acme").unwrap(),
            TenantName::parse("Acme").unwrap(),
            EditionKey::parse("free").unwrap(),
            None,
            isolation,
            Utc::now(),
        )
    }

    #[test]
    fn pooled_starts_active_others_provisioning() {
        assert_eq!(tenant(Isolation::Pooled).status, TenantStatus::Active);
        assert_eq!(tenant(Isolation::Schema).status, TenantStatus::Provisioning);
        let t = tenant(Isolation::Database).activate(Utc::now()).unwrap();
        assert_eq!(t.status, TenantStatus::Active);
    }

    #[test]
    fn lifecycle_and_versions() {
        let now = Utc::now();
        let t = tenant(Isolation::Pooled);
        let s = t.suspend(now).unwrap();
        assert_eq!((s.status, s.version), (TenantStatus::Suspended, 2));
        assert!(matches!(
            s.suspend(now),
            Err(TransitionError::NotAllowed {
                action: "suspend",
                ..
            })
        ));
        let d = s.delete(now, Duration::days(30)).unwrap();
        assert_eq!(d.status, TenantStatus::Deleted);
        assert_eq!(d.purge_after, Some(now + Duration::days(30)));
        assert!(d.resume(now).is_err());
        assert!(d.update(TenantPatch::default(), now).is_err());
        // a suspended tenant that is deleted and restored is suspended again, not silently active
        let r = d.restore(now + Duration::days(29)).unwrap();
        assert_eq!(
            (r.status, r.deleted_at, r.purge_after),
            (TenantStatus::Suspended, None, None)
        );
        assert!(matches!(
            d.restore(now + Duration::days(30)),
            Err(TransitionError::GraceExpired { .. })
        ));
        assert!(t.restore(now).is_err());
    }

    #[test]
    fn update_without_change_keeps_version() {
        let t = tenant(Isolation::Pooled);
        let same = t
            .update(
                TenantPatch {
                    name: Some(t.name.clone()),
                    ..Default::default()
                },
                Utc::now(),
            )
            .unwrap();
        assert_eq!(same.version, t.version);
        let p = TenantPatch {
            region: Some(Some(Region::parse("eu").unwrap())),
            ..Default::default()
        };
        assert_eq!(t.update(p, Utc::now()).unwrap().version, 2);
    }

    #[test]
    fn slugs() {
        assert!(Slug::parse("ab").is_err());
        assert!(Slug::parse("Acme").is_err());
        assert!(Slug::parse(&"a".repeat(64)).is_err());
        assert!(Slug::parse("0190a6f4-1c2b-7d3e-8f40-123456789abc").is_err());
        assert_eq!(
            Slug::derive("Acme Corp, Inc.", "x").as_str(),
            "acme-corp-inc"
        );
        assert_eq!(Slug::derive("東京", "0a1b2c3d").as_str(), "tenant-0a1b2c3d");
        assert_eq!(Slug::derive("  --A--  ", "0a1b").as_str(), "tenant-0a1b");
        let long = Slug::parse(&"a".repeat(63)).unwrap().with_suffix("12ab");
        assert_eq!(long.as_str().len(), 63);
        assert!(Slug::parse(long.as_str()).is_ok());
    }

    #[test]
    fn tenant_ref_prefers_id() {
        let id = TenantId::new();
        assert_eq!(TenantRef::parse(&id.to_string()), Some(TenantRef::Id(id)));
        assert!(matches!(TenantRef::parse("acme"), Some(TenantRef::Slug(_))));
        assert_eq!(TenantRef::parse("A!"), None);
    }

    #[test]
    fn slugs_are_dns_labels() {
        for bad in ["-leading", "trailing-", "a--b", "--x", "xn--abc"] {
            assert_eq!(Slug::parse(bad), Err(SlugError::Hyphens), "{bad}");
        }
        assert!(Slug::parse("a-b-c").is_ok());
        // created before the rule: still readable from storage, never accepted as input
        assert_eq!(Slug::from_stored("-old").unwrap().as_str(), "-old");
        assert_eq!(Slug::from_stored("Abc!"), Err(SlugError::Charset));
    }

    proptest! {
        #[test]
        fn derived_slugs_are_always_valid(name in "\\PC{0,120}", fallback in "[0-9a-f]{8}") {
            let slug = Slug::derive(&name, &fallback);
            prop_assert!(Slug::parse(slug.as_str()).is_ok(), "{slug:?}");
        }

        #[test]
        fn suffixed_slugs_are_valid(base in "[a-z0-9][a-z0-9-]{2,62}", suffix in "[0-9a-f]{4,8}") {
            if let Ok(slug) = Slug::parse(&base) {
                let s = slug.with_suffix(&suffix);
                prop_assert!(Slug::parse(s.as_str()).is_ok(), "{s:?}");
            }
        }
    }
}
