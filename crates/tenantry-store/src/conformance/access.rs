//! Conformance cases: The access port: keys and devices, fenced by the tenant scope.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use chrono::{Duration, Utc};
use serde_json::json;
use tenantry_domain::api_key::KeyKind;
use tenantry_domain::{ApiKeyId, PageRequest, TenantScope};

use super::{changes_for, new_tenant, now};
use crate::{ApiKeyRecord, Changes, Constraint, DeviceRecord, Store, StoreError};

pub(crate) async fn two_tenants(store: &dyn Store) -> (TenantScope, TenantScope) {
    let mut scopes = Vec::new();
    for slug in ["fence-a", "fence-b"] {
        let t = new_tenant(slug);
        store
            .tenants()
            .insert(&t, &changes_for(&t, "created"))
            .await
            .unwrap();
        scopes.push(TenantScope::system(t.id, t.edition.clone(), "conformance"));
    }
    let b = scopes.pop().unwrap();
    (scopes.pop().unwrap(), b)
}

pub(crate) fn tenant_key(scope: &TenantScope, lookup: &str, device: Option<&str>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: ApiKeyId::new(),
        kind: if device.is_some() {
            KeyKind::Device
        } else {
            KeyKind::TenantSecret
        },
        lookup: lookup.into(),
        secret_hash: vec![1; 32],
        name: "k".into(),
        tenant_id: Some(scope.tenant_id()),
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        scopes: vec![tenantry_domain::Scope::TelemetryWrite],
        roles: vec![tenantry_domain::Role::Member],
        rate_limit_per_minute: Some(30),
        device_id: device.map(str::to_owned),
        rotated_to: None,
        last_used_at: None,
    }
}

pub async fn api_keys_are_found_by_lookup(store: &dyn Store) {
    let key = |lookup: &str, expires: Option<chrono::DateTime<Utc>>, revoked: bool| ApiKeyRecord {
        id: ApiKeyId::new(),
        kind: KeyKind::Operator,
        lookup: lookup.into(),
        secret_hash: vec![7; 32],
        name: "ops".into(),
        tenant_id: None,
        created_at: now(),
        expires_at: expires,
        revoked_at: revoked.then(now),
        scopes: vec![],
        roles: vec![tenantry_domain::Role::Operator],
        rate_limit_per_minute: None,
        device_id: None,
        rotated_to: None,
        last_used_at: None,
    };
    assert_eq!(
        store
            .access()
            .count_active_operator_keys(now())
            .await
            .unwrap(),
        0
    );
    let live = key("tnt_op_aaaaaaaaaaaa", None, false);
    store
        .access()
        .insert_operator_key(&live, &Changes::default())
        .await
        .unwrap();
    store
        .access()
        .insert_operator_key(
            &key(
                "tnt_op_bbbbbbbbbbbb",
                Some(now() - Duration::seconds(1)),
                false,
            ),
            &Changes::default(),
        )
        .await
        .unwrap();
    store
        .access()
        .insert_operator_key(&key("tnt_op_cccccccccccc", None, true), &Changes::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .access()
            .count_active_operator_keys(now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .access()
            .find_key("tnt_op_aaaaaaaaaaaa")
            .await
            .unwrap(),
        Some(live.clone())
    );
    assert_eq!(
        store
            .access()
            .find_key("tnt_op_zzzzzzzzzzzz")
            .await
            .unwrap(),
        None
    );
    let err = store
        .access()
        .insert_operator_key(
            &key("tnt_op_aaaaaaaaaaaa", None, false),
            &Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::ApiKeyLookup)),
        "{err:?}"
    );
}

