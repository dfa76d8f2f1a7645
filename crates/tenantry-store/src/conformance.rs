//! The store conformance suite: every case runs against every adapter.
//!
//! Each case is a plain async function over `&dyn Store`. [`conformance_suite!`](crate::conformance_suite)
//! turns the list into one `#[tokio::test]` per case in the calling module, given an expression
//! that yields a fresh [`TestStore`](crate::testing::TestStore) (or `None` to skip).

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use chrono::{Duration, Utc};
use serde_json::json;
use tenantry_domain::api_key::KeyKind;
use tenantry_domain::clock::to_stored_precision;
use tenantry_domain::tenant::TenantPatch;
use tenantry_domain::{
    Actor, ApiKeyId, AuditId, AuditRecord, Edition, EditionKey, EventEnvelope, Isolation,
    PageRequest, Slug, Tenant, TenantId, TenantName, TenantRef, TenantScope, TenantStatus,
};

use crate::{
    ApiKeyRecord, AuditFilter, Changes, Constraint, DeviceRecord, IdempotencyRecord, Store,
    StoreError, TenantFilter,
};

fn now() -> chrono::DateTime<Utc> {
    to_stored_precision(Utc::now())
}

fn new_tenant(slug: &str) -> Tenant {
    Tenant::new(
        TenantId::new(),
        Slug::parse(slug).expect("slug"),
        TenantName::parse(&format!("Tenant {slug}")).expect("name"),
        EditionKey::free(),
        None,
        Isolation::Pooled,
        now(),
    )
}

fn changes_for(t: &Tenant, action: &str) -> Changes {
    let audit = AuditRecord {
        id: AuditId::new(),
        occurred_at: now(),
        actor: Actor::system(),
        action: format!("tenant.{action}"),
        resource_type: "tenant".into(),
        resource_id: t.id.to_string(),
        tenant_id: Some(t.id),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        details: json!({"slug": t.slug.as_str()}),
    };
    let event = EventEnvelope::v1(
        &format!("tenant.{action}.v1"),
        t.id.to_string(),
        Some(t.id),
        Some(t.edition.clone()),
        Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        now(),
        json!({"id": t.id}),
    );
    Changes::new(audit, event)
}

async fn audit_count(store: &dyn Store, tenant: TenantId) -> usize {
    let f = AuditFilter {
        tenant_id: Some(tenant),
        ..Default::default()
    };
    store
        .list_audit(&f, PageRequest::first(200))
        .await
        .expect("list audit")
        .items
        .len()
}

pub async fn migrations_are_idempotent_and_ready(store: &dyn Store) {
    store.check_ready().await.expect("ready after migrate");
    assert!(
        store.migrate().await.expect("second migrate").is_empty(),
        "nothing new to apply"
    );
    store.check_ready().await.expect("still ready");
}

pub async fn default_editions_are_seeded(store: &dyn Store) {
    let editions = store.list_editions().await.expect("list editions");
    let keys: Vec<_> = editions.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["free", "standard", "enterprise"]);
    let standard = store
        .get_edition(&EditionKey::parse("standard").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (standard.limits.requests_per_minute, standard.limits.burst),
        (600, 1200)
    );
    assert!(standard.builtin);
    assert!(
        store
            .get_edition(&EditionKey::parse("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn custom_editions_are_unique(store: &dyn Store) {
    let mut e = Edition::defaults(now()).remove(1);
    e.key = EditionKey::parse("healthcare-pack").unwrap();
    e.builtin = false;
    e.description = None;
    store
        .insert_edition(&e, &Changes::default())
        .await
        .expect("insert edition");
    assert_eq!(store.get_edition(&e.key).await.unwrap(), Some(e.clone()));
    let err = store
        .insert_edition(&e, &Changes::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::EditionKey)),
        "{err:?}"
    );
}

pub async fn tenants_round_trip_by_id_and_slug(store: &dyn Store) {
    let mut t = new_tenant("round-trip");
    t.region = Some(tenantry_domain::Region::parse("eu-west").unwrap());
    store
        .insert_tenant(&t, &changes_for(&t, "created"))
        .await
        .expect("insert");
    assert_eq!(
        store.get_tenant(&TenantRef::Id(t.id)).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        store
            .get_tenant(&TenantRef::Slug(t.slug.clone()))
            .await
            .unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        store
            .get_tenant(&TenantRef::Id(TenantId::new()))
            .await
            .unwrap(),
        None
    );
}

