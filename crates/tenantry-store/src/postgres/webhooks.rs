//! Webhooks on PostgreSQL: the statements, and the batch writes (arrays, `unnest`) of the hot
//! path; the Rust around them is written once, in [`crate::sql::capabilities::webhook_store`]
//! (tenant data through `PgStore::tenant_tx`, under row-level security; the dispatcher's claims
//! and records through the platform's transaction).

use sqlx::PgConnection;

use super::{Intent, PgStore, db_time, err};
use crate::StoreResult;
use crate::webhooks::{AttemptResult, Claim, ClaimedMessage, NewMessage};

mod sql {
    /// The dispatcher's transactions need not wait for the WAL flush: each is atomic, and one
    /// lost to a database crash is redone (a fan-out from its cursor, with the same message ids;
    /// a claim or an outcome by sending again, with the same `webhook-id`) — at least once holds.
    /// And each of their statements is planned for its arrays: a cached generic plan can walk
    /// every pending message once per subscription or outcome (seen: 150 deliveries/s).
    pub(super) const DISPATCH_SETTINGS: &[&str] = &[
        "SET LOCAL synchronous_commit = off",
        "SET LOCAL plan_cache_mode = force_custom_plan",
    ];
    /// Serialises creations of one tenant's subscriptions (the count and the insert).
    pub(super) const SUB_LOCK: &str =
        "SELECT pg_advisory_xact_lock(hashtextextended('webhook_subscriptions:' || $1::text, 0))";
    pub(super) const SUB_COUNT: &str =
        "SELECT count(*) FROM webhook_subscriptions WHERE tenant_id = $1";
    pub(super) const SUB_INSERT: &str = "INSERT INTO webhook_subscriptions (id, tenant_id, url, event_types, filter, description, enabled, disabled_reason, policy, rate_limit_per_minute, ordering, secrets, failing_since, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    pub(super) const SUB_UPDATE: &str = "UPDATE webhook_subscriptions SET url = $3, event_types = $4, filter = $5, description = $6, enabled = $7,
             disabled_reason = $8, policy = $9, rate_limit_per_minute = $10, ordering = $11, secrets = $12, failing_since = $13, updated_at = $14
         WHERE tenant_id = $2 AND id = $1 AND updated_at = $15";
    pub(super) const SUB_GET: &str =
        "SELECT * FROM webhook_subscriptions WHERE tenant_id = $1 AND id = $2";
    pub(super) const SUB_LIST: &str =
        "SELECT * FROM webhook_subscriptions WHERE tenant_id = $1 ORDER BY id";
    pub(super) const SUB_ENABLED: &str =
        "SELECT * FROM webhook_subscriptions WHERE enabled ORDER BY id";
    pub(super) const SUB_FAILING: &str =
        "UPDATE webhook_subscriptions SET failing_since = $2 WHERE id = $1";
    pub(super) const SUB_DELETE_CHILDREN: [&str; 2] = [
        "DELETE FROM webhook_attempts WHERE tenant_id = $1 AND subscription_id = $2",
        "DELETE FROM webhook_messages WHERE tenant_id = $1 AND subscription_id = $2",
    ];
    pub(super) const SUB_DELETE: &str =
        "DELETE FROM webhook_subscriptions WHERE tenant_id = $1 AND id = $2";
    pub(super) const SAVE_CURSOR: &str = "INSERT INTO event_cursors (name, position, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET position = GREATEST(event_cursors.position, excluded.position),
             updated_at = excluded.updated_at";
    pub(super) const ATTEMPT_LIST: &str =
        "SELECT * FROM webhook_attempts WHERE tenant_id = $1 AND id < $2
             AND ($3::uuid IS NULL OR subscription_id = $3) AND ($4::text IS NULL OR outcome = $4)
             AND ($5::text IS NULL OR event_type = $5)
             AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at < $7)
         ORDER BY id DESC LIMIT $8";
    pub(super) const MESSAGE_LIST: &str =
        "SELECT id, event_type, status, created_at FROM webhook_messages
         WHERE tenant_id = $1 AND subscription_id = $2 AND created_at >= $3 AND created_at < $4
           AND (($5::text IS NULL AND status <> 'pending') OR status = $5)
         ORDER BY created_at, event_seq LIMIT $6";
    pub(super) const RESCHEDULE: &str =
        "UPDATE webhook_messages SET status = 'pending', attempts = 0, first_attempt_at = NULL,
             next_attempt_at = $3, last_error = NULL, updated_at = $4
         WHERE tenant_id = $1 AND id = $2";
    pub(super) const STATS: &str = "SELECT
             (SELECT count(*) FROM webhook_messages WHERE status = 'pending') AS pending,
             (SELECT count(*) FROM webhook_messages WHERE status = 'dead') AS dead";
    pub(super) const PRUNE: [&str; 2] = [
        "DELETE FROM webhook_attempts WHERE id IN (
             SELECT a.id FROM webhook_attempts a JOIN tenants t ON t.id = a.tenant_id
             WHERE t.edition = $1 AND a.at < $2 LIMIT $3)",
        "DELETE FROM webhook_messages WHERE id IN (
             SELECT m.id FROM webhook_messages m JOIN tenants t ON t.id = m.tenant_id
             WHERE t.edition = $1 AND m.status <> 'pending' AND m.updated_at < $2 LIMIT $3)",
    ];
    pub(super) const INSERT_MESSAGES: &str = "INSERT INTO webhook_messages (id, tenant_id, subscription_id, event_id, event_seq, event_type, partition_key, body, trace_parent, status, attempts, next_attempt_at, first_attempt_at, last_error, created_at, updated_at)
         SELECT r.id, r.tenant_id, r.sub, r.event_id, r.seq, r.type, r.key, r.body, r.tp, 'pending', 0, r.at, NULL, NULL, r.at, r.at
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
             AS r (id, tenant_id, sub, event_id, seq, type, key, body, tp, at)
         WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = r.sub)
         ON CONFLICT DO NOTHING";
    /// Per subscription, its oldest due messages (for per-key ordering: only those with no
    /// older pending message of their key), through the due index; claimed by moving their next
    /// attempt to the lease.
    pub(super) const CLAIM: &str = "WITH picked AS (
             SELECT p.id FROM unnest($1::uuid[], $2::int[], $3::bool[]) AS c (sub, take, per_key)
             CROSS JOIN LATERAL (
                 SELECT m.id FROM webhook_messages m
                 WHERE m.subscription_id = c.sub AND m.status = 'pending' AND m.next_attempt_at <= $4
                   AND (NOT c.per_key OR NOT EXISTS (
                       SELECT 1 FROM webhook_messages e
                       WHERE e.subscription_id = m.subscription_id AND e.partition_key = m.partition_key
                         AND e.status = 'pending' AND e.event_seq < m.event_seq))
                 ORDER BY m.next_attempt_at, m.event_seq LIMIT c.take) p)
         UPDATE webhook_messages w SET attempts = w.attempts + 1, next_attempt_at = $5,
             first_attempt_at = COALESCE(w.first_attempt_at, $4), updated_at = $4
         FROM picked WHERE w.id = picked.id
         RETURNING w.id, w.tenant_id, w.subscription_id, w.event_type, w.partition_key, w.body, w.trace_parent, w.attempts, w.first_attempt_at";
    /// Joined by primary key only: a status predicate here lets the planner walk the partial
    /// index of pending messages once per outcome (seconds per batch on a backlog).
    pub(super) const RECORD_MESSAGES: &str = "UPDATE webhook_messages w SET status = r.status,
             next_attempt_at = COALESCE(r.next_at, w.next_attempt_at), last_error = r.error, updated_at = r.at
         FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[]) AS r (id, status, next_at, error, at)
         WHERE w.id = r.id";
    pub(super) const RECORD_ATTEMPTS: &str = "INSERT INTO webhook_attempts (id, tenant_id, subscription_id, message_id, event_type, attempt, outcome, status_code, latency_ms, response, error, at)
         SELECT r.* FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[], $7::text[], $8::int[], $9::int[], $10::text[], $11::text[], $12::timestamptz[])
             AS r (id, tenant_id, subscription_id, message_id, event_type, attempt, outcome, status_code, latency_ms, response, error, at)
         WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = r.subscription_id)";
}

