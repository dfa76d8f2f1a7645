//! API keys and devices on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::access_store`] (tenant data through `SqliteStore::tenant_tx`).

use super::{Intent, SqliteStore, db_time, err};

mod sql {
    use crate::sql::rows::api_key_columns;

    pub(super) const INSERT_KEY: &str = "INSERT INTO api_keys (id, kind, lookup, secret_hash, name, tenant_id, created_at, expires_at, revoked_at,
                                   scopes, roles, rate_limit_per_minute, device_id, rotated_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
    pub(super) const FIND_KEY: &str = concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE lookup = ?1"
    );
    pub(super) const TOUCH_KEY: &str = "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1";
    pub(super) const COUNT_OPERATOR_KEYS: &str = "SELECT COUNT(*) FROM api_keys WHERE kind = 'operator' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)";
    pub(super) const LIST_TENANT_KEYS: &str = concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    );
    pub(super) const GET_TENANT_KEY: &str = concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE tenant_id = ?1 AND id = ?2"
    );
    pub(super) const REVOKE_TENANT_KEY: &str = "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL";
    pub(super) const ROTATE_TENANT_KEY: &str = "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > ?3 THEN ?3 ELSE expires_at END, rotated_to = ?4
             WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL AND rotated_to IS NULL";
    pub(super) const INSERT_DEVICE: &str = "INSERT INTO devices (id, tenant_id, device_id, name, metadata, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub(super) const LIST_DEVICES: &str =
        "SELECT id, tenant_id, device_id, name, metadata, created_at FROM devices
             WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
    pub(super) const GET_DEVICE: &str = "SELECT id, tenant_id, device_id, name, metadata, created_at FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
    pub(super) const REVOKE_DEVICE_KEYS: &str = "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND device_id = ?2 AND revoked_at IS NULL";
    pub(super) const DELETE_DEVICE: &str =
        "DELETE FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
}

crate::sql::capabilities::access_store!(SqliteStore, sqlx::SqliteConnection);
