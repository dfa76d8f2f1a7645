//! The embedded adapter: SQLite in WAL mode with full fsync, one file in the data directory.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so writers queue on SQLite's write lock
//! (bounded by the busy timeout) instead of failing on a read-to-write upgrade.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use tenantry_domain::{
    ApiKeyId, AuditRecord, Edition, EditionKey, EventEnvelope, Page, PageRequest, Tenant,
    TenantRef, TenantScope,
};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::migrations;
use crate::port::*;
use crate::rows::*;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite has one writer at a time. Writers queue here, in FIFO order, instead of polling
    /// SQLite's busy handler (which sleeps and retries, and makes tail latency explode under load).
    writer: Arc<Mutex<()>>,
    /// Wakes idle workers when jobs are enqueued.
    signal: Arc<tokio::sync::Notify>,
    /// Coalesces concurrent plain enqueues into one write transaction (started on first use).
    batcher: Arc<std::sync::OnceLock<crate::enqueue_batch::EnqueueBatcher>>,
}

/// A write transaction holding the in-process writer slot.
struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _slot: OwnedMutexGuard<()>,
    /// Woken after commit when the transaction enqueued jobs.
    signal: Arc<tokio::sync::Notify>,
    enqueued: bool,
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}
impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}
impl WriteTx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if self.enqueued {
            self.signal.notify_waiters();
        }
        Ok(())
    }
}

/// A write transaction: waits for the writer slot, then `BEGIN IMMEDIATE`.
async fn begin_write(
    pool: &SqlitePool,
    writer: &Arc<Mutex<()>>,
    signal: &Arc<tokio::sync::Notify>,
) -> StoreResult<WriteTx> {
    let slot = Arc::clone(writer).lock_owned().await;
    let tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
    Ok(WriteTx {
        tx,
        _slot: slot,
        signal: Arc::clone(signal),
        enqueued: false,
    })
}

#[path = "sqlite_jobs.rs"]
mod jobs;

fn constraint_of(db: &dyn sqlx::error::DatabaseError) -> Constraint {
    let m = db.message();
    if m.contains("tenants.slug") {
        Constraint::TenantSlug
    } else if m.contains("tenants.id") {
        Constraint::TenantId
    } else if m.contains("editions.key") {
        Constraint::EditionKey
    } else if m.contains("api_keys.lookup") {
        Constraint::ApiKeyLookup
    } else if m.contains("devices.tenant_id, devices.device_id") {
        Constraint::DeviceId
    } else if m.contains("idempotency_keys.") {
        Constraint::IdempotencyKey
    } else {
        Constraint::Other
    }
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e, constraint_of)
}