pub async fn duplicate_slug_fails_the_whole_unit_of_work(store: &dyn Store) {
    let a = new_tenant("dupe");
    store
        .insert_tenant(&a, &changes_for(&a, "created"))
        .await
        .unwrap();
    let b = new_tenant("dupe");
    let err = store
        .insert_tenant(&b, &changes_for(&b, "created"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::TenantSlug)),
        "{err:?}"
    );
    // nothing of the failed write remains: no audit record, no event
    assert_eq!(audit_count(store, b.id).await, 0);
    let events = store.pending_events(100).await.unwrap();
    assert!(events.iter().all(|e| e.tenant_id != Some(b.id)));
}

pub async fn updates_are_conditional_on_version(store: &dyn Store) {
    let t = new_tenant("versioned");
    store
        .insert_tenant(&t, &changes_for(&t, "created"))
        .await
        .unwrap();
    let suspended = t.suspend(now()).unwrap();
    store
        .update_tenant(&suspended, t.version, &changes_for(&suspended, "suspended"))
        .await
        .expect("update");
    assert_eq!(
        store
            .get_tenant(&TenantRef::Id(t.id))
            .await
            .unwrap()
            .unwrap()
            .status,
        TenantStatus::Suspended
    );

    // a writer that read version 1 loses, and leaves no audit or event behind
    let patch = TenantPatch {
        name: Some(TenantName::parse("Late").unwrap()),
        ..Default::default()
    };
    let stale = t.update(patch, now()).unwrap();
    let err = store
        .update_tenant(&stale, t.version, &changes_for(&stale, "updated"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict), "{err:?}");
    assert_eq!(audit_count(store, t.id).await, 2);

    let ghost = new_tenant("ghost");
    let err = store
        .update_tenant(&ghost, 1, &Changes::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

pub async fn concurrent_updates_let_exactly_one_win(store: &dyn Store) {
    let t = new_tenant("racy");
    store
        .insert_tenant(&t, &changes_for(&t, "created"))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let patch = TenantPatch {
            name: Some(TenantName::parse(&format!("Writer {i}")).unwrap()),
            ..Default::default()
        };
        let next = t.update(patch, now()).unwrap();
        let changes = changes_for(&next, "updated");
        async move { store.update_tenant(&next, t.version, &changes).await }
    });
    let results = crate::testing::join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::VersionConflict))
    );
}

pub async fn tenant_listing_is_stable_paginated_and_filtered(store: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut t = new_tenant(&format!("page-{i}"));
        if i % 2 == 1 {
            t.edition = EditionKey::parse("standard").unwrap();
        }
        store
            .insert_tenant(&t, &changes_for(&t, "created"))
            .await
            .unwrap();
        if i == 4 {
            let s = t.suspend(now()).unwrap();
            store
                .update_tenant(&s, t.version, &changes_for(&s, "suspended"))
                .await
                .unwrap();
        }
        ids.push(t.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = store
            .list_tenants(&TenantFilter::default(), page)
            .await
            .unwrap();
        assert_eq!(p.page_info.count, p.items.len());
        seen.extend(p.items.iter().map(|t| t.id));
        match p.page_info.next_cursor {
            Some(c) => {
                assert!(p.page_info.has_next_page);
                page =
                    PageRequest::new(Some(2), Some(tenantry_domain::Cursor::decode(&c).unwrap()))
                        .unwrap();
            }
            None => break,
        }
    }
    assert_eq!(seen, ids, "every tenant once, in creation order");

    let standard = TenantFilter {
        edition: Some(EditionKey::parse("standard").unwrap()),
        ..Default::default()
    };
    let p = store
        .list_tenants(&standard, PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(
        p.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ids[1], ids[3]]
    );
    let suspended = TenantFilter {
        status: Some(TenantStatus::Suspended),
        ..Default::default()
    };
    let p = store
        .list_tenants(&suspended, PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(
        p.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ids[4]]
    );
    assert!(!p.page_info.has_next_page);
}

