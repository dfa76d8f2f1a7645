//! Traces: OpenTelemetry spans, exported over OTLP (gRPC or HTTP/protobuf) when `[otel]` names a
//! receiver. W3C trace context is read and written by OpenTelemetry's propagator either way, so
//! logs, problems, audit records and jobs carry the caller's trace id whether or not spans are
//! exported (ADR 0015).
//!
//! What is traced: every request (a server span following the HTTP conventions, continuing the
//! caller's `traceparent`), every store operation (a client span with `db.system` and
//! `db.operation.name`), every job run (a child of the span that enqueued it, whose context is
//! stored with the job), every schedule firing, and outbound HTTP calls (with `traceparent`
//! injected).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use serde_json::json;
use tenantry_domain::{TenantId, TraceContext};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::config::{OtelConfig, Protocol, Root, SamplerChoice};

/// Set once the exporting layer is installed: spans then take their ids from OpenTelemetry.
static ON: AtomicBool = AtomicBool::new(false);
/// The exporter's last results, for `/readyz`.
static EXPORT: OnceLock<Arc<ExportState>> = OnceLock::new();

/// The remote parent named by a request's `traceparent` (and `tracestate`) headers; an empty
/// context when they are missing or invalid (the request then starts a new trace).
pub fn extract(headers: &axum::http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// The context of a stored `traceparent` (a job's), as a parent.
pub fn extract_traceparent(value: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` header value naming `trace`.
pub fn traceparent(trace: &TraceContext) -> String {
    let cx = Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.span_id),
        if trace.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    ));
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

/// Adds `traceparent` for the current span to an outbound request's headers.
pub fn inject_current(headers: &mut axum::http::HeaderMap) {
    if ON.load(Ordering::Relaxed) {
        let cx = tracing::Span::current().context();
        TraceContextPropagator::new()
            .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    }
}

/// The span of an outbound HTTP call (HTTP client conventions; the URL without credentials).
/// Run the call inside it, and inject its context with [`inject_current`].
pub fn client_span(method: &'static str, url: &str) -> tracing::Span {
    tracing::info_span!(
        "http_client",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        url.full = %crate::config::redact_url(url),
        http.response.status_code = tracing::field::Empty,
    )
}

/// Records the answer's status on the current client span (5xx and 4xx mark it failed).
pub fn record_status(status: u16) {
    let span = tracing::Span::current();
    span.record("http.response.status_code", i64::from(status));
    if status >= 400 {
        span.record("otel.status_code", "ERROR");
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut b: [u8; N] = rand::random();
    if b.iter().all(|&x| x == 0) {
        b[N - 1] = 1;
    }
    b
}

/// Makes `span` a child of `parent` (a remote or stored context; empty for a new trace) and
/// returns the ids it carries: the OpenTelemetry span's when traces are exported, otherwise the
/// parent's trace with a fresh span id (or a fresh trace, not sampled: nothing records it).
pub fn start(span: &tracing::Span, parent: &Context) -> TraceContext {
    if ON.load(Ordering::Relaxed) && span.set_parent(parent.clone()).is_ok() {
        let cx = span.context();
        let own = cx.span().span_context().clone();
        if own.is_valid() {
            return TraceContext {
                trace_id: own.trace_id().to_bytes(),
                span_id: own.span_id().to_bytes(),
                sampled: own.is_sampled(),
            };
        }
    }
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        TraceContext {
            trace_id: remote.trace_id().to_bytes(),
            span_id: random_nonzero(),
            sampled: remote.is_sampled(),
        }
    } else {
        TraceContext {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            sampled: false,
        }
    }
}

/// Names the tenant on `span`: `tenant_id` for logs, `tenant.id` for traces.
pub fn note_tenant(span: &tracing::Span, tenant: TenantId) {
    span.record("tenant_id", tracing::field::display(tenant));
    span.record("tenant.id", tracing::field::display(tenant));
}

/// The installed trace pipeline; [`Traces::shutdown`] exports what is still buffered.
pub struct Traces {
    pub(super) provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter and the provider from `[otel]` (which must be enabled).
    pub(super) fn build(config: &OtelConfig) -> anyhow::Result<Self> {
        let url = config.traces_url()?;
        let protocol = config.protocol()?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let exporter = match protocol {
            Protocol::Grpc => {
                use opentelemetry_otlp::WithExportConfig;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(url.clone())
                    .with_timeout(timeout)
                    .build()?
            }
            Protocol::HttpProtobuf => {
                use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(url.clone())
                    .with_timeout(timeout)
                    .with_http_client(crate::http_client().timeout(timeout).build()?)
                    .build()?
            }
        };
        let state = Arc::new(ExportState::new(protocol, crate::config::redact_url(&url)));
        let _ = EXPORT.set(Arc::clone(&state));
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                Observed {
                    inner: exporter,
                    state,
                },
                opentelemetry_sdk::runtime::Tokio,
            )
            .with_batch_config(BatchConfigBuilder::default().build())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler(config.sampler_choice()?))
            .with_resource(resource(config))
            .build();
        Ok(Self { provider })
    }

    /// The tracing layer that turns spans into OpenTelemetry spans; from now on, spans take
    /// their ids from OpenTelemetry.
    pub(super) fn layer(
        &self,
    ) -> impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync {
        ON.store(true, Ordering::Relaxed);
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("tenantry"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
    }

    /// Exports the spans still buffered and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }
}

fn sampler(choice: SamplerChoice) -> Sampler {
    let root = |r: Root| match r {
        Root::AlwaysOn => Sampler::AlwaysOn,
        Root::AlwaysOff => Sampler::AlwaysOff,
        Root::Ratio(r) => Sampler::TraceIdRatioBased(r),
    };
    match choice {
        SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
        SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
        SamplerChoice::Ratio(r) => Sampler::TraceIdRatioBased(r),
        SamplerChoice::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
    }
}

/// `service.name`, `service.version`, `service.instance.id` (new for every process),
/// `deployment.environment` when set, the configured attributes, then `OTEL_RESOURCE_ATTRIBUTES`
/// (which wins on a clash), then `OTEL_SERVICE_NAME` (which wins over both).
fn resource(config: &OtelConfig) -> Resource {
    let service_name = KeyValue::new("service.name", config.service_name.clone());
    let mut attrs = vec![
        service_name.clone(),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", uuid::Uuid::now_v7().to_string()),
    ];
    if !config.environment.trim().is_empty() {
        for key in ["deployment.environment", "deployment.environment.name"] {
            attrs.push(KeyValue::new(key, config.environment.trim().to_owned()));
        }
    }
    attrs.extend(
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let detectors: Vec<Box<dyn ResourceDetector>> = vec![
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let mut builder = Resource::builder_empty()
        .with_attributes(attrs)
        .with_detectors(&detectors);
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder = builder.with_attribute(service_name);
    }
    builder.build()
}

/// What the exporter last did: `/readyz` reports it, and a failing receiver degrades the
/// instance without making it unready (spans are dropped, nothing else is affected).
#[derive(Debug)]
struct ExportState {
    protocol: Protocol,
    endpoint: String,
    last: Mutex<LastExport>,
}

#[derive(Debug, Default)]
struct LastExport {
    at: Option<Instant>,
    latency: Duration,
    error: Option<String>,
    batches: u64,
    spans: u64,
}

impl ExportState {
    fn new(protocol: Protocol, endpoint: String) -> Self {
        Self {
            protocol,
            endpoint,
            last: Mutex::default(),
        }
    }

    fn record(&self, result: &OTelSdkResult, latency: Duration, spans: usize) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("otlp_exports_total", "result" => outcome).increment(1);
        if let Ok(mut last) = self.last.lock() {
            last.at = Some(Instant::now());
            last.latency = latency;
            last.batches += 1;
            match result {
                Ok(()) => {
                    last.error = None;
                    last.spans += spans as u64;
                }
                Err(e) => last.error = Some(crate::config::redact_urls_in(&e.to_string())),
            }
        }
    }
}

/// The exporter, timed and its results kept for readiness.
#[derive(Debug)]
struct Observed<E> {
    inner: E,
    state: Arc<ExportState>,
}

impl<E: SpanExporter> SpanExporter for Observed<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let started = Instant::now();
        let result = self.inner.export(batch).await;
        self.state.record(&result, started.elapsed(), spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's state for `/readyz`: `None` when traces are not exported.
pub fn readiness() -> Option<serde_json::Value> {
    let state = EXPORT.get()?;
    let last = state.last.lock().ok()?;
    let mut v = json!({
        "status": if last.error.is_some() { "degraded" } else { "ok" },
        "protocol": state.protocol.as_str(),
        "endpoint": state.endpoint,
        "batches": last.batches,
        "spans": last.spans,
    });
    match (&last.at, &last.error) {
        (None, _) => v["detail"] = "no export yet".into(),
        (Some(_), Some(e)) => {
            v["detail"] = format!(
                "the last export failed ({e}): spans are dropped until the receiver answers"
            )
            .into();
        }
        (Some(_), None) => {
            v["latency_ms"] = ((last.latency.as_secs_f64() * 10_000.0).round() / 10.0).into();
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(traceparent: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        if let Ok(v) = axum::http::HeaderValue::from_str(traceparent) {
            h.insert("traceparent", v);
        }
        h
    }

    fn parsed(traceparent: &str) -> Option<SpanContext> {
        let cx = extract(&headers(traceparent));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }

    /// The propagator reads what the W3C recommendation says (the rules ADR 0005's own parser
    /// followed; these cases were its tests).
    #[test]
    fn the_propagator_follows_the_recommendation() {
        let sc = parsed("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format!("{:016x}", sc.span_id()), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parsed(bad), None, "{bad}");
        }
    }

    #[test]
    fn without_the_layer_ids_continue_the_parent() {
        let parent = extract(&headers(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        let t = start(&tracing::Span::none(), &parent);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id_hex(), "00f067aa0ba902b7");
        assert!(t.sampled);
        let root = start(&tracing::Span::none(), &Context::new());
        assert_ne!(root.trace_id, [0; 16]);
        assert!(
            !root.sampled,
            "nothing records a new trace while export is off"
        );
    }

    proptest! {
        #[test]
        fn what_we_write_the_propagator_reads_back(
            t in any::<[u8; 16]>(), s in any::<[u8; 8]>(), sampled in any::<bool>()
        ) {
            prop_assume!(t != [0; 16] && s != [0; 8]);
            let ctx = TraceContext { trace_id: t, span_id: s, sampled };
            let header = traceparent(&ctx);
            let sc = extract_traceparent(&header).span().span_context().clone();
            prop_assert!(sc.is_valid());
            prop_assert_eq!(sc.trace_id().to_bytes(), t);
            prop_assert_eq!(sc.span_id().to_bytes(), s);
            prop_assert_eq!(sc.is_sampled(), sampled);
        }

        #[test]
        fn any_header_is_survived(s in "\\PC{0,80}") {
            let _ = extract(&headers(&s));
        }
    }
}
