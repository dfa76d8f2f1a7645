//! Row decoding shared by both adapters. Both store the same Rust types (UUID, JSON, text,
//! integers) and every time at microsecond precision — PostgreSQL as `timestamptz`, SQLite as
//! integer microseconds since the epoch (migration 0005 made that the one SQLite encoding) —
//! so one decoder per record serves both, reading times through [`Times`]. Each is a macro
//! because sqlx rows of different drivers share no trait that carries the per-type bounds
//! conveniently.

use std::str::FromStr;

use tenantry_domain::{EditionKey, Region, Slug, TenantName};

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{StoreError, StoreResult};

/// Reads a time column as the backend stores it.
pub(crate) trait Times {
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
}

/// SQLite: integer microseconds since the Unix epoch.
impl Times for sqlx::sqlite::SqliteRow {
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        micros(column, self.try_get(column)?)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get::<Option<i64>, _>(column)?
            .map(|v| micros(column, v))
            .transpose()
    }
}

fn micros(column: &str, v: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("{v} is not a time in microseconds").into(),
    })
}

/// PostgreSQL: `timestamptz`.
impl Times for sqlx::postgres::PgRow {
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(column)
    }
}

pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| StoreError::corrupt(format!("{what} '{s}': {e}")))
}

pub(crate) fn parse_all<T: FromStr>(what: &str, items: Vec<String>) -> StoreResult<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    items.iter().map(|s| parse(what, s)).collect()
}

pub(crate) fn slug(s: String) -> StoreResult<Slug> {
    Slug::from_stored(&s).map_err(|e| StoreError::corrupt(format!("slug '{s}': {e}")))
}
pub(crate) fn name(s: String) -> StoreResult<TenantName> {
    TenantName::parse(&s).map_err(|e| StoreError::corrupt(format!("name: {e}")))
}
pub(crate) fn edition_key(s: String) -> StoreResult<EditionKey> {
    EditionKey::parse(&s).map_err(|e| StoreError::corrupt(format!("edition '{s}': {e}")))
}
pub(crate) fn region(s: Option<String>) -> StoreResult<Option<Region>> {
    s.map(|s| Region::parse(&s).map_err(|e| StoreError::corrupt(format!("region '{s}': {e}"))))
        .transpose()
}

/// The tenant column list, identical in both schemas (a macro so that `concat!` can use it).
macro_rules! tenant_columns {
    () => {
        "id, slug, name, status, edition, region, isolation, created_at, updated_at, deleted_at, purge_after, deleted_from, version"
    };
}

macro_rules! decode_tenant {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        Ok::<_, $crate::StoreError>(tenantry_domain::Tenant {
            id: tenantry_domain::TenantId::from_uuid(row.try_get("id").map_err(map)?),
            slug: $crate::sql::rows::slug(row.try_get("slug").map_err(map)?)?,
            name: $crate::sql::rows::name(row.try_get("name").map_err(map)?)?,
            status: $crate::sql::rows::parse(
                "status",
                &row.try_get::<String, _>("status").map_err(map)?,
            )?,
            edition: $crate::sql::rows::edition_key(row.try_get("edition").map_err(map)?)?,
            region: $crate::sql::rows::region(row.try_get("region").map_err(map)?)?,
            isolation: $crate::sql::rows::parse(
                "isolation",
                &row.try_get::<String, _>("isolation").map_err(map)?,
            )?,
            created_at: $crate::sql::rows::Times::time(row, "created_at").map_err(map)?,
            updated_at: $crate::sql::rows::Times::time(row, "updated_at").map_err(map)?,
            deleted_at: $crate::sql::rows::Times::opt_time(row, "deleted_at").map_err(map)?,
            purge_after: $crate::sql::rows::Times::opt_time(row, "purge_after").map_err(map)?,
            deleted_from: row
                .try_get::<Option<String>, _>("deleted_from")
                .map_err(map)?
                .map(|s| $crate::sql::rows::parse("deleted_from", &s))
                .transpose()?,
            version: row.try_get("version").map_err(map)?,
        })
    }};
}

