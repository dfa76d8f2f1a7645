//! Logs, metrics and traces. Logs are one JSON object per line (or human-readable with
//! `log_format = "pretty"`); every request's span carries `trace_id` and, once known,
//! `tenant_id`. Metrics are kept in-process and rendered at `/metrics`; labels are bounded (route
//! templates, not paths). Traces are exported over OTLP when `[otel]` names a receiver
//! ([`traces`]).

pub mod config;
pub mod traces;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the log subscriber (once per process; later calls do nothing) and, with
/// `export_traces` and an `[otel]` endpoint, the trace exporter (returned: shut it down last, so
/// that buffered spans are sent). The server logs to stdout; other commands log to stderr so that
/// their stdout stays clean JSON.
///
/// Logs follow `log_level`; traces do not depend on it (their spans are OpenTelemetry's own).
pub fn init(
    config: &Config,
    to_stdout: bool,
    export_traces: bool,
) -> anyhow::Result<Option<traces::Traces>> {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = if to_stdout {
        BoxMakeWriter::new(std::io::stdout)
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let logs: Boxed = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let traces = if export_traces && config.otel.enabled() {
        Some(traces::Traces::build(&config.otel)?)
    } else {
        None
    };
    if let Some(t) = &traces {
        t.install();
    }
    let _ = tracing_subscriber::registry().with(logs).try_init();
    Ok(traces)
}

/// One metric the server records: its name, kind, unit and help text. Each capability lists its
/// own (`Capability::metrics`); `/metrics` describes them all, and `docs/observability.md` lists
/// them (a test keeps the three in step).
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Option<metrics::Unit>,
    pub help: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Counter,
            unit: None,
            help,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Gauge,
            unit: None,
            help,
        }
    }

    /// A histogram of counts (events per request…), with [`COUNT_BUCKETS`].
    pub const fn count_histogram(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Histogram,
            unit: Some(metrics::Unit::Count),
            help,
        }
    }

    pub const fn seconds(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Histogram,
            unit: Some(metrics::Unit::Seconds),
            help,
        }
    }

    fn describe(&self) {
        let (name, help) = (self.name, self.help);
        match (self.kind, self.unit) {
            (MetricKind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
            (MetricKind::Counter, None) => metrics::describe_counter!(name, help),
            (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(name, help),
            (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// The tenants whose metrics carry their own `tenant` label (`tenant_metrics`, an opt-in list:
/// per-tenant series are a cardinality choice the operator makes); every other tenant's are
/// summed under `tenant="other"`.
#[derive(Clone, Debug, Default)]
pub struct TenantLabels(
    std::sync::Arc<std::collections::HashMap<tenantry_domain::TenantId, String>>,
);

impl TenantLabels {
    pub fn new(ids: impl IntoIterator<Item = tenantry_domain::TenantId>) -> Self {
        Self(std::sync::Arc::new(
            ids.into_iter().map(|id| (id, id.to_string())).collect(),
        ))
    }

    /// The label of `tenant`: its id when it is on the list, else `other`.
    pub fn label(&self, tenant: tenantry_domain::TenantId) -> String {
        self.0
            .get(&tenant)
            .cloned()
            .unwrap_or_else(|| "other".to_owned())
    }
}

/// Every metric of every capability, and the store's.
pub fn catalog() -> impl Iterator<Item = &'static Metric> {
    crate::CAPABILITIES
        .iter()
        .flat_map(|c| c.metrics.iter())
        .chain(STORE_METRICS.iter())
        .chain(TRACE_METRICS.iter())
}

/// Recorded by the trace exporter (when traces are exported).
const TRACE_METRICS: &[Metric] = &[Metric::counter(
    "otlp_exports_total",
    "Batches of spans sent to the OTLP receiver, by result (ok or error)",
)];

/// Recorded by the store crate (which has no catalog of its own to register).
const STORE_METRICS: &[Metric] = &[Metric::seconds(
    "store_operation_duration_seconds",
    "Duration of a store operation (one port method, its transaction included), by operation (capability.method)",
)];

/// Store operations are mostly well under a millisecond: finer buckets than requests'.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Request and job durations. 0.2 and 0.35 are the read and write latency SLOs' thresholds
/// (deploy/prometheus/slo-rules.yml counts the requests under them).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.35, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the count histograms (events per request or commit).
const COUNT_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 10000.0,
];

/// The process's metrics recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS)
                .expect("static buckets are valid")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "store_operation_duration_seconds".into(),
                    ),
                    STORE_BUCKETS,
                )
                .expect("static buckets are valid");
            for m in catalog().filter(|m| m.unit == Some(metrics::Unit::Count)) {
                builder = builder
                    .set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(m.name.into()),
                        COUNT_BUCKETS,
                    )
                    .expect("static buckets are valid");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            for m in catalog() {
                m.describe();
            }
            handle
        })
        .clone()
}
