//! Access: the scope catalog, roles as bundles of scopes, authenticated principals, and the
//! [`TenantScope`] — the only key to a tenant's data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, ActorKind};
use crate::edition::EditionKey;
use crate::id::{ApiKeyId, TenantId};

macro_rules! catalog {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal: $doc:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $(#[doc = $doc] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str { match self { $($name::$variant => $text),+ } }
            pub const fn description(self) -> &'static str { match self { $($name::$variant => $doc),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown {} '{s}'; valid: {}",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

catalog!(
    /// What a credential may do. Every route declares the scope it needs.
    Scope {
        TenantsRead => "tenants:read": "read tenants",
        TenantsManage => "tenants:manage": "create, change, suspend and delete tenants",
        EditionsRead => "editions:read": "read the editions catalog",
        EditionsManage => "editions:manage": "create editions",
        KeysRead => "keys:read": "list API keys (never their secrets)",
        KeysManage => "keys:manage": "create, rotate and revoke API keys",
        DevicesRead => "devices:read": "list devices",
        DevicesManage => "devices:manage": "register and remove devices",
        TelemetryRead => "telemetry:read": "read device telemetry",
        TelemetryWrite => "telemetry:write": "send device telemetry",
        SourcesRead => "sources:read": "read sync sources, their runs and the records they brought",
        SourcesManage => "sources:manage": "create, change, delete and run sync sources",
        JobsRead => "jobs:read": "read background jobs",
        JobsManage => "jobs:manage": "enqueue, retry, cancel and replay jobs",
        AuditRead => "audit:read": "read the audit log",
        EventsRead => "events:read": "read the tenant's events: the event log, the event types, the realtime stream",
        WebhooksRead => "webhooks:read": "read webhook subscriptions and their delivery log",
        WebhooksManage => "webhooks:manage": "create, change, delete, test and rotate webhook subscriptions; replay deliveries",
        UsageRead => "usage:read": "read usage and quotas",
        BillingManage => "billing:manage": "manage billing settings",
    }
);

catalog!(
    /// Named bundles of scopes.
    Role {
        Operator => "operator": "runs the platform: every scope, on every tenant",
        TenantAdmin => "tenant_admin": "administers one tenant",
        Member => "member": "uses one tenant's product features",
        SupportAgent => "support_agent": "reads one tenant's data to help, changes nothing",
        BillingAdmin => "billing_admin": "manages one tenant's billing and reads its usage",
    }
);

impl Scope {
    /// The scope this one implies: each `X:manage` implies `X:read`.
    pub fn implies(self) -> Option<Scope> {
        match self {
            Scope::TenantsManage => Some(Scope::TenantsRead),
            Scope::EditionsManage => Some(Scope::EditionsRead),
            Scope::KeysManage => Some(Scope::KeysRead),
            Scope::DevicesManage => Some(Scope::DevicesRead),
            Scope::JobsManage => Some(Scope::JobsRead),
            Scope::SourcesManage => Some(Scope::SourcesRead),
            Scope::WebhooksManage => Some(Scope::WebhooksRead),
            _ => None,
        }
    }
}

impl Role {
    pub fn scopes(self) -> ScopeSet {
        use Scope::*;
        match self {
            Role::Operator => ScopeSet::all(),
            Role::TenantAdmin => ScopeSet::of(&[
                TenantsRead,
                EditionsRead,
                KeysRead,
                KeysManage,
                DevicesRead,
                DevicesManage,
                TelemetryRead,
                TelemetryWrite,
                SourcesRead,
                SourcesManage,
                JobsRead,
                JobsManage,
                AuditRead,
                EventsRead,
                WebhooksRead,
                WebhooksManage,
                UsageRead,
            ]),
            Role::Member => ScopeSet::of(&[
                TenantsRead,
                EditionsRead,
                DevicesRead,
                TelemetryRead,
                TelemetryWrite,
                SourcesRead,
                JobsRead,
                EventsRead,
            ]),
            Role::SupportAgent => ScopeSet::of(&[
                TenantsRead,
                EditionsRead,
                KeysRead,
                DevicesRead,
                TelemetryRead,
                SourcesRead,
                JobsRead,
                AuditRead,
                EventsRead,
                WebhooksRead,
                UsageRead,
            ]),
            Role::BillingAdmin => {
                ScopeSet::of(&[TenantsRead, EditionsRead, UsageRead, BillingManage])
            }
        }
    }
}

/// A set of scopes (a bit set: cheap to copy and check on every request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u64);

impl ScopeSet {
    const fn bit(s: Scope) -> u64 {
        1 << (s as u64)
    }
    pub fn all() -> Self {
        Self::of(Scope::ALL)
    }
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | Self::bit(*s)))
    }
    pub fn contains(self, s: Scope) -> bool {
        self.0 & Self::bit(s) != 0
    }
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }
    /// Scopes granted directly plus those of the roles, plus what they imply: `X:manage` implies
    /// `X:read` (whoever may change a resource may see it).
    pub fn granted(scopes: &[Scope], roles: &[Role]) -> Self {
        roles
            .iter()
            .fold(Self::of(scopes), |acc, r| acc.union(r.scopes()))
            .with_implied()
    }

    /// The set with every implied scope added.
    pub fn with_implied(self) -> Self {
        self.iter()
            .filter_map(Scope::implies)
            .fold(self, |acc, s| acc.union(Self::of(&[s])))
    }
}

