//! Device telemetry across real processes:
//! - **crash**: clients stream batches with retries while the server is SIGKILLed and restarted
//!   several times; every event of a batch that got a `202` is stored exactly once, and sending
//!   everything again yields only duplicates (SQLite and PostgreSQL);
//! - **two instances** on one PostgreSQL receive overlapping batches concurrently: no event is
//!   stored twice and the `accepted` counts add up to what is stored.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

mod support;

fn operator_key() -> String {
    format!("tnt_op_{}", "Tl7".repeat(15))
}

async fn start(db_url: &str) -> support::Served {
    support::serve(
        db_url,
        &[
            ("TENANTRY_BOOTSTRAP_OPERATOR_KEY", &operator_key()),
            ("TENANTRY_LOG_LEVEL", "warn"),
        ],
        &[],
    )
    .await
}

/// An enterprise tenant and a tenant-admin key.
async fn tenant(client: &reqwest::Client, base: &str) -> (String, String) {
    let t = support::post_json(
        client,
        &format!("{base}/v1/tenants"),
        &operator_key(),
        &[],
        &json!({ "name": "Crash test", "edition": "enterprise" }),
    )
    .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let k = support::post_json(
        client,
        &format!("{base}/v1/tenants/{id}/api-keys"),
        &operator_key(),
        &[],
        &json!({ "name": "sender", "roles": ["tenant_admin"] }),
    )
    .await;
    (id, k["key"].as_str().unwrap().to_owned())
}

/// Events `first..first + n` of four devices, recorded over the last minutes.
fn batch(first: usize, n: usize) -> Value {
    let now = chrono::Utc::now();
    let events: Vec<Value> = (first..first + n)
        .map(|i| {
            json!({
                "event_id": format!("ev-{i:06}"),
                "device_id": format!("meter-{}", i % 4),
                "type": "temperature",
                "value": i as f64,
                "recorded_at": (now - chrono::Duration::seconds((i % 600) as i64))
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            })
        })
        .collect();
    json!({ "events": events })
}

