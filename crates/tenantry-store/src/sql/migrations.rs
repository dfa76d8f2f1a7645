//! Versioned migrations, one list per backend, embedded in the binary (a test fails when a file
//! in `migrations/` is missing from a list, or when the backends disagree on a version). sqlx records them in
//! `_sqlx_migrations` and (on PostgreSQL) holds an advisory lock while applying them, so replicas
//! that start together apply each version exactly once.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),+ $(,)?) => {
        vec![$(
            Migration::new(
                $version,
                $name.into(),
                MigrationType::Simple,
                include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql")).into_sql_str(),
                false,
            )
        ),+]
    };
}

pub(crate) fn sqlite() -> Migrator {
    Migrator::with_migrations(
        migrations!("sqlite": 1 => "0001_init", 2 => "0002_access", 3 => "0003_jobs", 4 => "0004_jobs_hot_path", 5 => "0005_one_time_encoding", 6 => "0006_schedule_interval_limit", 7 => "0007_platform_secrets", 8 => "0008_job_trace_context", 9 => "0009_telemetry_scopes", 10 => "0010_telemetry", 11 => "0011_telemetry_retention", 12 => "0012_sync", 13 => "0013_event_log", 14 => "0014_webhooks"),
    )
}

pub(crate) fn postgres() -> Migrator {
    Migrator::with_migrations(
        migrations!("postgres": 1 => "0001_init", 2 => "0002_access", 3 => "0003_jobs", 4 => "0004_jobs_hot_path", 5 => "0005_one_time_encoding", 6 => "0006_schedule_interval_limit", 7 => "0007_platform_secrets", 8 => "0008_job_trace_context", 9 => "0009_telemetry_scopes", 10 => "0010_telemetry", 11 => "0011_telemetry_retention", 12 => "0012_sync", 13 => "0013_event_log", 14 => "0014_webhooks"),
    )
}

/// The newest version a migrator knows.
pub(crate) fn latest(m: &Migrator) -> i64 {
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest successfully applied version (both backends keep sqlx's table).
pub(crate) const NEWEST_APPLIED: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

/// The versions of `m` that were not applied before this run.
pub(crate) fn applied_now(m: &Migrator, before: &[i64]) -> Vec<i64> {
    m.iter()
        .map(|m| m.version)
        .filter(|v| !before.contains(v))
        .collect()
}

/// A failed readiness query: no migrations table yet means "not migrated", anything else is the
/// database's own error.
pub(crate) fn not_migrated_or(
    e: sqlx::Error,
    want: i64,
    err: fn(sqlx::Error) -> crate::StoreError,
) -> crate::StoreError {
    match e {
        sqlx::Error::Database(_) => crate::StoreError::NotMigrated { have: None, want },
        e => err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `NNNN_name.sql` file in a backend's folder, as (version, name).
    fn files(dir: &str) -> BTreeSet<(i64, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        std::fs::read_dir(&path)
            .expect("migrations folder")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".sql")?.to_owned();
                let version = stem.split('_').next()?.parse().ok()?;
                Some((version, stem))
            })
            .collect()
    }

    fn listed(m: &super::Migrator) -> BTreeSet<(i64, String)> {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect()
    }

    /// A migration file that is not in the embedded list would never run: fail instead.
    #[test]
    fn every_migration_file_is_embedded() {
        assert_eq!(listed(&super::sqlite()), files("sqlite"));
        assert_eq!(listed(&super::postgres()), files("postgres"));
    }

    /// Both backends know the same versions under the same names, so a schema version means the
    /// same step everywhere (a step one backend does not need is a commented no-op there).
    #[test]
    fn both_backends_have_the_same_versions() {
        assert_eq!(files("sqlite"), files("postgres"));
    }
}

/// Migration 0009 renames the device-telemetry scopes of stored keys, on both backends.
#[cfg(test)]
mod telemetry_scopes {
    use sqlx::Connection as _;
    use sqlx::migrate::Migrator;

    const BEFORE: &str = r#"["tenants:read","events:write","audit:read","events:read"]"#;
    const AFTER: [&str; 4] = [
        "tenants:read",
        "telemetry:write",
        "audit:read",
        "telemetry:read",
    ];

    fn up_to(m: Migrator, version: i64) -> Migrator {
        Migrator::with_migrations(m.iter().filter(|m| m.version <= version).cloned().collect())
    }

    #[tokio::test]
    async fn sqlite_keys_get_the_telemetry_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        up_to(super::sqlite(), 8).run(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, kind, lookup, secret_hash, name, created_at, scopes)
             VALUES (?1, 'tenant_secret', 'tnt_sk_migrate009', x'00', 'k', 0, ?2)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(BEFORE)
        .execute(&mut conn)
        .await
        .unwrap();
        super::sqlite().run(&mut conn).await.unwrap();
        let scopes: String =
            sqlx::query_scalar("SELECT scopes FROM api_keys WHERE lookup = 'tnt_sk_migrate009'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let scopes: Vec<String> = serde_json::from_str(&scopes).unwrap();
        assert_eq!(scopes, AFTER);
    }

    #[tokio::test]
    async fn postgres_keys_get_the_telemetry_scopes() {
        let Some(db) = crate::testing::PgTestDatabase::create().await else {
            return crate::testing::skip_notice("postgres_keys_get_the_telemetry_scopes");
        };
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        up_to(super::postgres(), 8).run(&mut conn).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('tenantry.scope', 'system', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, kind, lookup, secret_hash, name, created_at, scopes)
             VALUES ($1, 'tenant_secret', 'tnt_sk_migrate009', decode('00', 'hex'), 'k', now(), $2::jsonb)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(BEFORE)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        super::postgres().run(&mut conn).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('tenantry.scope', 'system', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let scopes: serde_json::Value =
            sqlx::query_scalar("SELECT scopes FROM api_keys WHERE lookup = 'tnt_sk_migrate009'")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(scopes, serde_json::json!(AFTER));
    }
}
