//! The embedded adapter: SQLite in WAL mode with full fsync, one file in the data directory.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so writers queue on SQLite's write lock
//! (bounded by the busy timeout) instead of failing on a read-to-write upgrade. Writers queue in
//! process first, in FIFO order, on one slot.
//!
//! Tenant data is opened only through [`SqliteStore::tenant_tx`] (or [`SqliteStore::scoped_tx`]
//! for a job scope): SQLite has no row-level security, so the scope's `tenant_id` filter in each
//! statement is the fence; the one routing point is where schema- or database-per-tenant routing
//! will hang.

mod access;
mod audit;
mod editions;
mod events;
mod idempotency;
mod job_console;
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
pub(crate) const DB_SYSTEM: &str = "sqlite";

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use tenantry_domain::TenantScope;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::jobs::JobScope;
pub(crate) use crate::sql::Intent;
use crate::sql::{binds, migrations};
use crate::{Backend, Changes, StoreError, StoreResult};

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite has one writer at a time. Writers queue here, in FIFO order, instead of polling
    /// SQLite's busy handler (which sleeps and retries, and makes tail latency explode under load).
    writer: Arc<Mutex<()>>,
    /// Wakes idle workers when jobs are enqueued.
    signal: Arc<tokio::sync::Notify>,
    /// Wakes the event sequencer when a commit appended events.
    events: Arc<tokio::sync::Notify>,
    /// Coalesces concurrent plain enqueues into one write transaction (started on first use).
    batcher: Arc<std::sync::OnceLock<crate::sql::enqueue_batch::EnqueueBatcher>>,
}

/// A transaction; a write one holds the in-process writer slot until it ends.
pub(crate) struct Tx {
    tx: Transaction<'static, Sqlite>,
    _slot: Option<OwnedMutexGuard<()>>,
    /// Woken after commit when the transaction enqueued jobs.
    signal: Arc<tokio::sync::Notify>,
    enqueued: bool,
    /// Woken after commit when the transaction appended events.
    events: Arc<tokio::sync::Notify>,
    appended: bool,
}

impl std::ops::Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}
impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}
impl Tx {
    /// The transaction made jobs available: workers are woken once it commits.
    fn mark_enqueued(&mut self) {
        self.enqueued = true;
    }

    async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await.map_err(err)?;
        if self.enqueued {
            self.signal.notify_waiters();
        }
        if self.appended {
            self.events.notify_waiters();
        }
        Ok(())
    }
}

/// A write transaction: waits for the writer slot, then `BEGIN IMMEDIATE`.
async fn begin_write(
    pool: &SqlitePool,
    writer: &Arc<Mutex<()>>,
    signal: &Arc<tokio::sync::Notify>,
    events: &Arc<tokio::sync::Notify>,
) -> StoreResult<Tx> {
    let slot = Arc::clone(writer).lock_owned().await;
    let tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
    Ok(Tx {
        tx,
        _slot: Some(slot),
        signal: Arc::clone(signal),
        enqueued: false,
        events: Arc::clone(events),
        appended: false,
    })
}

/// A time as SQLite stores it: integer microseconds since the Unix epoch (migration 0005).
pub(crate) fn db_time(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(Backend::Sqlite, e)
}

/// The statements of the unit-of-work writer ([`binds::write_records`]).
mod sql {
    pub(super) const IDEMPOTENCY_EXPIRE: &str =
        "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND expires_at <= ?3";
    pub(super) const IDEMPOTENCY_INSERT: &str = "INSERT INTO idempotency_keys (scope, key, request_hash, status, headers, body, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    pub(super) const AUDIT_INSERT: &str = "INSERT INTO audit_log (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    pub(super) const OUTBOX_INSERT: &str = "INSERT INTO outbox (id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &crate::ConnectOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // statement journals (a multi-row statement that may roll back alone) in memory
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(err)?;
        Ok(Self {
            pool,
            writer: Arc::new(Mutex::new(())),
            signal: Arc::default(),
            events: Arc::default(),
            batcher: Arc::default(),
        })
    }

    /// A transaction on platform data (tenants, editions, keys by lookup, the job queue).
    async fn platform_tx(&self, intent: Intent) -> StoreResult<Tx> {
        match intent {
            Intent::Write => {
                begin_write(&self.pool, &self.writer, &self.signal, &self.events).await
            }
            Intent::Read => Ok(Tx {
                tx: self.pool.begin().await.map_err(err)?,
                _slot: None,
                signal: Arc::clone(&self.signal),
                enqueued: false,
                events: Arc::clone(&self.events),
                appended: false,
            }),
        }
    }

    /// The tenant-routing point: the only way to a transaction on a tenant's data.
    async fn tenant_tx(&self, _scope: &TenantScope, intent: Intent) -> StoreResult<Tx> {
        self.platform_tx(intent).await
    }

    /// The same routing point for a write shared by several tenants' batches (telemetry's
    /// group commit): each batch's statements filter by its own scope's tenant.
    async fn group_tx(&self) -> StoreResult<Tx> {
        self.platform_tx(Intent::Write).await
    }

    /// A transaction for a job scope: one tenant's data, or the platform's view of it all.
    async fn scoped_tx(&self, scope: JobScope<'_>, intent: Intent) -> StoreResult<Tx> {
        match scope {
            JobScope::Tenant(s) => self.tenant_tx(s, intent).await,
            JobScope::System => self.platform_tx(intent).await,
        }
    }

