//! Schedules on SQLite: the statements and the row decoder; the Rust around them is written
//! once, in [`crate::sql::capabilities::schedule_store`].

use sqlx::sqlite::SqliteRow;

use super::jobs::{insert_jobs, tenant_clause};
use super::{Intent, SqliteStore, db_time, err};
use crate::StoreResult;
use crate::schedules::ScheduleRecord;

pub(super) mod sql {
    pub(in crate::sqlite) const UPSERT: &str = "INSERT INTO schedules (name, tenant_id, cron, interval_ms, kind, payload, enabled, next_fire_at, last_fired_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id, cron = excluded.cron,
                 interval_ms = excluded.interval_ms, kind = excluded.kind, payload = excluded.payload,
                 enabled = excluded.enabled, next_fire_at = excluded.next_fire_at,
                 updated_at = excluded.updated_at";
    pub(super) const GET: &str =
        "SELECT * FROM schedules WHERE name = ?1 AND (?2 IS NULL OR tenant_id = ?2)";
    pub(super) const LIST: &str =
        "SELECT * FROM schedules WHERE (?1 IS NULL OR tenant_id = ?1) ORDER BY name";
    pub(in crate::sqlite) const DELETE: &str =
        "DELETE FROM schedules WHERE name = ?1 AND (?2 IS NULL OR tenant_id = ?2)";
    pub(super) const DUE: &str = "SELECT * FROM schedules WHERE enabled = 1 AND next_fire_at <= ?1
             AND (tenant_id IS NULL OR EXISTS (SELECT 1 FROM tenants t WHERE t.id = schedules.tenant_id AND t.status = 'active'))
         ORDER BY next_fire_at LIMIT ?2";
    pub(super) const RESCHEDULE: &str =
        "UPDATE schedules SET next_fire_at = ?3 WHERE name = ?1 AND next_fire_at = ?2";
    pub(super) const FIRE: &str = "UPDATE schedules SET next_fire_at = ?3, last_fired_at = ?2
             WHERE name = ?1 AND next_fire_at = ?2 AND enabled = 1";
}

crate::sql::capabilities::schedule_store!(SqliteStore);

fn decode_schedule(row: &SqliteRow) -> StoreResult<ScheduleRecord> {
    crate::sql::rows::decode_schedule!(row, err)
}
