//! Webhooks on SQLite: the statements, and the writes of the hot path (row by row, inside the
//! one writer's transaction); the Rust around them is written once, in
//! [`crate::sql::capabilities::webhook_store`].

use sqlx::SqliteConnection;

use super::{Intent, SqliteStore, db_time, err};
use crate::StoreResult;
use crate::webhooks::{AttemptResult, Claim, ClaimedMessage, NewMessage};

mod sql {
    /// (PostgreSQL relaxes the dispatcher's commits and plans; nothing to do here.)
    pub(super) const DISPATCH_SETTINGS: &[&str] = &[];
    /// Creations are serialised by the one writer already (the transaction began `IMMEDIATE`).
    pub(super) const SUB_LOCK: &str = "SELECT ?1 IS NOT NULL";
    pub(super) const SUB_COUNT: &str =
        "SELECT count(*) FROM webhook_subscriptions WHERE tenant_id = ?1";
    pub(super) const SUB_INSERT: &str = "INSERT INTO webhook_subscriptions (id, tenant_id, url, event_types, filter, description, enabled, disabled_reason, policy, rate_limit_per_minute, ordering, secrets, failing_since, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
    pub(super) const SUB_UPDATE: &str = "UPDATE webhook_subscriptions SET url = ?3, event_types = ?4, filter = ?5, description = ?6, enabled = ?7,
             disabled_reason = ?8, policy = ?9, rate_limit_per_minute = ?10, ordering = ?11, secrets = ?12, failing_since = ?13, updated_at = ?14
         WHERE tenant_id = ?2 AND id = ?1 AND updated_at = ?15";
    pub(super) const SUB_GET: &str =
        "SELECT * FROM webhook_subscriptions WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const SUB_LIST: &str =
        "SELECT * FROM webhook_subscriptions WHERE tenant_id = ?1 ORDER BY id";
    pub(super) const SUB_ENABLED: &str =
        "SELECT * FROM webhook_subscriptions WHERE enabled <> 0 ORDER BY id";
    pub(super) const SUB_FAILING: &str =
        "UPDATE webhook_subscriptions SET failing_since = ?2 WHERE id = ?1";
    pub(super) const SUB_DELETE_CHILDREN: [&str; 2] = [
        "DELETE FROM webhook_attempts WHERE tenant_id = ?1 AND subscription_id = ?2",
        "DELETE FROM webhook_messages WHERE tenant_id = ?1 AND subscription_id = ?2",
    ];
    pub(super) const SUB_DELETE: &str =
        "DELETE FROM webhook_subscriptions WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const SAVE_CURSOR: &str =
        "INSERT INTO event_cursors (name, position, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET position = MAX(event_cursors.position, excluded.position),
             updated_at = excluded.updated_at";
    pub(super) const ATTEMPT_LIST: &str =
        "SELECT * FROM webhook_attempts WHERE tenant_id = ?1 AND id < ?2
             AND (?3 IS NULL OR subscription_id = ?3) AND (?4 IS NULL OR outcome = ?4)
             AND (?5 IS NULL OR event_type = ?5)
             AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7)
         ORDER BY id DESC LIMIT ?8";
    pub(super) const MESSAGE_LIST: &str =
        "SELECT id, event_type, status, created_at FROM webhook_messages
         WHERE tenant_id = ?1 AND subscription_id = ?2 AND created_at >= ?3 AND created_at < ?4
           AND ((?5 IS NULL AND status <> 'pending') OR status = ?5)
         ORDER BY created_at, event_seq LIMIT ?6";
    pub(super) const RESCHEDULE: &str =
        "UPDATE webhook_messages SET status = 'pending', attempts = 0, first_attempt_at = NULL,
             next_attempt_at = ?3, last_error = NULL, updated_at = ?4
         WHERE tenant_id = ?1 AND id = ?2";
    pub(super) const STATS: &str = "SELECT
             (SELECT count(*) FROM webhook_messages WHERE status = 'pending') AS pending,
             (SELECT count(*) FROM webhook_messages WHERE status = 'dead') AS dead";
    pub(super) const PRUNE: [&str; 2] = [
        "DELETE FROM webhook_attempts WHERE id IN (
             SELECT a.id FROM webhook_attempts a JOIN tenants t ON t.id = a.tenant_id
             WHERE t.edition = ?1 AND a.at < ?2 LIMIT ?3)",
        "DELETE FROM webhook_messages WHERE id IN (
             SELECT m.id FROM webhook_messages m JOIN tenants t ON t.id = m.tenant_id
             WHERE t.edition = ?1 AND m.status <> 'pending' AND m.updated_at < ?2 LIMIT ?3)",
    ];
    pub(super) const INSERT_MESSAGE: &str = "INSERT INTO webhook_messages (id, tenant_id, subscription_id, event_id, event_seq, event_type, partition_key, body, trace_parent, status, attempts, next_attempt_at, first_attempt_at, last_error, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, NULL, NULL, ?10, ?10
         WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = ?3)
         ON CONFLICT DO NOTHING";
    pub(super) const DUE: &str = "SELECT m.id FROM webhook_messages m
         WHERE m.subscription_id = ?1 AND m.status = 'pending' AND m.next_attempt_at <= ?2
           AND (?3 = 0 OR NOT EXISTS (
               SELECT 1 FROM webhook_messages e
               WHERE e.subscription_id = m.subscription_id AND e.partition_key = m.partition_key
                 AND e.status = 'pending' AND e.event_seq < m.event_seq))
         ORDER BY m.next_attempt_at, m.event_seq LIMIT ?4";
    pub(super) const TAKE: &str = "UPDATE webhook_messages SET attempts = attempts + 1, next_attempt_at = ?2,
             first_attempt_at = COALESCE(first_attempt_at, ?3), updated_at = ?3
         WHERE id = ?1
         RETURNING id, tenant_id, subscription_id, event_type, partition_key, body, trace_parent, attempts, first_attempt_at";
    pub(super) const RECORD_MESSAGE: &str = "UPDATE webhook_messages SET status = ?2,
             next_attempt_at = COALESCE(?3, next_attempt_at), last_error = ?4, updated_at = ?5
         WHERE id = ?1";
    pub(super) const RECORD_ATTEMPT: &str = "INSERT INTO webhook_attempts (id, tenant_id, subscription_id, message_id, event_type, attempt, outcome, status_code, latency_ms, response, error, at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
         WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = ?3)";
}

