//! Configuration: built-in defaults < `tenantry.toml` < `TENANTRY_*` environment < command-line
//! flags. Validated once at start-up; an invalid value stops the process with a message that names
//! the key and its environment variable.
//!
//! The process's own settings are top-level keys; each capability's settings are a section
//! (`[tenants]`, `[auth]`, `[limits]`, `[jobs]`) whose type, defaults and validation live in that
//! capability's folder (`jobs/config.rs`, …). The environment variables keep their flat names
//! (`TENANTRY_WORKER_CONCURRENCY` is `[jobs] worker_concurrency`): each section lists its own.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Every setting, with its default. Top-level keys are the same in the environment, upper-cased
/// with the `TENANTRY_` prefix (`listen` ↔ `TENANTRY_LISTEN`); sections list theirs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen: String,
    /// Where the embedded database (and later backups and exports) live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means SQLite inside `data_dir`.
    pub database_url: String,
    /// Connection pool size.
    pub database_max_connections: u32,
    /// An operator key (`tnt_op_…`) to install at start-up instead of generating one.
    pub bootstrap_operator_key: Option<Secret>,
    /// The key (32 bytes, base64) that seals secrets kept for tenants (a source's request
    /// headers). Unset: a key kept in the database seals them (start-up warns).
    pub encryption_key: Option<Secret>,
    /// Earlier keys, comma-separated: they still open what they sealed.
    pub encryption_keys_previous: Secret,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full `tracing` filter.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// How long an `Idempotency-Key` is remembered, in hours (at least 24).
    pub idempotency_ttl_hours: u32,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: u32,
    /// What this process does, comma-separated: `api`, `worker`, `scheduler` (default: all).
    pub roles: String,
    /// Origins (`https://app.example.com`, comma-separated) whose browser apps may call the API
    /// (CORS). Empty: none, and preflight requests are refused like any unknown method.
    pub cors_allowed_origins: String,
    /// Tenant ids (comma-separated, at most 100) whose metrics carry their own `tenant` label;
    /// every other tenant is counted as `other`. Empty: all are `other`.
    pub tenant_metrics: String,
    pub http: crate::platform::http::serve::HttpConfig,
    pub tenants: crate::tenants::config::TenantsConfig,
    pub auth: crate::access::config::AuthConfig,
    pub limits: crate::access::config::LimitsConfig,
    pub jobs: crate::jobs::config::JobsConfig,
    pub otel: crate::observability::config::OtelConfig,
    pub telemetry: crate::telemetry::config::TelemetryConfig,
    pub egress: crate::platform::egress::EgressConfig,
    pub sync: crate::sync::config::SyncConfig,
    pub events: crate::events::config::EventsConfig,
    pub webhooks: crate::webhooks::config::WebhooksConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./tenantry-data"),
            database_url: String::new(),
            database_max_connections: 10,
            bootstrap_operator_key: None,
            encryption_key: None,
            encryption_keys_previous: Secret::new(""),
            log_level: "info".into(),
            log_format: LogFormat::Json,
            body_limit_bytes: 1024 * 1024,
            idempotency_ttl_hours: 24,
            shutdown_grace_seconds: 10,
            roles: "api,worker,scheduler".into(),
            cors_allowed_origins: String::new(),
            tenant_metrics: String::new(),
            http: Default::default(),
            tenants: Default::default(),
            auth: Default::default(),
            limits: Default::default(),
            jobs: Default::default(),
            otel: Default::default(),
            telemetry: Default::default(),
            egress: Default::default(),
            sync: Default::default(),
            events: Default::default(),
            webhooks: Default::default(),
        }
    }
}

/// The top-level keys read from the environment, as (`TENANTRY_` + name, key).
const TOP_ENV: &[(&str, &str)] = &[
    ("listen", "listen"),
    ("data_dir", "data_dir"),
    ("database_url", "database_url"),
    ("database_max_connections", "database_max_connections"),
    ("bootstrap_operator_key", "bootstrap_operator_key"),
    ("encryption_key", "encryption_key"),
    ("encryption_keys_previous", "encryption_keys_previous"),
    ("log_level", "log_level"),
    ("log_format", "log_format"),
    ("body_limit_bytes", "body_limit_bytes"),
    ("idempotency_ttl_hours", "idempotency_ttl_hours"),
    ("shutdown_grace_seconds", "shutdown_grace_seconds"),
    ("roles", "roles"),
    ("cors_allowed_origins", "cors_allowed_origins"),
    ("tenant_metrics", "tenant_metrics"),
];

