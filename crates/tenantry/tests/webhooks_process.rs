//! Webhooks across real processes: a server SIGKILLed while it delivers a backlog; after a
//! restart every event reaches every matching subscription at least once (receivers see the same
//! `webhook-id` when one is sent again).

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

mod support;

fn operator_key() -> String {
    format!("tnt_op_{}", "Wh5".repeat(15))
}

async fn start(db_url: &str, roles: &[&str]) -> support::Served {
    let args: Vec<&str> = roles.iter().flat_map(|r| ["--role", r]).collect();
    support::serve(
        db_url,
        &[
            ("TENANTRY_BOOTSTRAP_OPERATOR_KEY", &operator_key()),
            ("TENANTRY_LOG_LEVEL", "warn"),
            ("TENANTRY_WEBHOOKS_ALLOW_HTTP", "true"),
            ("TENANTRY_EGRESS_ALLOW_PRIVATE", "true"),
            ("TENANTRY_WEBHOOKS_POLL_MS", "50"),
            // `/flaky` fails every message's first attempt: not what the breaker is for here
            ("TENANTRY_WEBHOOKS_BREAKER_THRESHOLD", "100000"),
            // few at a time: the dispatcher is in the middle of the backlog for a while
            ("TENANTRY_WEBHOOKS_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "2"),
        ],
        &args,
    )
    .await
}

/// (path, webhook-id, subject) of each request; `/flaky` fails each message's first attempt.
type Log = Arc<Mutex<Vec<(String, String, String)>>>;

async fn receiver() -> (u16, Log) {
    let log: Log = Arc::default();
    let l = Arc::clone(&log);
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let l = Arc::clone(&l);
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let subject = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["subject"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let path = uri.path().to_owned();
                let mut l = l.lock().unwrap();
                let seen = l.iter().any(|(p, i, _)| *p == path && *i == id);
                l.push((path.clone(), id, subject));
                if path == "/flaky" && !seen {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, log)
}

fn subjects(log: &Log, path: &str) -> HashSet<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(p, _, s)| p == path && s.starts_with("dev-"))
        .map(|(_, _, s)| s.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_backlog_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let pg = match std::env::var("TENANTRY_TEST_POSTGRES_URL") {
        Ok(admin) => Some(tenantry_store::testing::PgTestDatabase::create_on(&admin).await),
        Err(_) => None,
    };
    let db_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("t.db").display()),
    };
    let client = tenantry_server::http_client().build().unwrap();
    let (port, log) = receiver().await;

    // subscriptions and a backlog, written through an API-only process (no dispatcher runs)
    let api = start(&db_url, &["api"]).await;
    let t = support::post_json(
        &client,
        &format!("{}/v1/tenants", api.base),
        &operator_key(),
        &[],
        &json!({ "name": "Crash hooks", "edition": "enterprise" }),
    )
    .await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    for path in ["/steady", "/flaky"] {
        let s = support::post_json(
            &client,
            &format!("{}/v1/webhooks/subscriptions", api.base),
            &operator_key(),
            &[("x-tenant-id", tenant.clone())],
            &json!({ "url": format!("http://127.0.0.1:{port}{path}"), "event_types": ["device.*"],
                     "delivery_policy": {"backoff_initial_ms": 20, "backoff_max_ms": 100} }),
        )
        .await;
        assert!(s["secret"].is_string(), "{s}");
    }
    const N: usize = 300;
    let writes = (0..N).map(|i| {
        let (client, base, tenant) = (client.clone(), api.base.clone(), tenant.clone());
        async move {
            let r = client
                .post(format!("{base}/v1/devices"))
                .bearer_auth(operator_key())
                .header("x-tenant-id", &tenant)
                .json(&json!({ "device_id": format!("dev-{i:04}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{:?}", r.text().await);
        }
    });
    futures_util::future::join_all(writes).await;
    support::stop(api.child).await;
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing delivered without a worker"
    );

    // a dispatcher starts on the backlog and is killed in the middle of it
    let mut worker = start(&db_url, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while subjects(&log, "/steady").len() < 30 {
        assert!(Instant::now() < deadline, "deliveries never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.child.start_kill().unwrap(); // SIGKILL
    let _ = worker.child.wait().await;
    let at_kill = subjects(&log, "/steady").len();
    assert!(
        at_kill < N,
        "the backlog was delivered before the kill ({at_kill})"
    );

    // after a restart, every event reaches both subscriptions
    let again = start(&db_url, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (steady, flaky) = (subjects(&log, "/steady"), subjects(&log, "/flaky"));
        if steady.len() == N && flaky.len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after the restart: steady {}/{N}, flaky {}/{N}",
            steady.len(),
            flaky.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // each subject has one webhook-id per subscription, however often it was sent
    let mut ids: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for (p, id, s) in log.lock().unwrap().iter() {
        ids.entry((p.clone(), s.clone()))
            .or_default()
            .insert(id.clone());
    }
    assert!(
        ids.values().all(|v| v.len() == 1),
        "one webhook-id per message"
    );
    support::stop(again.child).await;
    drop(pg);
}
