//! Editions: the catalog of editions and their limits.

pub mod http;
pub mod service;

/// What this capability adds to the server.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "editions",
    routes: http::register,
    ..crate::Capability::NONE
};
