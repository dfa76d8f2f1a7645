//! Audit: the read side of the audit log (records are written with each change).

pub mod http;
pub mod service;

/// What this capability adds to the server.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "audit",
    routes: http::register,
    ..crate::Capability::NONE
};