    /// Writes what must commit with a change (jobs, idempotency record, audit, outbox).
    async fn write_changes(tx: &mut Tx, changes: &Changes) -> StoreResult<()> {
        if !changes.jobs.is_empty() {
            jobs::insert_jobs(&mut *tx, &changes.jobs).await?;
            tx.enqueued = true;
        }
        if let Some(held) = changes.tenant_jobs
            && jobs::hold_tenant_jobs(&mut *tx, held).await?
        {
            tx.enqueued = true;
        }
        if !changes.events.is_empty() {
            tx.appended = true;
        }
        binds::write_records!(&mut **tx, changes, self::sql, err)
    }

    async fn seed_editions(&self) -> StoreResult<()> {
        for e in crate::sql::builtin_editions() {
            binds::bind_edition!(
                sqlx::query(
                    "INSERT INTO editions (key, name, description, limits, builtin, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
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
impl crate::Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<Vec<i64>> {
        let migrator = migrations::sqlite();
        let before: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        migrator.run(&self.pool).await?;
        self.seed_editions().await?;
        Ok(migrations::applied_now(&migrator, &before))
    }

    async fn check_ready(&self) -> StoreResult<()> {
        let want = migrations::latest(&migrations::sqlite());
        let have: Option<i64> = sqlx::query_scalar(migrations::NEWEST_APPLIED)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| migrations::not_migrated_or(e, want, err))?;
        crate::sql::readiness(have, want)
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    crate::capability_accessors!();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{DateTime, Utc};
    use sqlx::migrate::Migrator;
    use tenantry_domain::{PageRequest, TenantRef};

    use crate::Store;

    /// A database made before 0005 (times as RFC 3339 text, written the way sqlx wrote them)
    /// reads back the same times, through the same decoders, once 0005 converted it; and 0006
    /// gives its built-in editions the schedule-interval limit.
    #[tokio::test]
    async fn migrations_0005_and_0006_convert_a_database_made_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = super::SqliteStore::connect(&url, &Default::default())
            .await
            .unwrap();
        let before = Migrator::with_migrations(
            super::migrations::sqlite()
                .iter()
                .filter(|m| m.version <= 4)
                .cloned()
                .collect(),
        );
        before.run(&store.pool).await.unwrap();
        let at: DateTime<Utc> = "2026-12-01T21:03:39.123456Z".parse().unwrap();
        let whole: DateTime<Utc> = "2026-12-01T21:03:40Z".parse().unwrap();
        let tenant = uuid::Uuid::now_v7();
        // the free edition as 0001 stored it: without the limits added since (0006)
        let mut old_limits =
            serde_json::to_value(tenantry_domain::Edition::defaults(at)[0].limits).unwrap();
        old_limits
            .as_object_mut()
            .unwrap()
            .remove("min_schedule_interval_seconds");
        sqlx::query("INSERT INTO editions (key, name, limits, builtin, created_at) VALUES ('free', 'Free', ?1, 1, ?2)")
            .bind(old_limits.to_string())
            .bind(at)
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, status, edition, isolation, created_at, updated_at, deleted_at, version)
             VALUES (?1, 'acme', 'Acme', 'active', 'free', 'pooled', ?2, ?3, NULL, 1)",
        )
        .bind(tenant)
        .bind(at)
        .bind(whole)
        .execute(&store.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, kind, lookup, secret_hash, name, tenant_id, created_at, expires_at)
             VALUES (?1, 'tenant_secret', 'tnt_sk_aaaaaaaaaaaa', x'00', 'k', ?2, ?3, ?4)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(tenant)
        .bind(at)
        .bind(whole)
        .execute(&store.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO audit_log (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, details)
             VALUES (?1, ?2, 'system', 's', 'tenant.create', 'tenant', 'r', ?3, '{}')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(at)
        .bind(tenant)
        .execute(&store.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status, headers, body, created_at, expires_at)
             VALUES ('s', 'k', 'h', 201, '[]', '{}', ?1, ?2)",
        )
        .bind(at)
        .bind(at + chrono::Duration::days(3650))
        .execute(&store.pool)
        .await
        .unwrap();

        // every version after 0004 is applied now
        let newest = super::migrations::latest(&super::migrations::sqlite());
        assert_eq!(
            store.migrate().await.unwrap(),
            (5..=newest).collect::<Vec<i64>>()
        );
        store.check_ready().await.unwrap();
        // 0006 gave the stored built-in edition its schedule-interval limit
        let free = store
            .editions()
            .get(&tenantry_domain::EditionKey::free())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(free.limits.min_schedule_interval_seconds, 300);
        let t = store
            .tenants()
            .get(&TenantRef::Id(tenantry_domain::TenantId::from_uuid(tenant)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.created_at, t.updated_at, t.deleted_at),
            (at, whole, None)
        );
        let k = store
            .access()
            .find_key("tnt_sk_aaaaaaaaaaaa")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((k.created_at, k.expires_at), (at, Some(whole)));
        let audit = store
            .audit()
            .list(&Default::default(), PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(audit.items[0].occurred_at, at);
        let idem = store
            .idempotency()
            .find("s", "k", at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(idem.created_at, at);
        // one encoding: every time column of every table is an integer now
        let text: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM tenants WHERE typeof(created_at) <> 'integer')
                  + (SELECT COUNT(*) FROM editions WHERE typeof(created_at) <> 'integer')
                  + (SELECT COUNT(*) FROM api_keys WHERE typeof(expires_at) <> 'integer')",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(text, 0);
    }
}
