//! Conformance cases: the job queue and the job console.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tenantry_domain::clock::to_stored_precision;
use tenantry_domain::job::{FailureKind, JobState, RetryPolicy};
use tenantry_domain::{
    EditionKey, PageRequest, Slug, Tenant, TenantId, TenantName, TenantScope, TenantStatus,
};

use crate::jobs::*;
use crate::{Changes, Store};

fn now() -> chrono::DateTime<Utc> {
    to_stored_precision(Utc::now())
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn job(kind: &str) -> NewJob {
    // created a little in the past, so that a claim "now" sees it whatever the order of calls
    let mut j = NewJob::new(kind, json!({"n": 1}), now() - secs(1));
    j.retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(10),
    };
    j.max_attempts = 3;
    j
}

fn q() -> Vec<String> {
    vec!["default".into()]
}

async fn tenant(store: &dyn Store, slug: &str) -> TenantId {
    let mut t = Tenant::new(
        TenantId::new(),
        Slug::parse(slug).unwrap(),
        TenantName::parse(slug).unwrap(),
        EditionKey::free(),
        None,
        tenantry_domain::Isolation::Pooled,
        now(),
    );
    t.status = TenantStatus::Active;
    store
        .tenants()
        .insert(&t, &Changes::default())
        .await
        .unwrap();
    t.id
}

fn scope(t: TenantId) -> TenantScope {
    TenantScope::system(t, EditionKey::free(), "job conformance test")
}

