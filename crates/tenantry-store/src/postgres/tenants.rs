//! Tenants on PostgreSQL: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::tenant_store`].

use super::{Intent, PgStore, db_time, err};

mod sql {
    use crate::sql::rows::tenant_columns;

    pub(super) const INSERT: &str = "INSERT INTO tenants (id, slug, name, status, edition, region, isolation, created_at, updated_at, deleted_at, purge_after, deleted_from, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    pub(super) const UPDATE: &str = "UPDATE tenants SET name = $2, status = $3, edition = $4, region = $5, updated_at = $6, deleted_at = $7,
                purge_after = $8, deleted_from = $9, version = $10
         WHERE id = $1 AND version = $11";
    pub(super) const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)";
    pub(super) const BY_ID: &str =
        concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");
    pub(super) const BY_SLUG: &str = concat!(
        "SELECT ",
        tenant_columns!(),
        " FROM tenants WHERE slug = $1"
    );
    pub(super) const LIST: &str = concat!(
        "SELECT ",
        tenant_columns!(),
        " FROM tenants WHERE id > $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR edition = $3) ORDER BY id LIMIT $4"
    );
}

crate::sql::capabilities::tenant_store!(PgStore);
