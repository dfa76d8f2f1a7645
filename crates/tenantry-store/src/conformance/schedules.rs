//! Conformance cases: schedules (fenced by the job scope) and singleton leases.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use chrono::Duration;
use serde_json::json;
use tenantry_domain::{EditionKey, TenantScope, TenantStatus};

use super::{changes_for, new_tenant, now};
use crate::jobs::{JobFilter, JobScope, NewJob};
use crate::schedules::{ScheduleRecord, stored_name};
use crate::{Changes, Store, StoreError};

async fn active_tenant(store: &dyn Store, slug: &str) -> TenantScope {
    let mut t = new_tenant(slug);
    t.status = TenantStatus::Active;
    store
        .tenants()
        .insert(&t, &changes_for(&t, "created"))
        .await
        .unwrap();
    TenantScope::system(t.id, EditionKey::free(), "schedule conformance test")
}

fn schedule(scope: Option<&TenantScope>, name: &str) -> ScheduleRecord {
    let tenant = scope.map(TenantScope::tenant_id);
    let at = now();
    ScheduleRecord {
        name: stored_name(tenant, name),
        tenant_id: tenant,
        cron: None,
        interval_ms: Some(60_000),
        kind: "noop".into(),
        payload: json!({"n": 1}),
        enabled: true,
        next_fire_at: Some(at),
        last_fired_at: None,
        created_at: at,
        updated_at: at,
    }
}

/// A tenant scope reads, lists, replaces and deletes only its own tenant's schedules, and cannot
/// write a schedule of another tenant; the platform's view sees them all.
pub async fn schedules_are_fenced_by_scope(store: &dyn Store) {
    let a = active_tenant(store, "sched-a").await;
    let b = active_tenant(store, "sched-b").await;
    let (ta, tb) = (JobScope::Tenant(&a), JobScope::Tenant(&b));
    let s = store.schedules();
    s.put(ta, &schedule(Some(&a), "nightly"), &Changes::default())
        .await
        .unwrap();
    s.put(tb, &schedule(Some(&b), "nightly"), &Changes::default())
        .await
        .unwrap();
    s.put(
        JobScope::System,
        &schedule(None, "platform"),
        &Changes::default(),
    )
    .await
    .unwrap();

    // a scope may not write another tenant's schedule
    assert!(matches!(
        s.put(ta, &schedule(Some(&b), "evil"), &Changes::default())
            .await,
        Err(StoreError::Corrupt(_))
    ));

    let a_name = stored_name(Some(a.tenant_id()), "nightly");
    let b_name = stored_name(Some(b.tenant_id()), "nightly");
    assert!(s.get(ta, &a_name).await.unwrap().is_some());
    assert!(s.get(ta, &b_name).await.unwrap().is_none(), "A reads B's");
    let listed: Vec<String> = s
        .list(ta)
        .await
        .unwrap()
        .iter()
        .map(|r| r.display_name().to_owned())
        .collect();
    assert_eq!(listed, vec!["nightly".to_owned()]);
    assert_eq!(s.list(JobScope::System).await.unwrap().len(), 3);

    // deleting through the wrong scope finds nothing and leaves the schedule
    assert!(!s.delete(ta, &b_name, &Changes::default()).await.unwrap());
    assert!(s.get(tb, &b_name).await.unwrap().is_some());
    assert!(s.delete(tb, &b_name, &Changes::default()).await.unwrap());
    assert!(s.get(JobScope::System, &b_name).await.unwrap().is_none());
}

