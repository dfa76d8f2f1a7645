//! The event log on PostgreSQL (ADR 0023): the statements; the Rust around them is written once,
//! in [`crate::sql::capabilities::event_store`]. The sequencer's lock is the row lock on the
//! log's head: one sequencer at a time across every instance, each statement after it seeing
//! every event committed before it got the lock.

use std::sync::Arc;

use sqlx::PgConnection;

use super::{Intent, PgStore, Tx, db_time, err};
use crate::StoreResult;

/// `NOTIFY` channel of committed events (sent inside the writing transaction: delivered on commit).
pub(super) const CHANNEL: &str = "tenantry_events";

pub(super) async fn notify(conn: &mut PgConnection) -> StoreResult<()> {
    super::notify_channel(conn, CHANNEL).await
}

impl PgStore {
    fn events_signal(&self) -> Arc<tokio::sync::Notify> {
        self.events_listener_started
            .call_once(|| self.spawn_listener(CHANNEL, &self.events));
        Arc::clone(&self.events)
    }
}

mod sql {
    pub(super) const HEAD_LOCK: &str =
        "SELECT position FROM event_cursors WHERE name = 'log_head' FOR UPDATE";
    /// The batch's ids as an array joined back by primary key: a join with the set itself
    /// would be hashed over the whole outbox (a scan per batch).
    pub(super) const SEQUENCE: &str = "WITH next AS (
             SELECT array_agg(id ORDER BY id) AS ids FROM (
                 SELECT id FROM outbox WHERE seq IS NULL ORDER BY id LIMIT $2) batch)
         UPDATE outbox SET seq = $1 + u.n
         FROM next, unnest(next.ids) WITH ORDINALITY AS u(id, n)
         WHERE outbox.id = u.id";
    pub(super) const SET_HEAD: &str =
        "UPDATE event_cursors SET position = $1, updated_at = $2 WHERE name = 'log_head'";
    pub(super) const READ_AFTER: &str = "SELECT seq, id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data
         FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2";
    pub(super) const LIST_TENANT: &str = "SELECT seq, id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data
         FROM outbox
         WHERE tenant_id = $2 AND seq > $1
           AND ($3::text IS NULL OR event_type = $3) AND ($4::text IS NULL OR event_type LIKE $4 ESCAPE '\\')
           AND ($5::text IS NULL OR key = $5)
           AND ($6::timestamptz IS NULL OR time >= $6) AND ($7::timestamptz IS NULL OR time < $7)
         ORDER BY seq LIMIT $8";
    pub(super) const LIST_PLATFORM: &str = "SELECT seq, id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data
         FROM outbox
         WHERE $2::uuid IS NULL AND tenant_id IS NULL AND seq > $1
           AND ($3::text IS NULL OR event_type = $3) AND ($4::text IS NULL OR event_type LIKE $4 ESCAPE '\\')
           AND ($5::text IS NULL OR key = $5)
           AND ($6::timestamptz IS NULL OR time >= $6) AND ($7::timestamptz IS NULL OR time < $7)
         ORDER BY seq LIMIT $8";
    pub(super) const POSITION: &str =
        "SELECT seq FROM outbox WHERE id = $1 AND tenant_id = $2 AND seq IS NOT NULL";
    pub(super) const CURSOR: &str = "SELECT position FROM event_cursors WHERE name = $1";
    pub(super) const SAVE_CURSOR: &str = "INSERT INTO event_cursors (name, position, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET position = GREATEST(event_cursors.position, excluded.position),
             updated_at = excluded.updated_at";
    pub(super) const STATS: &str = "SELECT
             (SELECT position FROM event_cursors WHERE name = 'log_head') AS head,
             (SELECT count(*) FROM outbox WHERE seq IS NULL) AS unsequenced,
             (SELECT time FROM outbox WHERE seq IS NULL ORDER BY id LIMIT 1) AS oldest";
    pub(super) const PRUNE_EDITION: &str = "DELETE FROM outbox WHERE id IN (
             SELECT o.id FROM outbox o JOIN tenants t ON t.id = o.tenant_id
             WHERE t.edition = $1 AND o.seq <= $2 AND o.time < $3 ORDER BY o.seq LIMIT $4)";
    pub(super) const PRUNE_PLATFORM: &str = "DELETE FROM outbox WHERE id IN (
             SELECT o.id FROM outbox o
             WHERE o.seq <= $1 AND o.time < $2
               AND (o.tenant_id IS NULL OR NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = o.tenant_id))
             ORDER BY o.seq LIMIT $3)";
}

crate::sql::capabilities::event_store!(PgStore);
