//! The pure domain of tenantry: types and rules with no I/O.
//!
//! Everything here is deterministic given its inputs (time and randomness are passed in), so it is
//! unit- and property-tested without a database or a network.

pub mod access;
pub mod api_key;
pub mod audit;
pub mod clock;
pub mod edition;
pub mod egress;
pub mod event;
pub mod gcra;
pub mod id;
pub mod job;
pub mod page;
pub mod resolution;
pub mod sync;
pub mod telemetry;
pub mod tenant;
pub mod token;
pub mod trace;
pub mod validation;
pub mod webhook;

pub use access::{CredentialKind, Principal, Role, Scope, ScopeSet, TenantScope};
pub use api_key::{KeyKind, PresentedKey};
pub use audit::{Actor, ActorKind, AuditRecord};
pub use edition::{Edition, EditionKey, EditionLimits};
pub use event::EventEnvelope;
pub use id::{ApiKeyId, AuditId, EventId, TenantId};
pub use page::{Cursor, Page, PageInfo, PageRequest};
pub use tenant::{
    Isolation, Region, Slug, Tenant, TenantName, TenantRef, TenantStatus, TransitionError,
};
pub use trace::TraceContext;
pub use validation::{FieldError, ValidationErrors};
