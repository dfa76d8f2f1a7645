//! The capability adapters whose Rust is the same on both backends, written once. Each macro
//! implements one port for an adapter; the adapter's file supplies only its SQL, as constants in
//! a module named `sql`, and the macro is expanded there (its paths — `sql::…`, `err`, `Intent`,
//! the adapter's `platform_tx` / `tenant_tx` routing point and `write_changes` — resolve in that
//! file). Both adapters give their transactions the same shape (`Tx`: a connection that commits
//! into a `StoreResult`), which is what makes this possible.

mod access;
mod audit;
mod editions;
mod events;
mod idempotency;
mod job_console;
mod leases;
mod schedules;
mod secrets;
mod sync;
mod telemetry;
mod tenants;
mod usage;
mod webhooks;

pub(crate) use {
    access::access_store,
    audit::audit_store,
    editions::edition_store,
    events::event_store,
    idempotency::idempotency_store,
    job_console::job_console,
    leases::lease_store,
    schedules::schedule_store,
    secrets::secret_store,
    sync::sync_store,
    telemetry::{retention_settings, sort_out_devices},
    tenants::tenant_store,
    usage::usage_store,
    webhooks::webhook_store,
};
