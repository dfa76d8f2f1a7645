//! The event relay across real processes: a server SIGKILLed while it relays a backlog to NATS
//! JetStream; after a restart every committed event is on the bus (at least once — and, with
//! JetStream's duplicate window, once) and the relay's cursor reaches the log's head.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_bus::Bus as _;

mod support;

fn operator_key() -> String {
    format!("tnt_op_{}", "Ev4".repeat(15))
}

async fn start(db_url: &str, nats: &str, stream: &str, roles: &[&str]) -> support::Served {
    let args: Vec<&str> = roles.iter().flat_map(|r| ["--role", r]).collect();
    support::serve(
        db_url,
        &[
            ("TENANTRY_BOOTSTRAP_OPERATOR_KEY", &operator_key()),
            ("TENANTRY_LOG_LEVEL", "warn"),
            ("TENANTRY_NATS_URL", nats),
            ("TENANTRY_EVENTS_NATS_STREAM", stream),
            ("TENANTRY_EVENTS_SUBJECT_PREFIX", stream),
            // small batches: the relay is in the middle of the backlog for a while
            ("TENANTRY_EVENTS_RELAY_BATCH", "1"),
        ],
        &args,
    )
    .await
}

/// The relay's saved position, read from the database.
async fn relay_position(db_url: &str) -> i64 {
    let q = "SELECT position FROM event_cursors WHERE name = 'relay'";
    let p: Option<i64> = if db_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
        let p = sqlx::query_scalar(q).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        p
    } else {
        let pool = sqlx::PgPool::connect(db_url).await.unwrap();
        let p = sqlx::query_scalar(q).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        p
    };
    p.unwrap_or(0)
}

async fn readiness(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_backlog_loses_nothing() {
    let Ok(nats) = std::env::var("TENANTRY_TEST_NATS_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but TENANTRY_TEST_NATS_URL is not"
        );
        eprintln!("skipped: a_relay_killed_mid_backlog_loses_nothing (no NATS server)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pg = match std::env::var("TENANTRY_TEST_POSTGRES_URL") {
        Ok(admin) => Some(tenantry_store::testing::PgTestDatabase::create_on(&admin).await),
        Err(_) => None,
    };
    let db_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("t.db").display()),
    };
    let stream = format!("t{}_crash", uuid::Uuid::new_v4().simple());
    let client = tenantry_server::http_client().build().unwrap();

    // a backlog: written through an API-only process (no relay runs)
    let api = start(&db_url, &nats, &stream, &["api"]).await;
    let t = support::post_json(
        &client,
        &format!("{}/v1/tenants", api.base),
        &operator_key(),
        &[],
        &json!({ "name": "Crash", "edition": "enterprise" }),
    )
    .await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let writes = (0..400).map(|i| {
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

    // a relay starts on the backlog and is killed in the middle of it
    let mut relay = start(&db_url, &nats, &stream, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay_position(&db_url).await < 20 {
        assert!(Instant::now() < deadline, "the relay never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    relay.child.start_kill().unwrap(); // SIGKILL
    let _ = relay.child.wait().await;
    let at_kill = relay_position(&db_url).await;
    assert!(
        at_kill < 400,
        "the backlog was relayed before the kill ({at_kill})"
    );

    // after a restart, everything is published
    let again = start(&db_url, &nats, &stream, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let head = loop {
        let r = readiness(&client, &again.base).await;
        let e = &r["checks"]["events"];
        if e["relay"] == "leading"
            && e["backlog"] == 0
            && e["published_position"].as_i64() > Some(400)
        {
            break e["published_position"].as_i64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the backlog was never published: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // every event of the log is on the bus
    let mut logged = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/events?tenant={tenant}&limit=200", again.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(operator_key())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["items"].as_array().unwrap() {
            logged.insert(e["id"].as_str().unwrap().to_owned());
        }
        match page["page_info"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        logged.len(),
        401,
        "the tenant's creation and its 400 devices"
    );
    let bus = tenantry_bus::NatsBus::connect(&nats, &stream, &stream, Duration::from_secs(3600))
        .await
        .unwrap();
    let mut consumer = bus
        .consumer("check", ">", tenantry_bus::ConsumerOptions::default())
        .await
        .unwrap();
    let mut on_bus = Vec::new();
    while let Some(d) = consumer.next(Duration::from_secs(2)).await.unwrap() {
        on_bus.push(d.message.id.clone());
        d.ack().await.unwrap();
    }
    let distinct: HashSet<&String> = on_bus.iter().collect();
    let missing: Vec<&String> = logged.iter().filter(|id| !distinct.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} events never published",
        missing.len()
    );
    assert_eq!(
        on_bus.len(),
        distinct.len(),
        "JetStream kept a republished event twice"
    );
    assert!(on_bus.len() as i64 <= head);
    support::stop(again.child).await;
    bus.delete_stream().await.unwrap();
}
