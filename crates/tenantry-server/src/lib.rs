//! tenantry's server: application services ([`app`]), the HTTP API ([`http`]), configuration
//! ([`config`]) and observability ([`telemetry`]).

pub mod app;
pub mod bench;
pub mod bench_jobs;
pub mod config;
pub mod http;
pub mod telemetry;
pub mod testing;
pub mod workers;

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

use crate::app::{App, AppSettings};
use crate::config::Config;

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
        delete_grace: chrono::Duration::days(i64::from(config.tenant_delete_grace_days)),
        idempotency_ttl: chrono::Duration::hours(i64::from(config.idempotency_ttl_hours)),
        key_rotation_grace: chrono::Duration::hours(i64::from(config.key_rotation_grace_hours)),
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
    let registry = std::sync::Arc::new(workers::Registry::with_builtins());
    let housekeeping_task = tokio::spawn(housekeeping(
        app.clone(),
        chrono::Duration::days(i64::from(config.job_retention_days)),
    ));
    let state = app_state(app.clone(), config, std::sync::Arc::clone(&registry)).await?;
    let router = if roles.api {
        http::router(state, config.body_limit_bytes)
    } else {
        http::ops_router(state)
    };
    let grace = std::time::Duration::from_secs(u64::from(config.shutdown_grace_seconds));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    if roles.worker {
        let settings = workers::WorkerSettings {
            queues: config.queues(),
            concurrency: config.worker_concurrency as usize,
            shutdown_grace: grace,
            tenant_cap: (config.job_tenant_max_running > 0)
                .then_some(config.job_tenant_max_running),
            ..workers::WorkerSettings::default()
        };
        let worker = workers::Worker::new(
            std::sync::Arc::clone(app.store()),
            std::sync::Arc::clone(&registry),
            workers::worker_id(),
            settings,
        );
        background.push(tokio::spawn(worker.run(stop_rx.clone())));
        background.push(tokio::spawn(workers::runner::recover_loop(
            std::sync::Arc::clone(app.store()),
            std::time::Duration::from_secs(2),
            stop_rx.clone(),
        )));
        background.push(tokio::spawn(workers::runner::tidy_loop(
            std::sync::Arc::clone(app.store()),
            std::time::Duration::from_secs(1),
            stop_rx.clone(),
        )));
        background.push(tokio::spawn(workers::runner::gauges_loop(
            std::sync::Arc::clone(app.store()),
            std::time::Duration::from_secs(15),
            stop_rx.clone(),
        )));
    }
    if roles.scheduler {
        background.push(tokio::spawn(workers::scheduler::run(
            std::sync::Arc::clone(app.store()),
            std::sync::Arc::clone(&registry),
            workers::scheduler::SchedulerSettings {
                stagger: std::time::Duration::from_millis(config.schedule_stagger_ms),
                ..workers::scheduler::SchedulerSettings::default()
            },
            stop_rx.clone(),
        )));
    }
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests and jobs");
        let _ = stop_tx.send(true);
        let _ = stopping_tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => r.context("server error")?,
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

/// Periodic clean-up that is safe on any number of replicas (idempotent deletes). Moves to the job
/// engine's scheduler when that exists.
async fn housekeeping(app: App, job_retention: chrono::Duration) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        match app
            .store()
            .prune_jobs(app::now() - job_retention, 10_000)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "finished jobs past retention removed"),
            Err(e) => tracing::warn!(error = %e, "could not prune finished jobs"),
        }
        match app.store().purge_idempotency(app::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired idempotency keys"),
        }
    }
}

/// The rate limiter the configuration asks for: in-process, or Redis with an in-process fallback.
pub async fn build_limiter(config: &Config) -> std::sync::Arc<dyn tenantry_limiter::RateLimiter> {
    let url = config.redis_url.trim();
    if url.is_empty() {
        return std::sync::Arc::new(tenantry_limiter::InProcess::new());
    }
    let timeout = std::time::Duration::from_millis(u64::from(config.redis_timeout_ms));
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
    jobs: std::sync::Arc<workers::Registry>,
) -> anyhow::Result<http::AppState> {
    let tokens = app::tokens::TokenVerifier::new(token_settings(config))?;
    tokens.warm_up().await;
    Ok(http::AppState {
        tokens: std::sync::Arc::new(tokens),
        jobs,
        app,
        metrics: telemetry::metrics_handle(),
        tenant_base_host: Some(config.tenant_base_host.trim())
            .filter(|h| !h.is_empty())
            .map(std::sync::Arc::from),
        limiter: build_limiter(config).await,
        limits: std::sync::Arc::new(app::limits::LimitPolicy::new(
            config.global_rate_limit_per_minute,
            config.global_rate_limit_burst,
            std::time::Duration::from_secs(u64::from(config.edition_cache_seconds)),
        )),
    })
}

/// How bearer tokens are verified, from the configuration.
pub fn token_settings(config: &Config) -> app::tokens::TokenSettings {
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    app::tokens::TokenSettings {
        hs256_secret: config
            .auth_jwt_hs256_secret
            .as_ref()
            .map(|s| s.expose().to_owned()),
        jwks_url: non_empty(&config.auth_jwt_jwks_url),
        issuer: non_empty(&config.auth_jwt_issuer),
        audience: non_empty(&config.auth_jwt_audience),
        jwks_min_refresh: std::time::Duration::from_secs(u64::from(
            config.auth_jwt_jwks_min_refresh_seconds,
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
