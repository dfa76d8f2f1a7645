//! PostgreSQL row-level security: the database itself refuses cross-tenant access, even to a
//! query that forgets its tenant filter.

#![allow(clippy::unwrap_used)]

use sqlx::{Connection, Executor, PgConnection, Row};
use tenantry_domain::{EditionKey, TenantScope};
use tenantry_store::testing;

#[tokio::test]
async fn tenant_rows_are_invisible_without_the_tenant_setting() {
    let Some(ts) = testing::postgres().await else {
        return testing::skip_notice("tenant_rows_are_invisible_without_the_tenant_setting");
    };
    // two tenants with a device each, written through the store
    let mut ids = Vec::new();
    for slug in ["rls-a", "rls-b"] {
        let t = tenantry_domain::Tenant::new(
            tenantry_domain::TenantId::new(),
            tenantry_domain::Slug::parse(slug).unwrap(),
            tenantry_domain::TenantName::parse(slug).unwrap(),
            EditionKey::free(),
            None,
            tenantry_domain::Isolation::Pooled,
            chrono::Utc::now(),
        );
        ts.tenants().insert(&t, &Default::default()).await.unwrap();
        let scope = TenantScope::system(t.id, EditionKey::free(), "rls test");
        let device = tenantry_store::DeviceRecord {
            id: uuid::Uuid::now_v7(),
            tenant_id: t.id,
            device_id: format!("{slug}-device"),
            name: None,
            metadata: serde_json::json!({}),
            created_at: chrono::Utc::now(),
        };
        let key = tenantry_store::ApiKeyRecord {
            id: tenantry_domain::ApiKeyId::new(),
            kind: tenantry_domain::KeyKind::Device,
            lookup: format!("tnt_dk_{slug}xxxxxxx"),
            secret_hash: vec![0; 32],
            name: "d".into(),
            tenant_id: Some(t.id),
            created_at: chrono::Utc::now(),
            expires_at: None,
            revoked_at: None,
            scopes: vec![],
            roles: vec![],
            rate_limit_per_minute: None,
            device_id: Some(device.device_id.clone()),
            rotated_to: None,
            last_used_at: None,
        };
        ts.access()
            .insert_device(&scope, &device, &key, &Default::default())
            .await
            .unwrap();
        ids.push(t.id);
    }

    // a raw connection working as the application role, with no tenant setting
    let mut conn = PgConnection::connect(&ts.url).await.unwrap();
    conn.execute("SET ROLE tenantry_app").await.unwrap();
    for table in ["devices", "api_keys", "audit_log", "outbox"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} must show nothing without tenantry.tenant_id");
    }
    // with tenant A's setting: A's rows only, even with no WHERE clause at all
    sqlx::query("SELECT set_config('tenantry.tenant_id', $1, false)")
        .bind(ids[0].to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT device_id FROM devices")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get("device_id")).collect();
    assert_eq!(names, ["rls-a-device"]);
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        keys, 1,
        "A's device key only: no operator keys, nothing of B"
    );
    // and A's context cannot write B's rows
    let err = sqlx::query("INSERT INTO devices (id, tenant_id, device_id, metadata, created_at) VALUES ($1, $2, 'smuggled', '{}', now())")
        .bind(uuid::Uuid::now_v7())
        .bind(ids[1].as_uuid())
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    let updated = sqlx::query("UPDATE devices SET name = 'hijacked' WHERE tenant_id = $1")
        .bind(ids[1].as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    // the role the application works as is neither superuser nor owner
    let row = sqlx::query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!row.get::<bool, _>("rolsuper"));
    conn.close().await.unwrap();
}
