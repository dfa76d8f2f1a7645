//! Conformance cases: the event log (ADR 0023) — positions are contiguous and follow commits,
//! a tenant reads only its own log, filters, named cursors, pruning.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use chrono::Duration;
use serde_json::json;
use tenantry_domain::{EditionKey, EventEnvelope, Tenant, TenantScope};

use super::{changes_for, new_tenant, now};
use crate::Store;
use crate::events::{EventFilter, LogPartition, PrunePolicy};

fn event(t: &Tenant, event_type: &str, key: &str) -> EventEnvelope {
    EventEnvelope::v1(
        event_type,
        key,
        Some(t.id),
        Some(t.edition.clone()),
        None,
        now(),
        json!({"key": key}),
    )
}

/// Creates `t` with `events` as the creation's events.
async fn create_with(store: &dyn Store, t: &Tenant, events: Vec<EventEnvelope>) {
    let mut changes = changes_for(t, "created");
    changes.events = events;
    store.tenants().insert(t, &changes).await.unwrap();
}

fn scope(t: &Tenant) -> TenantScope {
    TenantScope::system(t.id, t.edition.clone(), "event log conformance test")
}

async fn sequence_all(store: &dyn Store) -> u32 {
    let mut n = 0;
    loop {
        let k = store.events().sequence(1000).await.unwrap();
        if k == 0 {
            return n;
        }
        n += k;
    }
}

pub async fn positions_are_contiguous_and_follow_commits(store: &dyn Store) {
    let log = store.events();
    assert_eq!(log.stats().await.unwrap().head, 0);
    let a = new_tenant("log-a");
    // An event made now but committed after others were sequenced: ids are time-ordered, the
    // log is commit-ordered.
    let late = event(&a, "tenant.late.v1", "late");
    create_with(
        store,
        &a,
        vec![
            event(&a, "tenant.created.v1", "1"),
            event(&a, "tenant.x.v1", "2"),
        ],
    )
    .await;
    let stats = log.stats().await.unwrap();
    assert_eq!((stats.head, stats.unsequenced), (0, 2));
    assert!(stats.oldest_unsequenced.is_some());
    assert!(
        log.read_after(0, 10).await.unwrap().is_empty(),
        "unsequenced events are not in the log"
    );

    assert_eq!(sequence_all(store).await, 2);
    let first = log.read_after(0, 10).await.unwrap();
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        first[0].event.key, "1",
        "events sequenced together go in id order"
    );

    let b = new_tenant("log-b");
    create_with(store, &b, vec![late.clone()]).await;
    assert_eq!(sequence_all(store).await, 1);
    let after = log.read_after(2, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].seq, after[0].event.id),
        (3, late.id),
        "a late commit goes last"
    );
    assert_eq!(after[0].event, late, "the envelope round-trips");
    let stats = log.stats().await.unwrap();
    assert_eq!(
        (stats.head, stats.unsequenced, stats.oldest_unsequenced),
        (3, 0, None)
    );
    assert_eq!(
        log.read_after(0, 2).await.unwrap().len(),
        2,
        "the limit holds"
    );
}

