//! Configuration: built-in defaults < `tenantry.toml` < `TENANTRY_*` environment < command-line
//! flags. Validated once at start-up; an invalid value stops the process with a message that names
//! the key and where it came from.

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

/// Every setting, with its default. Keys are the same in the TOML file and, upper-cased with the
/// `TENANTRY_` prefix, in the environment (`listen` ↔ `TENANTRY_LISTEN`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full `tracing` filter.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// How long a deleted tenant can be restored, in days.
    pub tenant_delete_grace_days: u32,
    /// How long an `Idempotency-Key` is remembered, in hours (at least 24).
    pub idempotency_ttl_hours: u32,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: u32,
    /// Base host whose subdomains name tenants (`acme.api.example.com` → `acme`); empty: off.
    pub tenant_base_host: String,
    /// How long a rotated key's old secret keeps working, in hours.
    pub key_rotation_grace_hours: u32,
    /// `redis://…`: rate limits shared by every instance. Empty: each instance limits alone.
    pub redis_url: String,
    /// Milliseconds a Redis rate-limit decision may take before the instance falls back to its own.
    pub redis_timeout_ms: u32,
    /// Requests per minute across the whole platform (0: no global limit).
    pub global_rate_limit_per_minute: u32,
    /// Burst of the global limit (0: twice the per-minute rate).
    pub global_rate_limit_burst: u32,
    /// Seconds a tenant's edition limits are cached (an edition change applies within this time).
    pub edition_cache_seconds: u32,
    /// HS256 secret for bearer tokens (development; at least 32 bytes). Empty: HS256 off.
    pub auth_jwt_hs256_secret: Option<Secret>,
    /// JWKS document of the identity provider (RS256, ES256, EdDSA). Empty: off.
    pub auth_jwt_jwks_url: String,
    /// Required `iss` of bearer tokens (required with a JWKS URL).
    pub auth_jwt_issuer: String,
    /// Required `aud` of bearer tokens (required with a JWKS URL).
    pub auth_jwt_audience: String,
    /// Least seconds between two JWKS downloads (an unknown `kid` triggers one).
    pub auth_jwt_jwks_min_refresh_seconds: u32,
    /// What this process does, comma-separated: `api`, `worker`, `scheduler` (default: all).
    pub roles: String,
    /// Jobs one worker process runs at once.
    pub worker_concurrency: u32,
    /// Queues this process's worker claims from, comma-separated.
    pub worker_queues: String,
    /// Jobs one tenant may have running at once across every worker (0: no cap; fair order
    /// alone). Give every worker the same value.
    pub job_tenant_max_running: u32,
    /// Days completed and cancelled jobs are kept (dead jobs are kept until replayed or purged).
    pub job_retention_days: u32,
    /// Milliseconds between overdue schedules fired together when a scheduler takes the lead.
    pub schedule_stagger_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./tenantry-data"),
            database_url: String::new(),
            database_max_connections: 10,
            bootstrap_operator_key: None,
            log_level: "info".into(),
            log_format: LogFormat::Json,
            body_limit_bytes: 1024 * 1024,
            tenant_delete_grace_days: 30,
            idempotency_ttl_hours: 24,
            shutdown_grace_seconds: 10,
            tenant_base_host: String::new(),
            key_rotation_grace_hours: 24,
            redis_url: String::new(),
            redis_timeout_ms: 100,
            global_rate_limit_per_minute: 0,
            global_rate_limit_burst: 0,
            edition_cache_seconds: 5,
            auth_jwt_hs256_secret: None,
            auth_jwt_jwks_url: String::new(),
            auth_jwt_issuer: String::new(),
            auth_jwt_audience: String::new(),
            auth_jwt_jwks_min_refresh_seconds: 30,
            roles: "api,worker,scheduler".into(),
            worker_concurrency: 16,
            worker_queues: "default".into(),
            job_tenant_max_running: 0,
            job_retention_days: 7,
            schedule_stagger_ms: 250,
        }
    }
}