/// What kind of credential authenticated a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    OperatorKey,
    TenantKey,
    DeviceKey,
    Jwt,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub credential: CredentialKind,
    /// The key id, or the token's `sub`.
    pub subject: String,
    pub key_id: Option<ApiKeyId>,
    /// The tenant the credential belongs to; `None` for operators.
    pub tenant: Option<TenantId>,
    /// For device keys: the device it speaks for.
    pub device_id: Option<String>,
    pub scopes: ScopeSet,
    /// A per-key rate limit lower than the edition's (requests per minute).
    pub rate_limit_per_minute: Option<u32>,
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.credential == CredentialKind::OperatorKey
    }

    pub fn actor(&self) -> Actor {
        let kind = match self.credential {
            CredentialKind::OperatorKey => ActorKind::OperatorKey,
            CredentialKind::TenantKey => ActorKind::TenantKey,
            CredentialKind::DeviceKey => ActorKind::DeviceKey,
            CredentialKind::Jwt => ActorKind::User,
        };
        Actor {
            kind,
            id: self.subject.clone(),
        }
    }
}

/// The right to touch one tenant's data. Repository functions for tenant data take a
/// `&TenantScope`; there is no other way in. Only the authentication layer (after it resolved and
/// checked the tenant) and explicit, audited system contexts create one — an architecture test
/// (`tests/architecture.rs` in tenantry-server) fails if anything else calls the constructors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantScope {
    tenant_id: TenantId,
    edition: EditionKey,
    actor: Actor,
}

impl TenantScope {
    /// For a request whose credential was verified and allowed on this tenant.
    pub fn for_verified_request(tenant_id: TenantId, edition: EditionKey, actor: Actor) -> Self {
        Self {
            tenant_id,
            edition,
            actor,
        }
    }

    /// For platform work on a tenant's data outside any request (jobs, CLI). `reason` is logged.
    pub fn system(tenant_id: TenantId, edition: EditionKey, reason: &'static str) -> Self {
        Self {
            tenant_id,
            edition,
            actor: Actor {
                kind: ActorKind::System,
                id: reason.to_owned(),
            },
        }
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }
    pub fn edition(&self) -> &EditionKey {
        &self.edition
    }
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manage_implies_read() {
        let g = ScopeSet::granted(&[Scope::DevicesManage, Scope::JobsManage], &[]);
        assert!(g.contains(Scope::DevicesRead) && g.contains(Scope::JobsRead));
        assert!(!g.contains(Scope::KeysRead));
        // telemetry:write (ingest) grants no read of the tenant's telemetry
        assert!(!ScopeSet::granted(&[Scope::TelemetryWrite], &[]).contains(Scope::TelemetryRead));
        // every manage scope of the catalog implies its read scope
        for s in Scope::ALL {
            if let Some(read) = s.implies() {
                assert!(s.as_str().ends_with(":manage") && read.as_str().ends_with(":read"));
                assert_eq!(
                    s.as_str().split(':').next(),
                    read.as_str().split(':').next()
                );
            }
        }
    }

    #[test]
    fn catalog_round_trips() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), *s);
        }
        assert!("tenants:destroy".parse::<Scope>().is_err());
        assert_eq!(
            serde_json::to_string(&Role::SupportAgent).unwrap(),
            "\"support_agent\""
        );
    }

    #[test]
    fn roles_grant_their_scopes() {
        assert!(Role::Operator.scopes().contains(Scope::TenantsManage));
        assert!(!Role::TenantAdmin.scopes().contains(Scope::TenantsManage));
        assert!(Role::TenantAdmin.scopes().contains(Scope::KeysManage));
        let support = Role::SupportAgent.scopes();
        assert!(
            support.iter().all(|s| s.as_str().ends_with(":read")),
            "support agents are read-only"
        );
        let g = ScopeSet::granted(&[Scope::BillingManage], &[Role::Member]);
        assert!(
            g.contains(Scope::BillingManage)
                && g.contains(Scope::TelemetryWrite)
                && !g.contains(Scope::KeysManage)
        );
    }
}
