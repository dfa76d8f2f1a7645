//! Source sync over HTTP, against the fixture upstream (`tenantry_server::testing::fixture_source`): sources
//! (validation, sealed headers, schedules), runs page by page in every pagination style,
//! reconciliation, bad data quarantined and truncated, failing sources retried then dead, three
//! tenants at once, two instances never running one source at once.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::config::Config;
use tenantry_server::testing::TestServer;

use crate::access::tenant_key;
use crate::support::*;

/// The sync tests' server: the fixture is on loopback, so the egress guard allows private
/// addresses; runs retry fast.
pub fn tweak(c: &mut Config) {
    c.egress.allow_private = true;
    c.sync.run_retry_base_ms = 20;
    c.sync.run_retry_max_ms = 100;
    c.sync.backoff_base_ms = 5;
    c.sync.backoff_max_ms = 20;
    c.sync.request_attempts = 3;
    c.sync.breaker_cooldown_seconds = 1;
}

async fn fixture() -> String {
    tenantry_server::testing::fixture_source::spawn()
        .await
        .unwrap()
}

/// A tenant and its admin key.
async fn tenant(srv: &TestServer, name: &str) -> (String, String) {
    let t = tenant_named(srv, name).await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, key) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    (tid, key)
}

fn source(name: &str, url: &str, style: &str) -> Value {
    let (items, pagination) = match style {
        "link_header" => ("", json!({"style": "link_header"})),
        "cursor" => (
            "/items",
            json!({"style": "cursor", "param": "cursor", "next": "/next_cursor"}),
        ),
        "page" => (
            "/items",
            json!({"style": "page", "param": "page", "start": 1}),
        ),
        _ => ("/items", json!({"style": "next_link", "next": "/next"})),
    };
    json!({"name": name, "kind": "http_json", "max_attempts": 2,
           "config": {"url": url, "items": items, "key": "/id", "record_type": "device",
                      "headers": {"Authorization": "Bearer s3cr3t-token"},
                      "pagination": pagination}})
}

