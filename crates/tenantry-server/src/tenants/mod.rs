//! Tenants: the registry and its lifecycle (create, change, suspend, resume, delete, restore).

pub mod config;
pub mod http;
pub mod service;

pub use service::{Lifecycle, NewTenant, TenantPatchIn};

/// What this capability adds to the server.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "tenants",
    routes: http::register,
    ..crate::Capability::NONE
};