pub(super) async fn insert_messages(
    conn: &mut SqliteConnection,
    messages: &[NewMessage],
) -> StoreResult<()> {
    for m in messages {
        sqlx::query(sql::INSERT_MESSAGE)
            .bind(m.id)
            .bind(m.tenant_id.as_uuid())
            .bind(m.subscription_id)
            .bind(m.event_id)
            .bind(m.event_seq)
            .bind(&m.event_type)
            .bind(&m.partition_key)
            .bind(&m.body)
            .bind(&m.trace_parent)
            .bind(db_time(m.at))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    Ok(())
}

pub(super) async fn claim_messages(
    conn: &mut SqliteConnection,
    claims: &[Claim],
    now: chrono::DateTime<chrono::Utc>,
    lease_until: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Vec<ClaimedMessage>> {
    use crate::sql::rows::Times;
    use sqlx::Row;
    let mut out = Vec::new();
    for c in claims {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(sql::DUE)
            .bind(c.subscription_id)
            .bind(db_time(now))
            .bind(c.per_key)
            .bind(i64::from(c.take))
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
        for id in ids {
            let row = sqlx::query(sql::TAKE)
                .bind(id)
                .bind(db_time(lease_until))
                .bind(db_time(now))
                .fetch_one(&mut *conn)
                .await
                .map_err(err)?;
            out.push(ClaimedMessage {
                id: row.try_get("id").map_err(err)?,
                tenant_id: tenantry_domain::TenantId::from_uuid(
                    row.try_get("tenant_id").map_err(err)?,
                ),
                subscription_id: row.try_get("subscription_id").map_err(err)?,
                event_type: row.try_get("event_type").map_err(err)?,
                partition_key: row.try_get("partition_key").map_err(err)?,
                body: row.try_get("body").map_err(err)?,
                trace_parent: row.try_get("trace_parent").map_err(err)?,
                attempt: u32::try_from(row.try_get::<i64, _>("attempts").map_err(err)?)
                    .unwrap_or(1),
                first_attempt_at: row.time("first_attempt_at").map_err(err)?,
            });
        }
    }
    Ok(out)
}

pub(super) async fn record_results(
    conn: &mut SqliteConnection,
    results: &[AttemptResult],
) -> StoreResult<()> {
    for r in results {
        sqlx::query(sql::RECORD_MESSAGE)
            .bind(r.message_id)
            .bind(r.outcome.message_status())
            .bind(r.next_attempt_at.map(db_time))
            .bind(&r.error)
            .bind(db_time(r.at))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        sqlx::query(sql::RECORD_ATTEMPT)
            .bind(r.id)
            .bind(r.tenant_id.as_uuid())
            .bind(r.subscription_id)
            .bind(r.message_id)
            .bind(&r.event_type)
            .bind(i64::from(r.attempt))
            .bind(r.outcome.as_str())
            .bind(r.status_code.map(i64::from))
            .bind(i64::from(r.latency_ms))
            .bind(&r.response)
            .bind(&r.error)
            .bind(db_time(r.at))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    Ok(())
}

crate::sql::capabilities::webhook_store!(SqliteStore);
