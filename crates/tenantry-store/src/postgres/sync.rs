//! Source sync on PostgreSQL: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::sync_store`] (tenant data through `PgStore::tenant_tx`, under row-level security).

use super::jobs::insert_jobs;
use super::schedules::sql as sched_sql;
use super::{Intent, PgStore, db_time, err};

mod sql {
    pub(super) const SOURCE_UPSERT: &str = "INSERT INTO sync_sources (id, tenant_id, name, kind, schedule, enabled, max_attempts, config, sealed_headers, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, schedule = excluded.schedule,
             enabled = excluded.enabled, max_attempts = excluded.max_attempts, config = excluded.config,
             sealed_headers = excluded.sealed_headers, updated_at = excluded.updated_at
         WHERE sync_sources.tenant_id = excluded.tenant_id AND ($12::timestamptz IS NULL OR sync_sources.updated_at = $12)";
    pub(super) const SOURCE_GET: &str =
        "SELECT * FROM sync_sources WHERE tenant_id = $1 AND id = $2";
    pub(super) const SOURCE_EXISTS: &str =
        "SELECT 1 FROM sync_sources WHERE tenant_id = $1 AND id = $2";
    pub(super) const SOURCE_LIST: &str =
        "SELECT * FROM sync_sources WHERE tenant_id = $1 ORDER BY name";
    pub(super) const SOURCE_DELETE_CHILDREN: [&str; 3] = [
        "DELETE FROM sync_records WHERE tenant_id = $1 AND source_id = $2",
        "DELETE FROM sync_quarantine WHERE tenant_id = $1 AND source_id = $2",
        "DELETE FROM sync_runs WHERE tenant_id = $1 AND source_id = $2",
    ];
    pub(super) const SOURCE_DELETE: &str =
        "DELETE FROM sync_sources WHERE tenant_id = $1 AND id = $2";
    pub(super) const RUN_GET: &str = "SELECT * FROM sync_runs WHERE tenant_id = $1 AND id = $2";
    pub(super) const RUN_INSERT: &str = "INSERT INTO sync_runs (id, tenant_id, source_id, status, manual, triggered_at, attempts, resumed, owner, checkpoint, counts, error, started_at, updated_at, finished_at)
         VALUES ($1, $2, $3, 'running', $4, $5, 1, false, $6, NULL, $7, NULL, $8, $8, NULL)";
    pub(super) const RUN_QUEUE: &str = "INSERT INTO sync_runs (id, tenant_id, source_id, status, manual, triggered_at, attempts, resumed, owner, checkpoint, counts, error, started_at, updated_at, finished_at)
         VALUES ($1, $2, $3, 'queued', true, $4, 0, false, NULL, NULL, $5, NULL, $4, $4, NULL)";
    pub(super) const RUN_TAKE: &str =
        "UPDATE sync_runs SET status = 'running', attempts = attempts + 1, owner = $3,
             resumed = (resumed OR $4), finished_at = NULL, updated_at = $5
         WHERE tenant_id = $1 AND id = $2";
    pub(super) const RUN_PAGE: &str =
        "UPDATE sync_runs SET checkpoint = $4, counts = $5, updated_at = $6
         WHERE tenant_id = $1 AND id = $2 AND owner = $3 AND status = 'running'";
    pub(super) const RUN_FINISH: &str = "UPDATE sync_runs SET status = $4, error = $5, counts = $6, updated_at = $7, finished_at = $7, owner = NULL
         WHERE tenant_id = $1 AND id = $2 AND owner = $3 AND status = 'running'";
    pub(super) const RUN_LIST: &str =
        "SELECT * FROM sync_runs WHERE tenant_id = $1 AND source_id = $2 AND id < $3
         ORDER BY id DESC LIMIT $4";
    /// A page's records in one statement, each found through the unique index (the conflict
    /// arbiter: no plan to go wrong on a table whose statistics are stale): new ones inserted,
    /// changed ones rewritten, unchanged ones only marked seen (their data, hash and
    /// `changed_at` kept). A row whose `changed_at` is this page's time was written.
    pub(super) const RECORD_UPSERT: &str = "INSERT INTO sync_records (id, tenant_id, source_id, record_type, key, data, hash, first_seen_at, last_seen_at, changed_at, removed_at, last_run_id)
         SELECT r.id, $1, $2, $3, r.key, r.data::jsonb, r.hash, $7, $7, $7, NULL, $8
         FROM unnest($4::uuid[], $5::text[], $6::text[], $9::text[]) AS r (id, key, data, hash)
         ON CONFLICT (tenant_id, source_id, record_type, key) DO UPDATE SET
             data = CASE WHEN sync_records.hash <> excluded.hash OR sync_records.removed_at IS NOT NULL
                         THEN excluded.data ELSE sync_records.data END,
             changed_at = CASE WHEN sync_records.hash <> excluded.hash OR sync_records.removed_at IS NOT NULL
                         THEN excluded.changed_at ELSE sync_records.changed_at END,
             hash = excluded.hash, removed_at = NULL,
             last_seen_at = excluded.last_seen_at, last_run_id = excluded.last_run_id
         RETURNING changed_at = $7";
    pub(super) const RECORD_RECONCILE: &str =
        "UPDATE sync_records SET removed_at = $4, changed_at = $4
         WHERE tenant_id = $1 AND source_id = $2 AND removed_at IS NULL AND last_run_id <> $3";
    pub(super) const RECORD_LIST: &str = "SELECT * FROM sync_records WHERE tenant_id = $1 AND id > $2
             AND ($3::uuid IS NULL OR source_id = $3) AND ($4::text IS NULL OR record_type = $4) AND ($5::timestamptz IS NULL OR changed_at > $5)
         ORDER BY id LIMIT $6";
    pub(super) const QUARANTINE_INSERT: &str = "INSERT INTO sync_quarantine (id, tenant_id, source_id, run_id, page, item_index, key, reason, excerpt, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (run_id, page, item_index) DO NOTHING";
    pub(super) const QUARANTINE_LIST: &str =
        "SELECT * FROM sync_quarantine WHERE tenant_id = $1 AND source_id = $2 AND id > $3
         ORDER BY id LIMIT $4";
}

/// A page's records in one statement (arrays, `unnest`); (upserted, unchanged).
async fn write_records(
    conn: &mut sqlx::PgConnection,
    tenant: uuid::Uuid,
    p: &crate::sync::PageWrite<'_>,
    records: &[&crate::sync::RecordWrite],
) -> crate::StoreResult<(u64, u64)> {
    if records.is_empty() {
        return Ok((0, 0));
    }
    let ids: Vec<uuid::Uuid> = records.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let data: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    let hashes: Vec<&str> = records.iter().map(|r| r.hash.as_str()).collect();
    let written: Vec<bool> = sqlx::query_scalar(sql::RECORD_UPSERT)
        .bind(tenant)
        .bind(p.source_id)
        .bind(p.record_type)
        .bind(&ids)
        .bind(&keys)
        .bind(&data)
        .bind(db_time(p.at))
        .bind(p.run_id)
        .bind(&hashes)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
    let upserted = written.iter().filter(|w| **w).count() as u64;
    Ok((upserted, written.len() as u64 - upserted))
}

crate::sql::capabilities::sync_store!(PgStore);