/// One column of a batch, as the array its `unnest` takes.
fn col<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(f).collect()
}

pub(super) async fn insert_messages(
    conn: &mut PgConnection,
    messages: &[NewMessage],
) -> StoreResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    sqlx::query(sql::INSERT_MESSAGES)
        .bind(col(messages, |m| m.id))
        .bind(col(messages, |m| *m.tenant_id.as_uuid()))
        .bind(col(messages, |m| m.subscription_id))
        .bind(col(messages, |m| m.event_id))
        .bind(col(messages, |m| m.event_seq))
        .bind(col(messages, |m| m.event_type.as_str()))
        .bind(col(messages, |m| m.partition_key.as_str()))
        .bind(col(messages, |m| m.body.as_str()))
        .bind(col(messages, |m| m.trace_parent.as_deref()))
        .bind(col(messages, |m| db_time(m.at)))
        .execute(conn)
        .await
        .map_err(err)?;
    Ok(())
}

pub(super) async fn claim_messages(
    conn: &mut PgConnection,
    claims: &[Claim],
    now: chrono::DateTime<chrono::Utc>,
    lease_until: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Vec<ClaimedMessage>> {
    use crate::sql::rows::Times;
    use sqlx::Row;
    let rows = sqlx::query(sql::CLAIM)
        .bind(col(claims, |c| c.subscription_id))
        .bind(col(claims, |c| i32::try_from(c.take).unwrap_or(i32::MAX)))
        .bind(col(claims, |c| c.per_key))
        .bind(db_time(now))
        .bind(db_time(lease_until))
        .fetch_all(conn)
        .await
        .map_err(err)?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedMessage {
                id: row.try_get("id").map_err(err)?,
                tenant_id: tenantry_domain::TenantId::from_uuid(
                    row.try_get("tenant_id").map_err(err)?,
                ),
                subscription_id: row.try_get("subscription_id").map_err(err)?,
                event_type: row.try_get("event_type").map_err(err)?,
                partition_key: row.try_get("partition_key").map_err(err)?,
                body: row.try_get("body").map_err(err)?,
                trace_parent: row.try_get("trace_parent").map_err(err)?,
                attempt: u32::try_from(row.try_get::<i32, _>("attempts").map_err(err)?)
                    .unwrap_or(1),
                first_attempt_at: row.time("first_attempt_at").map_err(err)?,
            })
        })
        .collect()
}

