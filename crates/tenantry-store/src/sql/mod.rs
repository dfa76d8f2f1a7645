//! What both adapters share that is not SQL text: row decoding ([`rows`]), record binding
//! ([`binds`]), migrations, enqueue coalescing, paging and readiness. SQL text stays per backend
//! (ADR 0001); the Rust around it is written once here.

pub(crate) mod binds;
pub(crate) mod capabilities;
pub(crate) mod enqueue_batch;
pub(crate) mod migrations;
pub(crate) mod rows;
pub(crate) mod tenant_jobs;
pub(crate) mod timing;

use chrono::Utc;
use tenantry_domain::{Edition, PageRequest};
use uuid::Uuid;

use crate::{StoreError, StoreResult};

/// What a transaction is for. On SQLite a write waits for the one writer slot and begins
/// `IMMEDIATE`; PostgreSQL opens both alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    Read,
    Write,
}

/// The first id after which a page in id order starts (nil: from the beginning).
pub(crate) fn after(page: &PageRequest) -> Uuid {
    page.after.map_or(Uuid::nil(), |c| c.0)
}

/// The id before which a page in reverse id order starts (max: from the newest).
pub(crate) fn before(page: &PageRequest) -> Uuid {
    page.after.map_or(Uuid::max(), |c| c.0)
}

/// Ready when the newest applied migration is the newest this binary knows.
pub(crate) fn readiness(have: Option<i64>, want: i64) -> StoreResult<()> {
    if have == Some(want) {
        Ok(())
    } else {
        Err(StoreError::NotMigrated { have, want })
    }
}

/// The built-in editions to seed, in tier order, each created strictly after the one before.
pub(crate) fn builtin_editions() -> Vec<Edition> {
    let base = tenantry_domain::clock::to_stored_precision(Utc::now());
    Edition::defaults(base)
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.created_at = base + chrono::Duration::microseconds(i as i64);
            e
        })
        .collect()
}
