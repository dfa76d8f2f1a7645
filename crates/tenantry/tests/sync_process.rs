//! Source sync across real processes: a run is SIGKILLed in the middle; after a restart it
//! continues from its checkpoint — pages stored before the kill are not fetched again — and its
//! records equal an uninterrupted run's (SQLite and PostgreSQL).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

fn operator_key() -> String {
    format!("tnt_op_{}", "Sy9".repeat(15))
}

async fn start(db_url: &str) -> support::Served {
    support::serve(
        db_url,
        &[
            ("TENANTRY_BOOTSTRAP_OPERATOR_KEY", &operator_key()),
            ("TENANTRY_LOG_LEVEL", "warn"),
            ("TENANTRY_EGRESS_ALLOW_PRIVATE", "true"),
            // a killed worker's run is taken up again within seconds
            ("TENANTRY_SYNC_RUN_LEASE_SECONDS", "3"),
            ("TENANTRY_SYNC_RUN_RETRY_BASE_MS", "50"),
            ("TENANTRY_SYNC_RUN_RETRY_MAX_MS", "200"),
        ],
        &[],
    )
    .await
}

async fn tenant(client: &reqwest::Client, base: &str, name: &str) -> String {
    let t = support::post_json(
        client,
        &format!("{base}/v1/tenants"),
        &operator_key(),
        &[],
        &json!({ "name": name }),
    )
    .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let k = support::post_json(
        client,
        &format!("{base}/v1/tenants/{id}/api-keys"),
        &operator_key(),
        &[],
        &json!({ "name": "syncer", "roles": ["tenant_admin"] }),
    )
    .await;
    k["key"].as_str().unwrap().to_owned()
}

async fn get(client: &reqwest::Client, url: &str, key: &str) -> Value {
    let r = client.get(url).bearer_auth(key).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

/// Creates a source pulling `url` and runs it; (source id, run id).
async fn source_and_run(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    url: &str,
) -> (String, String) {
    let s = support::post_json(
        client,
        &format!("{base}/v1/sources"),
        key,
        &[],
        &json!({"name": "vulnerabilities", "max_attempts": 5,
                "config": {"url": url, "items": "/items", "key": "/id", "record_type": "vulnerability",
                           "pagination": {"style": "next_link", "next": "/next"}}}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let r = client
        .post(format!("{base}/v1/sources/{id}:run"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let run: Value = r.json().await.unwrap();
    (id, run["id"].as_str().unwrap().to_owned())
}

async fn run_view(client: &reqwest::Client, base: &str, key: &str, source: &str) -> Value {
    let runs = get(client, &format!("{base}/v1/sources/{source}/runs"), key).await;
    runs["items"][0].clone()
}

async fn until_run(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    source: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = run_view(client, base, key, source).await;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "the run never got there: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn records(client: &reqwest::Client, base: &str, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = get(client, &format!("{base}/v1/records?limit=200{cursor}"), key).await;
        for r in page["items"].as_array().unwrap() {
            assert!(r["removed_at"].is_null());
            out.insert(
                r["key"].as_str().unwrap().to_owned(),
                r["hash"].as_str().unwrap().to_owned(),
            );
        }
        match page["page_info"]["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

fn sigkill(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

async fn resume_case(db_url: &str) {
    let fixture = tenantry_server::testing::fixture_source::spawn()
        .await
        .unwrap();
    let client = tenantry_server::http_client().build().unwrap();
    // 40 pages of 50, each taking 60 ms upstream
    let url = format!("{fixture}/vulnerabilities?count=2000&limit=50&slow_ms=60");
    let first = start(db_url).await;
    let key = tenant(&client, &first.base, "Interrupted").await;
    let (source, run) = source_and_run(&client, &first.base, &key, &url).await;
    let at_kill = until_run(&client, &first.base, &key, &source, |r| {
        r["pages"].as_u64().unwrap_or(0) >= 12
    })
    .await;
    sigkill(&first.child);
    let mut child = first.child;
    let _ = child.wait().await;
    let stored_pages = at_kill["pages"].as_u64().unwrap();
    assert_eq!(at_kill["status"], "running");

    let second = start(db_url).await;
    let done = until_run(&client, &second.base, &key, &source, |r| {
        matches!(r["status"].as_str(), Some("completed" | "dead"))
    })
    .await;
    assert_eq!(done["id"], run.as_str(), "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resumed"], true, "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["pages"], 40, "{done}");
    assert_eq!(
        done["upserted"].as_u64().unwrap() + done["unchanged"].as_u64().unwrap(),
        2000,
        "{done}"
    );

    // pages stored before the kill were fetched once; at most the one in flight twice
    let stats: Value = client
        .get(format!("{fixture}/_stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut twice = Vec::new();
    for (page, n) in stats.as_object().unwrap() {
        let offset: u64 = page.split('?').nth(1).unwrap().parse().unwrap();
        let n = n.as_u64().unwrap();
        if offset / 50 < stored_pages {
            assert_eq!(
                n, 1,
                "page {page} was stored before the kill, yet fetched {n} times"
            );
        } else if n > 1 {
            twice.push(page.clone());
        }
    }
    assert!(
        twice.len() <= 1,
        "fetched again after the restart: {twice:?}"
    );

    // the same records as an uninterrupted run
    let resumed = records(&client, &second.base, &key).await;
    let clean_key = tenant(&client, &second.base, "Uninterrupted").await;
    let clean_url = format!("{fixture}/vulnerabilities?count=2000&limit=50");
    let (clean_source, _) = source_and_run(&client, &second.base, &clean_key, &clean_url).await;
    let clean_run = until_run(&client, &second.base, &clean_key, &clean_source, |r| {
        r["status"] == "completed"
    })
    .await;
    assert_eq!(clean_run["upserted"], 2000);
    let clean = records(&client, &second.base, &clean_key).await;
    assert_eq!(resumed.len(), 2000);
    assert_eq!(
        resumed, clean,
        "the resumed run's records differ from a clean run's"
    );
    support::stop(second.child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenantry.db").display());
    resume_case(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_run_resumes_from_its_checkpoint() {
    let Some(db) = tenantry_store::testing::PgTestDatabase::create().await else {
        tenantry_store::testing::skip_notice("postgres_a_killed_run_resumes_from_its_checkpoint");
        return;
    };
    resume_case(&db.url).await;
}
