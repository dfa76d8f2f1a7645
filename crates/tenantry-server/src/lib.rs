//! tenantry's server, one module per capability — [`tenants`], [`editions`], [`audit`],
//! [`access`], [`jobs`] — each holding its service (use cases), its HTTP handlers and its
//! background work, on the shared [`platform`] (application context, errors, idempotency, the
//! HTTP edge and extractors, the route table). Each capability describes what it adds in a
//! [`Capability`]; [`CAPABILITIES`] lists them, and `serve`, the router, the job registry and
//! the cross-tenant harness iterate that list. docs/architecture.md is the map.

pub mod access;
pub mod audit;
pub mod config;
pub mod editions;
pub mod events;
pub mod jobs;
pub mod observability;
pub mod platform;
pub mod sync;
pub mod telemetry;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

/// Every capability of the server. Adding one is its own folder plus one line here.
pub const CAPABILITIES: &[Capability] = &[
    platform::CAPABILITY,
    tenants::CAPABILITY,
    editions::CAPABILITY,
    audit::CAPABILITY,
    access::CAPABILITY,
    jobs::CAPABILITY,
    telemetry::CAPABILITY,
    sync::CAPABILITY,
    events::CAPABILITY,
    webhooks::CAPABILITY,
];

/// A background task of a capability (a loop that ends when the process stops).
pub type Task = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a capability adds to the server. Every part is optional ([`Capability::NONE`]).
#[derive(Clone, Copy)]
pub struct Capability {
    pub name: &'static str,
    /// Its routes, added to the route table (which the router, the docs and the cross-tenant
    /// harness all read).
    pub routes: fn(platform::http::routes::Api) -> platform::http::routes::Api,
    /// Its job kinds, registered in every process's job registry.
    pub job_kinds: fn(&mut jobs::workers::Registry, &platform::App),
    /// What must be in place before the process serves (platform schedules it owns), awaited
    /// at start-up.
    pub startup: fn(&Runtime<'_>) -> Option<Task>,
    /// Its background loops for this process's roles; each ends when `Runtime::stop` is set.
    pub background: fn(&Runtime<'_>) -> Vec<Task>,
    /// Its hourly clean-up (idempotent, safe on any number of replicas).
    pub housekeeping: fn(&platform::App, &config::Config) -> Option<Task>,
    /// The metrics it records, with their help text (`/metrics` describes every one).
    pub metrics: &'static [observability::Metric],
}

impl Capability {
    /// A capability that adds nothing: the base of `Capability { routes, ..Capability::NONE }`.
    pub const NONE: Capability = Capability {
        name: "",
        routes: |api| api,
        job_kinds: |_, _| {},
        startup: |_| None,
        background: |_| Vec::new(),
        housekeeping: |_, _| None,
        metrics: &[],
    };
}

/// What a capability's background loops get from `serve`.
pub struct Runtime<'a> {
    pub app: &'a platform::App,
    pub config: &'a config::Config,
    pub roles: config::Roles,
    pub registry: &'a std::sync::Arc<jobs::workers::Registry>,
    /// Set to `true` when the process stops.
    pub stop: &'a tokio::sync::watch::Receiver<bool>,
    /// How long work in flight may take to finish on shutdown.
    pub grace: std::time::Duration,
}

/// An HTTP client builder with TLS ready (rustls with the `ring` provider, the platform's roots).
/// Every outbound HTTP client is built from this.
pub fn http_client() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tenantry_store::{ConnectOptions, Store};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::platform::{App, AppSettings};

/// Opens the configured store (creating the data directory for SQLite) and migrates it.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.uses_sqlite() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
    }
    let url = config.database_url();
    let options = ConnectOptions {
        max_connections: config.database_max_connections,
        ..ConnectOptions::default()
    };
    let store = tenantry_store::connect(&url, &options)
        .await
        .with_context(|| format!("cannot open the database {}", config::redact_url(&url)))?;
    let applied = store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    if !applied.is_empty() {
        tracing::info!(
            ?applied,
            backend = store.backend().as_str(),
            "migrations applied"
        );
    }
    Ok(store)
}

pub fn app_settings(config: &Config) -> AppSettings {
    AppSettings {
        delete_grace: chrono::Duration::days(i64::from(config.tenants.delete_grace_days)),
        idempotency_ttl: chrono::Duration::hours(i64::from(config.idempotency_ttl_hours)),
        key_rotation_grace: chrono::Duration::hours(i64::from(
            config.auth.key_rotation_grace_hours,
        )),
        sync: config.sync.clone(),
        webhooks: config.webhooks.clone(),
        egress: config.egress.clone(),
        events: config.events.clone(),
        encryption_key: config
            .encryption_key
            .as_ref()
            .map(|k| k.expose().to_owned()),
        encryption_keys_previous: config.encryption_keys_previous.expose().to_owned(),
        telemetry: {
            let mut t = config.telemetry.clone();
            if t.archive_url.trim().is_empty() {
                t.archive_url = config.data_dir.join("archive").display().to_string();
            }
            t
        },
    }
}