macro_rules! decode_edition {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        let limits: sqlx::types::Json<tenantry_domain::EditionLimits> =
            row.try_get("limits").map_err(map)?;
        Ok::<_, $crate::StoreError>(tenantry_domain::Edition {
            key: $crate::sql::rows::edition_key(row.try_get("key").map_err(map)?)?,
            name: row.try_get("name").map_err(map)?,
            description: row.try_get("description").map_err(map)?,
            limits: limits.0,
            builtin: row.try_get("builtin").map_err(map)?,
            created_at: $crate::sql::rows::Times::time(row, "created_at").map_err(map)?,
        })
    }};
}

macro_rules! decode_api_key {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        Ok::<_, $crate::StoreError>($crate::ApiKeyRecord {
            id: tenantry_domain::ApiKeyId::from_uuid(row.try_get("id").map_err(map)?),
            kind: $crate::sql::rows::parse(
                "key kind",
                &row.try_get::<String, _>("kind").map_err(map)?,
            )?,
            lookup: row.try_get("lookup").map_err(map)?,
            secret_hash: row.try_get("secret_hash").map_err(map)?,
            name: row.try_get("name").map_err(map)?,
            tenant_id: row
                .try_get::<Option<uuid::Uuid>, _>("tenant_id")
                .map_err(map)?
                .map(tenantry_domain::TenantId::from_uuid),
            created_at: $crate::sql::rows::Times::time(row, "created_at").map_err(map)?,
            expires_at: $crate::sql::rows::Times::opt_time(row, "expires_at").map_err(map)?,
            revoked_at: $crate::sql::rows::Times::opt_time(row, "revoked_at").map_err(map)?,
            scopes: $crate::sql::rows::parse_all(
                "scope",
                row.try_get::<sqlx::types::Json<Vec<String>>, _>("scopes")
                    .map_err(map)?
                    .0,
            )?,
            roles: $crate::sql::rows::parse_all(
                "role",
                row.try_get::<sqlx::types::Json<Vec<String>>, _>("roles")
                    .map_err(map)?
                    .0,
            )?,
            rate_limit_per_minute: row
                .try_get::<Option<i32>, _>("rate_limit_per_minute")
                .map_err(map)?
                .map(|n| u32::try_from(n).map_err(|e| $crate::StoreError::corrupt(e)))
                .transpose()?,
            device_id: row.try_get("device_id").map_err(map)?,
            rotated_to: row
                .try_get::<Option<uuid::Uuid>, _>("rotated_to")
                .map_err(map)?
                .map(tenantry_domain::ApiKeyId::from_uuid),
            last_used_at: $crate::sql::rows::Times::opt_time(row, "last_used_at").map_err(map)?,
        })
    }};
}

/// The API key column list (a macro so that `concat!` can use it).
macro_rules! api_key_columns {
    () => {
        "id, kind, lookup, secret_hash, name, tenant_id, created_at, expires_at, revoked_at, scopes, roles, rate_limit_per_minute, device_id, rotated_to, last_used_at"
    };
}

macro_rules! decode_device {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        let metadata: sqlx::types::Json<serde_json::Value> =
            row.try_get("metadata").map_err(map)?;
        Ok::<_, $crate::StoreError>($crate::DeviceRecord {
            id: row.try_get("id").map_err(map)?,
            tenant_id: tenantry_domain::TenantId::from_uuid(row.try_get("tenant_id").map_err(map)?),
            device_id: row.try_get("device_id").map_err(map)?,
            name: row.try_get("name").map_err(map)?,
            metadata: metadata.0,
            created_at: $crate::sql::rows::Times::time(row, "created_at").map_err(map)?,
        })
    }};
}

