//! The platform: what every capability shares. The application ([`App`]: the store and the
//! settings, extended by each capability's service with `impl App` blocks), the request context
//! ([`Ctx`]), the one error type of the use cases ([`AppError`], mapped to HTTP once in
//! [`http::problem`]), idempotency, public views, and the HTTP plumbing in [`http`] (edge,
//! extractors, Problem+JSON, the route table).
//!
//! Each write decides with the domain, then commits the change together with its audit record and
//! outbox event (and the request's idempotency record) as one unit of work.

pub mod egress;
pub mod footprint;
pub mod http;
pub mod idempotency;
pub mod sealing;
pub mod views;

/// The platform's own part of the server: health, readiness and metrics, and the purge of
/// expired idempotency records.
pub const CAPABILITY: crate::Capability = crate::Capability {
    name: "platform",
    routes: |api| http::openapi::register(http::health::register(api)),
    housekeeping: idempotency::housekeeping,
    background: footprint::background,
    metrics: &[
        Metric::gauge(
            "tenant_storage_bytes",
            "Bytes of a listed tenant's stored rows (keys, devices, audit, outbox, jobs, schedules), read once a minute",
        ),
        Metric::gauge(
            "tenant_active_devices",
            "Devices of a listed tenant whose key was used in the last 24 hours, read once a minute",
        ),
        Metric::seconds(
            "http_request_duration_seconds",
            "HTTP request duration, by method, route template and status",
        ),
        Metric::counter(
            "tenant_http_requests_total",
            "Requests about a tenant, by tenant (the tenants of tenant_metrics by id, the others as `other`) and status class",
        ),
        Metric::counter(
            "http_refused_total",
            "Requests answered below the router (unparseable, too slow, over the connection bound), by problem type",
        ),
    ],
    ..crate::Capability::NONE
};

use crate::observability::Metric;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tenantry_domain::clock::to_stored_precision;
use tenantry_domain::{Actor, AuditId, AuditRecord, TenantId, TransitionError, ValidationErrors};
use tenantry_store::{IdempotencyRecord, Store, StoreError};

pub use tenantry_domain::Principal;
pub use views::{EditionView, TenantView};

#[derive(Clone, Debug)]
pub struct AppSettings {
    pub delete_grace: Duration,
    pub idempotency_ttl: Duration,
    pub key_rotation_grace: Duration,
    pub telemetry: crate::telemetry::config::TelemetryConfig,
    pub sync: crate::sync::config::SyncConfig,
    pub egress: crate::platform::egress::EgressConfig,
    pub events: crate::events::config::EventsConfig,
    pub webhooks: crate::webhooks::config::WebhooksConfig,
    /// `encryption_key` and `encryption_keys_previous` (sealing tenants' secrets).
    pub encryption_key: Option<String>,
    pub encryption_keys_previous: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            delete_grace: Duration::days(30),
            idempotency_ttl: Duration::hours(24),
            key_rotation_grace: Duration::hours(24),
            telemetry: Default::default(),
            sync: Default::default(),
            egress: Default::default(),
            events: Default::default(),
            webhooks: Default::default(),
            encryption_key: None,
            encryption_keys_previous: String::new(),
        }
    }
}

/// The application: use cases over a store.
#[derive(Clone)]
pub struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) settings: AppSettings,
    /// When each key was last recorded as used (to write `last_used_at` at most once a minute).
    pub(crate) key_use:
        Arc<Mutex<std::collections::HashMap<tenantry_domain::ApiKeyId, std::time::Instant>>>,
    /// Device telemetry's in-process state (its one field here): the in-flight budget
    /// (`[telemetry] max_in_flight_events`), the group committer, the live feed.
    pub(crate) telemetry: Arc<crate::telemetry::runtime::TelemetryRuntime>,
    /// Source sync's in-process state: the egress client, the upstream hosts' circuit breakers,
    /// the sealer of header secrets.
    pub(crate) sync: Arc<crate::sync::runtime::SyncRuntime>,
    /// The event fabric's in-process state: the bus, the realtime hub, the relay's status.
    pub(crate) events: Arc<crate::events::runtime::EventsRuntime>,
    /// Webhooks' in-process state: the egress client, the sealer of signing secrets.
    pub(crate) webhooks: Arc<crate::webhooks::runtime::WebhooksRuntime>,
}

