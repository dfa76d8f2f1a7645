//! Public representations, shared by HTTP responses, CLI output and event payloads.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tenantry_domain::{Edition, EditionLimits, Tenant};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: &'static str,
    pub edition: String,
    pub region: Option<String>,
    pub isolation: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<DateTime<Utc>>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            slug: t.slug.to_string(),
            name: t.name.as_str().to_owned(),
            status: t.status.as_str(),
            edition: t.edition.to_string(),
            region: t.region.as_ref().map(|r| r.as_str().to_owned()),
            isolation: t.isolation.as_str(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            deleted_at: t.deleted_at,
            purge_after: t.purge_after,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EditionView {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub limits: EditionLimits,
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&Edition> for EditionView {
    fn from(e: &Edition) -> Self {
        Self {
            key: e.key.to_string(),
            name: e.name.clone(),
            description: e.description.clone(),
            limits: e.limits,
            builtin: e.builtin,
            created_at: e.created_at,
        }
    }
}

pub fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
