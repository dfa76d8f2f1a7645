//! Binding records to statements, shared by both adapters: each macro binds a record's fields in
//! the column order of the statement both adapters spell in their own SQL (`INSERT INTO t (…)
//! VALUES (?1 …)` on SQLite, `($1 …)` on PostgreSQL). Macros, like the row decoders in
//! [`rows`](super::rows), because sqlx's per-driver bounds do not fit one generic function well.
//! Times are bound through `db_time`, the adapter's encoding, which must be in scope where a
//! macro is expanded.

/// `(id, slug, name, status, edition, region, isolation, created_at, updated_at, deleted_at,
/// purge_after, deleted_from, version)`
macro_rules! bind_tenant {
    ($q:expr, $t:expr) => {{
        let t = $t;
        $q.bind(t.id.as_uuid())
            .bind(t.slug.as_str())
            .bind(t.name.as_str())
            .bind(t.status.as_str())
            .bind(t.edition.as_str())
            .bind(t.region.as_ref().map(|r| r.as_str()))
            .bind(t.isolation.as_str())
            .bind(db_time(t.created_at))
            .bind(db_time(t.updated_at))
            .bind(t.deleted_at.map(db_time))
            .bind(t.purge_after.map(db_time))
            .bind(t.deleted_from.map(|s| s.as_str()))
            .bind(t.version)
    }};
}

/// `UPDATE tenants SET name = 2, status = 3, edition = 4, region = 5, updated_at = 6,
/// deleted_at = 7, purge_after = 8, deleted_from = 9, version = 10 WHERE id = 1 AND version = 11`
macro_rules! bind_tenant_update {
    ($q:expr, $t:expr, $expected:expr) => {{
        let t = $t;
        $q.bind(t.id.as_uuid())
            .bind(t.name.as_str())
            .bind(t.status.as_str())
            .bind(t.edition.as_str())
            .bind(t.region.as_ref().map(|r| r.as_str()))
            .bind(db_time(t.updated_at))
            .bind(t.deleted_at.map(db_time))
            .bind(t.purge_after.map(db_time))
            .bind(t.deleted_from.map(|s| s.as_str()))
            .bind(t.version)
            .bind($expected)
    }};
}

/// `(key, name, description, limits, builtin, created_at)`
macro_rules! bind_edition {
    ($q:expr, $e:expr) => {{
        let e = $e;
        $q.bind(e.key.as_str())
            .bind(&e.name)
            .bind(&e.description)
            .bind(sqlx::types::Json(&e.limits))
            .bind(e.builtin)
            .bind(db_time(e.created_at))
    }};
}

/// `(id, kind, lookup, secret_hash, name, tenant_id, created_at, expires_at, revoked_at, scopes,
/// roles, rate_limit_per_minute, device_id, rotated_to)`
macro_rules! bind_api_key {
    ($q:expr, $k:expr) => {{
        let k = $k;
        $q.bind(k.id.as_uuid())
            .bind(k.kind.as_str())
            .bind(&k.lookup)
            .bind(&k.secret_hash)
            .bind(&k.name)
            .bind(k.tenant_id.map(uuid::Uuid::from))
            .bind(db_time(k.created_at))
            .bind(k.expires_at.map(db_time))
            .bind(k.revoked_at.map(db_time))
            .bind(sqlx::types::Json(
                k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ))
            .bind(sqlx::types::Json(
                k.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            ))
            .bind(
                k.rate_limit_per_minute
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            )
            .bind(&k.device_id)
            .bind(k.rotated_to.map(uuid::Uuid::from))
    }};
}

/// `(id, tenant_id, device_id, name, metadata, created_at)`
macro_rules! bind_device {
    ($q:expr, $d:expr) => {{
        let d = $d;
        $q.bind(d.id)
            .bind(d.tenant_id.as_uuid())
            .bind(&d.device_id)
            .bind(&d.name)
            .bind(sqlx::types::Json(&d.metadata))
            .bind(db_time(d.created_at))
    }};
}