/// Who is acting, under which trace, and (once known) for which tenant. The tenant slot is shared
/// with the HTTP layer so that errors and logs can name the tenant.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub actor: Actor,
    /// The trace this action belongs to (the request's span), when it has one.
    pub trace: Option<tenantry_domain::TraceContext>,
    tenant: Arc<Mutex<Option<TenantId>>>,
}

impl Ctx {
    pub fn new(actor: Actor, trace: Option<tenantry_domain::TraceContext>) -> Self {
        Self {
            actor,
            trace,
            tenant: Arc::default(),
        }
    }

    pub fn with_tenant_slot(
        actor: Actor,
        trace: Option<tenantry_domain::TraceContext>,
        slot: Arc<Mutex<Option<TenantId>>>,
    ) -> Self {
        Self {
            actor,
            trace,
            tenant: slot,
        }
    }

    /// The trace id (for audit records and events).
    pub fn trace_id(&self) -> Option<String> {
        self.trace.map(|t| t.trace_id_hex())
    }

    /// The `traceparent` naming this action's span (stored with the jobs it enqueues).
    pub fn trace_parent(&self) -> Option<String> {
        self.trace
            .as_ref()
            .map(crate::observability::traces::traceparent)
    }

    /// Records the tenant this request is about (for problems, logs and spans).
    pub fn note_tenant(&self, id: TenantId) {
        if let Ok(mut slot) = self.tenant.lock() {
            *slot = Some(id);
        }
        crate::observability::traces::note_tenant(id);
    }

    pub(crate) fn audit(
        &self,
        action: &str,
        resource_type: &str,
        resource_id: String,
        tenant_id: Option<TenantId>,
        details: serde_json::Value,
    ) -> AuditRecord {
        AuditRecord {
            id: AuditId::new(),
            occurred_at: now(),
            actor: self.actor.clone(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id,
            tenant_id,
            trace_id: self.trace_id(),
            details,
        }
    }
}

/// Who asks: the platform (an operator naming no tenant) or one tenant, through its scope. Jobs
/// use it today; every capability whose data is both the platform's and tenants' (webhooks,
/// flags, metering) takes the same.
#[derive(Clone, Copy, Debug)]
pub enum PlatformOrTenant<'a> {
    Platform,
    Tenant(&'a tenantry_domain::TenantScope),
}

impl<'a> PlatformOrTenant<'a> {
    /// The store's view for this caller.
    pub fn scope(self) -> tenantry_store::jobs::JobScope<'a> {
        match self {
            Self::Platform => tenantry_store::jobs::JobScope::System,
            Self::Tenant(s) => tenantry_store::jobs::JobScope::Tenant(s),
        }
    }

    pub fn tenant_id(self) -> Option<TenantId> {
        match self {
            Self::Platform => None,
            Self::Tenant(s) => Some(s.tenant_id()),
        }
    }
}

/// The largest opaque JSON document a request may store — a job's or a schedule's `payload`, a
/// device's `metadata` — measured as compact JSON.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Refuses an opaque document over [`MAX_DOCUMENT_BYTES`].
pub fn check_document(errors: &mut ValidationErrors, field: &str, value: &serde_json::Value) {
    let size = value.to_string().len();
    if size > MAX_DOCUMENT_BYTES {
        errors.push(
            field,
            format!(
                "must be at most {} KiB of JSON (is {size} bytes)",
                MAX_DOCUMENT_BYTES / 1024
            ),
        );
    }
}

/// A queue name: 1 to 64 letters, digits, `-` or `_`.
pub fn check_queue(errors: &mut ValidationErrors, field: &str, queue: &str) {
    let ok = (1..=64).contains(&queue.len())
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        errors.push(field, "1 to 64 letters, digits, '-' or '_'");
    }
}

/// Builds the idempotency record of a request from the resource its write produced.
pub type Idem<'a, T> = Option<&'a (dyn Fn(&T) -> IdempotencyRecord + Send + Sync)>;

/// A new root trace context (for work that does not arrive with one).
pub fn new_trace() -> tenantry_domain::TraceContext {
    tenantry_domain::TraceContext::new_root(rand::random(), rand::random())
}

