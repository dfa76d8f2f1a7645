//! Every store operation is timed and traced: the histogram `store_operation_duration_seconds`
//! labelled by operation (`capability.method`: a fixed, small set), and, inside a traced unit of
//! work, an OpenTelemetry client span with the database conventions (`db.system`,
//! `db.operation.name`, and `tenant.id` when a tenant's scope is given) as a child of the current
//! span (`Context::current()`). Outside one (the
//! background loops' own polling: claims, lease renewals, housekeeping) there is no span: they
//! would be a stream of one-span traces.

use std::sync::OnceLock;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, TraceContextExt as _, Tracer as _};

/// The tracer, taken from OpenTelemetry's global provider at the first traced operation (spans
/// exist only once the server installed its provider).
static TRACER: OnceLock<BoxedTracer> = OnceLock::new();

/// Records the time from its creation to its drop (however the operation ends); its span lives
/// as long.
pub(crate) struct Timed {
    operation: &'static str,
    started: Instant,
    span: Option<BoxedSpan>,
}

impl Timed {
    pub(crate) fn new(system: &'static str, operation: &'static str) -> Self {
        let cx = opentelemetry::Context::current();
        let span = cx.has_active_span().then(|| {
            TRACER
                .get_or_init(|| opentelemetry::global::tracer("tenantry"))
                .build_with_context(
                    SpanBuilder::from_name(operation)
                        .with_kind(SpanKind::Client)
                        .with_attributes([
                            KeyValue::new("db.system", system),
                            KeyValue::new("db.operation.name", operation),
                        ]),
                    &cx,
                )
        });
        Self {
            operation,
            started: Instant::now(),
            span,
        }
    }

    /// Names the tenant whose scope the operation runs in (`tenant.id` on its span).
    pub(crate) fn tenant(mut self, tenant: impl Into<Option<tenantry_domain::TenantId>>) -> Self {
        if let (Some(span), Some(tenant)) = (&mut self.span, tenant.into()) {
            span.set_attribute(KeyValue::new("tenant.id", tenant.to_string()));
        }
        self
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!("store_operation_duration_seconds", "operation" => self.operation)
            .record(self.started.elapsed().as_secs_f64());
        if let Some(span) = &mut self.span {
            span.end();
        }
    }
}