/// Every environment variable (`TENANTRY_` + name) and the key it sets. Other `TENANTRY_*`
/// variables, such as the test suite's, are not configuration and are ignored.
pub fn env_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    [
        TOP_ENV,
        crate::platform::http::serve::ENV,
        crate::tenants::config::ENV,
        crate::access::config::AUTH_ENV,
        crate::access::config::LIMITS_ENV,
        crate::jobs::config::ENV,
        crate::telemetry::config::ENV,
        crate::platform::egress::ENV,
        crate::sync::config::ENV,
        crate::events::config::ENV,
        crate::webhooks::config::ENV,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// The environment variable of a key (`jobs.worker_concurrency` → `TENANTRY_WORKER_CONCURRENCY`;
/// `[otel]` keys have OpenTelemetry's standard names).
pub fn env_var(key: &str) -> String {
    if let Some((env, _)) = crate::observability::config::ENV
        .iter()
        .find(|(_, k)| *k == key)
    {
        return (*env).to_owned();
    }
    let name = env_keys()
        .find(|(_, k)| *k == key)
        .map_or(key, |(env, _)| env);
    format!("TENANTRY_{}", name.to_uppercase())
}

/// An invalid value: the error names the key and its environment variable.
pub fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        env: env_var(key),
        message: message.into(),
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: `{key}` ({env}): {message}")]
    Invalid {
        key: &'static str,
        env: String,
        message: String,
    },
    #[error(
        "invalid configuration: `{old}` is now `{new}` in tenantry.toml (write it in its section; the environment variable {env} is unchanged)"
    )]
    Moved {
        old: String,
        new: &'static str,
        env: String,
    },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Config {
    /// Loads the layers. `file` is an explicit configuration file (it must exist); without it,
    /// `./tenantry.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let env = Env::prefixed("TENANTRY_").filter_map(|name| {
            env_keys()
                .find(|(env, _)| name == *env)
                .map(|(_, key)| key.into())
        });
        // OpenTelemetry's own variables configure `[otel]`
        let otel = Env::raw().filter_map(|name| {
            crate::observability::config::ENV
                .iter()
                .find(|(env, _)| name == *env)
                .map(|(_, key)| (*key).into())
        });
        Self::load_from(file, overrides, [env, otel])
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        envs: [Env; 2],
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.to_owned())),
            Some(path) => fig = fig.merge(Toml::file_exact(path)),
            None if Path::new("tenantry.toml").exists() => {
                fig = fig.merge(Toml::file_exact("tenantry.toml"))
            }
            None => {}
        }
        for env in envs {
            fig = fig.merge(env);
        }
        let config: Config = fig
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(moved_or_load)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value, the process's and each section's; the first invalid one is reported
    /// by key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.listen.parse::<SocketAddr>() {
            return Err(invalid(
                "listen",
                format!(
                    "'{}' is not an address like 127.0.0.1:8080 ({e})",
                    self.listen
                ),
            ));
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.database_max_connections == 0 || self.database_max_connections > 1000 {
            return Err(invalid(
                "database_max_connections",
                "must be between 1 and 1000",
            ));
        }
        if let Some(key) = &self.bootstrap_operator_key {
            match tenantry_domain::PresentedKey::parse(key.expose()) {
                Ok(k) if k.kind == tenantry_domain::KeyKind::Operator => {}
                Ok(_) => {
                    return Err(invalid(
                        "bootstrap_operator_key",
                        "must be an operator key (tnt_op_…)",
                    ));
                }
                Err(e) => return Err(invalid("bootstrap_operator_key", e.to_string())),
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(invalid("log_level", e.to_string()));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return Err(invalid(
                "body_limit_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        if !(24..=24 * 365).contains(&self.idempotency_ttl_hours) {
            return Err(invalid(
                "idempotency_ttl_hours",
                "must be between 24 and 8760",
            ));
        }
        if let Err(e) = Roles::parse(&self.roles) {
            return Err(invalid("roles", e));
        }
        if self.shutdown_grace_seconds > 3600 {
            return Err(invalid("shutdown_grace_seconds", "must be at most 3600"));
        }
        for origin in self.cors_origins() {
            let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin
                    .trim_end_matches('/')
                    .contains(|c: char| c.is_whitespace())
                && origin
                    .split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty() && !h.contains('/'))
                && axum::http::HeaderValue::from_str(&origin).is_ok();
            if !ok {
                return Err(invalid(
                    "cors_allowed_origins",
                    format!(
                        "'{origin}' is not an origin like https://app.example.com (scheme and host, no path)"
                    ),
                ));
            }
        }
        let ids = self.tenant_metric_ids()?;
        if ids.len() > 100 {
            return Err(invalid("tenant_metrics", "name at most 100 tenants"));
        }
        self.http.validate()?;
        self.tenants.validate()?;
        self.auth.validate()?;
        self.limits.validate()?;
        self.jobs.validate()?;
        self.telemetry.validate()?;
        self.egress.validate()?;
        self.sync.validate()?;
        self.events.validate()?;
        self.webhooks.validate()?;
        crate::platform::sealing::validate(
            self.encryption_key.as_ref().map(Secret::expose),
            self.encryption_keys_previous.expose(),
        )?;
        self.otel.validate()
    }

    /// `tenant_metrics` as tenant ids.
    pub fn tenant_metric_ids(&self) -> Result<Vec<tenantry_domain::TenantId>, ConfigError> {
        self.tenant_metrics
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| {
                    invalid(
                        "tenant_metrics",
                        format!("'{s}' is not a tenant id (the UUID, not the slug)"),
                    )
                })
            })
            .collect()
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// The database URL in effect: the configured one, or SQLite inside the data directory.
    pub fn database_url(&self) -> String {
        if self.database_url.trim().is_empty() {
            format!("sqlite://{}", self.data_dir.join("tenantry.db").display())
        } else {
            self.database_url.trim().to_owned()
        }
    }

    /// The roles in effect (validated at load).
    pub fn roles(&self) -> Roles {
        Roles::parse(&self.roles).unwrap_or_default()
    }

    /// The file of the embedded database, when the store is SQLite on a file.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The CORS origins configured (validated at load).
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn uses_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// The configuration with secrets masked and the effective database URL, for `config check`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if self.bootstrap_operator_key.is_some() {
            v["bootstrap_operator_key"] = "***".into();
        }
        if self.auth.jwt_hs256_secret.is_some() {
            v["auth"]["jwt_hs256_secret"] = "***".into();
        }
        v["database_url"] = redact_url(&self.database_url()).into();
        v["limits"]["redis_url"] = redact_url(&self.limits.redis_url).into();
        v["auth"]["jwt_jwks_url"] = redact_url(&self.auth.jwt_jwks_url).into();
        v["otel"]["endpoint"] = redact_url(&self.otel.endpoint).into();
        v["otel"]["traces_endpoint"] = redact_url(&self.otel.traces_endpoint).into();
        v
    }
}