/// The current time at stored precision.
pub fn now() -> DateTime<Utc> {
    to_stored_precision(Utc::now())
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    #[error("no tenant '{0}'")]
    TenantNotFound(String),
    #[error("no edition '{0}'")]
    EditionNotFound(String),
    #[error("the slug '{0}' is taken by another tenant")]
    SlugTaken(String),
    #[error("an edition with key '{0}' exists")]
    EditionExists(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("this update needs an If-Match header with the tenant's current ETag")]
    PreconditionRequired,
    #[error("the tenant has changed: its current ETag is {current}")]
    PreconditionFailed { current: String },
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is being processed; retry shortly")]
    IdempotencyRace,
    #[error("{0}")]
    TenantAmbiguous(String),
    #[error(
        "no tenant named: send X-Tenant-Id, use the tenant's subdomain or a /t/{{tenant}}/ path"
    )]
    TenantRequired,
    #[error("this credential may not act on that tenant")]
    TenantMismatch,
    #[error("the tenant is suspended: reads work, changes are refused")]
    TenantSuspended,
    #[error("this operation needs the scope '{0}'")]
    InsufficientScope(tenantry_domain::Scope),
    #[error("no API key '{0}' in this tenant")]
    KeyNotFound(String),
    #[error("the API key '{0}' is revoked, expired or already rotated")]
    KeyNotRotatable(String),
    #[error("no device '{0}' in this tenant")]
    DeviceNotFound(String),
    #[error("a device '{0}' is already registered in this tenant")]
    DeviceExists(String),
    #[error(transparent)]
    Jobs(#[from] crate::jobs::service::JobsError),
    #[error("no schedule '{0}'")]
    ScheduleNotFound(String),
    #[error("no source '{0}' in this tenant")]
    SourceNotFound(String),
    #[error("a source named '{0}' exists in this tenant")]
    SourceExists(String),
    #[error("no webhook subscription '{0}' in this tenant")]
    SubscriptionNotFound(String),
    /// A limit of the tenant's edition is reached.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A write's outcome is not known (its worker stopped before answering): retrying is safe
    /// only where the write is idempotent, which the operation says.
    #[error("{0}")]
    OutcomeUnknown(&'static str),
    /// The telemetry archive (its blob store, or an archive in it) failed.
    #[error("telemetry archive: {0}")]
    Archive(String),
    #[error(transparent)]
    Store(StoreError),
}

pub type AppResult<T> = Result<T, AppError>;

/// Store errors become application errors here, once: a unit of work that ran into another
/// request's `Idempotency-Key` lost a race with that request (it is still being processed);
/// everything else the use case did not handle itself is a store error.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(tenantry_store::Constraint::IdempotencyKey) => {
                AppError::IdempotencyRace
            }
            e => AppError::Store(e),
        }
    }
}

impl App {
    pub fn new(store: Arc<dyn Store>, settings: AppSettings) -> Self {
        let telemetry = Arc::new(crate::telemetry::runtime::TelemetryRuntime::new(
            &settings.telemetry,
        ));
        let sealer = sealing::Sealer::new(
            settings.encryption_key.as_deref(),
            &settings.encryption_keys_previous,
            Some(Arc::clone(&store)),
        );
        let webhooks = Arc::new(crate::webhooks::runtime::WebhooksRuntime::new(
            settings.webhooks.clone(),
            settings.egress.clone(),
            sealer.clone(),
        ));
        let sync = Arc::new(crate::sync::runtime::SyncRuntime::new(
            settings.sync.clone(),
            settings.egress.clone(),
            sealer,
        ));
        let events = Arc::new(crate::events::runtime::EventsRuntime::new(
            settings.events.clone(),
        ));
        Self {
            store,
            settings,
            key_use: Arc::default(),
            telemetry,
            sync,
            events,
            webhooks,
        }
    }

    /// Device telemetry's in-process state: the in-flight budget, the group committer, the
    /// live feed.
    pub fn telemetry(&self) -> &Arc<crate::telemetry::runtime::TelemetryRuntime> {
        &self.telemetry
    }

    /// The event fabric's in-process state.
    pub fn events(&self) -> &Arc<crate::events::runtime::EventsRuntime> {
        &self.events
    }

    /// Webhooks' in-process state.
    pub fn webhooks(&self) -> &Arc<crate::webhooks::runtime::WebhooksRuntime> {
        &self.webhooks
    }

    /// Source sync's in-process state.
    pub fn sync(&self) -> &Arc<crate::sync::runtime::SyncRuntime> {
        &self.sync
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }
}