pub async fn audit_and_outbox_commit_with_the_change(store: &dyn Store) {
    let t = new_tenant("audited");
    let created = changes_for(&t, "created");
    store.insert_tenant(&t, &created).await.unwrap();
    let s = t.suspend(now()).unwrap();
    store
        .update_tenant(&s, t.version, &changes_for(&s, "suspended"))
        .await
        .unwrap();

    let f = AuditFilter {
        tenant_id: Some(t.id),
        ..Default::default()
    };
    let all = store.list_audit(&f, PageRequest::first(10)).await.unwrap();
    let actions: Vec<_> = all.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        ["tenant.suspended", "tenant.created"],
        "newest first"
    );
    assert_eq!(all.items[1], created.audit[0]);

    let by_action = AuditFilter {
        action: Some("tenant.created".into()),
        ..f.clone()
    };
    assert_eq!(
        store
            .list_audit(&by_action, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let future = AuditFilter {
        since: Some(now() + Duration::hours(1)),
        ..f.clone()
    };
    assert!(
        store
            .list_audit(&future, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let past = AuditFilter {
        until: Some(now() - Duration::hours(1)),
        ..f.clone()
    };
    assert!(
        store
            .list_audit(&past, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let first = store.list_audit(&f, PageRequest::first(1)).await.unwrap();
    let cursor =
        tenantry_domain::Cursor::decode(first.page_info.next_cursor.as_deref().unwrap()).unwrap();
    let second = store
        .list_audit(&f, PageRequest::new(Some(1), Some(cursor)).unwrap())
        .await
        .unwrap();
    assert_eq!(second.items[0].action, "tenant.created");
    assert!(!second.page_info.has_next_page);

    let events: Vec<_> = store
        .pending_events(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.tenant_id == Some(t.id))
        .collect();
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["tenant.created.v1", "tenant.suspended.v1"]
    );
    assert_eq!(events[0], created.events[0]);
}

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
    store.insert_tenant(&t, &changes).await.unwrap();
    let found = store
        .find_idempotency("op:key1:POST /v1/tenants", "abc", now())
        .await
        .unwrap();
    assert_eq!(found, changes.idempotency.clone());
    assert_eq!(
        store
            .find_idempotency("op:other:POST /v1/tenants", "abc", now())
            .await
            .unwrap(),
        None
    );

    // the same key again fails the whole write: no second tenant
    let t2 = new_tenant("idem-two");
    let mut again = changes_for(&t2, "created");
    again.idempotency = Some(record("h1", now()));
    let err = store.insert_tenant(&t2, &again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::IdempotencyKey)),
        "{err:?}"
    );
    assert_eq!(store.get_tenant(&TenantRef::Id(t2.id)).await.unwrap(), None);

    // after expiry the key is free again, and purging removes what expired
    let later = now() + Duration::hours(25);
    assert_eq!(
        store
            .find_idempotency("op:key1:POST /v1/tenants", "abc", later)
            .await
            .unwrap(),
        None
    );
    again.idempotency = Some(record("h2", later));
    store
        .insert_tenant(&t2, &again)
        .await
        .expect("expired key is reusable");
    assert_eq!(
        store
            .purge_idempotency(later + Duration::hours(25))
            .await
            .unwrap(),
        1
    );
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
    assert_eq!(store.count_active_operator_keys(now()).await.unwrap(), 0);
    let live = key("tnt_op_aaaaaaaaaaaa", None, false);
    store
        .insert_api_key(&live, &Changes::default())
        .await
        .unwrap();
    store
        .insert_api_key(
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
        .insert_api_key(&key("tnt_op_cccccccccccc", None, true), &Changes::default())
        .await
        .unwrap();
    assert_eq!(store.count_active_operator_keys(now()).await.unwrap(), 1);
    assert_eq!(
        store.find_api_key("tnt_op_aaaaaaaaaaaa").await.unwrap(),
        Some(live.clone())
    );
    assert_eq!(
        store.find_api_key("tnt_op_zzzzzzzzzzzz").await.unwrap(),
        None
    );
    let err = store
        .insert_api_key(
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

async fn two_tenants(store: &dyn Store) -> (TenantScope, TenantScope) {
    let mut scopes = Vec::new();
    for slug in ["fence-a", "fence-b"] {
        let t = new_tenant(slug);
        store
            .insert_tenant(&t, &changes_for(&t, "created"))
            .await
            .unwrap();
        scopes.push(TenantScope::system(t.id, t.edition.clone(), "conformance"));
    }
    let b = scopes.pop().unwrap();
    (scopes.pop().unwrap(), b)
}

fn tenant_key(scope: &TenantScope, lookup: &str, device: Option<&str>) -> ApiKeyRecord {
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
        scopes: vec![tenantry_domain::Scope::EventsWrite],
        roles: vec![tenantry_domain::Role::Member],
        rate_limit_per_minute: Some(30),
        device_id: device.map(str::to_owned),
        rotated_to: None,
        last_used_at: None,
    }
}

pub async fn tenant_keys_are_fenced_by_scope(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let key = tenant_key(&a, "tnt_sk_aaaaaaaaaaa1", None);
    store
        .insert_tenant_key(&a, &key, &Changes::default())
        .await
        .unwrap();
    assert_eq!(
        store.get_tenant_key(&a, key.id).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store
            .list_tenant_keys(&a, PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![key.clone()]
    );
    // nothing of A's shows through B, and B cannot change it
    assert_eq!(store.get_tenant_key(&b, key.id).await.unwrap(), None);
    assert!(
        store
            .list_tenant_keys(&b, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        store
            .revoke_tenant_key(&b, key.id, now(), &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
    let stolen = tenant_key(&b, "tnt_sk_bbbbbbbbbbb1", None);
    assert!(matches!(
        store
            .rotate_tenant_key(&b, key.id, now(), &stolen, &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .insert_tenant_key(&b, &key, &Changes::default())
            .await
            .is_err(),
        "a record of A through B's scope"
    );

    // rotation: the successor exists, the old key expires at the end of the grace period
    let successor = tenant_key(&a, "tnt_sk_aaaaaaaaaaa2", None);
    let grace_end = now() + Duration::hours(24);
    store
        .rotate_tenant_key(&a, key.id, grace_end, &successor, &Changes::default())
        .await
        .unwrap();
    let old = store.get_tenant_key(&a, key.id).await.unwrap().unwrap();
    assert_eq!(
        (old.expires_at, old.rotated_to),
        (Some(grace_end), Some(successor.id))
    );
    assert!(
        matches!(
            store
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
        .revoke_tenant_key(&a, successor.id, now(), &Changes::default())
        .await
        .unwrap();
    assert!(
        store
            .find_api_key("tnt_sk_aaaaaaaaaaa2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store
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
            .find_api_key("tnt_dk_aaaaaaaaaaa2")
            .await
            .unwrap()
            .is_none(),
        "the failed registration left no key"
    );

    assert_eq!(
        store.get_device(&a, "sensor-1").await.unwrap(),
        Some(da.clone())
    );
    assert_eq!(
        store
            .list_devices(&b, PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![db.clone()]
    );
    store
        .delete_device(&a, "sensor-1", now(), &Changes::default())
        .await
        .unwrap();
    assert_eq!(store.get_device(&a, "sensor-1").await.unwrap(), None);
    assert!(
        store
            .find_api_key("tnt_dk_aaaaaaaaaaa1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "its keys are revoked"
    );
    assert!(
        store
            .find_api_key("tnt_dk_bbbbbbbbbbb1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none(),
        "B's device is untouched"
    );
    assert_eq!(store.get_device(&b, "sensor-1").await.unwrap(), Some(db));
    assert!(matches!(
        store
            .delete_device(&a, "sensor-1", now(), &Changes::default())
            .await,
        Err(StoreError::NotFound)
    ));
}

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async expression yielding
/// `Option<TestStore>`; `None` skips (the PostgreSQL suite without its URL).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            migrations_are_idempotent_and_ready,
            default_editions_are_seeded,
            custom_editions_are_unique,
            tenants_round_trip_by_id_and_slug,
            duplicate_slug_fails_the_whole_unit_of_work,
            updates_are_conditional_on_version,
            concurrent_updates_let_exactly_one_win,
            tenant_listing_is_stable_paginated_and_filtered,
            audit_and_outbox_commit_with_the_change,
            idempotency_records_guard_the_write,
            api_keys_are_found_by_lookup,
            tenant_keys_are_fenced_by_scope,
            devices_are_fenced_by_scope,
        );
    };
    (@cases_in $module:ident; $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                match $make {
                    Some(store) => $crate::$module::$case(&*store).await,
                    None => $crate::testing::skip_notice(stringify!($case)),
                }
            }
        )+
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                match $make {
                    Some(store) => $crate::conformance::$case(&*store).await,
                    None => $crate::testing::skip_notice(stringify!($case)),
                }
            }
        )+
    };
}
