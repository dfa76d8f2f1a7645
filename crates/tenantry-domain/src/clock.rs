//! Time values as the platform stores them: UTC, microsecond precision (what PostgreSQL keeps),
//! so that a value reads back equal on every backend.

use chrono::{DateTime, SubsecRound, Utc};

pub fn to_stored_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}