/// A telemetry row (`seq`, `event_id`, `device_id`, `type`, `value`, `values`, `payload`,
/// `recorded_at`, `received_at`).
macro_rules! decode_telemetry {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        let values: sqlx::types::Json<std::collections::BTreeMap<String, f64>> =
            row.try_get("values").map_err(map)?;
        let payload: Option<sqlx::types::Json<serde_json::Value>> =
            row.try_get("payload").map_err(map)?;
        Ok::<_, $crate::StoreError>($crate::telemetry::StoredEvent {
            seq: row.try_get("seq").map_err(map)?,
            event: tenantry_domain::telemetry::TelemetryEvent {
                event_id: row.try_get("event_id").map_err(map)?,
                device_id: row.try_get("device_id").map_err(map)?,
                event_type: row.try_get("type").map_err(map)?,
                value: row.try_get("value").map_err(map)?,
                values: values.0,
                payload: payload.and_then(|p| match p.0 {
                    serde_json::Value::Object(m) => Some(m),
                    _ => None,
                }),
                recorded_at: $crate::sql::rows::Times::time(row, "recorded_at").map_err(map)?,
            },
            received_at: $crate::sql::rows::Times::time(row, "received_at").map_err(map)?,
        })
    }};
}

/// A stats row (`bucket` as a time, `n`, `lo`, `hi`, `mean`, `last`).
macro_rules! decode_bucket {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        Ok::<_, $crate::StoreError>($crate::telemetry::BucketStats {
            start: $crate::sql::rows::Times::time(row, "bucket").map_err(map)?,
            count: row.try_get("n").map_err(map)?,
            min: row.try_get("lo").map_err(map)?,
            max: row.try_get("hi").map_err(map)?,
            avg: row.try_get("mean").map_err(map)?,
            last: row.try_get("last").map_err(map)?,
        })
    }};
}

macro_rules! decode_audit {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        let details: sqlx::types::Json<serde_json::Value> = row.try_get("details").map_err(map)?;
        Ok::<_, $crate::StoreError>(tenantry_domain::AuditRecord {
            id: tenantry_domain::AuditId::from_uuid(row.try_get("id").map_err(map)?),
            occurred_at: $crate::sql::rows::Times::time(row, "occurred_at").map_err(map)?,
            actor: tenantry_domain::Actor {
                kind: $crate::sql::rows::parse(
                    "actor kind",
                    &row.try_get::<String, _>("actor_kind").map_err(map)?,
                )?,
                id: row.try_get("actor_id").map_err(map)?,
            },
            action: row.try_get("action").map_err(map)?,
            resource_type: row.try_get("resource_type").map_err(map)?,
            resource_id: row.try_get("resource_id").map_err(map)?,
            tenant_id: row
                .try_get::<Option<uuid::Uuid>, _>("tenant_id")
                .map_err(map)?
                .map(tenantry_domain::TenantId::from_uuid),
            trace_id: row.try_get("trace_id").map_err(map)?,
            details: details.0,
        })
    }};
}

macro_rules! decode_event {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        let data: sqlx::types::Json<serde_json::Value> = row.try_get("data").map_err(map)?;
        Ok::<_, $crate::StoreError>(tenantry_domain::EventEnvelope {
            id: tenantry_domain::EventId::from_uuid(row.try_get("id").map_err(map)?),
            event_type: row.try_get("event_type").map_err(map)?,
            source: row.try_get("source").map_err(map)?,
            time: $crate::sql::rows::Times::time(row, "time").map_err(map)?,
            tenant_id: row
                .try_get::<Option<uuid::Uuid>, _>("tenant_id")
                .map_err(map)?
                .map(tenantry_domain::TenantId::from_uuid),
            edition: row
                .try_get::<Option<String>, _>("edition")
                .map_err(map)?
                .map($crate::sql::rows::edition_key)
                .transpose()?,
            trace_id: row.try_get("trace_id").map_err(map)?,
            schema_version: u32::try_from(row.try_get::<i32, _>("schema_version").map_err(map)?)
                .map_err(|e| $crate::StoreError::corrupt(e))?,
            key: row.try_get("key").map_err(map)?,
            data: data.0,
        })
    }};
}

macro_rules! decode_idempotency {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        let row = $row;
        let map = $map;
        let headers: sqlx::types::Json<Vec<(String, String)>> =
            row.try_get("headers").map_err(map)?;
        Ok::<_, $crate::StoreError>($crate::IdempotencyRecord {
            scope: row.try_get("scope").map_err(map)?,
            key: row.try_get("key").map_err(map)?,
            request_hash: row.try_get("request_hash").map_err(map)?,
            status: u16::try_from(row.try_get::<i32, _>("status").map_err(map)?)
                .map_err(|e| $crate::StoreError::corrupt(e))?,
            headers: headers.0,
            body: row.try_get("body").map_err(map)?,
            created_at: $crate::sql::rows::Times::time(row, "created_at").map_err(map)?,
            expires_at: $crate::sql::rows::Times::time(row, "expires_at").map_err(map)?,
        })
    }};
}

