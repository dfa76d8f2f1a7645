//! Source sync on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::sync_store`] (tenant data through `SqliteStore::tenant_tx`).

use super::jobs::insert_jobs;
use super::schedules::sql as sched_sql;
use super::{Intent, SqliteStore, db_time, err};

mod sql {
    pub(super) const SOURCE_UPSERT: &str = "INSERT INTO sync_sources (id, tenant_id, name, kind, schedule, enabled, max_attempts, config, sealed_headers, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, schedule = excluded.schedule,
             enabled = excluded.enabled, max_attempts = excluded.max_attempts, config = excluded.config,
             sealed_headers = excluded.sealed_headers, updated_at = excluded.updated_at
         WHERE sync_sources.tenant_id = excluded.tenant_id AND (?12 IS NULL OR sync_sources.updated_at = ?12)";
    pub(super) const SOURCE_GET: &str =
        "SELECT * FROM sync_sources WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const SOURCE_EXISTS: &str =
        "SELECT 1 FROM sync_sources WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const SOURCE_LIST: &str =
        "SELECT * FROM sync_sources WHERE tenant_id = ?1 ORDER BY name";
    pub(super) const SOURCE_DELETE_CHILDREN: [&str; 3] = [
        "DELETE FROM sync_records WHERE tenant_id = ?1 AND source_id = ?2",
        "DELETE FROM sync_quarantine WHERE tenant_id = ?1 AND source_id = ?2",
        "DELETE FROM sync_runs WHERE tenant_id = ?1 AND source_id = ?2",
    ];
    pub(super) const SOURCE_DELETE: &str =
        "DELETE FROM sync_sources WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const RUN_GET: &str = "SELECT * FROM sync_runs WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const RUN_INSERT: &str = "INSERT INTO sync_runs (id, tenant_id, source_id, status, manual, triggered_at, attempts, resumed, owner, checkpoint, counts, error, started_at, updated_at, finished_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, 1, 0, ?6, NULL, ?7, NULL, ?8, ?8, NULL)";
    pub(super) const RUN_QUEUE: &str = "INSERT INTO sync_runs (id, tenant_id, source_id, status, manual, triggered_at, attempts, resumed, owner, checkpoint, counts, error, started_at, updated_at, finished_at)
         VALUES (?1, ?2, ?3, 'queued', true, ?4, 0, 0, NULL, NULL, ?5, NULL, ?4, ?4, NULL)";
    pub(super) const RUN_TAKE: &str =
        "UPDATE sync_runs SET status = 'running', attempts = attempts + 1, owner = ?3,
             resumed = (resumed OR ?4), finished_at = NULL, updated_at = ?5
         WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const RUN_PAGE: &str =
        "UPDATE sync_runs SET checkpoint = ?4, counts = ?5, updated_at = ?6
         WHERE tenant_id = ?1 AND id = ?2 AND owner = ?3 AND status = 'running'";
    pub(super) const RUN_FINISH: &str = "UPDATE sync_runs SET status = ?4, error = ?5, counts = ?6, updated_at = ?7, finished_at = ?7, owner = NULL
         WHERE tenant_id = ?1 AND id = ?2 AND owner = ?3 AND status = 'running'";
    pub(super) const RUN_LIST: &str =
        "SELECT * FROM sync_runs WHERE tenant_id = ?1 AND source_id = ?2 AND id < ?3
         ORDER BY id DESC LIMIT ?4";
    pub(super) const RECORD_UPSERT: &str = "INSERT INTO sync_records (id, tenant_id, source_id, record_type, key, data, hash, first_seen_at, last_seen_at, changed_at, removed_at, last_run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, NULL, ?9)
         ON CONFLICT (tenant_id, source_id, record_type, key) DO UPDATE SET data = excluded.data, hash = excluded.hash,
             last_seen_at = excluded.last_seen_at, changed_at = excluded.changed_at, removed_at = NULL,
             last_run_id = excluded.last_run_id
         WHERE sync_records.hash <> excluded.hash OR sync_records.removed_at IS NOT NULL";
    pub(super) const RECORD_TOUCH: &str = "UPDATE sync_records SET last_seen_at = ?5, last_run_id = ?6
         WHERE tenant_id = ?1 AND source_id = ?2 AND record_type = ?3 AND key IN (SELECT value FROM json_each(?4))";
    pub(super) const RECORD_RECONCILE: &str =
        "UPDATE sync_records SET removed_at = ?4, changed_at = ?4
         WHERE tenant_id = ?1 AND source_id = ?2 AND removed_at IS NULL AND last_run_id <> ?3";
    pub(super) const RECORD_LIST: &str = "SELECT * FROM sync_records WHERE tenant_id = ?1 AND id > ?2
             AND (?3 IS NULL OR source_id = ?3) AND (?4 IS NULL OR record_type = ?4) AND (?5 IS NULL OR changed_at > ?5)
         ORDER BY id LIMIT ?6";
    pub(super) const QUARANTINE_INSERT: &str = "INSERT INTO sync_quarantine (id, tenant_id, source_id, run_id, page, item_index, key, reason, excerpt, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (run_id, page, item_index) DO NOTHING";
    pub(super) const QUARANTINE_LIST: &str =
        "SELECT * FROM sync_quarantine WHERE tenant_id = ?1 AND source_id = ?2 AND id > ?3
         ORDER BY id LIMIT ?4";
}

/// A page's records: new and changed ones written one statement each (in process, a statement
/// costs microseconds), then the unchanged ones marked seen in one; (upserted, unchanged).
async fn write_records(
    conn: &mut sqlx::SqliteConnection,
    tenant: uuid::Uuid,
    p: &crate::sync::PageWrite<'_>,
    records: &[&crate::sync::RecordWrite],
) -> crate::StoreResult<(u64, u64)> {
    let mut seen = Vec::new();
    let mut upserted = 0;
    for r in records {
        let n = sqlx::query(sql::RECORD_UPSERT)
            .bind(uuid::Uuid::now_v7())
            .bind(tenant)
            .bind(p.source_id)
            .bind(p.record_type)
            .bind(&r.key)
            .bind(sqlx::types::Json(&r.data))
            .bind(&r.hash)
            .bind(db_time(p.at))
            .bind(p.run_id)
            .execute(&mut *conn)
            .await
            .map_err(err)?
            .rows_affected();
        if n > 0 {
            upserted += 1;
        } else {
            seen.push(r.key.as_str());
        }
    }
    if seen.is_empty() {
        return Ok((upserted, 0));
    }
    let unchanged = sqlx::query(sql::RECORD_TOUCH)
        .bind(tenant)
        .bind(p.source_id)
        .bind(p.record_type)
        .bind(sqlx::types::Json(&seen))
        .bind(db_time(p.at))
        .bind(p.run_id)
        .execute(&mut *conn)
        .await
        .map_err(err)?
        .rows_affected();
    Ok((upserted, unchanged))
}

crate::sql::capabilities::sync_store!(SqliteStore);
