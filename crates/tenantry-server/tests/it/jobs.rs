//! Jobs and schedules over HTTP, with the server's own worker and scheduler running.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::testing::TestServer;

use crate::access::tenant_key;
use crate::support::*;

async fn enqueue(srv: &TestServer, payload: Value) -> Value {
    let resp = srv
        .op(Method::POST, "/v1/jobs")
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    body(resp).await
}

/// Polls a job until `done` holds (bounded), returning it.
async fn await_job(srv: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = body(
            srv.op(Method::GET, &format!("/v1/jobs/{id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never got there: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["state"] == s
}

pub async fn jobs_run_retry_and_die(srv: &TestServer) {
    let ok = enqueue(srv, json!({"kind": "noop"})).await;
    assert_eq!(ok["status"], "created");
    let done = await_job(srv, ok["id"].as_str().unwrap(), state_is("completed")).await;
    assert_eq!(done["attempt"], 1);
    assert!(done["finished_at"].is_string());

    // fails twice, then succeeds: the error history is kept
    let flaky = enqueue(srv, json!({"kind": "fail", "payload": {"times": 2}})).await;
    let done = await_job(srv, flaky["id"].as_str().unwrap(), state_is("completed")).await;
    assert_eq!(done["attempt"], 3);
    assert_eq!(done["errors"].as_array().unwrap().len(), 2, "{done}");
    assert_eq!(done["errors"][0]["kind"], "retryable");

    // a permanent failure is dead at once; retry sends it back (and it dies again)
    let broken = enqueue(srv, json!({"kind": "fail", "payload": {"permanent": true}})).await;
    let id = broken["id"].as_str().unwrap().to_owned();
    let dead = await_job(srv, &id, state_is("dead")).await;
    assert_eq!(dead["attempt"], 1);
    assert_eq!(dead["errors"][0]["kind"], "permanent");
    let listed = body(
        srv.op(Method::GET, "/v1/jobs?state=dead&kind=fail")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str())
    );
    let dry = body(
        srv.op(Method::POST, "/v1/jobs:replay")
            .json(&json!({"kind": "fail", "error_kind": "permanent", "dry_run": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(dry["would_replay"], 1, "{dry}");
    let resp = srv
        .op(Method::POST, &format!("/v1/jobs/{id}:retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let again = await_job(srv, &id, |j| {
        j["state"] == "dead" && j["errors"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(again["attempt"], 1);
    // a completed job cannot be retried; an unknown verb or id is a clear error
    problem(
        srv.op(
            Method::POST,
            &format!("/v1/jobs/{}:retry", ok["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::CONFLICT,
        "job_state_conflict",
    )
    .await;
    problem(
        srv.op(Method::GET, "/v1/jobs/not-a-uuid")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "job_not_found",
    )
    .await;
    // the audit log names who retried
    let audit = body(
        srv.op(Method::GET, "/v1/audit?action=job.retry")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(audit["items"][0]["resource_id"], id.as_str());
}

pub async fn running_jobs_can_be_cancelled(srv: &TestServer) {
    let slow = enqueue(srv, json!({"kind": "sleep", "payload": {"ms": 60000}})).await;
    let id = slow["id"].as_str().unwrap().to_owned();
    await_job(srv, &id, state_is("running")).await;
    let resp = srv
        .op(Method::POST, &format!("/v1/jobs/{id}:cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await["cancel_requested"], true);
    // seen at the next heartbeat (5 s), then the handler stops
    let done = await_job(srv, &id, state_is("cancelled")).await;
    assert!(done["finished_at"].is_string());
    problem(
        srv.op(Method::POST, &format!("/v1/jobs/{id}:cancel"))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "job_state_conflict",
    )
    .await;
}

/// Enqueues `payload` and expects a `422 validation_failed` problem, returning it.
async fn invalid_enqueue(srv: &TestServer, payload: Value) -> Value {
    problem(
        srv.op(Method::POST, "/v1/jobs")
            .json(&payload)
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await
}

pub async fn enqueue_validates_batches_and_deduplicates(srv: &TestServer) {
    let b = invalid_enqueue(srv, json!({"kind": "launch-missiles"})).await;
    assert!(
        b.to_string().contains("noop"),
        "names the registered kinds: {b}"
    );
    // a single-job body names its own field, a batch names the job
    assert_eq!(b["errors"][0]["field"], "kind", "{b}");
    let b = invalid_enqueue(
        srv,
        json!({"jobs": [{"kind": "noop"}, {"kind": "launch-missiles"}]}),
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "jobs[1].kind", "{b}");
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"kind": "noop"})).collect();
    invalid_enqueue(srv, json!({ "jobs": too_many })).await;
    invalid_enqueue(srv, json!({"kind": "noop", "colour": "red"})).await;
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"kind": "noop", "payload": {"i": i}}))
        .collect();
    let resp = srv
        .op(Method::POST, "/v1/jobs")
        .json(&json!({ "jobs": batch }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(body(resp).await["created"], 1000);
    // unique keys: a second enqueue returns the first job while it is pending
    let later =
        json!({"kind": "noop", "unique_key": "nightly-report", "run_at": "2100-01-01T00:00:00Z"});
    let first = enqueue(srv, later.clone()).await;
    let resp = srv
        .op(Method::POST, "/v1/jobs")
        .json(&later)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let second = body(resp).await;
    assert_eq!(
        (second["id"].clone(), second["status"].clone()),
        (first["id"].clone(), json!("existing"))
    );
    // Idempotency-Key replays the first answer
    let send = || {
        srv.op(Method::POST, "/v1/jobs")
            .header("idempotency-key", "enqueue-once")
            .json(&json!({"kind": "noop", "run_at": "2100-01-01T00:00:00Z"}))
            .send()
    };
    let a = send().await.unwrap();
    let a_body = body(a).await;
    let b = send().await.unwrap();
    assert_eq!(b.headers()["idempotent-replayed"], "true");
    assert_eq!(body(b).await["id"], a_body["id"]);
}

pub async fn tenants_see_and_touch_only_their_jobs(srv: &TestServer) {
    let a = tenant_named(srv, "Jobs A").await;
    let b = tenant_named(srv, "Jobs B").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (_, a_key) = tenant_key(srv, a_id, &["tenant_admin"]).await;
    let (_, b_key) = tenant_key(srv, b_id, &["tenant_admin"]).await;
    let later = json!({"kind": "noop", "run_at": "2100-01-01T00:00:00Z"});
    let resp = srv
        .with_key(&a_key, Method::POST, "/v1/jobs")
        .json(&later)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let job = body(resp).await;
    let id = job["id"].as_str().unwrap();
    let shown = body(
        srv.with_key(&a_key, Method::GET, &format!("/v1/jobs/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(shown["tenant_id"], a_id);
    problem(
        srv.with_key(&b_key, Method::GET, &format!("/v1/jobs/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "job_not_found",
    )
    .await;
    let mine = body(
        srv.with_key(&b_key, Method::GET, "/v1/jobs")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(mine["items"].as_array().unwrap().is_empty());
    problem(
        srv.with_key(&b_key, Method::GET, &format!("/v1/jobs?tenant={a_id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "tenant_mismatch",
    )
    .await;
    let resp = srv
        .with_key(&b_key, Method::POST, "/v1/jobs")
        .json(&json!({"kind": "noop", "tenant": a_id}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::FORBIDDEN, "tenant_mismatch").await;
    // the operator sees everything, or one tenant when it names it
    let all = body(
        srv.op(Method::GET, &format!("/v1/jobs?tenant={a_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    // a member may read but not manage jobs
    let (_, member) = tenant_key(srv, a_id, &["member"]).await;
    let b = problem(
        srv.with_key(&member, Method::POST, &format!("/v1/jobs/{id}:cancel"))
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert!(b["detail"].as_str().unwrap().contains("jobs:manage"));
}

pub async fn interval_schedules_fire_at_once_and_then_on_time(srv: &TestServer) {
    let resp = srv
        .op(Method::POST, "/v1/schedules")
        .json(&json!({"name": "heartbeat-check", "interval_seconds": 3600, "kind": "noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // a new hourly schedule fires within seconds, not in an hour
    let deadline = Instant::now() + Duration::from_secs(10);
    let fired = loop {
        let s = body(
            srv.op(Method::GET, "/v1/schedules/heartbeat-check")
                .send()
                .await
                .unwrap(),
        )
        .await;
        if s["last_fired_at"].is_string() {
            break s;
        }
        assert!(Instant::now() < deadline, "never fired: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(fired["interval_seconds"], 3600, "{fired}");
    let next: chrono::DateTime<chrono::Utc> =
        fired["next_fire_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next > chrono::Utc::now() + chrono::Duration::minutes(59),
        "{fired}"
    );
    let jobs = body(
        srv.op(Method::GET, "/v1/jobs?kind=noop")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["unique_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("schedule:heartbeat-check:"))),
        "{jobs}"
    );
    // bad schedules are refused with the field named
    for bad in [
        json!({"name": "x", "cron": "every day", "kind": "noop"}),
        json!({"name": "x", "interval_seconds": 0, "kind": "noop"}),
        json!({"name": "x", "kind": "noop"}),
        json!({"name": "x", "interval_seconds": 5, "kind": "nope"}),
        json!({"name": "no spaces", "interval_seconds": 5, "kind": "noop"}),
    ] {
        problem(
            srv.op(Method::POST, "/v1/schedules")
                .json(&bad)
                .send()
                .await
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let resp = srv
        .op(Method::DELETE, "/v1/schedules/heartbeat-check")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    problem(
        srv.op(Method::GET, "/v1/schedules/heartbeat-check")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "schedule_not_found",
    )
    .await;
}

pub async fn a_busy_tenant_does_not_starve_a_small_one(srv: &TestServer) {
    let a = create_tenant(srv, json!({"name": "Busy", "edition": "enterprise"})).await;
    let b = tenant_named(srv, "Small").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    // everything becomes due at the same moment, A's 10 000 enqueued first
    let due = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    for _ in 0..10 {
        let jobs: Vec<Value> = (0..1000)
            .map(|_| json!({"kind": "noop", "tenant": a_id, "run_at": due}))
            .collect();
        enqueue(srv, json!({ "jobs": jobs })).await;
    }
    let jobs: Vec<Value> = (0..10)
        .map(|_| json!({"kind": "sleep", "payload": {"ms": 0}, "tenant": b_id, "run_at": due}))
        .collect();
    enqueue(srv, json!({ "jobs": jobs })).await;
    let store = srv.app.store();
    // queue depth counts unfinished (and dead) jobs; none of these fail, so finished = completed
    let unfinished = |depth: &[tenantry_store::jobs::QueueDepth], kind: &str| -> i64 {
        depth
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.count)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let a_done = loop {
        let depth = store.jobs().queue_depth().await.unwrap();
        if unfinished(&depth, "sleep") == 0 {
            break 10_000 - unfinished(&depth, "noop");
        }
        assert!(Instant::now() < deadline, "B's jobs never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        a_done < 1000,
        "B's 10 jobs finished only after {a_done} of A's"
    );
}

/// With `job_tenant_max_running`, a tenant's jobs never run more than that many at a time, while
/// another tenant's jobs use the free slots.
pub async fn a_tenant_cap_bounds_running_jobs() {
    let srv = TestServer::start(tenantry_store::testing::sqlite().await, |c| {
        c.jobs.tenant_max_running = 2;
        c.jobs.worker_concurrency = 16;
    })
    .await;
    let a = tenant_named(&srv, "Capped").await;
    let b = tenant_named(&srv, "Other").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let sleeps = |tenant: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|_| json!({"kind": "sleep", "payload": {"ms": 300}, "tenant": tenant}))
            .collect()
    };
    enqueue(&srv, json!({ "jobs": sleeps(a_id, 8) })).await;
    enqueue(&srv, json!({ "jobs": sleeps(b_id, 2) })).await;
    let store = srv.app.store();
    let count = |tenant: &str, state: tenantry_domain::job::JobState| {
        let filter = tenantry_store::jobs::JobFilter {
            state: Some(state),
            tenant_id: Some(tenant.parse().unwrap()),
            ..Default::default()
        };
        async move {
            store
                .job_console()
                .list_jobs(
                    tenantry_store::jobs::JobScope::System,
                    &filter,
                    tenantry_domain::PageRequest::first(100),
                )
                .await
                .unwrap()
                .items
                .len()
        }
    };
    use tenantry_domain::job::JobState::{Completed, Running};
    let (mut most_a, mut most_b) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(a_id, Completed).await < 8 {
        most_a = most_a.max(count(a_id, Running).await);
        most_b = most_b.max(count(b_id, Running).await);
        assert!(
            Instant::now() < deadline,
            "the capped tenant's jobs never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        most_a <= 2,
        "tenant A had {most_a} jobs running at once (cap 2)"
    );
    assert_eq!(most_a, 2, "the cap should still let 2 run");
    assert_eq!(count(b_id, Completed).await, 2);
    assert!(
        most_b >= 1,
        "the other tenant's jobs ran beside the capped one"
    );
    srv.stop().await;
}
