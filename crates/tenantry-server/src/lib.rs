//! tenantry's server: application services ([`app`]), the HTTP API ([`http`]), configuration
//! ([`config`]) and observability ([`telemetry`]).

pub mod app;
pub mod bench;
pub mod config;
pub mod http;
pub mod telemetry;
pub mod testing;

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

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (bounded by `shutdown_grace_seconds`).
pub async fn serve(
    app: App,
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let housekeeping_task = tokio::spawn(housekeeping(app.clone()));
    let state = app_state(app.clone(), config).await;
    let router = http::router(state, config.body_limit_bytes);
    let grace = std::time::Duration::from_secs(u64::from(config.shutdown_grace_seconds));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopping_tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => r.context("server error")?,
        () = async { let _ = stopping_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time");
        }
    }
    housekeeping_task.abort();
    app.store().close().await;
    Ok(())
}

/// Periodic clean-up that is safe on any number of replicas (idempotent deletes). Moves to the job
/// engine's scheduler when that exists.
async fn housekeeping(app: App) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
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
pub async fn app_state(app: App, config: &Config) -> http::AppState {
    http::AppState {
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