/// A top-level key of the file that is a section's key now (its old flat name) is reported with
/// its new place; any other load error as it is.
fn moved_or_load(e: figment::Error) -> ConfigError {
    if let figment::error::Kind::UnknownField(field, _) = &e.kind
        && e.path.len() <= 1
        && let Some((env, new)) = env_keys().find(|(env, key)| env == field && key.contains('.'))
    {
        return ConfigError::Moved {
            old: field.clone(),
            new,
            env: format!("TENANTRY_{}", env.to_uppercase()),
        };
    }
    ConfigError::Load(Box::new(e))
}

/// What a `tenantry serve` process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP API (without it, only `/healthz`, `/readyz` and `/metrics` are served).
    pub api: bool,
    /// Runs jobs and recovers expired leases.
    pub worker: bool,
    /// Fires schedules (one leader at a time among all scheduler processes).
    pub scheduler: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            api: true,
            worker: true,
            scheduler: true,
        }
    }
}

impl Roles {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut r = Self {
            api: false,
            worker: false,
            scheduler: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "api" => r.api = true,
                "worker" => r.worker = true,
                "scheduler" => r.scheduler = true,
                "all" => r = Self::default(),
                other => {
                    return Err(format!("unknown role '{other}' (api, worker, scheduler)"));
                }
            }
        }
        if !(r.api || r.worker || r.scheduler) {
            return Err("name at least one role: api, worker, scheduler".into());
        }
        Ok(r)
    }
}

