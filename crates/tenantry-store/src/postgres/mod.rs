//! The scale-out adapter: PostgreSQL. Migrations run under sqlx's advisory lock, so replicas that
//! start together apply each version once.
//!
//! Two pools: the platform's (`tenantry.scope = 'system'` for the whole session) and the tenants'
//! (nothing visible until a transaction sets `tenantry.tenant_id`). Tenant data is opened only
//! through [`PgStore::tenant_tx`] (or [`PgStore::scoped_tx`] for a job scope), which sets it:
//! row-level security then shows that tenant's rows alone (ADR 0006). Schema- and
//! database-per-tenant routing will hang off the same function.

mod access;
mod audit;
mod editions;
mod events;
mod idempotency;
mod job_console;
mod job_upkeep;
mod jobs;
mod leases;
mod schedules;
mod secrets;
mod sync;
mod telemetry;
mod tenants;
mod usage;
mod webhooks;

/// `db.system` of this adapter's spans (OpenTelemetry semantic conventions).
pub(crate) const DB_SYSTEM: &str = "postgresql";

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tenantry_domain::TenantScope;

use crate::jobs::JobScope;
pub(crate) use crate::sql::Intent;
use crate::sql::{binds, migrations};
use crate::{Backend, Changes, StoreError, StoreResult};

