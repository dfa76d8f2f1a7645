//! The job console on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::job_console`] (every method through `SqliteStore::scoped_tx`).

use super::jobs::{decode, finish_unique, requeue_all, retake_unique_all, tenant_clause};
use super::{Intent, SqliteStore, db_time, err};

mod sql {
    use crate::jobs::job_columns;

    pub(super) const GET: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
    );
    pub(super) const LIST: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs
         WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR state = ?2)
           AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5"
    );
    pub(super) const LOCK_JOB: &str = GET;
    pub(super) const CANCEL: &str =
        "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1";
    pub(super) const REQUEST_CANCEL: &str = "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1";
    pub(super) const LOCK_STATE: &str =
        "SELECT state FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)";
    pub(super) const RETRY: &str =
        "UPDATE jobs SET state = 'available', attempt = 0, run_at = ?2, finished_at = NULL,
             cancel_requested = 0, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1";
    pub(super) const REPLAY_SELECT: &str = "SELECT id FROM jobs
         WHERE (state = 'dead' OR (?6 AND state = 'cancelled')) AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR kind = ?2)
           AND (?3 IS NULL OR finished_at >= ?3) AND (?4 IS NULL OR finished_at < ?4)
           AND (?5 IS NULL OR json_extract(errors, '$[#-1].kind') = ?5)";
}

crate::sql::capabilities::job_console!(SqliteStore);
