//! Tenant footprints on SQLite: the statements; the Rust around them is written once, in
//! [`crate::sql::capabilities::usage_store`].

use super::{Intent, SqliteStore, db_time, err};

/// The columns summed for each tenant table (a test fails when a table has a column that is not
/// listed here, so a new column is counted as soon as it exists).
const COUNTED: &[(&str, &[&str])] = &[
    (
        "api_keys",
        &[
            "id",
            "kind",
            "lookup",
            "secret_hash",
            "name",
            "tenant_id",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "scopes",
            "roles",
            "rate_limit_per_minute",
            "device_id",
            "rotated_to",
        ],
    ),
    (
        "devices",
        &[
            "id",
            "tenant_id",
            "device_id",
            "name",
            "metadata",
            "created_at",
        ],
    ),
    (
        "audit_log",
        &[
            "id",
            "occurred_at",
            "actor_kind",
            "actor_id",
            "action",
            "resource_type",
            "resource_id",
            "tenant_id",
            "trace_id",
            "details",
        ],
    ),
    (
        "outbox",
        &[
            "id",
            "event_type",
            "source",
            "time",
            "tenant_id",
            "edition",
            "trace_id",
            "schema_version",
            "key",
            "data",
            "dispatched_at",
            "seq",
        ],
    ),
    (
        "jobs",
        &[
            "id",
            "queue",
            "kind",
            "tenant_id",
            "lane",
            "fair_key",
            "unique_key",
            "unique_window_ms",
            "payload",
            "priority",
            "state",
            "attempt",
            "max_attempts",
            "run_at",
            "lease_ms",
            "retry_base_ms",
            "retry_cap_ms",
            "lease_owner",
            "lease_expires_at",
            "heartbeat_at",
            "cancel_requested",
            "checkpoint",
            "errors",
            "created_at",
            "attempted_at",
            "finished_at",
            "trace_parent",
        ],
    ),
    (
        "schedules",
        &[
            "name",
            "tenant_id",
            "cron",
            "interval_ms",
            "kind",
            "payload",
            "enabled",
            "next_fire_at",
            "last_fired_at",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "telemetry_events",
        &[
            "tenant_id",
            "event_id",
            "device_id",
            "type",
            "value",
            "values",
            "payload",
            "recorded_at",
            "received_at",
        ],
    ),
];

mod sql {
    pub(super) const ACTIVE_DEVICES: &str = "SELECT COUNT(DISTINCT device_id) FROM api_keys
         WHERE tenant_id = ?1 AND device_id IS NOT NULL AND revoked_at IS NULL AND last_used_at >= ?2";
    /// The length of each stored value, summed over the tenant's tables (see `COUNTED`).
    pub(super) fn storage_bytes() -> &'static str {
        STORAGE_BYTES.as_str()
    }
    static STORAGE_BYTES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let sums: Vec<String> = super::COUNTED
            .iter()
            .map(|(table, columns)| {
                let lengths: Vec<String> = columns
                    .iter()
                    .map(|c| format!("COALESCE(LENGTH(CAST(\"{c}\" AS BLOB)), 0)"))
                    .collect();
                format!(
                    "(SELECT COALESCE(SUM({}), 0) FROM {table} WHERE tenant_id = ?1)",
                    lengths.join(" + ")
                )
            })
            .collect();
        format!("SELECT {}", sums.join(" + "))
    });
}

crate::sql::capabilities::usage_store!(SqliteStore);

#[cfg(test)]
mod tests {
    /// Every column of every counted table is listed in `COUNTED`.
    #[tokio::test]
    async fn every_column_of_a_tenant_table_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = super::SqliteStore::connect(&url, &Default::default())
            .await
            .unwrap();
        crate::Store::migrate(&store).await.unwrap();
        let pool = &store.pool;
        for (table, columns) in super::COUNTED {
            let actual: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(pool)
            .await
            .unwrap();
            let listed: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
            assert_eq!(actual, listed, "{table}: list its columns in COUNTED");
        }
    }
}
