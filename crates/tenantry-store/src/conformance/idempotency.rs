//! Conformance cases: The idempotency port, and the unit of work that writes it.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use chrono::{Duration, Utc};
use tenantry_domain::TenantRef;

use super::{changes_for, new_tenant, now};
use crate::{Constraint, IdempotencyRecord, Store, StoreError};

pub async fn idempotency_records_guard_the_write(store: &dyn Store) {
    let record = |hash: &str, created: chrono::DateTime<Utc>| IdempotencyRecord {
        scope: "op:key1:POST /v1/tenants".into(),
        key: "abc".into(),
        request_hash: hash.into(),
        status: 201,
        headers: vec![("location".into(), "/v1/tenants/x".into())],
        body: "{\"id\":\"x\"}".into(),
        created_at: created,
        expires_at: created + Duration::hours(24),
    };
    let t = new_tenant("idem-one");
    let mut changes = changes_for(&t, "created");
    changes.idempotency = Some(record("h1", now()));
    store.tenants().insert(&t, &changes).await.unwrap();
    let found = store
        .idempotency()
        .find("op:key1:POST /v1/tenants", "abc", now())
        .await
        .unwrap();
    assert_eq!(found, changes.idempotency.clone());
    assert_eq!(
        store
            .idempotency()
            .find("op:other:POST /v1/tenants", "abc", now())
            .await
            .unwrap(),
        None
    );

    // the same key again fails the whole write: no second tenant
    let t2 = new_tenant("idem-two");
    let mut again = changes_for(&t2, "created");
    again.idempotency = Some(record("h1", now()));
    let err = store.tenants().insert(&t2, &again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::IdempotencyKey)),
        "{err:?}"
    );
    assert_eq!(
        store.tenants().get(&TenantRef::Id(t2.id)).await.unwrap(),
        None
    );

    // after expiry the key is free again, and purging removes what expired
    let later = now() + Duration::hours(25);
    assert_eq!(
        store
            .idempotency()
            .find("op:key1:POST /v1/tenants", "abc", later)
            .await
            .unwrap(),
        None
    );
    again.idempotency = Some(record("h2", later));
    store
        .tenants()
        .insert(&t2, &again)
        .await
        .expect("expired key is reusable");
    assert_eq!(
        store
            .idempotency()
            .purge(later + Duration::hours(25))
            .await
            .unwrap(),
        1
    );
}