pub(super) async fn record_results(
    conn: &mut PgConnection,
    results: &[AttemptResult],
) -> StoreResult<()> {
    if results.is_empty() {
        return Ok(());
    }
    sqlx::query(sql::RECORD_MESSAGES)
        .bind(col(results, |r| r.message_id))
        .bind(col(results, |r| r.outcome.message_status()))
        .bind(col(results, |r| r.next_attempt_at.map(db_time)))
        .bind(col(results, |r| r.error.as_deref()))
        .bind(col(results, |r| db_time(r.at)))
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    sqlx::query(sql::RECORD_ATTEMPTS)
        .bind(col(results, |r| r.id))
        .bind(col(results, |r| *r.tenant_id.as_uuid()))
        .bind(col(results, |r| r.subscription_id))
        .bind(col(results, |r| r.message_id))
        .bind(col(results, |r| r.event_type.as_str()))
        .bind(col(results, |r| {
            i32::try_from(r.attempt).unwrap_or(i32::MAX)
        }))
        .bind(col(results, |r| r.outcome.as_str()))
        .bind(col(results, |r| r.status_code.map(i32::from)))
        .bind(col(results, |r| {
            i32::try_from(r.latency_ms).unwrap_or(i32::MAX)
        }))
        .bind(col(results, |r| r.response.as_deref()))
        .bind(col(results, |r| r.error.as_deref()))
        .bind(col(results, |r| db_time(r.at)))
        .execute(conn)
        .await
        .map_err(err)?;
    Ok(())
}

crate::sql::capabilities::webhook_store!(PgStore);
