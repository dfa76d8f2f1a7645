//! Editions on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::edition_store`].

use super::{Intent, SqliteStore, db_time, err};

mod sql {
    pub(super) const LIST: &str = "SELECT key, name, description, limits, builtin, created_at FROM editions ORDER BY builtin DESC, created_at, key";
    pub(super) const GET: &str =
        "SELECT key, name, description, limits, builtin, created_at FROM editions WHERE key = ?1";
    pub(super) const INSERT: &str = "INSERT INTO editions (key, name, description, limits, builtin, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
}

crate::sql::capabilities::edition_store!(SqliteStore);
