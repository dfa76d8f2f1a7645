//! Audit records: who did what to which resource, in which tenant, under which trace.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{AuditId, TenantId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An operator API key (`actor.id` is the key id, never the secret).
    OperatorKey,
    /// The `tenantry` command line, offline against the database (`actor.id` is the OS user).
    Cli,
    /// The platform itself (bootstrap, background work).
    System,
    /// A tenant API key (`actor.id` is the key id).
    TenantKey,
    /// A device key (`actor.id` is the key id).
    DeviceKey,
    /// A user authenticated by a JWT (`actor.id` is its `sub`).
    User,
}

impl ActorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorKind::OperatorKey => "operator_key",
            ActorKind::Cli => "cli",
            ActorKind::System => "system",
            ActorKind::TenantKey => "tenant_key",
            ActorKind::DeviceKey => "device_key",
            ActorKind::User => "user",
        }
    }
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "operator_key" => Ok(Self::OperatorKey),
            "cli" => Ok(Self::Cli),
            "system" => Ok(Self::System),
            "tenant_key" => Ok(Self::TenantKey),
            "device_key" => Ok(Self::DeviceKey),
            "user" => Ok(Self::User),
            other => Err(format!("unknown actor kind '{other}'")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: "tenantry".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: AuditId,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    /// `<resource>.<verb>`, e.g. `tenant.suspend`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub tenant_id: Option<TenantId>,
    pub trace_id: Option<String>,
    pub details: serde_json::Value,
}
