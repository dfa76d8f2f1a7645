//! Every store operation is timed and traced: the histogram `store_operation_duration_seconds`
//! labelled by operation (`capability.method`: a fixed, small set), and a client span carrying
//! the OpenTelemetry database conventions (`db.system`, `db.operation.name`). The span is at
//! `DEBUG`: exported with traces when they are on, and free (disabled at its call site) when no
//! layer wants it.

use std::time::Instant;

/// Records the time from its creation to its drop (however the operation ends); its span lives
/// as long, as a child of the span that called the store.
pub(crate) struct Timed {
    operation: &'static str,
    started: Instant,
    _span: tracing::Span,
}

impl Timed {
    pub(crate) fn new(system: &'static str, operation: &'static str) -> Self {
        // only as part of a traced unit of work: the background loops' own polling (claims,
        // lease renewals, housekeeping) would otherwise be a stream of one-span traces
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                "store",
                otel.name = operation,
                otel.kind = "client",
                db.system = system,
                db.operation.name = operation,
            )
        };
        Self {
            operation,
            started: Instant::now(),
            _span: span,
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!("store_operation_duration_seconds", "operation" => self.operation)
            .record(self.started.elapsed().as_secs_f64());
    }
}