#[derive(Clone, Debug)]
pub struct PgStore {
    /// Platform (system) context: `tenantry.scope = 'system'` for the whole session.
    pool: PgPool,
    /// Tenant context: every transaction sets `tenantry.tenant_id`; without it nothing is visible.
    tenant_pool: PgPool,
    options: PgConnectOptions,
    /// Wakes idle workers when jobs may be available (local enqueues and `NOTIFY`).
    signal: std::sync::Arc<tokio::sync::Notify>,
    listener_started: std::sync::Arc<std::sync::Once>,
    /// Wakes the event sequencer when any instance committed events (`NOTIFY tenantry_events`).
    events: std::sync::Arc<tokio::sync::Notify>,
    events_listener_started: std::sync::Arc<std::sync::Once>,
    announce_pending: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Coalesces concurrent plain enqueues into one insert (started on first use).
    batcher: std::sync::Arc<std::sync::OnceLock<crate::sql::enqueue_batch::EnqueueBatcher>>,
    /// The login cannot vacuum the jobs table (warned once).
    vacuum_refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The role the application works as, so that row-level security applies (ADR 0006).
const APP_ROLE: &str = "tenantry_app";

async fn assume_app_role(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(APP_ROLE)
            .fetch_one(&mut *conn)
            .await?;
    if exists {
        sqlx::query("SELECT set_config('role', $1, false)")
            .bind(APP_ROLE)
            .execute(&mut *conn)
            .await?;
    } else {
        tracing::warn!(
            "role {APP_ROLE} does not exist: row-level security relies on FORCE ROW LEVEL SECURITY only"
        );
    }
    Ok(())
}

/// A time as PostgreSQL stores it (`timestamptz`).
pub(crate) fn db_time(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    t
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(Backend::Postgres, e)
}

/// A transaction (the same shape as the SQLite adapter's, so capability code is written once).
pub(crate) struct Tx(Transaction<'static, Postgres>);

impl std::ops::Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
impl Tx {
    /// Jobs were made available: PostgreSQL announces them after the commit
    /// (`PgStore::after_enqueue`), so there is nothing to note on the transaction.
    fn mark_enqueued(&mut self) {}

    async fn commit(self) -> StoreResult<()> {
        self.0.commit().await.map_err(err)
    }
}

/// The statements of the unit-of-work writer ([`binds::write_records`]).
mod sql {
    pub(super) const IDEMPOTENCY_EXPIRE: &str =
        "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND expires_at <= $3";
    pub(super) const IDEMPOTENCY_INSERT: &str = "INSERT INTO idempotency_keys (scope, key, request_hash, status, headers, body, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub(super) const AUDIT_INSERT: &str = "INSERT INTO audit_log (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    pub(super) const OUTBOX_INSERT: &str = "INSERT INTO outbox (id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
}

impl PgStore {
    pub async fn connect(url: &str, options: &crate::ConnectOptions) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .application_name("tenantry");
        // Lazy: no connection is made before `migrate` has created the application role.
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    assume_app_role(conn).await?;
                    sqlx::query("SELECT set_config('tenantry.scope', 'system', false)")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(connect.clone());
        let tenant_pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|conn, _| Box::pin(async move { assume_app_role(conn).await }))
            .connect_lazy_with(connect.clone());
        Ok(Self {
            pool,
            tenant_pool,
            options: connect,
            signal: std::sync::Arc::default(),
            listener_started: std::sync::Arc::new(std::sync::Once::new()),
            events: std::sync::Arc::default(),
            events_listener_started: std::sync::Arc::new(std::sync::Once::new()),
            announce_pending: std::sync::Arc::default(),
            batcher: std::sync::Arc::default(),
            vacuum_refused: std::sync::Arc::default(),
        })
    }

    /// A transaction on platform data (the system context: every row is visible).
    async fn platform_tx(&self, _intent: Intent) -> StoreResult<Tx> {
        Ok(Tx(self.pool.begin().await.map_err(err)?))
    }

    /// The tenant-routing point: the only way to a transaction on a tenant's data. Row-level
    /// security shows only the scope's tenant's rows, and refuses writes of any other's.
    async fn tenant_tx(&self, scope: &TenantScope, _intent: Intent) -> StoreResult<Tx> {
        let mut tx = Tx(self.tenant_pool.begin().await.map_err(err)?);
        Self::enter(&mut tx, scope).await?;
        Ok(tx)
    }

    /// The same routing point for a transaction shared by several tenants' writes (telemetry's
    /// group commit): no tenant until [`Self::enter`] names one; each batch enters its own.
    async fn group_tx(&self) -> StoreResult<Tx> {
        Ok(Tx(self.tenant_pool.begin().await.map_err(err)?))
    }

    /// Puts the transaction's following statements under the scope's tenant.
    async fn enter(tx: &mut Tx, scope: &TenantScope) -> StoreResult<()> {
        sqlx::query("SELECT set_config('tenantry.tenant_id', $1, true)")
            .bind(scope.tenant_id().to_string())
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// A transaction for a job scope: one tenant's data, or the platform's view of it all.
    async fn scoped_tx(&self, scope: JobScope<'_>, intent: Intent) -> StoreResult<Tx> {
        match scope {
            JobScope::System => self.platform_tx(intent).await,
            JobScope::Tenant(s) => self.tenant_tx(s, intent).await,
        }
    }

    /// Writes what must commit with a change (jobs, idempotency record, audit, outbox).
    async fn write_changes(tx: &mut Tx, changes: &Changes) -> StoreResult<()> {
        if !changes.jobs.is_empty() {
            jobs::insert_jobs(&mut *tx, &changes.jobs).await?;
            jobs::notify(&mut *tx).await?;
        }
        if let Some(held) = changes.tenant_jobs
            && jobs::hold_tenant_jobs(&mut *tx, held).await?
        {
            jobs::notify(&mut *tx).await?;
        }
        if !changes.events.is_empty() {
            events::notify(&mut *tx).await?;
        }
        binds::write_records!(&mut **tx, changes, self::sql, err)
    }

    async fn seed_editions(&self) -> StoreResult<()> {
        for e in crate::sql::builtin_editions() {
            binds::bind_edition!(
                sqlx::query(
                    "INSERT INTO editions (key, name, description, limits, builtin, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
                ),
                &e
            )
            .execute(&self.pool)
            .await
            .map_err(err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl crate::Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<Vec<i64>> {
        let migrator = migrations::postgres();
        // Migrations run as the connecting (owning) role, on a connection of their own: the pools
        // work as the application role, which may not change the schema.
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(err)?;
        let before: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        let ran = migrator.run_direct(None, &mut conn, false).await;
        let _ = conn.close().await;
        ran?;
        self.seed_editions().await?;
        Ok(migrations::applied_now(&migrator, &before))
    }

    async fn check_ready(&self) -> StoreResult<()> {
        let want = migrations::latest(&migrations::postgres());
        let have: Option<i64> = sqlx::query_scalar(migrations::NEWEST_APPLIED)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| migrations::not_migrated_or(e, want, err))?;
        crate::sql::readiness(have, want)
    }

    async fn close(&self) {
        self.pool.close().await;
        self.tenant_pool.close().await;
    }

    crate::capability_accessors!();
}

/// `NOTIFY channel` inside the writing transaction: delivered to listeners on commit.
pub(super) async fn notify_channel(
    conn: &mut sqlx::PgConnection,
    channel: &str,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    Ok(())
}