pub async fn enqueue_claim_complete(store: &dyn Store) {
    let t0 = now();
    let ids: Vec<_> = store
        .jobs()
        .enqueue(&[job("a"), job("b"), job("c")])
        .await
        .unwrap()
        .into_iter()
        .map(Enqueued::id)
        .collect();
    let first = store.jobs().claim("w1", &q(), 2, t0).await.unwrap();
    assert_eq!(first.len(), 2);
    for j in &first {
        assert_eq!((j.state, j.attempt), (JobState::Running, 1));
        assert_eq!(j.lease_owner.as_deref(), Some("w1"));
        assert_eq!(j.lease_expires_at, Some(t0 + secs(30)));
    }
    let second = store.jobs().claim("w2", &q(), 5, t0).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(
        store
            .jobs()
            .claim("w3", &q(), 5, t0)
            .await
            .unwrap()
            .is_empty()
    );
    let all: HashSet<_> = first.iter().chain(&second).map(|j| j.id).collect();
    assert_eq!(all, ids.iter().copied().collect());
    let fences: Vec<_> = first.iter().map(JobRecord::fence).collect();
    let done = store
        .jobs()
        .complete("w1", &fences, t0 + secs(1))
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    let j = store
        .job_console()
        .get_job(JobScope::System, first[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.finished_at, Some(t0 + secs(1)));
    assert_eq!(j.lease_owner, None);
    // other queues are not claimed
    let mut other = job("x");
    other.queue = "reports".into();
    store.jobs().enqueue(&[other]).await.unwrap();
    assert!(
        store
            .jobs()
            .claim("w1", &q(), 5, t0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .jobs()
            .claim("w1", &["reports".to_owned()], 5, t0)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn concurrent_claims_never_hand_out_a_job_twice(store: &dyn Store) {
    let jobs: Vec<_> = (0..200).map(|_| job("noop")).collect();
    for chunk in jobs.chunks(50) {
        store.jobs().enqueue(chunk).await.unwrap();
    }
    let t = now();
    let claims = (0..4).map(|w| async move {
        let owner = format!("w{w}");
        let mut mine = Vec::new();
        loop {
            let got = store.jobs().claim(&owner, &q(), 7, t).await.unwrap();
            if got.is_empty() {
                break;
            }
            mine.extend(got.into_iter().map(|j| j.id));
        }
        mine
    });
    let results = crate::testing::join_all(claims).await;
    let total: usize = results.iter().map(Vec::len).sum();
    let unique: HashSet<_> = results.iter().flatten().collect();
    assert_eq!(total, 200);
    assert_eq!(unique.len(), 200, "a job was claimed twice");
}

pub async fn expired_leases_are_recovered_and_fenced(store: &dyn Store) {
    let t0 = now();
    let mut j = job("slow");
    j.lease = Duration::from_secs(10);
    store.jobs().enqueue(&[j]).await.unwrap();
    let a = store
        .jobs()
        .claim("worker-a", &q(), 1, t0)
        .await
        .unwrap()
        .remove(0);
    // a heartbeat extends the lease
    let hb = store
        .jobs()
        .heartbeat("worker-a", &[a.fence()], t0 + secs(5))
        .await
        .unwrap();
    assert_eq!(hb, vec![(a.fence(), Lease::Held { cancel: false })]);
    assert!(
        store
            .jobs()
            .recover_expired(t0 + secs(12), 10, 0.0)
            .await
            .unwrap()
            .is_empty()
    );
    // worker-a goes silent: after the lease, the job is recovered as a failed attempt
    let recovered = store
        .jobs()
        .recover_expired(t0 + secs(16), 10, 0.0)
        .await
        .unwrap();
    assert_eq!(recovered, vec![(a.id, JobState::Retryable)]);
    let r = store
        .job_console()
        .get_job(JobScope::System, a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].kind, FailureKind::LeaseExpired);
    // worker-b takes it over
    let b = store
        .jobs()
        .claim("worker-b", &q(), 1, t0 + secs(16))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((b.id, b.attempt), (a.id, 2));
    // the fenced worker's late writes are rejected
    assert!(
        store
            .jobs()
            .complete("worker-a", &[a.fence()], t0 + secs(17))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .jobs()
            .checkpoint("worker-a", a.fence(), &json!({"x": 1}), t0)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .jobs()
            .fail(
                "worker-a",
                a.fence(),
                &Outcome::Failed {
                    kind: FailureKind::Retryable,
                    message: "late".into()
                },
                t0,
                0.0
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .jobs()
            .heartbeat("worker-a", &[a.fence()], t0 + secs(17))
            .await
            .unwrap(),
        vec![(a.fence(), Lease::Lost)]
    );
    // even the same owner name with the old attempt is fenced
    assert!(
        store
            .jobs()
            .complete("worker-b", &[a.fence()], t0 + secs(17))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .jobs()
            .complete("worker-b", &[b.fence()], t0 + secs(17))
            .await
            .unwrap(),
        vec![b.fence()]
    );
}

pub async fn retries_back_off_then_die_with_their_history(store: &dyn Store) {
    let t0 = now();
    let mut j = job("flaky");
    j.max_attempts = 2;
    store.jobs().enqueue(&[j]).await.unwrap();
    let a1 = store
        .jobs()
        .claim("w", &q(), 1, t0)
        .await
        .unwrap()
        .remove(0);
    let fail = Outcome::Failed {
        kind: FailureKind::Retryable,
        message: "upstream 503".into(),
    };
    assert_eq!(
        store
            .jobs()
            .fail("w", a1.fence(), &fail, t0, 0.999)
            .await
            .unwrap(),
        Some(JobState::Retryable)
    );
    let r = store
        .job_console()
        .get_job(JobScope::System, a1.id)
        .await
        .unwrap()
        .unwrap();
    assert!(r.run_at > t0 && r.run_at <= t0 + secs(1), "{:?}", r.run_at);
    assert!(
        store
            .jobs()
            .claim("w", &q(), 1, t0)
            .await
            .unwrap()
            .is_empty(),
        "not before its backoff"
    );
    let a2 = store
        .jobs()
        .claim("w", &q(), 1, t0 + secs(2))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(a2.attempt, 2);
    assert_eq!(
        store
            .jobs()
            .fail("w", a2.fence(), &fail, t0 + secs(2), 0.5)
            .await
            .unwrap(),
        Some(JobState::Dead)
    );
    let dead = store
        .job_console()
        .get_job(JobScope::System, a1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.errors.len(), 2);
    assert_eq!((dead.errors[0].attempt, dead.errors[1].attempt), (1, 2));
    assert!(dead.finished_at.is_some());
    let dl = store.jobs().dead_letters().await.unwrap();
    assert_eq!(dl.count, 1);

    // a permanent error is dead at once
    store.jobs().enqueue(&[job("broken")]).await.unwrap();
    let p = store
        .jobs()
        .claim("w", &q(), 1, t0 + secs(3))
        .await
        .unwrap()
        .remove(0);
    let permanent = Outcome::Failed {
        kind: FailureKind::Permanent,
        message: "bad payload".into(),
    };
    assert_eq!(
        store
            .jobs()
            .fail("w", p.fence(), &permanent, t0 + secs(3), 0.5)
            .await
            .unwrap(),
        Some(JobState::Dead)
    );
}

pub async fn unique_keys_deduplicate_until_finished_plus_window(store: &dyn Store) {
    let t0 = now();
    let mut j = job("sync");
    j.unique_key = Some("sync:acme".into());
    let first = store
        .jobs()
        .enqueue(std::slice::from_ref(&j))
        .await
        .unwrap()[0];
    let mut dup = job("sync");
    dup.unique_key = j.unique_key.clone();
    assert_eq!(
        store
            .jobs()
            .enqueue(std::slice::from_ref(&dup))
            .await
            .unwrap()[0],
        Enqueued::Existing(first.id())
    );
    let c = store
        .jobs()
        .claim("w", &q(), 1, t0)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store
            .jobs()
            .enqueue(std::slice::from_ref(&dup))
            .await
            .unwrap()[0],
        Enqueued::Existing(first.id()),
        "still running"
    );
    store.jobs().complete("w", &[c.fence()], t0).await.unwrap();
    let mut again = job("sync");
    again.unique_key = j.unique_key.clone();
    assert!(matches!(
        store.jobs().enqueue(&[again]).await.unwrap()[0],
        Enqueued::New(_)
    ));

    // with a window, the key stays taken for that long after completion
    let mut w = job("report");
    w.unique_key = Some("report:2026-11".into());
    w.unique_window = Duration::from_secs(60);
    let first = store
        .jobs()
        .enqueue(std::slice::from_ref(&w))
        .await
        .unwrap()[0];
    let c = store.jobs().claim("w", &q(), 5, t0).await.unwrap();
    let c = c.into_iter().find(|x| x.id == first.id()).unwrap();
    store.jobs().complete("w", &[c.fence()], t0).await.unwrap();
    let mut soon = w.clone();
    soon.id = uuid::Uuid::now_v7();
    soon.created_at = t0 + secs(30);
    assert_eq!(
        store.jobs().enqueue(&[soon]).await.unwrap()[0],
        Enqueued::Existing(first.id())
    );
    let mut later = w.clone();
    later.id = uuid::Uuid::now_v7();
    later.created_at = t0 + secs(61);
    assert!(matches!(
        store.jobs().enqueue(&[later]).await.unwrap()[0],
        Enqueued::New(_)
    ));
}

pub async fn a_busy_tenant_does_not_starve_another(store: &dyn Store) {
    let a = tenant(store, "fair-a").await;
    let b = tenant(store, "fair-b").await;
    let busy: Vec<_> = (0..60)
        .map(|_| {
            let mut j = job("work");
            j.tenant_id = Some(a);
            j
        })
        .collect();
    for chunk in busy.chunks(20) {
        store.jobs().enqueue(chunk).await.unwrap();
    }
    let t = now();
    // a worker already took some of A's jobs
    store.jobs().claim("w", &q(), 3, t).await.unwrap();
    let few: Vec<_> = (0..5)
        .map(|_| {
            let mut j = job("work");
            j.tenant_id = Some(b);
            j
        })
        .collect();
    store.jobs().enqueue(&few).await.unwrap();
    let next = store.jobs().claim("w", &q(), 12, t).await.unwrap();
    let of_b = next.iter().filter(|j| j.tenant_id == Some(b)).count();
    assert_eq!(of_b, 5, "B's jobs run next to A's, not after all of them");
}

pub async fn checkpoints_survive_a_retry(store: &dyn Store) {
    let t0 = now();
    store.jobs().enqueue(&[job("pages")]).await.unwrap();
    let a = store
        .jobs()
        .claim("w", &q(), 1, t0)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(a.checkpoint, None);
    assert!(
        store
            .jobs()
            .checkpoint("w", a.fence(), &json!({"page": 3}), t0)
            .await
            .unwrap()
    );
    let fail = Outcome::Failed {
        kind: FailureKind::Retryable,
        message: "timeout".into(),
    };
    store
        .jobs()
        .fail("w", a.fence(), &fail, t0, 0.0)
        .await
        .unwrap();
    let b = store
        .jobs()
        .claim("w", &q(), 1, t0 + secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(b.checkpoint, Some(json!({"page": 3})));
}

pub async fn cancel_retry_and_replay(store: &dyn Store) {
    let t0 = now();
    let ids: Vec<_> = store
        .jobs()
        .enqueue(&[job("c1"), job("c2")])
        .await
        .unwrap()
        .into_iter()
        .map(Enqueued::id)
        .collect();
    // pending → cancelled at once
    assert_eq!(
        store
            .job_console()
            .cancel_job(JobScope::System, ids[0], t0, &Changes::default())
            .await
            .unwrap(),
        Some(JobState::Cancelled)
    );
    // running → flagged; the heartbeat tells the worker, which reports the cancellation
    let r = store
        .jobs()
        .claim("w", &q(), 5, t0)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(r.id, ids[1]);
    assert_eq!(
        store
            .job_console()
            .cancel_job(JobScope::System, ids[1], t0, &Changes::default())
            .await
            .unwrap(),
        Some(JobState::Running)
    );
    assert_eq!(
        store.jobs().heartbeat("w", &[r.fence()], t0).await.unwrap(),
        vec![(r.fence(), Lease::Held { cancel: true })]
    );
    assert_eq!(
        store
            .jobs()
            .fail("w", r.fence(), &Outcome::Cancelled, t0, 0.0)
            .await
            .unwrap(),
        Some(JobState::Cancelled)
    );
    // retry sends a cancelled job back with fresh attempts
    assert_eq!(
        store
            .job_console()
            .retry_job(JobScope::System, ids[0], t0, &Changes::default())
            .await
            .unwrap(),
        Some(JobState::Available)
    );
    let again = store.jobs().claim("w", &q(), 5, t0).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (ids[0], 1));
    // replay: dead jobs by kind, dry run first
    let mut dying = Vec::new();
    for kind in ["export", "export", "import"] {
        let mut j = job(kind);
        j.max_attempts = 1;
        dying.push(j);
    }
    store.jobs().enqueue(&dying).await.unwrap();
    for d in store.jobs().claim("w", &q(), 5, t0).await.unwrap() {
        let fail = Outcome::Failed {
            kind: FailureKind::Retryable,
            message: "no".into(),
        };
        assert_eq!(
            store
                .jobs()
                .fail("w", d.fence(), &fail, t0, 0.0)
                .await
                .unwrap(),
            Some(JobState::Dead)
        );
    }
    let filter = ReplayFilter {
        kind: Some("export".into()),
        ..ReplayFilter::default()
    };
    assert_eq!(
        store
            .job_console()
            .replay_jobs(JobScope::System, &filter, true, t0, &Changes::default())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.jobs().dead_letters().await.unwrap().count,
        3,
        "a dry run changes nothing"
    );
    let by_error = ReplayFilter {
        error_kind: Some(FailureKind::Permanent),
        ..ReplayFilter::default()
    };
    assert_eq!(
        store
            .job_console()
            .replay_jobs(JobScope::System, &by_error, true, t0, &Changes::default())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .job_console()
            .replay_jobs(JobScope::System, &filter, false, t0, &Changes::default())
            .await
            .unwrap(),
        2
    );
    let replayed = store.jobs().claim("w", &q(), 5, t0).await.unwrap();
    assert_eq!(replayed.len(), 2);
    assert!(
        replayed
            .iter()
            .all(|j| j.kind == "export" && j.attempt == 1 && j.errors.len() == 1)
    );
}

pub async fn tenants_see_only_their_jobs(store: &dyn Store) {
    let a = tenant(store, "jobs-a").await;
    let b = tenant(store, "jobs-b").await;
    let mut ja = job("mine");
    ja.tenant_id = Some(a);
    let id = store.jobs().enqueue(&[ja]).await.unwrap()[0].id();
    let (sa, sb) = (scope(a), scope(b));
    assert!(
        store
            .job_console()
            .get_job(JobScope::Tenant(&sa), id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .job_console()
            .get_job(JobScope::Tenant(&sb), id)
            .await
            .unwrap()
            .is_none()
    );
    let listed = store
        .job_console()
        .list_jobs(
            JobScope::Tenant(&sb),
            &JobFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    let sneaky = JobFilter {
        tenant_id: Some(a),
        ..JobFilter::default()
    };
    assert!(
        store
            .job_console()
            .list_jobs(JobScope::Tenant(&sb), &sneaky, PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store
            .job_console()
            .cancel_job(JobScope::Tenant(&sb), id, now(), &Changes::default())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .job_console()
            .retry_job(JobScope::Tenant(&sb), id, now(), &Changes::default())
            .await
            .unwrap(),
        None
    );
    let all = store
        .job_console()
        .list_jobs(
            JobScope::Tenant(&sa),
            &JobFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    assert_eq!(
        store
            .job_console()
            .get_job(JobScope::System, id)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Available
    );
}

pub async fn listing_is_newest_first_filtered_and_paginated(store: &dyn Store) {
    for kind in ["a", "b", "a", "a"] {
        store.jobs().enqueue(&[job(kind)]).await.unwrap();
    }
    let f = JobFilter {
        kind: Some("a".into()),
        state: Some(JobState::Available),
        ..JobFilter::default()
    };
    let p1 = store
        .job_console()
        .list_jobs(JobScope::System, &f, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(p1.items[0].id > p1.items[1].id);
    assert!(p1.page_info.has_next_page);
    let cursor =
        tenantry_domain::Cursor::decode(p1.page_info.next_cursor.as_deref().unwrap()).unwrap();
    let p2 = store
        .job_console()
        .list_jobs(
            JobScope::System,
            &f,
            PageRequest::new(Some(2), Some(cursor)).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert!(!p2.page_info.has_next_page);
    let depth = store.jobs().queue_depth().await.unwrap();
    let a = depth
        .iter()
        .find(|d| d.kind == "a" && d.state == JobState::Available)
        .unwrap();
    assert_eq!(a.count, 3);
    // finished jobs are history, not queue depth
    let b = store.jobs().claim("w", &q(), 10, now()).await.unwrap();
    let fences: Vec<Fence> = b.iter().map(JobRecord::fence).collect();
    store.jobs().complete("w", &fences, now()).await.unwrap();
    let depth = store.jobs().queue_depth().await.unwrap();
    assert!(
        depth
            .iter()
            .all(|d| !d.state.is_finished() || d.state == JobState::Dead),
        "completed jobs counted as depth: {depth:?}"
    );
}

/// Plain enqueues from many callers at once (PostgreSQL coalesces them into shared inserts):
/// each call returns once its jobs are stored, and a call that cannot be stored fails alone.
pub async fn concurrent_enqueues_commit_each_and_fail_alone(store: &dyn Store) {
    let good: Vec<NewJob> = (0..40).map(|_| job("together")).collect();
    let mut bad = job("together");
    bad.tenant_id = Some(TenantId::new()); // no such tenant
    let bad_id = bad.id;
    let calls = good
        .iter()
        .map(std::slice::from_ref)
        .chain(std::iter::once(std::slice::from_ref(&bad)))
        .map(|jobs| store.jobs().enqueue(jobs));
    let results = crate::testing::join_all(calls).await;
    let (good_results, bad_result) = results.split_at(good.len());
    for r in good_results {
        assert!(r.is_ok(), "a good enqueue failed: {r:?}");
    }
    let stored = store
        .job_console()
        .list_jobs(
            JobScope::System,
            &JobFilter {
                kind: Some("together".into()),
                ..JobFilter::default()
            },
            PageRequest::first(100),
        )
        .await
        .unwrap();
    let ids: HashSet<_> = stored.items.iter().map(|j| j.id).collect();
    for j in &good {
        assert!(ids.contains(&j.id), "an acknowledged job is missing");
    }
    // a backend that enforces the tenant reference rejects the bad job; one that does not must
    // at least have kept it: never acknowledged and lost
    assert_eq!(bad_result[0].is_ok(), ids.contains(&bad_id));
}

/// A tenant cap bounds each tenant's running jobs across every claimer, even claims made at
/// the same moment; jobs without a tenant are not capped.
pub async fn tenant_caps_bound_running_jobs(store: &dyn Store) {
    let (a, b) = (tenant(store, "cap-a").await, tenant(store, "cap-b").await);
    let of = |t: Option<TenantId>, n: usize| -> Vec<NewJob> {
        (0..n)
            .map(|_| {
                let mut j = job("capped");
                j.tenant_id = t;
                j
            })
            .collect()
    };
    store.jobs().enqueue(&of(Some(a), 20)).await.unwrap();
    store.jobs().enqueue(&of(Some(b), 2)).await.unwrap();
    store.jobs().enqueue(&of(None, 2)).await.unwrap();
    let t = now();
    let claims = (0..4).map(|w| async move {
        store
            .jobs()
            .claim_capped(&format!("w{w}"), &q(), 50, Some(3), t)
            .await
            .unwrap()
    });
    let got: Vec<JobRecord> = crate::testing::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .collect();
    let count = |t: Option<TenantId>| got.iter().filter(|j| j.tenant_id == t).count();
    assert_eq!(
        (count(Some(a)), count(Some(b)), count(None)),
        (3, 2, 2),
        "tenant A over its cap, or others held back"
    );
    // A is at its cap: nothing more for it until one of its jobs finishes
    assert!(
        store
            .jobs()
            .claim_capped("w9", &q(), 50, Some(3), t)
            .await
            .unwrap()
            .is_empty()
    );
    let done = got.iter().find(|j| j.tenant_id == Some(a)).unwrap();
    store
        .jobs()
        .complete(&done.lease_owner.clone().unwrap(), &[done.fence()], t)
        .await
        .unwrap();
    let next = store
        .jobs()
        .claim_capped("w9", &q(), 50, Some(3), t)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].tenant_id, Some(a));
    // without a cap the rest is claimable at once
    assert_eq!(
        store.jobs().claim("w9", &q(), 50, t).await.unwrap().len(),
        16
    );
}

/// Reclaiming dead row versions (PostgreSQL `VACUUM`) changes nothing a caller can see.
pub async fn tidying_the_queue_keeps_every_job(store: &dyn Store) {
    let t0 = now();
    store
        .jobs()
        .enqueue(&[job("t1"), job("t2"), job("t3")])
        .await
        .unwrap();
    let c = store.jobs().claim("w", &q(), 2, t0).await.unwrap();
    store
        .jobs()
        .complete("w", &[c[0].fence()], t0)
        .await
        .unwrap();
    store.jobs().tidy_queue(0).await.unwrap();
    assert!(
        !store.jobs().tidy_queue(u64::MAX).await.unwrap(),
        "nothing to do yet"
    );
    let all = store
        .job_console()
        .list_jobs(
            JobScope::System,
            &JobFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    let mut states: Vec<JobState> = all.items.iter().map(|j| j.state).collect();
    states.sort_by_key(|s| s.as_str());
    assert_eq!(
        states,
        vec![JobState::Available, JobState::Completed, JobState::Running]
    );
    // the running job's lease still fences, and the last job can still be claimed
    assert_eq!(
        store
            .jobs()
            .complete("w", &[c[1].fence()], t0)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.jobs().claim("w", &q(), 5, t0).await.unwrap().len(), 1);
}

pub async fn release_gives_jobs_back_without_counting(store: &dyn Store) {
    let t0 = now();
    store.jobs().enqueue(&[job("r")]).await.unwrap();
    let c = store
        .jobs()
        .claim("w", &q(), 1, t0)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store.jobs().release("w", &[c.fence()], t0).await.unwrap(),
        1
    );
    let again = store
        .jobs()
        .claim("w2", &q(), 1, t0)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((again.id, again.attempt), (c.id, 1));
}

pub async fn scheduled_jobs_wait_for_their_time(store: &dyn Store) {
    let t0 = now();
    let mut later = job("later");
    later.run_at = t0 + secs(60);
    store.jobs().enqueue(&[later]).await.unwrap();
    let j = store
        .job_console()
        .list_jobs(
            JobScope::System,
            &JobFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(j.items[0].state, JobState::Scheduled);
    assert!(
        store
            .jobs()
            .claim("w", &q(), 1, t0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .jobs()
            .claim("w", &q(), 1, t0 + secs(60))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn jobs_enqueued_in_a_unit_of_work_commit_with_it(store: &dyn Store) {
    let t = Tenant::new(
        TenantId::new(),
        Slug::parse("uow-jobs").unwrap(),
        TenantName::parse("uow").unwrap(),
        EditionKey::free(),
        None,
        tenantry_domain::Isolation::Pooled,
        now(),
    );
    let mut welcome = job("welcome");
    welcome.tenant_id = Some(t.id);
    let changes = Changes {
        jobs: vec![welcome.clone()],
        ..Changes::default()
    };
    store.tenants().insert(&t, &changes).await.unwrap();
    assert!(
        store
            .job_console()
            .get_job(JobScope::System, welcome.id)
            .await
            .unwrap()
            .is_some()
    );
    // the same slug again fails, and its job is not enqueued
    let mut dup = t.clone();
    dup.id = TenantId::new();
    let mut orphan = job("welcome");
    orphan.tenant_id = Some(dup.id);
    let changes = Changes {
        jobs: vec![orphan.clone()],
        ..Changes::default()
    };
    assert!(store.tenants().insert(&dup, &changes).await.is_err());
    assert!(
        store
            .job_console()
            .get_job(JobScope::System, orphan.id)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn enqueue_wakes_idle_workers(store: &dyn Store) {
    let signal = store.jobs().job_signal();
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    store.jobs().enqueue(&[job("wake")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("no wake-up after enqueue");
}

pub async fn finished_jobs_are_pruned(store: &dyn Store) {
    let t0 = now();
    store.jobs().enqueue(&[job("p1"), job("p2")]).await.unwrap();
    let c = store.jobs().claim("w", &q(), 1, t0).await.unwrap();
    store
        .jobs()
        .complete("w", &[c[0].fence()], t0)
        .await
        .unwrap();
    assert_eq!(store.jobs().prune_jobs(t0 + secs(1), 100).await.unwrap(), 1);
    let left = store
        .job_console()
        .list_jobs(
            JobScope::System,
            &JobFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(left.items.len(), 1);
    assert_eq!(left.items[0].state, JobState::Available);
}

/// A suspended (or deleted) tenant's queued jobs are paused in the unit of work of the change
/// and never claimed, a running one that fails is paused instead of retried, and resuming puts
/// them all back in the queue.
pub async fn queued_jobs_pause_and_resume_with_their_tenant(store: &dyn Store) {
    let id = tenant(store, "paused-jobs").await;
    let other = tenant(store, "busy-jobs").await;
    let mut running = job("pause-running");
    running.tenant_id = Some(id);
    let mut queued = job("pause-queued");
    queued.tenant_id = Some(id);
    let mut later = job("pause-later");
    later.tenant_id = Some(id);
    later.run_at = now() + secs(3600);
    let mut theirs = job("pause-other");
    theirs.tenant_id = Some(other);
    let t0 = now();
    let first = store.jobs().enqueue(&[running]).await.unwrap();
    let claimed = store.jobs().claim("w", &q(), 1, t0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, first[0].id());
    let ids: Vec<_> = store
        .jobs()
        .enqueue(&[queued, later, theirs])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();

    let set_status = |status: TenantStatus, held: crate::TenantJobs| async move {
        let mut t = store
            .tenants()
            .get(&tenantry_domain::TenantRef::Id(id))
            .await
            .unwrap()
            .unwrap();
        let version = t.version;
        t.status = status;
        t.version += 1;
        let changes = Changes {
            tenant_jobs: Some(held),
            ..Changes::default()
        };
        store.tenants().update(&t, version, &changes).await.unwrap();
    };
    set_status(TenantStatus::Suspended, crate::TenantJobs::Pause(id)).await;
    let state = |job: uuid::Uuid| async move {
        store
            .job_console()
            .get_job(JobScope::System, job)
            .await
            .unwrap()
            .unwrap()
            .state
    };
    assert_eq!(state(ids[0]).await, JobState::Paused);
    assert_eq!(state(ids[1]).await, JobState::Paused);
    assert_eq!(
        state(ids[2]).await,
        JobState::Available,
        "another tenant's job"
    );
    let claimed = store
        .jobs()
        .claim("w", &q(), 10, t0 + secs(1))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2]],
        "only the active tenant's job is claimed"
    );
    // the running job fails while its tenant is suspended: it waits, paused
    store
        .jobs()
        .fail(
            "w",
            claimed_fence(store, first[0].id()).await,
            &Outcome::Failed {
                kind: FailureKind::Retryable,
                message: "flaky".into(),
            },
            t0 + secs(1),
            0.0,
        )
        .await
        .unwrap();
    assert_eq!(state(first[0].id()).await, JobState::Paused);

    set_status(
        TenantStatus::Active,
        crate::TenantJobs::Resume(id, t0 + secs(2)),
    )
    .await;
    assert_eq!(state(ids[0]).await, JobState::Available);
    assert_eq!(
        state(ids[1]).await,
        JobState::Scheduled,
        "run_at is in the future"
    );
    assert_eq!(
        state(first[0].id()).await,
        JobState::Retryable,
        "it had an attempt"
    );
    let claimed: HashSet<_> = store
        .jobs()
        .claim("w", &q(), 10, t0 + secs(60))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(claimed, HashSet::from([ids[0], first[0].id()]));
}

async fn claimed_fence(store: &dyn Store, id: uuid::Uuid) -> Fence {
    store
        .job_console()
        .get_job(JobScope::System, id)
        .await
        .unwrap()
        .unwrap()
        .fence()
}

/// Enqueues racing with one unique key add one job, and every one of them names it (the second
/// transaction waits for the first and then sees its key).
pub async fn racing_enqueues_of_one_unique_key_add_one_job(store: &dyn Store) {
    for round in 0..5 {
        let key = format!("race:{round}");
        let tries = (0..8).map(|_| {
            let mut j = job("sync");
            j.unique_key = Some(key.clone());
            async move {
                store
                    .jobs()
                    .enqueue(std::slice::from_ref(&j))
                    .await
                    .unwrap()[0]
            }
        });
        let out = crate::testing::join_all(tries).await;
        let new: Vec<_> = out
            .iter()
            .filter(|e| matches!(e, Enqueued::New(_)))
            .collect();
        assert_eq!(new.len(), 1, "round {round}: {out:?}");
        assert!(out.iter().all(|e| e.id() == new[0].id()), "{out:?}");
    }
}