/// Of two schedulers firing the same due time, exactly one enqueues the job.
pub async fn firing_is_single_and_enqueues_once(store: &dyn Store) {
    let rec = schedule(None, "tick");
    let s = store.schedules();
    s.put(JobScope::System, &rec, &Changes::default())
        .await
        .unwrap();
    let fired = rec.next_fire_at.unwrap();
    let due = s.due(fired, 10).await.unwrap();
    assert!(due.iter().any(|d| d.name == "tick"));
    let next = fired + Duration::minutes(1);
    let mut job = NewJob::new("noop", json!({}), now());
    job.unique_key = Some(format!("schedule:tick:{}", fired.timestamp()));
    let (one, two) = tokio::join!(
        s.fire("tick", fired, next, &job),
        s.fire("tick", fired, next, &job)
    );
    assert_eq!(
        [one.unwrap(), two.unwrap()].iter().filter(|f| **f).count(),
        1
    );
    let jobs = store
        .job_console()
        .list_jobs(
            JobScope::System,
            &JobFilter {
                kind: Some("noop".into()),
                ..JobFilter::default()
            },
            tenantry_domain::PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    assert!(
        !s.due(fired, 10)
            .await
            .unwrap()
            .iter()
            .any(|d| d.name == "tick")
    );
    // rescheduling is a compare-and-swap on the next fire time
    assert!(!s.reschedule("tick", fired, next).await.unwrap());
    assert!(
        s.reschedule("tick", next, next + Duration::minutes(1))
            .await
            .unwrap()
    );
}

/// A lease has one holder until it expires or is given up.
pub async fn leases_have_one_holder(store: &dyn Store) {
    let l = store.leases();
    let t0 = now();
    let until = t0 + Duration::seconds(10);
    assert_eq!(l.holder("conf-lease", t0).await.unwrap(), None);
    assert!(l.acquire("conf-lease", "a", t0, until).await.unwrap());
    assert_eq!(
        l.holder("conf-lease", t0).await.unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(
        l.holder("conf-lease", until + Duration::seconds(1))
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert!(!l.acquire("conf-lease", "b", t0, until).await.unwrap());
    assert!(
        l.acquire("conf-lease", "a", t0, until).await.unwrap(),
        "renewal"
    );
    // expired: another may take it
    assert!(
        l.acquire(
            "conf-lease",
            "b",
            until + Duration::seconds(1),
            until + Duration::seconds(11)
        )
        .await
        .unwrap()
    );
    l.release("conf-lease", "a").await.unwrap(); // not a's any more: no effect
    assert!(
        !l.acquire(
            "conf-lease",
            "a",
            until + Duration::seconds(2),
            until + Duration::seconds(12)
        )
        .await
        .unwrap()
    );
    l.release("conf-lease", "b").await.unwrap();
    assert!(
        l.acquire(
            "conf-lease",
            "a",
            until + Duration::seconds(2),
            until + Duration::seconds(12)
        )
        .await
        .unwrap()
    );
}

/// A suspended or deleted tenant's schedules are not due; the platform's and active tenants' are.
pub async fn due_skips_schedules_of_inactive_tenants(store: &dyn Store) {
    let a = active_tenant(store, "due-active").await;
    let s = store.schedules();
    s.put(
        JobScope::Tenant(&a),
        &schedule(Some(&a), "a"),
        &Changes::default(),
    )
    .await
    .unwrap();
    s.put(
        JobScope::System,
        &schedule(None, "platform-due"),
        &Changes::default(),
    )
    .await
    .unwrap();
    let mut paused = Vec::new();
    for (slug, status) in [
        ("due-suspended", TenantStatus::Suspended),
        ("due-deleted", TenantStatus::Deleted),
    ] {
        let scope = active_tenant(store, slug).await;
        s.put(
            JobScope::Tenant(&scope),
            &schedule(Some(&scope), "p"),
            &Changes::default(),
        )
        .await
        .unwrap();
        let mut t = store
            .tenants()
            .get(&tenantry_domain::TenantRef::Id(scope.tenant_id()))
            .await
            .unwrap()
            .unwrap();
        let version = t.version;
        t.status = status;
        t.version += 1;
        store
            .tenants()
            .update(&t, version, &Changes::default())
            .await
            .unwrap();
        paused.push(stored_name(Some(scope.tenant_id()), "p"));
    }
    let due: Vec<String> = s
        .due(now() + Duration::seconds(1), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(
        due.contains(&stored_name(Some(a.tenant_id()), "a")),
        "{due:?}"
    );
    assert!(due.contains(&"platform-due".to_owned()), "{due:?}");
    for p in &paused {
        assert!(!due.contains(p), "{p} is due: {due:?}");
    }
}
