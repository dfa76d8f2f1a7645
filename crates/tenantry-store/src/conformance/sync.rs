//! Conformance cases of the source-sync port.

use serde_json::json;
use tenantry_domain::sync::{Checkpoint, RunCounts, RunStatus};
use tenantry_domain::{PageRequest, TenantScope};
use uuid::Uuid;

use super::access::two_tenants;
use super::now;
use crate::schedules::{ScheduleRecord, stored_name};
use crate::sync::{
    PageWrite, QuarantineWrite, RecordFilter, RecordWrite, RunClaim, RunEnd, RunStart,
    ScheduleChange, SourceRecord,
};
use crate::{Changes, Constraint, Store, StoreError};

fn source(scope: &TenantScope, name: &str) -> SourceRecord {
    SourceRecord {
        id: Uuid::now_v7(),
        tenant_id: scope.tenant_id(),
        name: name.into(),
        kind: "http_json".into(),
        schedule: Some("0 */6 * * *".into()),
        enabled: true,
        max_attempts: 3,
        config: json!({"url": "https://vendor.example/devices", "items": "/items", "key": "/id", "record_type": "device"}),
        sealed_headers: Some("sealed".into()),
        created_at: now(),
        updated_at: now(),
    }
}

fn schedule_of(s: &SourceRecord) -> ScheduleRecord {
    ScheduleRecord {
        name: stored_name(Some(s.tenant_id), &format!("source:{}", s.id)),
        tenant_id: Some(s.tenant_id),
        cron: s.schedule.clone(),
        interval_ms: None,
        kind: "sync.run".into(),
        payload: json!({"source": s.id}),
        enabled: true,
        next_fire_at: Some(now()),
        last_fired_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn rec(key: &str, v: i64) -> RecordWrite {
    RecordWrite {
        key: key.into(),
        data: json!({"id": key, "v": v}),
        hash: format!("h{v}"),
    }
}

async fn put(store: &dyn Store, scope: &TenantScope, s: &SourceRecord) {
    let sc = schedule_of(s);
    store
        .sync()
        .put_source(
            scope,
            s,
            None,
            ScheduleChange::Put(&sc),
            &Changes::default(),
        )
        .await
        .unwrap();
}

fn claim(run: Uuid, source: Uuid, owner: &str) -> RunClaim<'_> {
    RunClaim {
        id: run,
        source_id: source,
        manual: false,
        triggered_at: now(),
        owner,
        at: now(),
    }
}

/// Writes one page of `records` as page `n` of the run, with the given running counts.
/// `(run, source, owner)` names the run and the attempt writing.
async fn page(
    store: &dyn Store,
    scope: &TenantScope,
    (run, source, owner): (Uuid, Uuid, &str),
    n: u64,
    records: &[RecordWrite],
    next: Option<&str>,
) -> Result<crate::sync::PageOutcome, StoreError> {
    let checkpoint = Checkpoint {
        next: next.map(str::to_owned),
        page: None,
        counts: RunCounts {
            pages: n,
            ..RunCounts::default()
        },
    };
    store
        .sync()
        .write_page(
            scope,
            &PageWrite {
                run_id: run,
                source_id: source,
                owner,
                record_type: "device",
                page: n,
                records,
                quarantined: &[],
                checkpoint: &checkpoint,
                at: now(),
            },
            &Changes::default(),
        )
        .await
}

/// Sources are the tenant's: another tenant neither sees, changes nor deletes them, names are
/// unique per tenant, and the source's schedule is written and removed with it.
pub async fn sources_are_fenced_by_scope(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let s = source(&a, "devices");
    put(store, &a, &s).await;
    // same name in another tenant: fine; twice in one tenant: refused
    put(store, &b, &source(&b, "devices")).await;
    let again = source(&a, "devices");
    let e = store
        .sync()
        .put_source(
            &a,
            &again,
            None,
            ScheduleChange::Put(&schedule_of(&again)),
            &Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Duplicate(Constraint::SourceName)),
        "{e:?}"
    );

    assert_eq!(
        store.sync().get_source(&a, s.id).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.sync().get_source(&b, s.id).await.unwrap(), None);
    assert_eq!(store.sync().list_sources(&a).await.unwrap().len(), 1);
    let sched = schedule_of(&s).name;
    let tenant_a = crate::jobs::JobScope::Tenant(&a);
    assert!(
        store
            .schedules()
            .get(tenant_a, &sched)
            .await
            .unwrap()
            .is_some()
    );
    // another tenant's delete misses; the owner's removes the schedule too
    assert!(
        !store
            .sync()
            .delete_source(&b, s.id, &sched, &Changes::default())
            .await
            .unwrap()
    );
    // no schedule: the old one goes
    store
        .sync()
        .put_source(
            &a,
            &s,
            Some(s.updated_at),
            ScheduleChange::Remove(&sched),
            &Changes::default(),
        )
        .await
        .unwrap();
    assert!(
        store
            .schedules()
            .get(tenant_a, &sched)
            .await
            .unwrap()
            .is_none()
    );
    put(store, &a, &s).await;
    assert!(
        store
            .sync()
            .delete_source(&a, s.id, &sched, &Changes::default())
            .await
            .unwrap()
    );
    assert!(
        store
            .schedules()
            .get(tenant_a, &sched)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.sync().get_source(&a, s.id).await.unwrap(), None);
}

