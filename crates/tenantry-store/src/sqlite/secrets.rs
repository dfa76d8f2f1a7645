//! Platform secrets on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::secret_store`].

use super::{Intent, SqliteStore, err};

mod sql {
    pub(super) const INSERT_IF_ABSENT: &str =
        "INSERT INTO platform_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
    pub(super) const SELECT: &str = "SELECT value FROM platform_secrets WHERE name = ?1";
}

crate::sql::capabilities::secret_store!(SqliteStore);
