//! Traces: OpenTelemetry spans, exported over OTLP (gRPC or HTTP/protobuf) when `[otel]` names a
//! receiver. W3C trace context is read and written by OpenTelemetry's propagator either way, so
//! logs, problems, audit records and jobs carry the caller's trace id whether or not spans are
//! exported (ADR 0015).
//!
//! Spans are made with the OpenTelemetry API directly, not bridged from `tracing` (whose spans
//! carry the logs' fields): a bridge cost three times as much per span. The current span travels
//! as OpenTelemetry's `Context`, attached to the future that does the work
//! (`FutureExt::with_context`); the store's operations start their spans as children of
//! `Context::current()`.
//!
//! What is traced: every request (a server span following the HTTP conventions, continuing the
//! caller's `traceparent`), every store operation inside a traced unit of work (a client span with
//! `db.system` and `db.operation.name`), every job run (a child of the span that enqueued it, whose
//! context is stored with the job), every schedule firing, and outbound HTTP calls (with
//! `traceparent` injected).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use serde_json::json;
use tenantry_domain::{TenantId, TraceContext};

use super::config::{OtelConfig, Protocol, Root, SamplerChoice};

/// Set once traces are exported: spans are then made, and take their ids from OpenTelemetry.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();
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
    let cx = Context::current();
    if cx.has_active_span() {
        TraceContextPropagator::new()
            .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    }
}

/// The span of an outbound HTTP call (HTTP client conventions; the URL without credentials), a
/// child of the current span. Run the call with its context attached, inject it with
/// [`inject_current`], then [`record_status`] and [`end`].
pub fn client_span(method: &'static str, url: &str) -> Started {
    start(
        || method.into(),
        SpanKind::Client,
        || {
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.full", crate::config::redact_url(url)),
            ]
        },
        &Context::current(),
    )
}

/// Records the answer's status on the current span (4xx and 5xx mark a client call failed).
pub fn record_status(status: u16) {
    let cx = Context::current();
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 400 {
        span.set_status(Status::error(""));
    }
}

/// Ends the span of `cx`, marked failed unless `ok`.
pub fn end(cx: &Context, ok: bool) {
    let span = cx.span();
    if !ok {
        span.set_status(Status::error(""));
    }
    span.end();
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut b: [u8; N] = rand::random();
    if b.iter().all(|&x| x == 0) {
        b[N - 1] = 1;
    }
    b
}

/// A started span: its context (attach it to the work: `FutureExt::with_context`) and the ids
/// the logs carry.
pub struct Started {
    pub cx: Context,
    pub trace: TraceContext,
}

/// Starts a span of `kind` as a child of `parent` (a remote or stored context; empty for a new
/// trace). Its name and attributes are built only when traces are exported. Without export, the
/// ids continue the parent's trace with a fresh span id (or start a trace, not sampled: nothing
/// records it) and the context is empty.
pub fn start(
    name: impl FnOnce() -> std::borrow::Cow<'static, str>,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
    parent: &Context,
) -> Started {
    if let Some(tracer) = TRACER.get() {
        let span = tracer.build_with_context(
            SpanBuilder::from_name(name())
                .with_kind(kind)
                .with_attributes(attributes()),
            parent,
        );
        let own = span.span_context().clone();
        return Started {
            cx: parent.with_span(span),
            trace: TraceContext {
                trace_id: own.trace_id().to_bytes(),
                span_id: own.span_id().to_bytes(),
                sampled: own.is_sampled(),
            },
        };
    }
    let remote = parent.span().span_context().clone();
    let trace = if remote.is_valid() {
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
    };
    Started {
        cx: Context::new(),
        trace,
    }
}

/// Starts a root span for work done on behalf of several traces (a group commit), linked to
/// each of them: every request's trace shows the shared work, and the shared work names its
/// requests. Nothing when traces are not exported.
pub fn start_linked(
    name: &'static str,
    attributes: impl FnOnce() -> Vec<KeyValue>,
    links: impl Iterator<Item = opentelemetry::trace::SpanContext>,
) -> Context {
    let Some(tracer) = TRACER.get() else {
        return Context::new();
    };
    let links: Vec<opentelemetry::trace::Link> = links
        .filter(|l| l.is_valid())
        .map(opentelemetry::trace::Link::with_context)
        .collect();
    let span = tracer.build_with_context(
        SpanBuilder::from_name(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes())
            .with_links(links),
        &Context::new(),
    );
    Context::new().with_span(span)
}

/// The span context of the current span (for a later link), when it is valid.
pub fn current_span_context() -> Option<opentelemetry::trace::SpanContext> {
    let cx = Context::current();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Names the tenant on the current log span (`tenant_id`). The trace's spans get `tenant.id`
/// where they end (a request) or start (a job run, a firing).
pub fn note_tenant(tenant: TenantId) {
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant));
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

    /// From now on spans are made and exported: by this process's code through its tracer,
    /// and by the store's through OpenTelemetry's global provider.
    pub(super) fn install(&self) {
        let _ = TRACER.set(self.provider.tracer("tenantry"));
        opentelemetry::global::set_tracer_provider(self.provider.clone());
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
    fn without_export_ids_continue_the_parent() {
        let parent = extract(&headers(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        let unnamed = || -> std::borrow::Cow<'static, str> {
            unreachable!("no span is built while export is off")
        };
        let s = start(unnamed, SpanKind::Server, Vec::new, &parent);
        let t = s.trace;
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id_hex(), "00f067aa0ba902b7");
        assert!(t.sampled);
        assert!(!s.cx.has_active_span());
        let root = start(unnamed, SpanKind::Server, Vec::new, &Context::new()).trace;
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
