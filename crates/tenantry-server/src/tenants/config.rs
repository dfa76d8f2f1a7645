//! `[tenants]`: the tenant lifecycle's settings.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantsConfig {
    /// How long a deleted tenant can be restored, in days.
    pub delete_grace_days: u32,
    /// Base host whose subdomains name tenants (`acme.api.example.com` → `acme`); empty: off.
    pub base_host: String,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            delete_grace_days: 30,
            base_host: String::new(),
        }
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("tenant_delete_grace_days", "tenants.delete_grace_days"),
    ("tenant_base_host", "tenants.base_host"),
];

impl TenantsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3650).contains(&self.delete_grace_days) {
            return Err(invalid(
                "tenants.delete_grace_days",
                "must be between 1 and 3650",
            ));
        }
        let host = self.base_host.trim();
        if !host.is_empty()
            && (host.starts_with('.')
                || host.contains('/')
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b)))
        {
            return Err(invalid(
                "tenants.base_host",
                format!("'{host}' is not a host name like api.example.com"),
            ));
        }
        Ok(())
    }
}