/// `(name, tenant_id, cron, interval_ms, kind, payload, enabled, next_fire_at, last_fired_at,
/// created_at, updated_at)`: a schedule's `UPSERT` (the schedules' own, and a sync source's
/// schedule written with the source)
macro_rules! bind_schedule {
    ($q:expr, $s:expr) => {{
        let sc = $s;
        $q.bind(&sc.name)
            .bind(sc.tenant_id.map(uuid::Uuid::from))
            .bind(&sc.cron)
            .bind(sc.interval_ms)
            .bind(&sc.kind)
            .bind(sqlx::types::Json(&sc.payload))
            .bind(sc.enabled)
            .bind(sc.next_fire_at.map(db_time))
            .bind(sc.last_fired_at.map(db_time))
            .bind(db_time(sc.created_at))
            .bind(db_time(sc.updated_at))
    }};
}

/// `(scope, key, request_hash, status, headers, body, created_at, expires_at)`
macro_rules! bind_idempotency {
    ($q:expr, $r:expr) => {{
        let r = $r;
        $q.bind(&r.scope)
            .bind(&r.key)
            .bind(&r.request_hash)
            .bind(i32::from(r.status))
            .bind(sqlx::types::Json(&r.headers))
            .bind(&r.body)
            .bind(db_time(r.created_at))
            .bind(db_time(r.expires_at))
    }};
}

/// `(id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, tenant_id,
/// trace_id, details)`
macro_rules! bind_audit {
    ($q:expr, $a:expr) => {{
        let a = $a;
        $q.bind(a.id.as_uuid())
            .bind(db_time(a.occurred_at))
            .bind(a.actor.kind.as_str())
            .bind(&a.actor.id)
            .bind(&a.action)
            .bind(&a.resource_type)
            .bind(&a.resource_id)
            .bind(a.tenant_id.map(uuid::Uuid::from))
            .bind(&a.trace_id)
            .bind(sqlx::types::Json(&a.details))
    }};
}

/// `(id, event_type, source, time, tenant_id, edition, trace_id, schema_version, key, data)`
macro_rules! bind_event {
    ($q:expr, $e:expr) => {{
        let e = $e;
        $q.bind(e.id.as_uuid())
            .bind(&e.event_type)
            .bind(&e.source)
            .bind(db_time(e.time))
            .bind(e.tenant_id.map(uuid::Uuid::from))
            .bind(e.edition.as_ref().map(tenantry_domain::EditionKey::as_str))
            .bind(&e.trace_id)
            .bind(i64::from(e.schema_version))
            .bind(&e.key)
            .bind(sqlx::types::Json(&e.data))
    }};
}

/// The unit-of-work writer for the records every change carries: the idempotency record (first,
/// so a duplicate key fails the whole change), then audit records and outbox events. `$sql` is
/// the adapter's module of statements; `$err` its error classifier.
macro_rules! write_records {
    ($conn:expr, $changes:expr, $sql:path, $err:expr) => {{
        use $sql as sql;
        let conn = $conn;
        let changes = $changes;
        if let Some(r) = &changes.idempotency {
            sqlx::query(sql::IDEMPOTENCY_EXPIRE)
                .bind(&r.scope)
                .bind(&r.key)
                .bind(db_time(r.created_at))
                .execute(&mut *conn)
                .await
                .map_err($err)?;
            $crate::sql::binds::bind_idempotency!(sqlx::query(sql::IDEMPOTENCY_INSERT), r)
                .execute(&mut *conn)
                .await
                .map_err($err)?;
        }
        for a in &changes.audit {
            $crate::sql::binds::bind_audit!(sqlx::query(sql::AUDIT_INSERT), a)
                .execute(&mut *conn)
                .await
                .map_err($err)?;
        }
        for e in &changes.events {
            $crate::sql::binds::bind_event!(sqlx::query(sql::OUTBOX_INSERT), e)
                .execute(&mut *conn)
                .await
                .map_err($err)?;
        }
        Ok::<(), $crate::StoreError>(())
    }};
}

pub(crate) use {
    bind_api_key, bind_audit, bind_device, bind_edition, bind_event, bind_idempotency,
    bind_schedule, bind_tenant, bind_tenant_update, write_records,
};