/// A job row (the columns of [`crate::jobs::job_columns`], or `*`).
macro_rules! decode_job {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        use $crate::sql::rows::Times;
        let row = $row;
        let map = $map;
        let state: String = row.try_get("state").map_err(map)?;
        let errors: sqlx::types::Json<Vec<tenantry_domain::job::AttemptError>> =
            row.try_get("errors").map_err(map)?;
        Ok::<_, $crate::StoreError>($crate::jobs::JobRecord {
            id: row.try_get("id").map_err(map)?,
            queue: row.try_get("queue").map_err(map)?,
            kind: row.try_get("kind").map_err(map)?,
            tenant_id: row
                .try_get::<Option<uuid::Uuid>, _>("tenant_id")
                .map_err(map)?
                .map(tenantry_domain::TenantId::from_uuid),
            unique_key: row.try_get("unique_key").map_err(map)?,
            payload: row
                .try_get::<sqlx::types::Json<serde_json::Value>, _>("payload")
                .map_err(map)?
                .0,
            priority: row.try_get("priority").map_err(map)?,
            state: $crate::sql::rows::parse("job state", &state)?,
            attempt: u32::try_from(row.try_get::<i32, _>("attempt").map_err(map)?).unwrap_or(0),
            max_attempts: u32::try_from(row.try_get::<i32, _>("max_attempts").map_err(map)?)
                .unwrap_or(0),
            run_at: row.time("run_at").map_err(map)?,
            lease: std::time::Duration::from_millis(
                u64::try_from(row.try_get::<i64, _>("lease_ms").map_err(map)?).unwrap_or(0),
            ),
            lease_owner: row.try_get("lease_owner").map_err(map)?,
            lease_expires_at: row.opt_time("lease_expires_at").map_err(map)?,
            heartbeat_at: row.opt_time("heartbeat_at").map_err(map)?,
            cancel_requested: row.try_get("cancel_requested").map_err(map)?,
            checkpoint: row
                .try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>("checkpoint")
                .map_err(map)?
                .map(|j| j.0),
            errors: errors.0,
            created_at: row.time("created_at").map_err(map)?,
            attempted_at: row.opt_time("attempted_at").map_err(map)?,
            finished_at: row.opt_time("finished_at").map_err(map)?,
            trace_parent: row.try_get("trace_parent").map_err(map)?,
        })
    }};
}

/// A schedule row (`*` of `schedules`).
macro_rules! decode_schedule {
    ($row:expr, $map:expr) => {{
        use sqlx::Row;
        use $crate::sql::rows::Times;
        let row = $row;
        let map = $map;
        Ok::<_, $crate::StoreError>($crate::schedules::ScheduleRecord {
            name: row.try_get("name").map_err(map)?,
            tenant_id: row
                .try_get::<Option<uuid::Uuid>, _>("tenant_id")
                .map_err(map)?
                .map(tenantry_domain::TenantId::from_uuid),
            cron: row.try_get("cron").map_err(map)?,
            interval_ms: row.try_get("interval_ms").map_err(map)?,
            kind: row.try_get("kind").map_err(map)?,
            payload: row
                .try_get::<sqlx::types::Json<serde_json::Value>, _>("payload")
                .map_err(map)?
                .0,
            enabled: row.try_get("enabled").map_err(map)?,
            next_fire_at: row.opt_time("next_fire_at").map_err(map)?,
            last_fired_at: row.opt_time("last_fired_at").map_err(map)?,
            created_at: row.time("created_at").map_err(map)?,
            updated_at: row.time("updated_at").map_err(map)?,
        })
    }};
}

pub(crate) use {
    api_key_columns, decode_api_key, decode_audit, decode_bucket, decode_device, decode_edition,
    decode_event, decode_idempotency, decode_job, decode_schedule, decode_telemetry, decode_tenant,
    tenant_columns,
};
