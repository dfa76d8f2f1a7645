//! `[otel]`: trace export over OTLP. Off until an endpoint is set. The environment variables are
//! OpenTelemetry's standard ones (`OTEL_EXPORTER_OTLP_ENDPOINT`, …), not `TENANTRY_*`, so that a
//! deployment configures tenantry like any other instrumented service; they override the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelConfig {
    /// Base URL of the OTLP receiver (`http://collector:4318` for HTTP, `http://collector:4317`
    /// for gRPC). HTTP appends `/v1/traces`. Empty: traces are not exported.
    pub endpoint: String,
    /// The full URL of the traces endpoint, used as it is (wins over `endpoint`).
    pub traces_endpoint: String,
    /// `http/protobuf` (the default, as the OpenTelemetry specification says) or `grpc`.
    pub protocol: String,
    /// How long one export may take, in milliseconds.
    pub timeout_ms: u64,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `deployment.environment` (and `deployment.environment.name`) of the resource, when set.
    pub environment: String,
    /// More resource attributes. `OTEL_RESOURCE_ATTRIBUTES` adds to them and wins on a clash.
    pub resource_attributes: BTreeMap<String, String>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (default),
    /// `parentbased_always_off` or `parentbased_traceidratio`.
    pub sampler: String,
    /// The ratio of the `traceidratio` samplers, from 0 to 1.
    pub sampler_arg: f64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            traces_endpoint: String::new(),
            protocol: "http/protobuf".into(),
            timeout_ms: 10_000,
            service_name: "tenantry".into(),
            environment: String::new(),
            resource_attributes: BTreeMap::new(),
            sampler: "parentbased_always_on".into(),
            sampler_arg: 1.0,
        }
    }
}

/// The standard variables this section reads: (variable, key path). `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_COMPRESSION` and the batch processor's
/// `OTEL_BSP_*` are read by the OpenTelemetry SDK itself.
pub const ENV: &[(&str, &str)] = &[
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel.endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel.traces_endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "otel.protocol"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "otel.timeout_ms"),
    ("OTEL_SERVICE_NAME", "otel.service_name"),
    ("OTEL_TRACES_SAMPLER", "otel.sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "otel.sampler_arg"),
];

/// The wire protocol of the exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The sampler, as the specification names them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBased(Root),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl OtelConfig {
    /// Whether traces are exported at all.
    pub fn enabled(&self) -> bool {
        !(self.endpoint.trim().is_empty() && self.traces_endpoint.trim().is_empty())
    }

    pub fn protocol(&self) -> Result<Protocol, ConfigError> {
        match self.protocol.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" | "" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err(invalid(
                "otel.protocol",
                "http/json is not supported; use http/protobuf or grpc",
            )),
            other => Err(invalid(
                "otel.protocol",
                format!("'{other}' is not grpc or http/protobuf"),
            )),
        }
    }

    /// The URL spans are sent to: `traces_endpoint` as it is, else `endpoint` (with
    /// `/v1/traces` appended for HTTP, as the specification says).
    pub fn traces_url(&self) -> Result<String, ConfigError> {
        let explicit = self.traces_endpoint.trim();
        let (key, url) = if explicit.is_empty() {
            let base = self.endpoint.trim().trim_end_matches('/');
            let url = match self.protocol()? {
                Protocol::Grpc => base.to_owned(),
                Protocol::HttpProtobuf => format!("{base}/v1/traces"),
            };
            ("otel.endpoint", url)
        } else {
            ("otel.traces_endpoint", explicit.to_owned())
        };
        match axum::http::Uri::try_from(url.as_str()) {
            // the HTTP client's connection pool logs its authority at trace level: credentials
            // in the URL would reach the logs
            Ok(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => Err(invalid(
                key,
                "put the receiver's credentials in OTEL_EXPORTER_OTLP_HEADERS \
                 (authorization=Basic …), not in the URL",
            )),
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|h| !h.is_empty()) =>
            {
                Ok(url)
            }
            _ => Err(invalid(
                key,
                format!("'{url}' is not a URL like http://collector:4318"),
            )),
        }
    }

    pub fn sampler_choice(&self) -> Result<SamplerChoice, ConfigError> {
        let ratio = self.sampler_arg;
        Ok(match self.sampler.trim() {
            "always_on" => SamplerChoice::AlwaysOn,
            "always_off" => SamplerChoice::AlwaysOff,
            "traceidratio" => SamplerChoice::Ratio(ratio),
            "parentbased_always_on" | "" => SamplerChoice::ParentBased(Root::AlwaysOn),
            "parentbased_always_off" => SamplerChoice::ParentBased(Root::AlwaysOff),
            "parentbased_traceidratio" => SamplerChoice::ParentBased(Root::Ratio(ratio)),
            other => {
                return Err(invalid(
                    "otel.sampler",
                    format!(
                        "'{other}' is not one of always_on, always_off, traceidratio, \
                         parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                    ),
                ));
            }
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.protocol()?;
        self.sampler_choice()?;
        if !(0.0..=1.0).contains(&self.sampler_arg) {
            return Err(invalid("otel.sampler_arg", "must be a ratio from 0 to 1"));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err(invalid(
                "otel.timeout_ms",
                "must be between 1 and 600000 milliseconds",
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("otel.service_name", "must not be empty"));
        }
        if self.enabled() {
            let url = self.traces_url()?;
            if self.protocol()? == Protocol::Grpc && url.starts_with("https:") {
                return Err(invalid(
                    "otel.endpoint",
                    "gRPC over TLS is not built in: use http/protobuf for an https receiver, or a \
                     local collector over plain gRPC",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_appends_the_traces_path_and_grpc_does_not() {
        let mut c = OtelConfig {
            endpoint: "http://collector:4318/".into(),
            ..OtelConfig::default()
        };
        assert!(c.enabled());
        assert_eq!(c.traces_url().unwrap(), "http://collector:4318/v1/traces");
        c.protocol = "grpc".into();
        c.endpoint = "http://collector:4317".into();
        assert_eq!(c.traces_url().unwrap(), "http://collector:4317");
        c.traces_endpoint = "https://x.example/otlp/traces".into();
        assert_eq!(c.traces_url().unwrap(), "https://x.example/otlp/traces");
        assert!(!OtelConfig::default().enabled());
    }

    #[test]
    fn bad_values_are_named() {
        let bad = [
            OtelConfig {
                protocol: "http/json".into(),
                ..OtelConfig::default()
            },
            OtelConfig {
                sampler: "sometimes".into(),
                ..OtelConfig::default()
            },
            OtelConfig {
                sampler_arg: 1.5,
                ..OtelConfig::default()
            },
            OtelConfig {
                endpoint: "collector:4318".into(),
                ..OtelConfig::default()
            },
            OtelConfig {
                timeout_ms: 0,
                ..OtelConfig::default()
            },
            OtelConfig {
                endpoint: "http://user:secret@collector:4318".into(),
                ..OtelConfig::default()
            },
        ];
        for c in bad {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("otel."), "{e}");
        }
        assert_eq!(
            OtelConfig {
                sampler: "parentbased_traceidratio".into(),
                sampler_arg: 0.25,
                ..OtelConfig::default()
            }
            .sampler_choice()
            .unwrap(),
            SamplerChoice::ParentBased(Root::Ratio(0.25))
        );
    }
}
