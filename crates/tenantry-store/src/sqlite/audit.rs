//! The audit log on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::audit_store`].

use super::{Intent, SqliteStore, db_time, err};

mod sql {
    pub(super) const LIST: &str = "SELECT id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id, trace_id, details
         FROM audit_log
         WHERE id < ?1 AND (?2 IS NULL OR tenant_id = ?2) AND (?3 IS NULL OR action = ?3)
           AND (?4 IS NULL OR occurred_at >= ?4) AND (?5 IS NULL OR occurred_at < ?5)
         ORDER BY id DESC LIMIT ?6";
}

crate::sql::capabilities::audit_store!(SqliteStore);
