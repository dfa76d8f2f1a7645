//! The job engine across real processes on one PostgreSQL database: two workers run 10 000 jobs
//! exactly once with no overlapping executions; a SIGKILLed worker's jobs are recovered after its
//! lease and its late completion is fenced off; two schedulers fire each time once and hand over
//! leadership within one lease period.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;

fn operator_key() -> String {
    format!("tnt_op_{}", "Jb9".repeat(15))
}

mod support;

use support::{Served as Proc, wait_for as wait_line};

async fn start(db_url: &str, roles: &[&str]) -> Proc {
    let args: Vec<&str> = roles.iter().flat_map(|r| ["--role", r]).collect();
    support::serve(
        db_url,
        &[
            ("TENANTRY_BOOTSTRAP_OPERATOR_KEY", &operator_key()),
            (
                "TENANTRY_LOG_LEVEL",
                "warn,tenantry_server::jobs::workers=info,tenantry::job_runs=debug",
            ),
            ("TENANTRY_WORKER_CONCURRENCY", "32"),
        ],
        &args,
    )
    .await
}

fn log_values(p: &Proc) -> Vec<Value> {
    p.stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The worker id a process logged at start.
async fn worker_id(p: &Proc) -> String {
    wait_line(&p.stdout, "worker started").await;
    log_values(p)
        .into_iter()
        .find(|v| v["message"] == "worker started")
        .and_then(|v| v["worker"].as_str().map(str::to_owned))
        .unwrap()
}

struct Run {
    owner: String,
    attempt: u64,
    start: i64,
    end: i64,
    ok: bool,
}

fn runs(procs: &[&Proc]) -> HashMap<String, Vec<Run>> {
    let mut out: HashMap<String, Vec<Run>> = HashMap::new();
    for p in procs {
        for v in log_values(p) {
            if v["message"] != "job run" {
                continue;
            }
            out.entry(v["job_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(Run {
                    owner: v["owner"].as_str().unwrap().to_owned(),
                    attempt: v["attempt"].as_u64().unwrap(),
                    start: v["started_us"].as_i64().unwrap(),
                    end: v["ended_us"].as_i64().unwrap(),
                    ok: v["ok"].as_bool().unwrap(),
                });
        }
    }
    out
}

async fn post(base: &str, path: &str, body: &Value) -> Value {
    let resp = tenantry_server::http_client()
        .build()
        .unwrap()
        .post(format!("{base}{path}"))
        .bearer_auth(operator_key())
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn count(db: &str, sql: &str) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n
}

async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn database(test: &str) -> Option<tenantry_store::testing::PgTestDatabase> {
    match tenantry_store::testing::PgTestDatabase::create().await {
        Some(db) => Some(db),
        None => {
            tenantry_store::testing::skip_notice(test);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_ten_thousand_jobs_exactly_once() {
    let Some(db) = database("two_workers_run_ten_thousand_jobs_exactly_once").await else {
        return;
    };
    let a = start(&db.url, &["api", "worker"]).await;
    let b = start(&db.url, &["worker"]).await;
    for _ in 0..10 {
        let jobs: Vec<Value> = (0..1000).map(|_| json!({"kind": "noop"})).collect();
        post(&a.base, "/v1/jobs", &json!({ "jobs": jobs })).await;
    }
    until("10 000 completions", Duration::from_secs(120), async || {
        count(
            &db.url,
            "SELECT COUNT(*) FROM jobs WHERE state = 'completed'",
        )
        .await
            == 10_000
    })
    .await;
    // the last completions' log lines may still be in the pipe
    until("10 000 run records", Duration::from_secs(10), async || {
        runs(&[&a, &b]).values().map(Vec::len).sum::<usize>() >= 10_000
    })
    .await;
    let all = runs(&[&a, &b]);
    assert_eq!(all.len(), 10_000, "every job ran");
    let mut by_owner: HashMap<&str, usize> = HashMap::new();
    for (id, rs) in &all {
        assert_eq!(
            rs.iter().filter(|r| r.ok).count(),
            1,
            "job {id} succeeded once"
        );
        assert_eq!(rs.len(), 1, "job {id} ran {} times", rs.len());
        let mut sorted: Vec<&Run> = rs.iter().collect();
        sorted.sort_by_key(|r| r.start);
        for w in sorted.windows(2) {
            assert!(
                w[0].end <= w[1].start,
                "job {id} ran on two workers at once"
            );
        }
        *by_owner.entry(rs[0].owner.as_str()).or_default() += 1;
    }
    assert_eq!(by_owner.len(), 2, "both workers took part: {by_owner:?}");
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM jobs WHERE attempt <> 1").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_jobs_run_again_and_its_late_writes_are_fenced() {
    let Some(db) =
        database("a_killed_worker_s_jobs_run_again_and_its_late_writes_are_fenced").await
    else {
        return;
    };
    let a = start(&db.url, &["api"]).await;
    let mut b = start(&db.url, &["worker"]).await;
    let b_owner = worker_id(&b).await;
    let jobs: Vec<Value> = (0..8)
        .map(|_| json!({"kind": "sleep", "payload": {"ms": 4000}, "lease_seconds": 2}))
        .collect();
    post(&a.base, "/v1/jobs", &json!({ "jobs": jobs })).await;
    until("B running all 8", Duration::from_secs(20), async || {
        count(
            &db.url,
            &format!(
                "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_owner = '{b_owner}'"
            ),
        )
        .await
            == 8
    })
    .await;
    // B's fences, as B knows them
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let fences: Vec<tenantry_store::jobs::Fence> = sqlx::query("SELECT id, attempt FROM jobs")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| tenantry_store::jobs::Fence {
            id: r.get("id"),
            attempt: u32::try_from(r.get::<i32, _>("attempt")).unwrap(),
        })
        .collect();
    b.child.start_kill().unwrap(); // SIGKILL
    b.child.wait().await.unwrap();
    let killed_at = Instant::now();
    // a fresh worker recovers them after the 2 s lease and runs them again
    let c = start(&db.url, &["worker"]).await;
    until("all 8 completed", Duration::from_secs(60), async || {
        count(
            &db.url,
            "SELECT COUNT(*) FROM jobs WHERE state = 'completed'",
        )
        .await
            == 8
    })
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "not before the lease expired"
    );
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM jobs WHERE attempt = 2 AND errors -> 0 ->> 'kind' = 'lease_expired'").await,
        8,
        "each recovered run counts the lost attempt"
    );
    // the checkpoint B saved is where the rerun started (sleep checkpoints every second)
    let c_owner = worker_id(&c).await;
    let reruns = runs(&[&c]);
    assert_eq!(reruns.len(), 8);
    assert!(
        reruns
            .values()
            .flatten()
            .all(|r| r.owner == c_owner && r.attempt == 2 && r.ok)
    );
    // B comes back from the dead and tries to finish its attempt: fenced
    let store = tenantry_store::connect(&db.url, &Default::default())
        .await
        .unwrap();
    let now = chrono::Utc::now();
    assert!(
        store
            .jobs()
            .complete(&b_owner, &fences, now)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .jobs()
            .checkpoint(&b_owner, fences[0], &json!({"late": true}), now)
            .await
            .unwrap()
    );
    store.close().await;
    assert_eq!(
        count(
            &db.url,
            "SELECT COUNT(*) FROM jobs WHERE state = 'completed' AND attempt = 2"
        )
        .await,
        8
    );
    drop(a);
}

/// How long the two-scheduler run lasts: 60 s by default, `TENANTRY_SOAK_SECONDS=300` for the full
/// five minutes the acceptance criterion names (see docs/benchmarks.md for that run).
fn soak() -> Duration {
    Duration::from_secs(
        std::env::var("TENANTRY_SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_fire_each_time_once_and_hand_over() {
    let Some(db) = database("two_schedulers_fire_each_time_once_and_hand_over").await else {
        return;
    };
    let mut s1 = start(&db.url, &["api", "scheduler"]).await;
    let mut s2 = start(&db.url, &["scheduler"]).await;
    post(
        &s1.base,
        "/v1/schedules",
        &json!({"name": "tick", "interval_seconds": 1, "kind": "noop"}),
    )
    .await;
    let half = soak() / 2;
    tokio::time::sleep(half).await;
    // kill whichever leads
    let leader: String = {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT owner FROM worker_leases WHERE name = 'scheduler'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    let pid1 = s1.child.id().unwrap();
    let (victim, survivor) = if leader.contains(&format!(":{pid1}:")) {
        (&mut s1, &mut s2)
    } else {
        (&mut s2, &mut s1)
    };
    victim.child.start_kill().unwrap();
    victim.child.wait().await.unwrap();
    let killed = Instant::now();
    until("a new leader", Duration::from_secs(15), async || {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let owner: String =
            sqlx::query_scalar("SELECT owner FROM worker_leases WHERE name = 'scheduler'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        owner != leader
    })
    .await;
    let handover = killed.elapsed();
    assert!(
        handover <= Duration::from_secs(11),
        "handover took {handover:?} (lease 10 s)"
    );
    tokio::time::sleep(half).await;
    survivor.child.start_kill().unwrap();
    // every fire time enqueued once
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT unique_key FROM jobs WHERE unique_key LIKE 'schedule:tick:%' ORDER BY unique_key",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "a fire time was enqueued twice");
    let times: Vec<chrono::DateTime<chrono::Utc>> = keys
        .iter()
        .map(|k| k.trim_start_matches("schedule:tick:").parse().unwrap())
        .collect();
    let expected = soak().as_secs() as usize;
    assert!(
        times.len() + 15 >= expected,
        "{} firings in {} s",
        times.len(),
        expected
    );
    // one second apart, except across the handover (missed times are skipped, not backfilled)
    // and at most once more: on a loaded 2-core CI machine a process starting beside four other
    // test processes has been seen to fire one tick late (it then skips, as designed)
    let long_gaps = times
        .windows(2)
        .filter(|w| w[1] - w[0] > chrono::Duration::milliseconds(1500))
        .count();
    assert!(long_gaps <= 2, "{long_gaps} gaps in {times:?}");
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] >= chrono::Duration::milliseconds(999))
    );
    eprintln!(
        "two schedulers: {} firings over {:?}, handover {:?}",
        times.len(),
        soak(),
        handover
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_schedule_fires_within_seconds_of_a_fresh_start() {
    let Some(db) = database("an_hourly_schedule_fires_within_seconds_of_a_fresh_start").await
    else {
        return;
    };
    // the schedule exists before any scheduler runs (as after a deploy or an outage)
    let mut api = start(&db.url, &["api"]).await;
    post(
        &api.base,
        "/v1/schedules",
        &json!({"name": "hourly-sync", "interval_seconds": 3600, "kind": "noop"}),
    )
    .await;
    api.child.start_kill().unwrap();
    api.child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let _scheduler = start(&db.url, &["scheduler"]).await;
    until("the first firing", Duration::from_secs(15), async || {
        count(
            &db.url,
            "SELECT COUNT(*) FROM jobs WHERE unique_key LIKE 'schedule:hourly-sync:%'",
        )
        .await
            == 1
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "fired {took:?} after start");
    // and not again for an hour
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(
            &db.url,
            "SELECT COUNT(*) FROM jobs WHERE unique_key LIKE 'schedule:hourly-sync:%'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish_or_gives_them_back() {
    let Some(db) = database("sigterm_lets_running_jobs_finish_or_gives_them_back").await else {
        return;
    };
    let api = start(&db.url, &["api"]).await;
    let mut w = start(&db.url, &["worker"]).await;
    // one job finishes inside the 10 s grace, one cannot
    post(
        &api.base,
        "/v1/jobs",
        &json!({"jobs": [
            {"kind": "sleep", "payload": {"ms": 1500}},
            {"kind": "sleep", "payload": {"ms": 60000}},
        ]}),
    )
    .await;
    until("both running", Duration::from_secs(20), async || {
        count(&db.url, "SELECT COUNT(*) FROM jobs WHERE state = 'running'").await == 2
    })
    .await;
    let pid = w.child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), w.child.wait())
        .await
        .expect("the worker stops within its grace period")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        count(
            &db.url,
            "SELECT COUNT(*) FROM jobs WHERE state = 'completed'"
        )
        .await,
        1
    );
    // the long one is back in the queue, its attempt not counted, its progress kept
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM jobs WHERE state = 'available' AND attempt = 0 AND lease_owner IS NULL AND checkpoint IS NOT NULL").await,
        1
    );
}