/// A URL with every credential replaced by `***`: the password of its user-info
/// (`redis://:pw@host`, `postgres://user:pw@host`) and the values of query parameters that carry
/// one (`?password=…`, `?sslpassword=…`, `?token=…`, `?secret=…`, `?key=…`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(q) = query {
        let secret = |name: &str| {
            let n = name.to_ascii_lowercase();
            [
                "password", "passwd", "pwd", "pass", "secret", "token", "key",
            ]
            .iter()
            .any(|s| n.ends_with(s))
        };
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, v)) if secret(k) && !v.is_empty() => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// `text` (an error message) with every URL in it redacted as [`redact_url`] does: client
/// libraries name the URL they failed to reach, credentials included.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |out: &mut String, token: &mut String| {
        if token.contains("://") {
            out.push_str(&redact_url(token));
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | ',' | '<' | '>') {
            flush(&mut out, &mut token);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut out, &mut token);
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use figment::Jail;

    /// Loads the configuration in a jail: its own environment and working directory.
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own (large) error type
    fn load_env(
        vars: &[(&str, &str)],
        file: Option<&str>,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut out = None;
        Jail::expect_with(|jail| {
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            if let Some(text) = file {
                jail.create_file("tenantry.toml", text)?;
            }
            out = Some(Config::load(None, &overrides));
            Ok(())
        });
        out.expect("jail ran")
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = load_env(&[], None, Overrides::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.uses_sqlite());
        assert!(c.database_url().ends_with("tenantry-data/tenantry.db"));
    }

    #[test]
    fn layers_override_in_order() {
        let file = "listen = \"127.0.0.1:9000\"\nlog_level = \"debug\"\n";
        let c = load_env(
            &[("TENANTRY_LISTEN", "127.0.0.1:9001")],
            Some(file),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (c.listen.as_str(), c.log_level.as_str()),
            ("127.0.0.1:9001", "debug")
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        };
        let c = load_env(&[("TENANTRY_LISTEN", "127.0.0.1:9001")], Some(file), flags).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9002");
    }

    #[test]
    fn the_schedule_stagger_is_configurable_and_bounded() {
        assert_eq!(Config::default().jobs.schedule_stagger_ms, 250);
        let c = load_env(
            &[("TENANTRY_SCHEDULE_STAGGER_MS", "1000")],
            None,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.jobs.schedule_stagger_ms, 1000);
        let err = load_env(
            &[("TENANTRY_SCHEDULE_STAGGER_MS", "600000")],
            None,
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("schedule_stagger_ms"), "{err}");
    }

    #[test]
    fn the_tenant_cap_is_off_by_default_and_configurable() {
        assert_eq!(Config::default().jobs.tenant_max_running, 0);
        let c = load_env(
            &[("TENANTRY_JOB_TENANT_MAX_RUNNING", "4")],
            None,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.jobs.tenant_max_running, 4);
        assert!(
            load_env(
                &[("TENANTRY_JOB_TENANT_MAX_RUNNING", "-1")],
                None,
                Overrides::default(),
            )
            .is_err()
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let err = load_env(
            &[("TENANTRY_LISTEN", "nowhere")],
            None,
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`listen` (TENANTRY_LISTEN)"), "{err}");
        let err = load_env(
            &[("TENANTRY_DATABASE_URL", "mysql://x")],
            None,
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("database_url"), "{err}");
        let err = load_env(
            &[("TENANTRY_BOOTSTRAP_OPERATOR_KEY", "hunter2")],
            None,
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("bootstrap_operator_key")
                && !err.to_string().contains("hunter2"),
            "{err}"
        );
        let err = load_env(&[], Some("listn = \"x\"\n"), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listn"),
            "unknown keys in the file are reported: {err}"
        );
        let err = load_env(
            &[],
            Some("body_limit_bytes = \"big\"\n"),
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("body_limit_bytes"), "{err}");
    }

    #[test]
    fn token_settings_are_checked() {
        let err = |vars: &[(&str, &str)]| {
            load_env(vars, None, Overrides::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("TENANTRY_AUTH_JWT_HS256_SECRET", "short")]).contains("at least 32 bytes"));
        let e = err(&[("TENANTRY_AUTH_JWT_JWKS_URL", "https://idp.example/jwks")]);
        assert!(e.contains("TENANTRY_AUTH_JWT_ISSUER"), "{e}");
        let e = err(&[
            ("TENANTRY_AUTH_JWT_JWKS_URL", "https://idp.example/jwks"),
            ("TENANTRY_AUTH_JWT_ISSUER", "https://idp.example/"),
        ]);
        assert!(e.contains("TENANTRY_AUTH_JWT_AUDIENCE"), "{e}");
        let c = load_env(
            &[
                ("TENANTRY_AUTH_JWT_JWKS_URL", "https://idp.example/jwks"),
                ("TENANTRY_AUTH_JWT_ISSUER", "https://idp.example/"),
                ("TENANTRY_AUTH_JWT_AUDIENCE", "tenantry"),
                ("TENANTRY_AUTH_JWT_HS256_SECRET", &"s".repeat(32)),
            ],
            None,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.redacted()["auth"]["jwt_hs256_secret"], "***");
    }

    #[test]
    fn sections_are_read_from_the_file_and_from_the_flat_environment_names() {
        let file = "[jobs]\nworker_concurrency = 8\n\n[limits]\nglobal_per_minute = 600\n";
        let c = load_env(
            &[("TENANTRY_WORKER_QUEUES", "default,reports")],
            Some(file),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.jobs.worker_concurrency, 8);
        assert_eq!(c.limits.global_per_minute, 600);
        assert_eq!(c.jobs.queues(), ["default", "reports"]);
        // the environment still wins over the file, under the documented flat names
        let c = load_env(
            &[("TENANTRY_WORKER_CONCURRENCY", "4")],
            Some(file),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.jobs.worker_concurrency, 4);
        // every documented variable maps to a key that exists
        let defaults = serde_json::to_value(Config::default()).unwrap();
        for (env, key) in env_keys() {
            let mut v = &defaults;
            for part in key.split('.') {
                v = &v[part];
            }
            assert!(
                !v.is_null() || key.ends_with("secret") || key.ends_with("key"),
                "TENANTRY_{env} → {key}"
            );
        }
    }

    #[test]
    fn unknown_keys_in_sections_and_moved_flat_keys_are_errors_that_say_where() {
        let err = load_env(&[], Some("[jobs]\nworkers = 2\n"), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
        let err = load_env(&[], Some("worker_concurrency = 2\n"), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`jobs.worker_concurrency`")
                && err.contains("TENANTRY_WORKER_CONCURRENCY"),
            "{err}"
        );
        let err = load_env(
            &[("TENANTRY_WORKER_CONCURRENCY", "0")],
            None,
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`jobs.worker_concurrency` (TENANTRY_WORKER_CONCURRENCY)"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let key = format!("tnt_op_{}", "a".repeat(40));
        let c = Config {
            bootstrap_operator_key: Some(Secret::new(&key)),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains(&key));
        assert!(!c.redacted().to_string().contains(&key));
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact_url("redis://:pw123@cache:6379"),
            "redis://:***@cache:6379"
        );
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&password=pw"),
            "postgres://h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("https://idp.example/jwks"),
            "https://idp.example/jwks"
        );
        // URLs inside error messages too
        assert_eq!(
            redact_urls_in(
                "error sending request for url (http://u:pw9@h:4318/v1/traces): refused"
            ),
            "error sending request for url (http://u:***@h:4318/v1/traces): refused"
        );
        // every URL setting is masked in `config check`
        let mut c = Config::default();
        c.limits.redis_url = "redis://:pw123@cache:6379".into();
        c.auth.jwt_jwks_url = "https://u:idp-secret@idp.example/jwks".into();
        c.database_url = "postgres://app:db-secret@db/tenantry".into();
        c.otel.endpoint = "https://otlp:otlp-secret@collector.example:4318".into();
        let shown = c.redacted().to_string();
        for secret in ["pw123", "idp-secret", "db-secret", "otlp-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
