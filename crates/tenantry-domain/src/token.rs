//! Bearer-token claims and what they grant. Signature, issuer, audience and time checks happen in
//! the server (with `jsonwebtoken`); this module decides, from verified claims, who the caller is.

use serde::Deserialize;

use crate::access::{CredentialKind, Principal, Role, Scope, ScopeSet};
use crate::id::TenantId;

/// The claims tenantry reads from a verified token. Other claims are ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Informational: the tenant's edition in tenantry is what limits and quotas use.
    #[serde(default)]
    pub edition: Option<String>,
    /// OAuth 2.0 style: space-separated scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// Azure AD / Okta style: space-separated string or an array.
    #[serde(default)]
    pub scp: Option<StringOrList>,
    #[serde(default)]
    pub roles: Option<StringOrList>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn items(&self) -> Vec<&str> {
        match self {
            Self::One(s) => s.split_ascii_whitespace().collect(),
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Why verified claims do not make a usable credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the token has no 'sub' claim")]
    MissingSubject,
    #[error("the token has no 'tenant_id' claim; tokens are always issued for one tenant")]
    MissingTenant,
    #[error("the token's 'tenant_id' claim is not a tenant id")]
    BadTenant,
}

impl TokenClaims {
    /// The principal these claims stand for. Tokens are always tenant-bound: platform operators
    /// use operator keys, so an `operator` role in a token grants nothing. Unknown scopes and roles
    /// (an identity provider's `openid`, `profile`, …) are ignored.
    pub fn principal(&self) -> Result<Principal, ClaimsError> {
        let subject = self
            .sub
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or(ClaimsError::MissingSubject)?;
        let tenant: TenantId = self
            .tenant_id
            .as_deref()
            .ok_or(ClaimsError::MissingTenant)?
            .parse()
            .map_err(|_| ClaimsError::BadTenant)?;
        let mut scopes: Vec<Scope> = Vec::new();
        let listed = self
            .scope
            .iter()
            .flat_map(|s| s.split_ascii_whitespace())
            .chain(self.scp.iter().flat_map(StringOrList::items));
        scopes.extend(listed.filter_map(|s| s.parse::<Scope>().ok()));
        let roles: Vec<Role> = self
            .roles
            .iter()
            .flat_map(StringOrList::items)
            .filter_map(|r| r.parse::<Role>().ok())
            .filter(|r| *r != Role::Operator)
            .collect();
        Ok(Principal {
            credential: CredentialKind::Jwt,
            subject: subject.to_owned(),
            key_id: None,
            tenant: Some(tenant),
            device_id: None,
            scopes: ScopeSet::granted(&scopes, &roles),
            rate_limit_per_minute: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> TokenClaims {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn scope_string_scp_list_and_roles_combine() {
        let t = TenantId::new();
        let p = claims(serde_json::json!({
            "sub": "user-1", "tenant_id": t.to_string(),
            "scope": "tenants:read openid", "scp": ["audit:read"], "roles": ["billing_admin", "wizard"]
        }))
        .principal()
        .unwrap();
        assert_eq!(p.credential, CredentialKind::Jwt);
        assert_eq!(p.tenant, Some(t));
        assert!(p.scopes.contains(Scope::TenantsRead));
        assert!(p.scopes.contains(Scope::AuditRead));
        assert!(p.scopes.contains(Scope::BillingManage));
        assert!(!p.scopes.contains(Scope::KeysManage));
    }

    #[test]
    fn scp_may_be_a_space_separated_string() {
        let t = TenantId::new();
        let p = claims(serde_json::json!({"sub": "u", "tenant_id": t.to_string(), "scp": "keys:read devices:read"}))
            .principal()
            .unwrap();
        assert!(p.scopes.contains(Scope::KeysRead) && p.scopes.contains(Scope::DevicesRead));
    }

    #[test]
    fn operator_role_in_a_token_grants_nothing() {
        let t = TenantId::new();
        let p = claims(
            serde_json::json!({"sub": "u", "tenant_id": t.to_string(), "roles": "operator"}),
        )
        .principal()
        .unwrap();
        assert_eq!(p.scopes, ScopeSet::default());
        assert!(!p.is_operator());
    }

    #[test]
    fn tenant_and_subject_are_required() {
        assert_eq!(
            claims(serde_json::json!({"tenant_id": TenantId::new().to_string()})).principal(),
            Err(ClaimsError::MissingSubject)
        );
        assert_eq!(
            claims(serde_json::json!({"sub": "u"})).principal(),
            Err(ClaimsError::MissingTenant)
        );
        assert_eq!(
            claims(serde_json::json!({"sub": "u", "tenant_id": "acme"})).principal(),
            Err(ClaimsError::BadTenant)
        );
    }
}
