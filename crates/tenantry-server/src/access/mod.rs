//! Access: authentication (operator, tenant and device keys; JWT bearer tokens), tenant resolution
//! and the minting of `TenantScope` ([`scope`]), scopes and roles, rate limits ([`limits`]), tenant
//! keys and devices. The platform's extractors call into it; it is the one capability every other
//! one depends on.

pub mod config;
pub mod devices;
pub mod http;
pub mod keys;
pub mod limits;
pub mod scope;
pub mod tenant_keys;
pub mod tokens;

pub use keys::AuthError;

/// What this capability adds to the server.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "access",
    routes: http::register,
    ..crate::Capability::NONE
};