/// Sends `body` to whichever instance `base` names now until it is answered `202`; returns
/// the answer.
async fn send_until_acknowledged(
    client: &reqwest::Client,
    base: &Mutex<String>,
    key: &str,
    body: &Value,
) -> Value {
    for _ in 0..2000 {
        let url = format!("{}/v1/telemetry", base.lock().unwrap());
        let sent = client
            .post(&url)
            .bearer_auth(key)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status().as_u16();
            if status == 202 {
                if let Ok(v) = r.json::<Value>().await {
                    return v;
                }
            } else {
                assert!(
                    status == 503 || status == 429,
                    "only overload may refuse a good batch: {status} {}",
                    r.text().await.unwrap_or_default()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("a batch was never acknowledged");
}

/// `(stored rows, distinct event ids)` of a tenant, read straight from the database.
async fn stored(db_url: &str, tenant: &str) -> (i64, i64) {
    let tenant: uuid::Uuid = tenant.parse().unwrap();
    if db_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(db_url).await.unwrap();
        let row: (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT event_id) FROM telemetry_events WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        row
    } else {
        let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
        let row: (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT event_id) FROM telemetry_events WHERE tenant_id = ?",
        )
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        row
    }
}

const BATCHES: usize = 120;
const PER_BATCH: usize = 50;
const SENDERS: usize = 4;

async fn crash_case(db_url: &str) {
    let client = tenantry_server::http_client().build().unwrap();
    let mut server = start(db_url).await;
    let (tenant, key) = tenant(&client, &server.base).await;
    let base = Arc::new(Mutex::new(server.base.clone()));
    let acked = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let next = Arc::new(Mutex::new(0_usize));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (client, base, key, acked, next) = (
            client.clone(),
            base.clone(),
            key.clone(),
            acked.clone(),
            next.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let b = {
                    let mut n = next.lock().unwrap();
                    if *n == BATCHES {
                        return;
                    }
                    *n += 1;
                    *n - 1
                };
                let out =
                    send_until_acknowledged(&client, &base, &key, &batch(b * PER_BATCH, PER_BATCH))
                        .await;
                let (accepted, duplicates) = (
                    out["accepted"].as_u64().unwrap(),
                    out["duplicates"].as_u64().unwrap(),
                );
                assert_eq!(accepted + duplicates, PER_BATCH as u64, "{out}");
                acked
                    .lock()
                    .unwrap()
                    .extend(b * PER_BATCH..(b + 1) * PER_BATCH);
            }
        }));
    }
    // kill it three times while the batches stream in, restarting on the same database
    let mut kills = 0;
    while kills < 3 {
        let progress = acked.lock().unwrap().len();
        if progress >= (kills + 1) * BATCHES * PER_BATCH / 5 {
            assert!(
                progress < BATCHES * PER_BATCH,
                "kill {kills} came after the last batch: the test proves nothing"
            );
            server.child.start_kill().unwrap(); // SIGKILL
            server.child.wait().await.unwrap();
            kills += 1;
            server = start(db_url).await;
            *base.lock().unwrap() = server.base.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().len();
    assert_eq!(acked, BATCHES * PER_BATCH, "every batch was acknowledged");
    let (rows, distinct) = stored(db_url, &tenant).await;
    assert_eq!(
        (rows, distinct),
        (acked as i64, acked as i64),
        "every acknowledged event stored exactly once"
    );
    // everything again: only duplicates
    let mut accepted = 0;
    for b in 0..BATCHES {
        let out =
            send_until_acknowledged(&client, &base, &key, &batch(b * PER_BATCH, PER_BATCH)).await;
        accepted += out["accepted"].as_u64().unwrap();
        assert_eq!(out["duplicates"].as_u64().unwrap(), PER_BATCH as u64);
    }
    assert_eq!(accepted, 0);
    assert_eq!(stored(db_url, &tenant).await.0, acked as i64);
    support::stop(server.child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenantry.db").display());
    crash_case(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_events_survive_sigkill() {
    let Some(db) = tenantry_store::testing::PgTestDatabase::create().await else {
        tenantry_store::testing::skip_notice("postgres_acknowledged_events_survive_sigkill");
        return;
    };
    crash_case(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_store_overlapping_batches_once() {
    let Some(db) = tenantry_store::testing::PgTestDatabase::create().await else {
        tenantry_store::testing::skip_notice(
            "postgres_two_instances_store_overlapping_batches_once",
        );
        return;
    };
    let client = tenantry_server::http_client().build().unwrap();
    let first = start(&db.url).await;
    let second = start(&db.url).await;
    let (tenant, key) = tenant(&client, &first.base).await;
    // batch k holds events 50k..50k+100: every event is in two batches; each instance gets every
    // batch, in opposite orders, from three senders at once
    const N: usize = 60;
    let mut tasks = Vec::new();
    for (i, base) in [&first.base, &second.base].into_iter().enumerate() {
        for s in 0..3 {
            let (client, base, key) = (client.clone(), Mutex::new(base.clone()), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut accepted = 0;
                let mut order: Vec<usize> = (s..N).step_by(3).collect();
                if i == 1 {
                    order.reverse();
                }
                for k in order {
                    let out =
                        send_until_acknowledged(&client, &base, &key, &batch(k * 50, 100)).await;
                    assert_eq!(
                        out["accepted"].as_u64().unwrap() + out["duplicates"].as_u64().unwrap(),
                        100
                    );
                    accepted += out["accepted"].as_u64().unwrap();
                }
                accepted
            }));
        }
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let distinct = (N - 1) * 50 + 100;
    assert_eq!(accepted, distinct as u64, "the accepted counts add up");
    assert_eq!(
        stored(&db.url, &tenant).await,
        (distinct as i64, distinct as i64),
        "no event stored twice"
    );
    support::stop(first.child).await;
    support::stop(second.child).await;
}

/// Runs `tenantry telemetry …` on the database and data directory; its JSON answer.
async fn telemetry_cli(db_url: &str, data_dir: &std::path::Path, args: &[&str]) -> Value {
    let out = support::tenantry(db_url)
        .env("TENANTRY_DATA_DIR", data_dir)
        .arg("telemetry")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "tenantry telemetry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The documented command line: `tenantry telemetry retention` removes expired events (archiving
/// those of a tenant whose archival is on) into `<data_dir>/archive`, `archives` lists the
/// manifests, `restore-archive` loads one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_archives_and_restore_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenantry.db").display());
    let client = tenantry_server::http_client().build().unwrap();
    let mut cmd = support::tenantry(&url);
    cmd.env("TENANTRY_BOOTSTRAP_OPERATOR_KEY", operator_key())
        .env("TENANTRY_DATA_DIR", dir.path())
        .env("TENANTRY_LOG_LEVEL", "warn")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let server = support::serve_command(cmd).await;
    let (tenant, key) = tenant(&client, &server.base).await;
    // archival on for this (enterprise, 90 days) tenant: the default already; say it anyway
    let r = client
        .put(format!(
            "{}/v1/tenants/{tenant}/telemetry-settings",
            server.base
        ))
        .bearer_auth(operator_key())
        .json(&json!({ "legal_hold": false, "archive": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = send_until_acknowledged(
        &client,
        &Mutex::new(server.base.clone()),
        &key,
        &batch(0, 10),
    )
    .await;
    assert_eq!(out["accepted"], 10);
    support::stop(server.child).await;
    // back-date five of them past the retention, in the database
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::days(120)).timestamp_micros();
    sqlx::query("UPDATE telemetry_events SET recorded_at = ?1 WHERE event_id < 'ev-000005'")
        .bind(old)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let report = telemetry_cli(&url, dir.path(), &["retention"]).await;
    assert_eq!(report["removed"], 5, "{report}");
    let listed = telemetry_cli(&url, dir.path(), &["archives", "--tenant", &tenant]).await;
    let manifests = listed["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{listed}");
    let manifest = manifests[0].as_str().unwrap();
    assert!(dir.path().join("archive").join(manifest).exists());
    let restored = telemetry_cli(
        &url,
        dir.path(),
        &["restore-archive", "--manifest", manifest],
    )
    .await;
    assert_eq!(restored["stored"], 5, "{restored}");
    assert_eq!(stored(&url, &tenant).await.0, 10);
    // a manifest that is not there: a clear error, exit code 1
    let out = support::tenantry(&url)
        .env("TENANTRY_DATA_DIR", dir.path())
        .args([
            "telemetry",
            "restore-archive",
            "--manifest",
            "telemetry/nothing.manifest.json",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no archive manifest"));
}
