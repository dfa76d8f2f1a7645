//! Versioned migrations, one list per backend, embedded in the binary. sqlx records them in
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
                include_str!(concat!("../migrations/", $dir, "/", $name, ".sql")).into_sql_str(),
                false,
            )
        ),+]
    };
}

pub(crate) fn sqlite() -> Migrator {
    Migrator::with_migrations(
        migrations!("sqlite": 1 => "0001_init", 2 => "0002_access", 3 => "0003_jobs"),
    )
}

pub(crate) fn postgres() -> Migrator {
    Migrator::with_migrations(
        migrations!("postgres": 1 => "0001_init", 2 => "0002_access", 3 => "0003_jobs", 4 => "0004_jobs_hot_path"),
    )
}

/// The newest version a migrator knows.
pub(crate) fn latest(m: &Migrator) -> i64 {
    m.iter().map(|m| m.version).max().unwrap_or(0)
}