/// Runs this process's roles until `shutdown` completes: the HTTP API on `listener` (or only the
/// health and metrics endpoints without the `api` role), the job worker and lease recovery
/// (`worker`). On shutdown, in-flight requests finish and workers stop claiming, finish or release
/// their jobs, all bounded by `shutdown_grace_seconds`.
pub async fn serve(
    app: App,
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let roles = config.roles();
    let registry = std::sync::Arc::new(jobs::workers::Registry::with_builtins(&app));
    let housekeeping_task = tokio::spawn(housekeeping(app.clone(), config.clone()));
    let state = app_state(app.clone(), config, std::sync::Arc::clone(&registry)).await?;
    let router = if roles.api {
        platform::http::router(state, config.body_limit_bytes)
    } else {
        platform::http::ops_router(state)
    };
    let grace = std::time::Duration::from_secs(u64::from(config.shutdown_grace_seconds));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = Runtime {
        app: &app,
        config,
        roles,
        registry: &registry,
        stop: &stop_rx,
        grace,
    };
    for c in CAPABILITIES {
        if let Some(task) = (c.startup)(&runtime) {
            task.await;
        }
    }
    let background: Vec<_> = CAPABILITIES
        .iter()
        .flat_map(|c| (c.background)(&runtime))
        .map(tokio::spawn)
        .collect();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = platform::http::serve::run(listener, router, &config.http, async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests and jobs");
        let _ = stop_tx.send(true);
        let _ = stopping_tx.send(());
    });
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = async { let _ = stopping_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time");
        }
    }
    // workers have their own grace (the same setting); wait for them a little longer than that
    let drain = async {
        for task in background {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(grace + std::time::Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        tracing::warn!("background work did not stop in time");
    }
    housekeeping_task.abort();
    app.store().close().await;
    Ok(())
}

/// Every capability's hourly clean-up, safe on any number of replicas (idempotent deletes).
async fn housekeeping(app: App, config: Config) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        for c in CAPABILITIES {
            if let Some(task) = (c.housekeeping)(&app, &config) {
                task.await;
            }
        }
    }
}

/// The rate limiter the configuration asks for: in-process, or Redis with an in-process fallback.
pub async fn build_limiter(config: &Config) -> std::sync::Arc<dyn tenantry_limiter::RateLimiter> {
    let url = config.limits.redis_url.trim();
    if url.is_empty() {
        return std::sync::Arc::new(tenantry_limiter::InProcess::new());
    }
    let timeout = std::time::Duration::from_millis(u64::from(config.limits.redis_timeout_ms));
    let limiter = tenantry_limiter::Resilient::new(
        url,
        "tenantry:rl:",
        timeout,
        std::time::Duration::from_secs(1),
    )
    .await;
    if limiter.is_degraded() {
        tracing::warn!(
            "Redis is unreachable at start-up: rate limits are per instance until it answers"
        );
    }
    std::sync::Arc::new(limiter)
}

/// Everything the HTTP layer shares.
pub async fn app_state(
    app: App,
    config: &Config,
    jobs: std::sync::Arc<jobs::workers::Registry>,
) -> anyhow::Result<platform::http::AppState> {
    let tokens = access::tokens::TokenVerifier::new(token_settings(config))?;
    tokens.warm_up().await;
    let cursors = platform::http::cursor::Cursors::new(std::sync::Arc::clone(app.store()));
    Ok(platform::http::AppState {
        cursors,
        tenant_labels: observability::TenantLabels::new(config.tenant_metric_ids()?),
        tokens: std::sync::Arc::new(tokens),
        jobs,
        app,
        metrics: observability::metrics_handle(),
        tenant_base_host: Some(config.tenants.base_host.trim())
            .filter(|h| !h.is_empty())
            .map(std::sync::Arc::from),
        limiter: build_limiter(config).await,
        limits_shared: !config.limits.redis_url.trim().is_empty(),
        cors_origins: config
            .cors_origins()
            .iter()
            .filter_map(|o| axum::http::HeaderValue::from_str(o).ok())
            .collect(),
        limits: std::sync::Arc::new(access::limits::LimitPolicy::new(
            config.limits.global_per_minute,
            config.limits.global_burst,
            std::time::Duration::from_secs(u64::from(config.limits.edition_cache_seconds)),
        )),
    })
}

/// How bearer tokens are verified, from the configuration.
pub fn token_settings(config: &Config) -> access::tokens::TokenSettings {
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    access::tokens::TokenSettings {
        hs256_secret: config
            .auth
            .jwt_hs256_secret
            .as_ref()
            .map(|s| s.expose().to_owned()),
        jwks_url: non_empty(&config.auth.jwt_jwks_url),
        issuer: non_empty(&config.auth.jwt_issuer),
        audience: non_empty(&config.auth.jwt_audience),
        jwks_min_refresh: std::time::Duration::from_secs(u64::from(
            config.auth.jwt_jwks_min_refresh_seconds,
        )),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