/// A page stores new records, rewrites changed ones, only marks unchanged ones seen, and a
/// completed run marks the records it did not see removed; a record that comes back is restored.
pub async fn pages_upsert_and_complete_runs_reconcile(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let s = source(&a, "devices");
    put(store, &a, &s).await;
    let run1 = Uuid::now_v7();
    assert_eq!(
        store
            .sync()
            .start_run(&a, &claim(run1, s.id, "w1"))
            .await
            .unwrap(),
        RunStart::Started {
            checkpoint: None,
            attempts: 1
        }
    );
    let out = page(
        store,
        &a,
        (run1, s.id, "w1"),
        1,
        &[rec("d1", 1), rec("d2", 1), rec("d3", 1)],
        None,
    )
    .await
    .unwrap();
    assert_eq!((out.upserted, out.unchanged), (3, 0));
    let removed = store
        .sync()
        .finish_run(
            &a,
            run1,
            "w1",
            &RunEnd::Completed,
            now(),
            &Changes::default(),
        )
        .await
        .unwrap();
    assert_eq!(removed, 0);
    let first = store
        .sync()
        .list_records(&a, &RecordFilter::default(), PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(first.len(), 3);

    // run 2: d1 unchanged, d2 changed, d3 gone
    let run2 = Uuid::now_v7();
    store
        .sync()
        .start_run(&a, &claim(run2, s.id, "w1"))
        .await
        .unwrap();
    let since = now();
    let out = page(
        store,
        &a,
        (run2, s.id, "w1"),
        1,
        &[rec("d1", 1), rec("d2", 2)],
        None,
    )
    .await
    .unwrap();
    assert_eq!((out.upserted, out.unchanged), (1, 1));
    let removed = store
        .sync()
        .finish_run(
            &a,
            run2,
            "w1",
            &RunEnd::Completed,
            now(),
            &Changes::default(),
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let all = store
        .sync()
        .list_records(&a, &RecordFilter::default(), PageRequest::default())
        .await
        .unwrap()
        .items;
    let by_key = |k: &str| all.iter().find(|r| r.key == k).unwrap().clone();
    let d1_before = first.iter().find(|r| r.key == "d1").unwrap();
    assert_eq!(
        by_key("d1").changed_at,
        d1_before.changed_at,
        "unchanged: not rewritten"
    );
    assert_eq!(by_key("d1").last_run_id, run2, "but seen");
    assert_eq!(by_key("d2").data["v"], 2);
    assert!(by_key("d3").removed_at.is_some());
    assert_eq!(
        store
            .sync()
            .get_run(&a, run2)
            .await
            .unwrap()
            .unwrap()
            .counts
            .removed,
        1
    );
    // changed since the second run began: d2 (changed) and d3 (removed)
    let changed = store
        .sync()
        .list_records(
            &a,
            &RecordFilter {
                changed_since: Some(since - chrono::Duration::microseconds(1)),
                ..RecordFilter::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    let mut keys: Vec<_> = changed.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["d2", "d3"]);

    // run 3 (aborted): d3 comes back; the failure removes nothing
    let run3 = Uuid::now_v7();
    store
        .sync()
        .start_run(&a, &claim(run3, s.id, "w1"))
        .await
        .unwrap();
    let out = page(
        store,
        &a,
        (run3, s.id, "w1"),
        1,
        &[rec("d3", 1)],
        Some("https://next"),
    )
    .await
    .unwrap();
    assert_eq!(out.upserted, 1, "a removed record seen again is restored");
    store
        .sync()
        .finish_run(
            &a,
            run3,
            "w1",
            &RunEnd::Failed {
                error: "upstream 500".into(),
                dead: true,
            },
            now(),
            &Changes::default(),
        )
        .await
        .unwrap();
    let live = store
        .sync()
        .list_records(&a, &RecordFilter::default(), PageRequest::default())
        .await
        .unwrap()
        .items;
    assert!(live.iter().all(|r| r.removed_at.is_none()), "{live:?}");
    let run = store.sync().get_run(&a, run3).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Dead);
    assert_eq!(run.error.as_deref(), Some("upstream 500"));
    // the other tenant sees none of it
    assert!(
        store
            .sync()
            .list_records(&b, &RecordFilter::default(), PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(store.sync().get_run(&b, run3).await.unwrap(), None);
    let runs = store
        .sync()
        .list_runs(&a, s.id, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        runs.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [run3, run2]
    );
    assert!(runs.page_info.has_next_page);
}

/// A second attempt takes the run over from its checkpoint; the first attempt's owner can no
/// longer write a page or finish it; a completed run is not run again.
pub async fn attempts_resume_from_checkpoints_and_are_fenced(store: &dyn Store) {
    let (a, _) = two_tenants(store).await;
    let s = source(&a, "vulns");
    put(store, &a, &s).await;
    let run = Uuid::now_v7();
    store
        .sync()
        .start_run(&a, &claim(run, s.id, "w1"))
        .await
        .unwrap();
    page(
        store,
        &a,
        (run, s.id, "w1"),
        1,
        &[rec("v1", 1)],
        Some("https://vendor.example/p2"),
    )
    .await
    .unwrap();
    // the worker dies; another attempt claims the run
    let RunStart::Started {
        checkpoint: Some(cp),
        attempts: 2,
    } = store
        .sync()
        .start_run(&a, &claim(run, s.id, "w2"))
        .await
        .unwrap()
    else {
        panic!("not resumed");
    };
    assert_eq!(cp.next.as_deref(), Some("https://vendor.example/p2"));
    assert_eq!(cp.counts.pages, 1);
    // the stale attempt is fenced off
    let e = page(store, &a, (run, s.id, "w1"), 2, &[rec("v2", 1)], None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict), "{e:?}");
    let e = store
        .sync()
        .finish_run(
            &a,
            run,
            "w1",
            &RunEnd::Completed,
            now(),
            &Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict), "{e:?}");
    page(store, &a, (run, s.id, "w2"), 2, &[rec("v2", 1)], None)
        .await
        .unwrap();
    store
        .sync()
        .finish_run(
            &a,
            run,
            "w2",
            &RunEnd::Completed,
            now(),
            &Changes::default(),
        )
        .await
        .unwrap();
    let r = store.sync().get_run(&a, run).await.unwrap().unwrap();
    assert!(r.resumed && r.status == RunStatus::Completed && r.attempts == 2);
    assert_eq!(
        store
            .sync()
            .start_run(&a, &claim(run, s.id, "w3"))
            .await
            .unwrap(),
        RunStart::AlreadyCompleted
    );
    // a run of a source that is gone
    assert_eq!(
        store
            .sync()
            .start_run(&a, &claim(Uuid::now_v7(), Uuid::now_v7(), "w1"))
            .await
            .unwrap(),
        RunStart::NoSource
    );
}

/// Quarantined items are stored with the page, once per item even if the page is written again.
pub async fn quarantined_items_are_kept_per_source(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let s = source(&a, "devices");
    put(store, &a, &s).await;
    let run = Uuid::now_v7();
    store
        .sync()
        .start_run(&a, &claim(run, s.id, "w1"))
        .await
        .unwrap();
    let q = [QuarantineWrite {
        item_index: 4,
        key: None,
        reason: "the item has no key at /id".into(),
        excerpt: "{\"x\":1}".into(),
    }];
    let checkpoint = Checkpoint::default();
    for _ in 0..2 {
        store
            .sync()
            .write_page(
                &a,
                &PageWrite {
                    run_id: run,
                    source_id: s.id,
                    owner: "w1",
                    record_type: "device",
                    page: 1,
                    records: &[],
                    quarantined: &q,
                    checkpoint: &checkpoint,
                    at: now(),
                },
                &Changes::default(),
            )
            .await
            .unwrap();
    }
    let items = store
        .sync()
        .list_quarantine(&a, s.id, PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].page, items[0].item_index, items[0].run_id),
        (1, 4, run)
    );
    assert!(
        store
            .sync()
            .list_quarantine(&b, s.id, PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// A manual run is queued with its job; while it is pending, another is not queued; once it
/// completes, a new one is.
pub async fn manual_runs_queue_once_per_source(store: &dyn Store) {
    let (a, _) = two_tenants(store).await;
    let s = source(&a, "devices");
    put(store, &a, &s).await;
    let job = || {
        let mut j = crate::jobs::NewJob::new("sync.run", json!({"source": s.id}), now());
        j.tenant_id = Some(a.tenant_id());
        j.unique_key = Some(format!("sync.run:{}", s.id));
        j
    };
    let run = crate::sync::QueuedRun {
        source_id: s.id,
        triggered_at: now(),
    };
    let first = store
        .sync()
        .queue_run(&a, &run, &job(), &Changes::default())
        .await
        .unwrap();
    let crate::jobs::Enqueued::New(id) = first else {
        panic!("{first:?}")
    };
    let queued = store.sync().get_run(&a, id).await.unwrap().unwrap();
    assert_eq!(
        (queued.status, queued.attempts, queued.manual),
        (RunStatus::Queued, 0, true)
    );
    let second = store
        .sync()
        .queue_run(&a, &run, &job(), &Changes::default())
        .await
        .unwrap();
    assert_eq!(second, crate::jobs::Enqueued::Existing(id));
    // the worker takes the queued run
    assert_eq!(
        store
            .sync()
            .start_run(&a, &claim(id, s.id, "w1"))
            .await
            .unwrap(),
        RunStart::Started {
            checkpoint: None,
            attempts: 1
        }
    );
}

/// A key twice in one page is stored once, with its last content; the earlier copy counts as
/// unchanged.
pub async fn a_key_repeated_in_a_page_is_stored_once(store: &dyn Store) {
    let (a, _) = two_tenants(store).await;
    let s = source(&a, "devices");
    put(store, &a, &s).await;
    let run = Uuid::now_v7();
    store
        .sync()
        .start_run(&a, &claim(run, s.id, "w1"))
        .await
        .unwrap();
    let out = page(
        store,
        &a,
        (run, s.id, "w1"),
        1,
        &[rec("d1", 1), rec("d2", 1), rec("d1", 2)],
        None,
    )
    .await
    .unwrap();
    assert_eq!((out.upserted, out.unchanged), (2, 1));
    let all = store
        .sync()
        .list_records(&a, &RecordFilter::default(), PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().find(|r| r.key == "d1").unwrap().data["v"], 2);
    let r = store.sync().get_run(&a, run).await.unwrap().unwrap();
    assert_eq!((r.counts.upserted, r.counts.unchanged), (2, 1));
}
