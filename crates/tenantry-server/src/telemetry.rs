//! Logs and metrics. Logs are one JSON object per line (or human-readable with `log_format =
//! "pretty"`); every request's span carries `trace_id` and, once known, `tenant_id`. Metrics are
//! kept in-process and rendered at `/metrics`; labels are bounded (route templates, not paths).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::{Config, LogFormat};

/// Installs the log subscriber (once per process; later calls do nothing). The server logs to
/// stdout; other commands log to stderr so that their stdout stays clean JSON.
pub fn init_logging(config: &Config, to_stdout: bool) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = if to_stdout {
        BoxMakeWriter::new(std::io::stdout)
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(writer);
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's metrics recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            metrics::describe_histogram!(
                "http_request_duration_seconds",
                metrics::Unit::Seconds,
                "HTTP request duration by method, route template and status"
            );
            handle
        })
        .clone()
}
