//! Singleton leases on SQLite (platform data): the statements; the Rust around them is
//! written once, in [`crate::sql::capabilities::lease_store`].

use super::{Intent, SqliteStore, db_time, err};

mod sql {
    pub(super) const ACQUIRE: &str = "INSERT INTO worker_leases (name, owner, expires_at, acquired_at) VALUES (?1, ?2, ?4, ?3)
             ON CONFLICT (name) DO UPDATE SET
                 acquired_at = CASE WHEN worker_leases.owner = excluded.owner THEN worker_leases.acquired_at ELSE excluded.acquired_at END,
                 owner = excluded.owner, expires_at = excluded.expires_at
             WHERE worker_leases.owner = excluded.owner OR worker_leases.expires_at < ?3";
    pub(super) const HOLDER: &str =
        "SELECT owner FROM worker_leases WHERE name = ?1 AND expires_at > ?2";
    pub(super) const RELEASE: &str = "DELETE FROM worker_leases WHERE name = ?1 AND owner = ?2";
}

crate::sql::capabilities::lease_store!(SqliteStore);