/// Keys read from the environment (other `TENANTRY_*` variables, such as the test suite's, are not
/// configuration and are ignored).
pub const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "database_max_connections",
    "bootstrap_operator_key",
    "log_level",
    "log_format",
    "body_limit_bytes",
    "tenant_delete_grace_days",
    "idempotency_ttl_hours",
    "shutdown_grace_seconds",
    "tenant_base_host",
    "key_rotation_grace_hours",
    "redis_url",
    "redis_timeout_ms",
    "global_rate_limit_per_minute",
    "global_rate_limit_burst",
    "edition_cache_seconds",
    "auth_jwt_hs256_secret",
    "auth_jwt_jwks_url",
    "auth_jwt_issuer",
    "auth_jwt_audience",
    "auth_jwt_jwks_min_refresh_seconds",
    "roles",
    "worker_concurrency",
    "worker_queues",
    "job_tenant_max_running",
    "job_retention_days",
    "schedule_stagger_ms",
];

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
    #[error("invalid configuration: `{key}` (TENANTRY_{env}): {message}", env = key.to_uppercase())]
    Invalid { key: &'static str, message: String },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Config {
    /// Loads the layers. `file` is an explicit configuration file (it must exist); without it,
    /// `./tenantry.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("TENANTRY_").only(KEYS))
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
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
        let config: Config = fig
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the first invalid one is reported by key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if let Err(e) = self.listen.parse::<SocketAddr>() {
            return invalid(
                "listen",
                format!(
                    "'{}' is not an address like 127.0.0.1:8080 ({e})",
                    self.listen
                ),
            );
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return invalid(
                "database_url",
                "must start with sqlite:// or postgres://".into(),
            );
        }
        if self.database_max_connections == 0 || self.database_max_connections > 1000 {
            return invalid(
                "database_max_connections",
                "must be between 1 and 1000".into(),
            );
        }
        if let Some(key) = &self.bootstrap_operator_key {
            match tenantry_domain::PresentedKey::parse(key.expose()) {
                Ok(k) if k.kind == tenantry_domain::KeyKind::Operator => {}
                Ok(_) => {
                    return invalid(
                        "bootstrap_operator_key",
                        "must be an operator key (tnt_op_…)".into(),
                    );
                }
                Err(e) => return invalid("bootstrap_operator_key", e.to_string()),
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid("log_level", e.to_string());
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return invalid(
                "body_limit_bytes",
                "must be between 1024 and 1073741824".into(),
            );
        }
        if !(1..=3650).contains(&self.tenant_delete_grace_days) {
            return invalid(
                "tenant_delete_grace_days",
                "must be between 1 and 3650".into(),
            );
        }
        if !(24..=24 * 365).contains(&self.idempotency_ttl_hours) {
            return invalid(
                "idempotency_ttl_hours",
                "must be between 24 and 8760".into(),
            );
        }
        let host = self.tenant_base_host.trim();
        if !host.is_empty()
            && (host.starts_with('.')
                || host.contains('/')
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b)))
        {
            return invalid(
                "tenant_base_host",
                format!("'{host}' is not a host name like api.example.com"),
            );
        }
        if self.key_rotation_grace_hours > 24 * 30 {
            return invalid("key_rotation_grace_hours", "must be at most 720".into());
        }
        let redis = self.redis_url.trim();
        let redis_ok = ["redis://", "rediss://", "redis+unix://"]
            .iter()
            .any(|p| redis.starts_with(p));
        if !redis.is_empty() && !redis_ok {
            return invalid(
                "redis_url",
                "must start with redis:// (or be empty for in-process limits)".into(),
            );
        }
        if !(5..=10_000).contains(&self.redis_timeout_ms) {
            return invalid("redis_timeout_ms", "must be between 5 and 10000".into());
        }
        if self.edition_cache_seconds > 300 {
            return invalid("edition_cache_seconds", "must be at most 300".into());
        }
        if let Some(secret) = &self.auth_jwt_hs256_secret
            && secret.expose().len() < 32
        {
            return invalid(
                "auth_jwt_hs256_secret",
                "must be at least 32 bytes (256 bits)".into(),
            );
        }
        let jwks = self.auth_jwt_jwks_url.trim();
        if !jwks.is_empty() {
            if !(jwks.starts_with("https://") || jwks.starts_with("http://")) {
                return invalid("auth_jwt_jwks_url", "must be an https:// URL".into());
            }
            if self.auth_jwt_issuer.trim().is_empty() {
                return invalid(
                    "auth_jwt_issuer",
                    "is required when auth_jwt_jwks_url is set (tokens from any issuer would be accepted)".into(),
                );
            }
            if self.auth_jwt_audience.trim().is_empty() {
                return invalid(
                    "auth_jwt_audience",
                    "is required when auth_jwt_jwks_url is set (tokens for other services would be accepted)".into(),
                );
            }
        }
        if !(1..=3600).contains(&self.auth_jwt_jwks_min_refresh_seconds) {
            return invalid(
                "auth_jwt_jwks_min_refresh_seconds",
                "must be between 1 and 3600".into(),
            );
        }
        if let Err(e) = Roles::parse(&self.roles) {
            return invalid("roles", e);
        }
        if !(1..=1024).contains(&self.worker_concurrency) {
            return invalid("worker_concurrency", "must be between 1 and 1024".into());
        }
        if self.queues().is_empty() {
            return invalid("worker_queues", "name at least one queue".into());
        }
        if !(1..=3650).contains(&self.job_retention_days) {
            return invalid("job_retention_days", "must be between 1 and 3650".into());
        }
        if self.schedule_stagger_ms > 60_000 {
            return invalid("schedule_stagger_ms", "must be at most 60000".into());
        }
        if self.shutdown_grace_seconds > 3600 {
            return invalid("shutdown_grace_seconds", "must be at most 3600".into());
        }
        Ok(())
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

    pub fn queues(&self) -> Vec<String> {
        self.worker_queues
            .split(',')
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn uses_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// The configuration with secrets masked and the effective database URL, for `config check`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            if self.bootstrap_operator_key.is_some() {
                obj.insert("bootstrap_operator_key".into(), "***".into());
            }
            if self.auth_jwt_hs256_secret.is_some() {
                obj.insert("auth_jwt_hs256_secret".into(), "***".into());
            }
            obj.insert(
                "database_url".into(),
                redact_url(&self.database_url()).into(),
            );
        }
        v
    }
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

/// A database URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
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
        assert_eq!(Config::default().schedule_stagger_ms, 250);
        let c = load_env(
            &[("TENANTRY_SCHEDULE_STAGGER_MS", "1000")],
            None,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.schedule_stagger_ms, 1000);
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
        assert_eq!(Config::default().job_tenant_max_running, 0);
        let c = load_env(
            &[("TENANTRY_JOB_TENANT_MAX_RUNNING", "4")],
            None,
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.job_tenant_max_running, 4);
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
        assert_eq!(c.redacted()["auth_jwt_hs256_secret"], "***");
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
    }
}