pub async fn tenant_keys_are_fenced_by_scope(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let key = tenant_key(&a, "tnt_sk_aaaaaaaaaaa1", None);
    store
        .access()
        .insert_tenant_key(&a, &key, &Changes::default())
        .await
        .unwrap();
    assert_eq!(
        store.access().get_tenant_key(&a, key.id).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store
            .access()
            .list_tenant_keys(&a, PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![key.clone()]
    );
    // nothing of A's shows through B, and B cannot change it
    assert_eq!(
        store.access().get_tenant_key(&b, key.id).await.unwrap(),
        None
    );
    assert!(
        store
            .access()
            .list_tenant_keys(&b, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        store
            .access()
            .revoke_tenant_key(&b, key.id, now(), &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
    let stolen = tenant_key(&b, "tnt_sk_bbbbbbbbbbb1", None);
    assert!(matches!(
        store
            .access()
            .rotate_tenant_key(&b, key.id, now(), &stolen, &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .access()
            .insert_tenant_key(&b, &key, &Changes::default())
            .await
            .is_err(),
        "a record of A through B's scope"
    );

    // rotation: the successor exists, the old key expires at the end of the grace period
    let successor = tenant_key(&a, "tnt_sk_aaaaaaaaaaa2", None);
    let grace_end = now() + Duration::hours(24);
    store
        .access()
        .rotate_tenant_key(&a, key.id, grace_end, &successor, &Changes::default())
        .await
        .unwrap();
    let old = store
        .access()
        .get_tenant_key(&a, key.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (old.expires_at, old.rotated_to),
        (Some(grace_end), Some(successor.id))
    );
    assert!(
        matches!(
            store
                .access()
                .rotate_tenant_key(
                    &a,
                    key.id,
                    grace_end,
                    &tenant_key(&a, "tnt_sk_aaaaaaaaaaa3", None),
                    &Changes::default()
                )
                .await,
            Err(StoreError::NotFound)
        ),
        "a key rotates once"
    );
    store
        .access()
        .revoke_tenant_key(&a, successor.id, now(), &Changes::default())
        .await
        .unwrap();
    assert!(
        store
            .access()
            .find_key("tnt_sk_aaaaaaaaaaa2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store
            .access()
            .revoke_tenant_key(&a, successor.id, now(), &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn devices_are_fenced_by_scope(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let device = |scope: &TenantScope| DeviceRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id: scope.tenant_id(),
        device_id: "sensor-1".into(),
        name: Some("Sensor".into()),
        metadata: json!({"floor": 3}),
        created_at: now(),
    };
    let (da, db) = (device(&a), device(&b));
    store
        .access()
        .insert_device(
            &a,
            &da,
            &tenant_key(&a, "tnt_dk_aaaaaaaaaaa1", Some("sensor-1")),
            &Changes::default(),
        )
        .await
        .unwrap();
    // the same device id in another tenant is another device
    store
        .access()
        .insert_device(
            &b,
            &db,
            &tenant_key(&b, "tnt_dk_bbbbbbbbbbb1", Some("sensor-1")),
            &Changes::default(),
        )
        .await
        .unwrap();
    let again = DeviceRecord {
        id: uuid::Uuid::now_v7(),
        ..da.clone()
    };
    let err = store
        .access()
        .insert_device(
            &a,
            &again,
            &tenant_key(&a, "tnt_dk_aaaaaaaaaaa2", Some("sensor-1")),
            &Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::DeviceId)),
        "{err:?}"
    );
    assert!(
        store
            .access()
            .find_key("tnt_dk_aaaaaaaaaaa2")
            .await
            .unwrap()
            .is_none(),
        "the failed registration left no key"
    );

    assert_eq!(
        store.access().get_device(&a, "sensor-1").await.unwrap(),
        Some(da.clone())
    );
    assert_eq!(
        store
            .access()
            .list_devices(&b, PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![db.clone()]
    );
    store
        .access()
        .delete_device(&a, "sensor-1", now(), &Changes::default())
        .await
        .unwrap();
    assert_eq!(
        store.access().get_device(&a, "sensor-1").await.unwrap(),
        None
    );
    assert!(
        store
            .access()
            .find_key("tnt_dk_aaaaaaaaaaa1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "its keys are revoked"
    );
    assert!(
        store
            .access()
            .find_key("tnt_dk_bbbbbbbbbbb1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none(),
        "B's device is untouched"
    );
    assert_eq!(
        store.access().get_device(&b, "sensor-1").await.unwrap(),
        Some(db)
    );
    assert!(matches!(
        store
            .access()
            .delete_device(&a, "sensor-1", now(), &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
}