pub async fn racing_sequencers_and_writers_leave_no_gap(store: &dyn Store) {
    let writers = (0..4).map(|w| async move {
        for i in 0..10 {
            let t = new_tenant(&format!("race-{w}-{i}"));
            let events = (0..3)
                .map(|k| event(&t, "tenant.x.v1", &k.to_string()))
                .collect();
            create_with(store, &t, events).await;
        }
    });
    let sequencers = (0..3).map(|_| async move {
        for _ in 0..20 {
            store.events().sequence(7).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    futures_util::future::join(
        futures_util::future::join_all(writers),
        futures_util::future::join_all(sequencers),
    )
    .await;
    sequence_all(store).await;
    let log = store.events().read_after(0, 1000).await.unwrap();
    assert_eq!(log.len(), 120);
    let positions: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(
        positions,
        (1..=120).collect::<Vec<_>>(),
        "contiguous, each once"
    );
    assert_eq!(store.events().stats().await.unwrap().head, 120);
}

pub async fn a_tenant_reads_only_its_own_log(store: &dyn Store) {
    let a = new_tenant("own-log-a");
    let b = new_tenant("own-log-b");
    create_with(store, &a, vec![event(&a, "device.created.v1", "d1")]).await;
    create_with(store, &b, vec![event(&b, "device.created.v1", "d2")]).await;
    sequence_all(store).await;
    let all = EventFilter::default();
    let seen = store
        .events()
        .list_tenant(&scope(&a), &all, 0, 10)
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].event.tenant_id, Some(a.id));
    let b_event = store
        .events()
        .list_tenant(&scope(&b), &all, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        store
            .events()
            .position(&scope(&a), b_event[0].event.id)
            .await
            .unwrap(),
        None,
        "another tenant's event has no position for this one"
    );
    assert_eq!(
        store
            .events()
            .position(&scope(&b), b_event[0].event.id)
            .await
            .unwrap(),
        Some(b_event[0].seq)
    );
    let op = store
        .events()
        .list(LogPartition::Tenant(b.id), &all, 0, 10)
        .await
        .unwrap();
    assert_eq!(op, b_event, "operators read a named tenant's log");
    assert!(
        store
            .events()
            .list(LogPartition::Platform, &all, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "tenant events are not platform events"
    );
}

pub async fn logs_filter_by_type_subject_and_time(store: &dyn Store) {
    let t = new_tenant("filtered-log");
    create_with(
        store,
        &t,
        vec![
            event(&t, "device.created.v1", "d1"),
            event(&t, "device.deleted.v1", "d1"),
            event(&t, "tenant.updated.v1", "t"),
            event(&t, "device_x.created.v1", "d2"),
        ],
    )
    .await;
    sequence_all(store).await;
    let sc = scope(&t);
    let sc = &sc;
    let list = |f: EventFilter| async move {
        store
            .events()
            .list_tenant(sc, &f, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.event_type)
            .collect::<Vec<_>>()
    };
    let ty = |s: &str| EventFilter {
        event_type: Some(s.into()),
        ..Default::default()
    };
    assert_eq!(
        list(ty("device.*")).await,
        ["device.created.v1", "device.deleted.v1"]
    );
    assert_eq!(list(ty("device.created.v1")).await, ["device.created.v1"]);
    assert_eq!(
        list(ty("device_*")).await,
        Vec::<String>::new(),
        "`_` is no wildcard"
    );
    let subject = EventFilter {
        subject: Some("d1".into()),
        ..Default::default()
    };
    assert_eq!(list(subject).await.len(), 2);
    let future = EventFilter {
        from: Some(now() + Duration::hours(1)),
        ..Default::default()
    };
    assert!(list(future).await.is_empty());
    let past = EventFilter {
        until: Some(now() - Duration::hours(1)),
        ..Default::default()
    };
    assert!(list(past).await.is_empty());
    let all = store
        .events()
        .list_tenant(&scope(&t), &EventFilter::default(), 0, 10)
        .await
        .unwrap();
    let rest = store
        .events()
        .list_tenant(&scope(&t), &EventFilter::default(), all[1].seq, 10)
        .await
        .unwrap();
    assert_eq!(rest, all[2..], "reads resume after a position");
}

pub async fn cursors_only_move_forward(store: &dyn Store) {
    let log = store.events();
    assert_eq!(log.cursor("relay").await.unwrap(), 0);
    log.save_cursor("relay", 5, now()).await.unwrap();
    log.save_cursor("relay", 3, now()).await.unwrap();
    assert_eq!(log.cursor("relay").await.unwrap(), 5);
    log.save_cursor("relay", 9, now()).await.unwrap();
    assert_eq!(log.cursor("relay").await.unwrap(), 9);
    assert_eq!(log.cursor("other").await.unwrap(), 0);
}

pub async fn published_events_are_pruned_per_edition(store: &dyn Store) {
    let free = new_tenant("prune-free");
    let mut old = event(&free, "tenant.x.v1", "old");
    old.time = now() - Duration::days(10);
    create_with(
        store,
        &free,
        vec![old.clone(), event(&free, "tenant.x.v1", "new")],
    )
    .await;
    let mut platform_old = EventEnvelope::v1(
        "edition.updated.v1",
        "e",
        None,
        None,
        None,
        now() - Duration::days(100),
        json!({}),
    );
    platform_old.time = now() - Duration::days(100);
    let other = new_tenant("prune-other");
    create_with(store, &other, vec![platform_old]).await;
    sequence_all(store).await;
    let mut unpublished = event(&free, "tenant.x.v1", "unpublished");
    unpublished.time = now() - Duration::days(10);
    let s = free.suspend(now()).unwrap();
    let mut changes = changes_for(&s, "suspended");
    changes.events = vec![unpublished];
    store
        .tenants()
        .update(&s, free.version, &changes)
        .await
        .unwrap();
    sequence_all(store).await;

    let policy = PrunePolicy {
        through: 3, // the relay has published the first three only
        editions: vec![(EditionKey::free(), now() - Duration::days(7))],
        platform: now() - Duration::days(90),
        limit: 100,
    };
    assert_eq!(store.events().prune(&policy).await.unwrap(), 2);
    let left: Vec<String> = store
        .events()
        .read_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.key)
        .collect();
    assert_eq!(
        left,
        ["new", "unpublished"],
        "kept: recent, and not yet published"
    );
    assert_eq!(store.events().prune(&policy).await.unwrap(), 0);
    assert_eq!(
        store.events().stats().await.unwrap().head,
        4,
        "the head stays"
    );
}
