//! Conformance cases: The tenants port.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use tenantry_domain::tenant::TenantPatch;
use tenantry_domain::{EditionKey, PageRequest, TenantId, TenantName, TenantRef, TenantStatus};

use super::{audit_count, changes_for, new_tenant, now};
use crate::{Changes, Constraint, Store, StoreError, TenantFilter};

pub async fn tenants_round_trip_by_id_and_slug(store: &dyn Store) {
    let mut t = new_tenant("round-trip");
    t.region = Some(tenantry_domain::Region::parse("eu-west").unwrap());
    store
        .tenants()
        .insert(&t, &changes_for(&t, "created"))
        .await
        .expect("insert");
    assert_eq!(
        store.tenants().get(&TenantRef::Id(t.id)).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        store
            .tenants()
            .get(&TenantRef::Slug(t.slug.clone()))
            .await
            .unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        store
            .tenants()
            .get(&TenantRef::Id(TenantId::new()))
            .await
            .unwrap(),
        None
    );
}

pub async fn duplicate_slug_fails_the_whole_unit_of_work(store: &dyn Store) {
    let a = new_tenant("dupe");
    store
        .tenants()
        .insert(&a, &changes_for(&a, "created"))
        .await
        .unwrap();
    let b = new_tenant("dupe");
    let err = store
        .tenants()
        .insert(&b, &changes_for(&b, "created"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::TenantSlug)),
        "{err:?}"
    );
    // nothing of the failed write remains: no audit record, no event
    assert_eq!(audit_count(store, b.id).await, 0);
    let events = super::logged_events(store).await;
    assert!(events.iter().all(|e| e.tenant_id != Some(b.id)));
}

pub async fn updates_are_conditional_on_version(store: &dyn Store) {
    let t = new_tenant("versioned");
    store
        .tenants()
        .insert(&t, &changes_for(&t, "created"))
        .await
        .unwrap();
    let suspended = t.suspend(now()).unwrap();
    store
        .tenants()
        .update(&suspended, t.version, &changes_for(&suspended, "suspended"))
        .await
        .expect("update");
    assert_eq!(
        store
            .tenants()
            .get(&TenantRef::Id(t.id))
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
        .tenants()
        .update(&stale, t.version, &changes_for(&stale, "updated"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict), "{err:?}");
    assert_eq!(audit_count(store, t.id).await, 2);

    let ghost = new_tenant("ghost");
    let err = store
        .tenants()
        .update(&ghost, 1, &Changes::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

pub async fn concurrent_updates_let_exactly_one_win(store: &dyn Store) {
    let t = new_tenant("racy");
    store
        .tenants()
        .insert(&t, &changes_for(&t, "created"))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let patch = TenantPatch {
            name: Some(TenantName::parse(&format!("Writer {i}")).unwrap()),
            ..Default::default()
        };
        let next = t.update(patch, now()).unwrap();
        let changes = changes_for(&next, "updated");
        async move { store.tenants().update(&next, t.version, &changes).await }
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
            .tenants()
            .insert(&t, &changes_for(&t, "created"))
            .await
            .unwrap();
        if i == 4 {
            let s = t.suspend(now()).unwrap();
            store
                .tenants()
                .update(&s, t.version, &changes_for(&s, "suspended"))
                .await
                .unwrap();
        }
        ids.push(t.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = store
            .tenants()
            .list(&TenantFilter::default(), page)
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
        .tenants()
        .list(&standard, PageRequest::first(50))
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
        .tenants()
        .list(&suspended, PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(
        p.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ids[4]]
    );
    assert!(!p.page_info.has_next_page);
}