/// The first id after which a page starts (nil: from the beginning).
fn after(page: &PageRequest) -> Uuid {
    page.after.map_or(Uuid::nil(), |c| c.0)
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &crate::ConnectOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
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
            batcher: Arc::default(),
        })
    }

    async fn begin(&self) -> StoreResult<WriteTx> {
        begin_write(&self.pool, &self.writer, &self.signal).await
    }

    /// Tenant-scoped reads: SQLite has no row-level security; the `tenant_id` filter is the fence.
    async fn read(&self, _scope: &TenantScope) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool.begin().await.map_err(err)
    }

    async fn write(&self, _scope: &TenantScope) -> StoreResult<WriteTx> {
        self.begin().await
    }

    async fn write_changes(tx: &mut WriteTx, changes: &Changes) -> StoreResult<()> {
        if !changes.jobs.is_empty() {
            jobs::insert_jobs(&mut *tx, &changes.jobs).await?;
            tx.enqueued = true;
        }
        let conn: &mut SqliteConnection = &mut *tx;
        if let Some(r) = &changes.idempotency {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND expires_at <= ?3",
            )
            .bind(&r.scope)
            .bind(&r.key)
            .bind(r.created_at)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status, headers, body, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(&r.scope)
            .bind(&r.key)
            .bind(&r.request_hash)
            .bind(i32::from(r.status))
            .bind(Json(&r.headers))
            .bind(&r.body)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
        for a in &changes.audit {
            sqlx::query(
                "INSERT INTO audit_log (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .bind(a.id.as_uuid())
            .bind(a.occurred_at)
            .bind(a.actor.kind.as_str())
            .bind(&a.actor.id)
            .bind(&a.action)
            .bind(&a.resource_type)
            .bind(&a.resource_id)
            .bind(a.tenant_id.map(uuid::Uuid::from))
            .bind(&a.trace_id)
            .bind(Json(&a.details))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
        for e in &changes.events {
            sqlx::query(
                "INSERT INTO outbox (id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .bind(e.id.as_uuid())
            .bind(&e.event_type)
            .bind(&e.source)
            .bind(e.time)
            .bind(e.tenant_id.map(uuid::Uuid::from))
            .bind(e.edition.as_ref().map(EditionKey::as_str))
            .bind(&e.trace_id)
            .bind(i64::from(e.schema_version))
            .bind(&e.key)
            .bind(Json(&e.data))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
        Ok(())
    }

    async fn seed_editions(&self) -> StoreResult<()> {
        // built-ins list in tier order: give each a strictly later creation time
        let base = tenantry_domain::clock::to_stored_precision(Utc::now());
        for (i, mut e) in Edition::defaults(base).into_iter().enumerate() {
            e.created_at = base + chrono::Duration::microseconds(i as i64);
            sqlx::query(
                "INSERT INTO editions (key, name, description, limits, builtin, created_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5) ON CONFLICT (key) DO NOTHING",
            )
            .bind(e.key.as_str())
            .bind(&e.name)
            .bind(&e.description)
            .bind(Json(&e.limits))
            .bind(e.created_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<Vec<i64>> {
        let migrator = migrations::sqlite();
        let before: Vec<i64> = applied_versions(&self.pool).await;
        migrator.run(&self.pool).await?;
        self.seed_editions().await?;
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !before.contains(v))
            .collect())
    }

    async fn check_ready(&self) -> StoreResult<()> {
        let want = migrations::latest(&migrations::sqlite());
        let have: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(_) => StoreError::NotMigrated { have: None, want },
                    e => err(e),
                })?;
        if have == Some(want) {
            Ok(())
        } else {
            Err(StoreError::NotMigrated { have, want })
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn insert_tenant(&self, t: &Tenant, changes: &Changes) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::write_changes(&mut tx, changes).await?;
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, status, edition, region, isolation, created_at, updated_at, deleted_at, purge_after, deleted_from, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .bind(t.id.as_uuid())
        .bind(t.slug.as_str())
        .bind(t.name.as_str())
        .bind(t.status.as_str())
        .bind(t.edition.as_str())
        .bind(t.region.as_ref().map(|r| r.as_str()))
        .bind(t.isolation.as_str())
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.deleted_at)
        .bind(t.purge_after)
        .bind(t.deleted_from.map(|s| s.as_str()))
        .bind(t.version)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn update_tenant(
        &self,
        t: &Tenant,
        expected_version: i64,
        changes: &Changes,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET name = ?2, status = ?3, edition = ?4, region = ?5, updated_at = ?6, deleted_at = ?7,
                    purge_after = ?8, deleted_from = ?9, version = ?10
             WHERE id = ?1 AND version = ?11",
        )
        .bind(t.id.as_uuid())
        .bind(t.name.as_str())
        .bind(t.status.as_str())
        .bind(t.edition.as_str())
        .bind(t.region.as_ref().map(|r| r.as_str()))
        .bind(t.updated_at)
        .bind(t.deleted_at)
        .bind(t.purge_after)
        .bind(t.deleted_from.map(|s| s.as_str()))
        .bind(t.version)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if updated.rows_affected() == 0 {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = ?1")
                .bind(t.id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
            return Err(if exists.is_some() {
                StoreError::VersionConflict
            } else {
                StoreError::NotFound
            });
        }
        Self::write_changes(&mut tx, changes).await?;
        tx.commit().await.map_err(err)
    }

    async fn get_tenant(&self, r: &TenantRef) -> StoreResult<Option<Tenant>> {
        let row = match r {
            TenantRef::Id(id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    tenant_columns!(),
                    " FROM tenants WHERE id = ?1"
                ))
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await
            }
            TenantRef::Slug(s) => {
                sqlx::query(concat!(
                    "SELECT ",
                    tenant_columns!(),
                    " FROM tenants WHERE slug = ?1"
                ))
                .bind(s.as_str())
                .fetch_optional(&self.pool)
                .await
            }
        }
        .map_err(err)?;
        row.map(|row| decode_tenant!(&row, err)).transpose()
    }

    async fn list_tenants(&self, f: &TenantFilter, page: PageRequest) -> StoreResult<Page<Tenant>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id > ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR edition = ?3)
              ORDER BY id LIMIT ?4"
        ))
        .bind(after(&page))
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.edition.as_ref().map(EditionKey::as_str))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let tenants = rows
            .iter()
            .map(|row| decode_tenant!(row, err))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_fetched(tenants, page.limit, |t| *t.id.as_uuid()))
    }

    async fn list_editions(&self) -> StoreResult<Vec<Edition>> {
        let rows = sqlx::query(
            "SELECT key, name, description, limits, builtin, created_at FROM editions ORDER BY builtin DESC, created_at, key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(|row| decode_edition!(row, err)).collect()
    }

    async fn get_edition(&self, key: &EditionKey) -> StoreResult<Option<Edition>> {
        let row = sqlx::query("SELECT key, name, description, limits, builtin, created_at FROM editions WHERE key = ?1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(|row| decode_edition!(&row, err)).transpose()
    }

    async fn insert_edition(&self, e: &Edition, changes: &Changes) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::write_changes(&mut tx, changes).await?;
        sqlx::query(
            "INSERT INTO editions (key, name, description, limits, builtin, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(e.key.as_str())
        .bind(&e.name)
        .bind(&e.description)
        .bind(Json(&e.limits))
        .bind(e.builtin)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord, changes: &Changes) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::write_changes(&mut tx, changes).await?;
        insert_key(&mut tx, k).await?;
        tx.commit().await.map_err(err)
    }

    async fn find_api_key(&self, lookup: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE lookup = ?1"
        ))
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|row| decode_api_key!(&row, err)).transpose()
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
            .bind(id.as_uuid())
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn count_active_operator_keys(&self, now: DateTime<Utc>) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE kind = 'operator' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(err)
    }

    async fn insert_tenant_key(
        &self,
        scope: &TenantScope,
        k: &ApiKeyRecord,
        changes: &Changes,
    ) -> StoreResult<()> {
        ensure_same_tenant(scope, k.tenant_id)?;
        let mut tx = self.begin().await?;
        Self::write_changes(&mut tx, changes).await?;
        insert_key(&mut tx, k).await?;
        tx.commit().await.map_err(err)
    }

    async fn list_tenant_keys(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> StoreResult<Page<ApiKeyRecord>> {
        let mut tx = self.read(scope).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))
        .bind(scope.tenant_id().as_uuid())
        .bind(after(&page))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        let keys = rows
            .iter()
            .map(|row| decode_api_key!(row, err))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_fetched(keys, page.limit, |k| *k.id.as_uuid()))
    }

    async fn get_tenant_key(
        &self,
        scope: &TenantScope,
        id: ApiKeyId,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.read(scope).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE tenant_id = ?1 AND id = ?2"
        ))
        .bind(scope.tenant_id().as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        row.map(|row| decode_api_key!(&row, err)).transpose()
    }

    async fn revoke_tenant_key(
        &self,
        scope: &TenantScope,
        id: ApiKeyId,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()> {
        let mut tx = self.write(scope).await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL")
            .bind(scope.tenant_id().as_uuid())
            .bind(id.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::write_changes(&mut tx, changes).await?;
        tx.commit().await.map_err(err)
    }

    async fn rotate_tenant_key(
        &self,
        scope: &TenantScope,
        old: ApiKeyId,
        old_expires_at: DateTime<Utc>,
        successor: &ApiKeyRecord,
        changes: &Changes,
    ) -> StoreResult<()> {
        ensure_same_tenant(scope, successor.tenant_id)?;
        let mut tx = self.write(scope).await?;
        let done = sqlx::query(
            "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > ?3 THEN ?3 ELSE expires_at END, rotated_to = ?4
             WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL AND rotated_to IS NULL",
        )
        .bind(scope.tenant_id().as_uuid())
        .bind(old.as_uuid())
        .bind(old_expires_at)
        .bind(successor.id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_key(&mut tx, successor).await?;
        Self::write_changes(&mut tx, changes).await?;
        tx.commit().await.map_err(err)
    }

    async fn insert_device(
        &self,
        scope: &TenantScope,
        d: &DeviceRecord,
        key: &ApiKeyRecord,
        changes: &Changes,
    ) -> StoreResult<()> {
        ensure_same_tenant(scope, Some(d.tenant_id))?;
        ensure_same_tenant(scope, key.tenant_id)?;
        let mut tx = self.write(scope).await?;
        Self::write_changes(&mut tx, changes).await?;
        sqlx::query("INSERT INTO devices (id, tenant_id, device_id, name, metadata, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .bind(d.id)
            .bind(d.tenant_id.as_uuid())
            .bind(&d.device_id)
            .bind(&d.name)
            .bind(Json(&d.metadata))
            .bind(d.created_at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        insert_key(&mut tx, key).await?;
        tx.commit().await.map_err(err)
    }

    async fn list_devices(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> StoreResult<Page<DeviceRecord>> {
        let mut tx = self.read(scope).await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, device_id, name, metadata, created_at FROM devices
             WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .bind(scope.tenant_id().as_uuid())
        .bind(after(&page))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        let devices = rows
            .iter()
            .map(|row| decode_device!(row, err))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_fetched(devices, page.limit, |d| d.id))
    }

    async fn get_device(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> StoreResult<Option<DeviceRecord>> {
        let mut tx = self.read(scope).await?;
        let row = sqlx::query(
            "SELECT id, tenant_id, device_id, name, metadata, created_at FROM devices WHERE tenant_id = ?1 AND device_id = ?2",
        )
        .bind(scope.tenant_id().as_uuid())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        row.map(|row| decode_device!(&row, err)).transpose()
    }

    async fn delete_device(
        &self,
        scope: &TenantScope,
        device_id: &str,
        at: DateTime<Utc>,
        changes: &Changes,
    ) -> StoreResult<()> {
        let mut tx = self.write(scope).await?;
        sqlx::query("UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND device_id = ?2 AND revoked_at IS NULL")
            .bind(scope.tenant_id().as_uuid())
            .bind(device_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let done = sqlx::query("DELETE FROM devices WHERE tenant_id = ?1 AND device_id = ?2")
            .bind(scope.tenant_id().as_uuid())
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::write_changes(&mut tx, changes).await?;
        tx.commit().await.map_err(err)
    }

    async fn list_audit(
        &self,
        f: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>> {
        let before = page.after.map_or(Uuid::max(), |c| c.0);
        let rows = sqlx::query(
            "SELECT id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details
             FROM audit_log
             WHERE id < ?1 AND (?2 IS NULL OR tenant_id = ?2) AND (?3 IS NULL OR action = ?3)
               AND (?4 IS NULL OR occurred_at >= ?4) AND (?5 IS NULL OR occurred_at < ?5)
             ORDER BY id DESC LIMIT ?6",
        )
        .bind(before)
        .bind(f.tenant_id.map(uuid::Uuid::from))
        .bind(f.action.as_deref())
        .bind(f.since)
        .bind(f.until)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let records = rows
            .iter()
            .map(|row| decode_audit!(row, err))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_fetched(records, page.limit, |a| *a.id.as_uuid()))
    }

    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<EventEnvelope>> {
        let rows = sqlx::query(
            "SELECT id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data
             FROM outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(|row| decode_event!(row, err)).collect()
    }

    async fn find_idempotency(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT scope, key, request_hash, status, headers, body, created_at, expires_at
             FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND expires_at > ?3",
        )
        .bind(scope)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|row| decode_idempotency!(&row, err)).transpose()
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected())
    }
}

async fn applied_versions(pool: &SqlitePool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

async fn insert_key(conn: &mut SqliteConnection, k: &ApiKeyRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, kind, lookup, secret_hash, name, tenant_id, created_at, expires_at, revoked_at,
                               scopes, roles, rate_limit_per_minute, device_id, rotated_to)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .bind(k.id.as_uuid())
    .bind(k.kind.as_str())
    .bind(&k.lookup)
    .bind(&k.secret_hash)
    .bind(&k.name)
    .bind(k.tenant_id.map(uuid::Uuid::from))
    .bind(k.created_at)
    .bind(k.expires_at)
    .bind(k.revoked_at)
    .bind(Json(k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
    .bind(Json(k.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()))
    .bind(k.rate_limit_per_minute.map(i64::from))
    .bind(&k.device_id)
    .bind(k.rotated_to.map(uuid::Uuid::from))
    .execute(&mut *conn)
    .await
    .map_err(err)?;
    Ok(())
}
