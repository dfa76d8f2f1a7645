//! Idempotency records (read side and purge) on PostgreSQL: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::idempotency_store`].

use super::{PgStore, db_time, err};

mod sql {
    pub(super) const FIND: &str =
        "SELECT scope, key, request_hash, status, headers, body, created_at, expires_at
         FROM idempotency_keys WHERE scope = $1 AND key = $2 AND expires_at > $3";
    pub(super) const PURGE: &str = "DELETE FROM idempotency_keys WHERE expires_at <= $1";
}

crate::sql::capabilities::idempotency_store!(PgStore);
