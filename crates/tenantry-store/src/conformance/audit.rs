//! Conformance cases: The audit port, and the unit of work that writes it.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use chrono::Duration;
use tenantry_domain::PageRequest;

use super::{changes_for, new_tenant, now};
use crate::{AuditFilter, Store};

pub async fn audit_and_outbox_commit_with_the_change(store: &dyn Store) {
    let t = new_tenant("audited");
    let created = changes_for(&t, "created");
    store.tenants().insert(&t, &created).await.unwrap();
    let s = t.suspend(now()).unwrap();
    store
        .tenants()
        .update(&s, t.version, &changes_for(&s, "suspended"))
        .await
        .unwrap();

    let f = AuditFilter {
        tenant_id: Some(t.id),
        ..Default::default()
    };
    let all = store
        .audit()
        .list(&f, PageRequest::first(10))
        .await
        .unwrap();
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
            .audit()
            .list(&by_action, PageRequest::first(10))
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
            .audit()
            .list(&future, PageRequest::first(10))
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
            .audit()
            .list(&past, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let first = store.audit().list(&f, PageRequest::first(1)).await.unwrap();
    let cursor =
        tenantry_domain::Cursor::decode(first.page_info.next_cursor.as_deref().unwrap()).unwrap();
    let second = store
        .audit()
        .list(&f, PageRequest::new(Some(1), Some(cursor)).unwrap())
        .await
        .unwrap();
    assert_eq!(second.items[0].action, "tenant.created");
    assert!(!second.page_info.has_next_page);

    let events: Vec<_> = super::logged_events(store)
        .await
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

/// A tenant's own log, read through its scope: its records only, whatever the filter says.
pub async fn a_tenant_reads_only_its_own_audit(store: &dyn Store) {
    let (a, b) = (new_tenant("audit-own-a"), new_tenant("audit-own-b"));
    for t in [&a, &b] {
        store
            .tenants()
            .insert(t, &changes_for(t, "created"))
            .await
            .unwrap();
    }
    let scope = tenantry_domain::TenantScope::system(
        a.id,
        tenantry_domain::EditionKey::free(),
        "audit conformance test",
    );
    let asks_for_b = AuditFilter {
        tenant_id: Some(b.id),
        ..Default::default()
    };
    let page = store
        .audit()
        .list_tenant(&scope, &asks_for_b, PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "{:?}", page.items);
    assert!(page.items.iter().all(|r| r.tenant_id == Some(a.id)));
}