async fn create(srv: &TestServer, key: &str, doc: &Value) -> Value {
    let r = srv
        .with_key(key, Method::POST, "/v1/sources")
        .json(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    body(r).await
}

async fn run(srv: &TestServer, key: &str, id: &str) -> (StatusCode, Value) {
    let r = srv
        .with_key(key, Method::POST, &format!("/v1/sources/{id}:run"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, body(r).await)
}

/// Waits for the run to end (completed or dead); its view.
async fn finished(srv: &TestServer, key: &str, source: &str, run: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let runs = body(
            srv.with_key(key, Method::GET, &format!("/v1/sources/{source}/runs"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if let Some(r) = runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == run)
            && matches!(r["status"].as_str(), Some("completed" | "dead"))
        {
            return r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {run} did not finish: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs a source now and waits for the run's end.
async fn run_to_end(srv: &TestServer, key: &str, source: &str) -> Value {
    let (status, r) = run(srv, key, source).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    finished(srv, key, source, r["id"].as_str().unwrap()).await
}

/// Every record of a source: key → (hash, removed).
async fn records(srv: &TestServer, key: &str, source: &str) -> BTreeMap<String, (String, bool)> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/records?source={source}&limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = body(srv.with_key(key, Method::GET, &path).send().await.unwrap()).await;
        for r in page["items"].as_array().unwrap() {
            out.insert(
                r["key"].as_str().unwrap().to_owned(),
                (
                    r["hash"].as_str().unwrap().to_owned(),
                    !r["removed_at"].is_null(),
                ),
            );
        }
        match page["page_info"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

pub async fn sources_are_validated_sealed_and_scheduled(srv: &TestServer) {
    let (tid, key) = tenant(srv, "Sourcing").await;
    let doc = json!({"name": "devices", "schedule": "0 */6 * * *",
        "config": {"url": "https://vendor.example/api/devices?limit=500",
                   "headers": {"Authorization": "Bearer s3cr3t-token", "X-Api-Version": "2"},
                   "items": "/items", "key": "/id", "record_type": "device",
                   "pagination": {"style": "next_link", "next": "/next"}}});
    let r = srv
        .with_key(&key, Method::POST, "/v1/sources")
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let created = body(r).await;
    let text = created.to_string();
    assert!(
        !text.contains("s3cr3t"),
        "header values are never shown: {text}"
    );
    assert_eq!(
        created["config"]["header_names"],
        json!(["Authorization", "X-Api-Version"]),
        "{created}"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let shown = body(
        srv.with_key(&key, Method::GET, &format!("/v1/sources/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        shown["config"]["header_names"],
        json!(["Authorization", "X-Api-Version"])
    );
    assert!(!shown.to_string().contains("s3cr3t"));
    // sealed at rest
    let t = srv
        .store
        .store
        .tenants()
        .get(&tenantry_domain::TenantRef::parse(&tid).unwrap())
        .await
        .unwrap()
        .unwrap();
    let scope = tenantry_server::access::scope::system_scope(&t, "test: sealed headers");
    let stored = srv
        .store
        .store
        .sync()
        .get_source(&scope, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.sealed_headers.unwrap();
    assert!(!sealed.contains("s3cr3t") && !stored.config.to_string().contains("s3cr3t"));
    // its schedule fires sync.run
    let schedules = body(
        srv.with_key(&key, Method::GET, "/v1/schedules")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sched = schedules["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("source:{id}"))
        .unwrap_or_else(|| panic!("no schedule in {schedules}"))
        .clone();
    assert_eq!(sched["cron"], "0 */6 * * *");
    assert_eq!(sched["kind"], "sync.run");

    // bad documents: each problem named by its field
    for (doc, field) in [
        (
            json!({"name": "x", "config": {"url": "not a url", "items": "/items", "key": "/id", "record_type": "d"}}),
            "config.url",
        ),
        (
            json!({"name": "x", "config": {"url": "ftp://v.example/x", "items": "/items", "key": "/id", "record_type": "d"}}),
            "config.url",
        ),
        (
            json!({"name": "x", "config": {"url": "https://u:p@v.example/x", "items": "/items", "key": "/id", "record_type": "d"}}),
            "config.url",
        ),
        (
            json!({"name": "x", "config": {"url": "https://v.example/x", "items": "items", "key": "/id", "record_type": "d"}}),
            "config.items",
        ),
        (
            json!({"name": "x", "config": {"url": "https://v.example/x", "items": "/items", "key": "", "record_type": "d"}}),
            "config.key",
        ),
        (
            json!({"name": "x", "schedule": "every day", "config": {"url": "https://v.example/x", "items": "/items", "key": "/id", "record_type": "d"}}),
            "schedule",
        ),
        (
            json!({"name": "x", "max_attempts": 0, "config": {"url": "https://v.example/x", "items": "/items", "key": "/id", "record_type": "d"}}),
            "max_attempts",
        ),
        (
            json!({"name": "x", "config": {"url": "https://v.example/x", "items": "/items", "key": "/id", "record_type": "d", "headers": {"Host": "evil"}}}),
            "config.headers.Host",
        ),
        (
            json!({"name": "x", "config": {"url": "https://v.example/x", "items": "/items", "key": "/id", "record_type": "d", "pagination": {"style": "cursor", "param": "c", "next": "n"}}}),
            "config.pagination.next",
        ),
        (
            json!({"name": "x", "kind": "ftp", "config": {"url": "https://v.example/x", "items": "/items", "key": "/id", "record_type": "d"}}),
            "kind",
        ),
    ] {
        let r = srv
            .with_key(&key, Method::POST, "/v1/sources")
            .json(&doc)
            .send()
            .await
            .unwrap();
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field} not named in {p}"
        );
    }
    // an unknown pagination style is refused by the schema
    let r = srv
        .with_key(&key, Method::POST, "/v1/sources")
        .json(&json!({"name": "x", "config": {"url": "https://v.example/x", "items": "/items", "key": "/id", "record_type": "d", "pagination": {"style": "scroll"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // one name per tenant
    let r = srv
        .with_key(&key, Method::POST, "/v1/sources")
        .json(&doc)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::CONFLICT, "source_exists").await;

    // PATCH: If-Match required and checked; a header removed by null, the schedule dropped
    let path = format!("/v1/sources/{id}");
    let patch = json!({"schedule": null, "config": {"headers": {"X-Api-Version": null}}});
    let r = srv
        .with_key(&key, Method::PATCH, &path)
        .json(&patch)
        .send()
        .await
        .unwrap();
    problem(
        r,
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
    )
    .await;
    let r = srv
        .with_key(&key, Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::PRECONDITION_FAILED, "precondition_failed").await;
    let r = srv
        .with_key(&key, Method::PATCH, &path)
        .header("if-match", &etag)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let patched = body(r).await;
    assert_eq!(patched["config"]["header_names"], json!(["Authorization"]));
    assert!(patched["schedule"].is_null());
    let schedules = body(
        srv.with_key(&key, Method::GET, "/v1/schedules")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        !schedules.to_string().contains(&format!("source:{id}")),
        "{schedules}"
    );
    // a patch that breaks the document is refused, naming the field
    let etag =
        body(srv.with_key(&key, Method::GET, &path).send().await.unwrap()).await["updated_at"]
            .clone();
    let _ = etag;
    let current = srv.with_key(&key, Method::GET, &path).send().await.unwrap();
    let tag = current.headers()["etag"].to_str().unwrap().to_owned();
    let r = srv
        .with_key(&key, Method::PATCH, &path)
        .header("if-match", &tag)
        .json(&json!({"config": {"items": "no-slash"}}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // members read, do not manage
    let (_, member) = tenant_key(srv, &tid, &["member"]).await;
    let r = srv
        .with_key(&member, Method::GET, "/v1/sources")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await["items"].as_array().unwrap().len(), 1);
    let r = srv
        .with_key(&member, Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
    // delete, then gone
    let r = srv
        .with_key(&key, Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = srv.with_key(&key, Method::GET, &path).send().await.unwrap();
    problem(r, StatusCode::NOT_FOUND, "source_not_found").await;
    // every change audited, no secret in the audit
    let audit = body(
        srv.with_key(&key, Method::GET, "/v1/audit?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = audit.to_string();
    for action in ["source.create", "source.update", "source.delete"] {
        assert!(text.contains(action), "{action} not audited");
    }
    assert!(!text.contains("s3cr3t"));
}

/// Every pagination style pulls every record; a second run rewrites nothing; an upstream change
/// is upserted and removals are reconciled.
pub async fn runs_pull_every_page_and_reconcile(srv: &TestServer) {
    let base = fixture().await;
    let (_, key) = tenant(srv, "Pulling").await;
    for style in ["next_link", "link_header", "cursor", "page"] {
        let url = format!("{base}/devices?count=250&limit=40&style={style}");
        let s = create(srv, &key, &source(style, &url, style)).await;
        let id = s["id"].as_str().unwrap();
        let first = run_to_end(srv, &key, id).await;
        assert_eq!(first["status"], "completed", "{style}: {first}");
        assert_eq!(first["upserted"], 250, "{style}: {first}");
        let pages = if style == "page" { 8 } else { 7 };
        assert_eq!(first["pages"], pages, "{style}: {first}");
        assert_eq!(
            (first["removed"].as_u64(), first["resumed"].as_bool()),
            (Some(0), Some(false))
        );
        let before = records(srv, &key, id).await;
        assert_eq!(before.len(), 250);
        // nothing changed upstream: nothing rewritten
        let second = run_to_end(srv, &key, id).await;
        assert_eq!(
            (second["upserted"].as_u64(), second["unchanged"].as_u64()),
            (Some(0), Some(250)),
            "{style}: {second}"
        );
        assert_eq!(records(srv, &key, id).await, before);
    }
    // an upstream change (version: every 7th record) and removals (skip: every 10th)
    let url = format!("{base}/devices?count=100&limit=30");
    let s = create(srv, &key, &source("changing", &url, "next_link")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    run_to_end(srv, &key, &id).await;
    let t0 = chrono::Utc::now();
    let tag = srv
        .with_key(&key, Method::GET, &format!("/v1/sources/{id}"))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = srv
        .with_key(&key, Method::PATCH, &format!("/v1/sources/{id}"))
        .header("if-match", tag)
        .json(&json!({"config": {"url": format!("{url}&version=2&skip=10")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let changed = run_to_end(srv, &key, &id).await;
    // 15 multiples of 7 below 100, one of them skipped (every 10th: 9, 19, … 99 → 49): 14
    // changed; 10 removed
    assert_eq!(changed["removed"], 10, "{changed}");
    assert_eq!(changed["upserted"], 14, "{changed}");
    assert_eq!(changed["unchanged"], 76, "{changed}");
    let after = records(srv, &key, &id).await;
    assert_eq!(after.values().filter(|(_, removed)| *removed).count(), 10);
    let since = body(
        srv.with_key(
            &key,
            Method::GET,
            &format!(
                "/v1/records?source={id}&limit=200&changed_since={}",
                t0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .replace('+', "%2B")
            ),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(since["items"].as_array().unwrap().len(), 24, "{since}");
    // records read back in full
    let one = body(
        srv.with_key(
            &key,
            Method::GET,
            &format!("/v1/records?source={id}&limit=1&type=device"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let r = &one["items"][0];
    assert_eq!(r["type"], "device");
    assert!(
        r["data"]["hostname"].is_string() && r["first_seen_at"].is_string(),
        "{r}"
    );
    let r = srv
        .with_key(&key, Method::GET, "/v1/records?source=nope")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "source_not_found").await;
}

/// Oversize fields are truncated and audited, unreadable items quarantined — the run completes;
/// 429 with Retry-After and flaky 500s are ridden out; a source that keeps failing is retried,
/// then dead, and shows it.
pub async fn bad_data_is_contained_and_failing_sources_dead_letter(srv: &TestServer) {
    let base = fixture().await;
    let (_, key) = tenant(srv, "Messy").await;
    let url = format!(
        "{base}/devices?count=60&limit=20&oversize_every=10&bad_every=15&huge_every=30&throttle=2&flaky=1"
    );
    let s = create(srv, &key, &source("messy", &url, "next_link")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let done = run_to_end(srv, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    // 60 items: 4 without id (14, 29, 44, 59), 2 over 1 MiB (29 → no id first; 59 too): of
    // those quarantined; oversize notes on 9, 19, 29, 39, 49, 59 → the readable ones truncated
    assert_eq!(done["quarantined"], 4, "{done}");
    assert_eq!(done["truncated"], 4, "{done}");
    assert_eq!(done["upserted"], 56, "{done}");
    let q = body(
        srv.with_key(&key, Method::GET, &format!("/v1/sources/{id}/quarantine"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{q}");
    assert!(
        items
            .iter()
            .all(|i| i["reason"].as_str().unwrap().contains("no key")),
        "{q}"
    );
    assert!(
        items[0]["excerpt"].as_str().unwrap().contains("no id"),
        "{q}"
    );
    let audit = body(
        srv.with_key(&key, Method::GET, "/v1/audit?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let truncations: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "source.record.truncated")
        .collect();
    assert_eq!(truncations.len(), 4, "{audit}");
    let d = &truncations[0]["details"];
    assert_eq!(d["field"], "/notes");
    assert_eq!(d["original_bytes"], 40 * 1024);
    assert_eq!(d["run_id"], done["id"]);
    // in the run's trace (the job continues the trace of the request that queued it)
    assert!(
        truncations[0]["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32),
        "{}",
        truncations[0]
    );
    assert_eq!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"] == "source.record.quarantined")
            .count(),
        4
    );
    // a record over 1 MiB (with an id) is quarantined with its size
    let url = format!("{base}/devices?count=3&limit=3&huge_every=3");
    let s = create(srv, &key, &source("huge", &url, "next_link")).await;
    let huge = run_to_end(srv, &key, s["id"].as_str().unwrap()).await;
    assert_eq!(
        (huge["upserted"].as_u64(), huge["quarantined"].as_u64()),
        (Some(2), Some(1)),
        "{huge}"
    );

    // always 500: each attempt retries its requests, the run is retried, then dead (another
    // tenant: its circuit to the fixture is its own)
    let (_, key) = tenant(srv, "Broken").await;
    let url = format!("{base}/devices?status=500");
    let s = create(srv, &key, &source("broken", &url, "next_link")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let dead = run_to_end(srv, &key, &id).await;
    assert_eq!(dead["status"], "dead", "{dead}");
    assert_eq!(dead["attempts"], 2, "{dead}");
    assert!(dead["error"].as_str().unwrap().contains("500"), "{dead}");
    let shown = body(
        srv.with_key(&key, Method::GET, &format!("/v1/sources/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(shown["last_run"]["status"], "dead");
    let jobs = body(
        srv.with_key(&key, Method::GET, "/v1/jobs?state=dead&kind=sync.run")
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
            .any(|j| j["id"] == dead["id"]),
        "the job engine holds the dead letter: {jobs}"
    );
    // garbage pages fail the same way, with the reason
    let (_, key) = tenant(srv, "Garbled").await;
    let url = format!("{base}/devices?count=40&limit=20&garbage=1");
    let s = create(srv, &key, &source("garbage", &url, "next_link")).await;
    let g = run_to_end(srv, &key, s["id"].as_str().unwrap()).await;
    assert_eq!(g["status"], "dead", "{g}");
    assert!(g["error"].as_str().unwrap().contains("not JSON"), "{g}");
    assert_eq!(g["pages"], 1, "the good page was kept: {g}");
    // a later run still happens
    let (status, _) = run(srv, &key, s["id"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

/// While a run is pending or running, asking again names it; the unique key holds.
pub async fn a_source_has_one_pending_run_at_a_time(srv: &TestServer) {
    let base = fixture().await;
    let (tid, key) = tenant(srv, "Patient").await;
    let url = format!("{base}/devices?count=20&limit=10&slow_ms=300");
    let s = create(srv, &key, &source("slow", &url, "next_link")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let (first, a) = run(srv, &key, &id).await;
    let (again, b) = run(srv, &key, &id).await;
    assert_eq!(
        (first, again),
        (StatusCode::ACCEPTED, StatusCode::OK),
        "{a} {b}"
    );
    assert_eq!(a["id"], b["id"]);
    let r = srv
        .with_key(&key, Method::POST, &format!("/v1/sources/{id}:run"))
        .header("idempotency-key", "k1")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid_header").await;
    // a sync.run enqueued through the jobs API for the same source is the same run
    let r = srv
        .with_key(&key, Method::POST, "/v1/jobs")
        .json(&json!({"kind": "sync.run", "payload": {"source": id}}))
        .send()
        .await
        .unwrap();
    let enq = body(r).await;
    assert_eq!(enq["id"], a["id"], "{enq}");
    let done = finished(srv, &key, &id, a["id"].as_str().unwrap()).await;
    assert_eq!(done["upserted"], 20);
    let _ = tid;
}

/// Three tenants sync at once; one source is broken (500s, garbage, oversize). The two others
/// complete, their records identical to a clean run's; the bad one is retried and dead.
pub async fn a_failing_tenant_does_not_hold_up_the_others(srv: &TestServer) {
    let base = fixture().await;
    let mut tenants = Vec::new();
    for name in ["Alpha", "Bravo", "Charlie"] {
        tenants.push(tenant(srv, name).await);
    }
    let good = format!("{base}/vulnerabilities?count=400&limit=50");
    // every page fails once with a 500; pages 0–2 carry oversize fields and items without ids;
    // page 3 is never JSON
    let bad = format!(
        "{base}/vulnerabilities?count=400&limit=50&flaky=1&slow_ms=20&oversize_every=3&bad_every=5&garbage=3"
    );
    let mut sources = Vec::new();
    for (i, (_, key)) in tenants.iter().enumerate() {
        let url = if i == 2 { &bad } else { &good };
        let s = create(srv, key, &source("vulns", url, "next_link")).await;
        sources.push(s["id"].as_str().unwrap().to_owned());
    }
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    for (i, (_, key)) in tenants.iter().enumerate() {
        let (status, r) = run(srv, key, &sources[i]).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        runs.push(r["id"].as_str().unwrap().to_owned());
    }
    let mut outcomes = Vec::new();
    for (i, (_, key)) in tenants.iter().enumerate().take(2) {
        outcomes.push(finished(srv, key, &sources[i], &runs[i]).await);
    }
    let good_time = started.elapsed();
    for o in &outcomes {
        assert_eq!(
            (o["status"].as_str(), o["upserted"].as_u64()),
            (Some("completed"), Some(400)),
            "{o}"
        );
    }
    let a = records(srv, &tenants[0].1, &sources[0]).await;
    let b = records(srv, &tenants[1].1, &sources[1]).await;
    assert_eq!(a, b, "both good tenants hold the same records");
    assert_eq!(a.len(), 400);
    let (_, bad_key) = &tenants[2];
    let dead = finished(srv, bad_key, &sources[2], &runs[2]).await;
    assert_eq!(dead["status"], "dead", "{dead}");
    assert_eq!(
        (dead["attempts"].as_u64(), dead["pages"].as_u64()),
        (Some(2), Some(3)),
        "retried, then dead: {dead}"
    );
    assert!(
        dead["error"].as_str().unwrap().contains("not JSON"),
        "{dead}"
    );
    // its truncations and quarantines are stored and audited (items 0–149: every 5th without an
    // id, every 3rd of the others oversize)
    assert_eq!(
        (dead["truncated"].as_u64(), dead["quarantined"].as_u64()),
        (Some(40), Some(30)),
        "{dead}"
    );
    let audit = body(
        srv.with_key(bad_key, Method::GET, "/v1/audit?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let count = |action: &str| {
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"] == action)
            .count()
    };
    assert_eq!(count("source.record.truncated"), 40);
    assert_eq!(count("source.record.quarantined"), 30);
    assert_eq!(count("source.run.dead"), 1);
    assert_eq!(count("source.run.failed"), 1);
    // the good tenants' audit holds none of it
    let good_audit = body(
        srv.with_key(&tenants[0].1, Method::GET, "/v1/audit?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        !good_audit.to_string().contains("source.record"),
        "{good_audit}"
    );
    assert!(
        good_time < Duration::from_secs(20),
        "the good tenants took {good_time:?}"
    );
    // the bad tenant's run is not visible to the others
    let r = srv
        .with_key(
            &tenants[0].1,
            Method::GET,
            &format!("/v1/sources/{}/runs", sources[2]),
        )
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "source_not_found").await;
}

/// Two instances on one database, both working: a source's runs never overlap and no page of a
/// run is fetched twice.
pub async fn two_instances_never_run_one_source_at_once(srv: &TestServer) {
    let other = srv.second_instance_with(tweak).await;
    let base = fixture().await;
    let (_, key) = tenant(srv, "Twice").await;
    let url = format!("{base}/devices?count=60&limit=10&slow_ms=20");
    let s = create(srv, &key, &source("shared", &url, "next_link")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let mut done = 0;
    for round in 0..4 {
        // both instances are asked at once
        let (x, y) = tokio::join!(run(srv, &key, &id), run(&other, &key, &id));
        assert_eq!(x.1["id"], y.1["id"], "round {round}: one run");
        let r = finished(srv, &key, &id, x.1["id"].as_str().unwrap()).await;
        assert_eq!(
            (
                r["status"].as_str(),
                r["pages"].as_u64(),
                r["attempts"].as_u64()
            ),
            (Some("completed"), Some(6), Some(1)),
            "{r}"
        );
        done += 1;
    }
    let stats = body(
        srv.client
            .get(format!("{base}/_stats"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for (page, n) in stats.as_object().unwrap() {
        assert_eq!(
            n.as_u64(),
            Some(done),
            "{page} fetched {n} times in {done} runs"
        );
    }
    other.stop().await;
}

/// With the default egress policy, internal addresses are refused: a literal one when the source
/// is written, a name resolving to one when the run resolves it (then the run is dead at once).
pub async fn the_egress_guard_refuses_internal_upstreams(srv: &TestServer) {
    let base = fixture().await;
    let (_, key) = tenant(srv, "Guarded").await;
    let r = srv
        .with_key(&key, Method::POST, "/v1/sources")
        .json(&source("loopback", &format!("{base}/devices"), "next_link"))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(p.to_string().contains("loopback"), "{p}");
    for internal in [
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:10.0.0.1]/x",
    ] {
        let r = srv
            .with_key(&key, Method::POST, "/v1/sources")
            .json(&source("internal", internal, "next_link"))
            .send()
            .await
            .unwrap();
        problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let port = base.rsplit(':').next().unwrap();
    let named = format!("http://localhost:{port}/devices");
    let s = create(srv, &key, &source("named", &named, "next_link")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let dead = run_to_end(srv, &key, &id).await;
    assert_eq!(
        (dead["status"].as_str(), dead["attempts"].as_u64()),
        (Some("dead"), Some(1)),
        "{dead}"
    );
    assert!(
        dead["error"].as_str().unwrap().contains("refused"),
        "{dead}"
    );
}
