//! Hostile input that must get a clear error and store nothing (issue 10's findings).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::testing::TestServer;

use crate::support::*;

/// U+0000 is refused in every JSON string (typed fields and opaque payloads alike, keys too),
/// in query strings and in paths, the same on every backend, and nothing is stored.
pub async fn nul_bytes_are_refused_everywhere(srv: &TestServer) {
    let t = tenant_named(srv, "Nul Corp").await;
    let tid = t["id"].as_str().unwrap();
    let refused = [
        ("/v1/tenants", json!({ "name": "a\u{0}b" }), "name"),
        (
            "/v1/jobs",
            json!({ "kind": "noop", "payload": { "x": ["ok", "a\u{0}"] } }),
            "payload.x[1]",
        ),
        (
            "/v1/devices",
            json!({ "device_id": "d1", "metadata": { "k\u{0}": 1 } }),
            "metadata.k\u{0}",
        ),
        (
            &format!("/v1/tenants/{tid}/api-keys"),
            json!({ "name": "n\u{0}", "scopes": ["jobs:read"] }),
            "name",
        ),
    ];
    for (path, body, field) in refused {
        let resp = srv
            .op(Method::POST, path)
            .header("x-tenant-id", tid)
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], field, "{path}: {p}");
    }
    let resp = srv
        .op(Method::GET, "/v1/jobs?kind=%00")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST, "invalid_query").await;
    let resp = srv
        .op(Method::GET, "/v1/devices/a%00b")
        .header("x-tenant-id", tid)
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST, "bad_request").await;

    // nothing was stored
    let tenants = body(srv.op(Method::GET, "/v1/tenants").send().await.unwrap()).await;
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1, "{tenants}");
    let jobs = body(srv.op(Method::GET, "/v1/jobs").send().await.unwrap()).await;
    let own_jobs = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| !j["kind"].as_str().unwrap_or("").starts_with("telemetry."))
        .count();
    assert_eq!(own_jobs, 0, "{jobs}");
    let devices = body(
        srv.op(Method::GET, "/v1/devices")
            .header("x-tenant-id", tid)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(devices["items"].as_array().unwrap().len(), 0, "{devices}");
}

/// Two `Authorization` headers, or two `X-Tenant-Id` headers, are refused rather than resolved
/// to the first.
pub async fn duplicate_security_headers_are_refused(srv: &TestServer) {
    let a = tenant_named(srv, "Dup A").await;
    let b = tenant_named(srv, "Dup B").await;
    let tenant_key = &key_with_scopes(srv, a["id"].as_str().unwrap(), &["tenants:read"]).await;
    let resp = srv
        .client
        .get(srv.url("/v1/whoami"))
        .header("authorization", format!("Bearer {tenant_key}"))
        .header("authorization", format!("Bearer {}", srv.operator_key))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST, "invalid_header").await;
    let resp = srv
        .op(Method::GET, "/v1/devices")
        .header("x-tenant-id", a["id"].as_str().unwrap())
        .header("x-tenant-id", b["id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST, "tenant_ambiguous").await;
}

/// A slug is a DNS label: no leading or trailing `-`, no `--`.
pub async fn slugs_are_dns_labels(srv: &TestServer) {
    for slug in ["-leading", "trailing-", "a--b"] {
        let resp = srv
            .op(Method::POST, "/v1/tenants")
            .json(&json!({ "name": "Label", "slug": slug }))
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], "slug", "{slug}: {p}");
    }
    let tenants = body(srv.op(Method::GET, "/v1/tenants").send().await.unwrap()).await;
    assert_eq!(tenants["items"].as_array().unwrap().len(), 0, "{tenants}");
}

/// Scope and role lists are stored without duplicates, and bounded.
pub async fn scope_lists_are_normalised_and_bounded(srv: &TestServer) {
    let t = tenant_named(srv, "Scopes").await;
    let path = format!("/v1/tenants/{}/api-keys", t["id"].as_str().unwrap());
    let resp = srv
        .op(Method::POST, &path)
        .json(&json!({
            "name": "dup",
            "scopes": ["jobs:read", "jobs:read", "devices:read", "jobs:read"],
            "roles": ["member", "member"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let k = body(resp).await;
    assert_eq!(k["scopes"], json!(["jobs:read", "devices:read"]), "{k}");
    assert_eq!(k["roles"], json!(["member"]), "{k}");
    let resp = srv
        .op(Method::POST, &path)
        .json(&json!({ "name": "many", "scopes": vec!["jobs:read"; 10_000] }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(p["detail"].as_str().unwrap().contains("at most 64"), "{p}");
    assert_eq!(
        p["errors"].as_array().unwrap().len(),
        1,
        "one error, not 10 000"
    );
}

/// Every field of a replay is optional, so no body at all is a replay of every dead job.
pub async fn replay_needs_no_body(srv: &TestServer) {
    let resp = srv
        .op(Method::POST, "/v1/jobs:replay")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, json!({ "replayed": 0, "dry_run": false }));
    // a body that is there is still checked
    let resp = srv
        .op(Method::POST, "/v1/jobs:replay")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    problem(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

/// Built-in kinds check their payloads at enqueue (and when scheduled), queue names are checked,
/// and every opaque document has the same size limit.
pub async fn job_payloads_are_checked_at_enqueue(srv: &TestServer) {
    let big = "x".repeat(70 * 1024);
    for (body, field) in [
        (
            json!({ "kind": "sleep", "payload": { "ms": 1e15 } }),
            "payload",
        ),
        (
            json!({ "kind": "sleep", "payload": { "ms": -1 } }),
            "payload",
        ),
        (json!({ "kind": "sleep", "payload": "x" }), "payload"),
        (
            json!({ "kind": "sleep", "payload": { "ms": 10, "extra": 1 } }),
            "payload",
        ),
        (
            json!({ "kind": "fail", "payload": { "times": "x" } }),
            "payload",
        ),
        (
            json!({ "kind": "noop", "payload": { "blob": big } }),
            "payload",
        ),
        (json!({ "kind": "noop", "queue": "../x" }), "queue"),
    ] {
        let resp = srv
            .op(Method::POST, "/v1/jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
    }
    let resp = srv
        .op(Method::POST, "/v1/schedules")
        .json(&json!({ "name": "long", "interval_seconds": 60, "kind": "sleep", "payload": { "ms": 1e15 } }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "payload", "{p}");
    // nothing was enqueued or scheduled; valid payloads still are
    let jobs = body(srv.op(Method::GET, "/v1/jobs").send().await.unwrap()).await;
    let own_jobs = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| !j["kind"].as_str().unwrap_or("").starts_with("telemetry."))
        .count();
    assert_eq!(own_jobs, 0, "{jobs}");
    let schedules = body(srv.op(Method::GET, "/v1/schedules").send().await.unwrap()).await;
    assert_eq!(own_schedules(&schedules), 0, "{schedules}");
    for body in [
        json!({ "kind": "sleep", "payload": { "ms": 10 } }),
        json!({ "kind": "fail", "payload": { "times": 1, "permanent": false } }),
        json!({ "kind": "noop", "queue": "reports_2", "payload": [1, 2] }),
    ] {
        let resp = srv
            .op(Method::POST, "/v1/jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{body}");
    }
    // device metadata follows the same 64 KiB rule
    let t = tenant_named(srv, "Docs").await;
    let resp = srv
        .op(Method::POST, "/v1/devices")
        .header("x-tenant-id", t["id"].as_str().unwrap())
        .json(&json!({ "device_id": "d1", "metadata": { "blob": big } }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "metadata", "{p}");
}

/// `X:manage` implies `X:read`: a key that may register devices may list them.
pub async fn manage_scopes_imply_read(srv: &TestServer) {
    let t = tenant_named(srv, "Implied").await;
    let tid = t["id"].as_str().unwrap();
    let key = &key_with_scopes(srv, tid, &["devices:manage"]).await;
    let resp = srv
        .with_key(key, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "d1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = srv
        .with_key(key, Method::GET, "/v1/devices")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await["items"].as_array().unwrap().len(), 1);
    // and only the read of the same resource
    let resp = srv
        .with_key(key, Method::GET, "/v1/jobs")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

/// The `last_fired_at` of the schedule `name` (of `tenant`, or the platform's), as the operator
/// lists them.
async fn last_fired(srv: &TestServer, name: &str, tenant: Option<&str>) -> Option<String> {
    let all = body(srv.op(Method::GET, "/v1/schedules").send().await.unwrap()).await;
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name && s["tenant_id"].as_str() == tenant)
        .and_then(|s| s["last_fired_at"].as_str().map(str::to_owned))
}

/// Waits until the platform's control schedule has fired `times` more times: the scheduler has
/// run that many rounds, so a schedule that did not fire in them was skipped.
async fn scheduler_rounds(srv: &TestServer, times: usize) {
    let mut seen = last_fired(srv, "control", None).await;
    let mut left = times;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while left > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the control schedule stopped firing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = last_fired(srv, "control", None).await;
        if now.is_some() && now != seen {
            seen = now;
            left -= 1;
        }
    }
}

/// Sends a lifecycle request as the operator; it must succeed.
async fn lifecycle(srv: &TestServer, method: Method, path: &str) {
    let resp = srv.op(method, path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
}

/// Waits until the tenant's `tick` has fired after `previous`; returns the new fire time.
async fn fires_after(
    srv: &TestServer,
    tid: &str,
    previous: Option<String>,
    why: &str,
) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = last_fired(srv, "tick", Some(tid)).await;
        if now.is_some() && now != previous {
            return now;
        }
        assert!(std::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// After one round (a firing under way may still land), the tenant's `tick` does not fire in
/// three more scheduler rounds; returns its last fire time.
async fn stays_unfired(srv: &TestServer, tid: &str, why: &str) -> Option<String> {
    scheduler_rounds(srv, 1).await;
    let before = last_fired(srv, "tick", Some(tid)).await;
    scheduler_rounds(srv, 3).await;
    assert_eq!(last_fired(srv, "tick", Some(tid)).await, before, "{why}");
    before
}

/// A suspended or deleted tenant's schedules do not fire; resuming brings them back; an operator
/// removes a deleted tenant's schedule by naming the tenant.
pub async fn schedules_pause_with_their_tenant(srv: &TestServer) {
    let t = tenant_named(srv, "Paused").await;
    let tid = t["id"].as_str().unwrap();
    for body_ in [
        json!({ "name": "control", "interval_seconds": 1, "kind": "noop" }),
        json!({ "name": "tick", "interval_seconds": 1, "kind": "noop", "tenant": tid }),
    ] {
        let resp = srv
            .op(Method::POST, "/v1/schedules")
            .json(&body_)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{body_}");
    }
    scheduler_rounds(srv, 1).await;
    let fired = fires_after(srv, tid, None, "tick never fired").await;

    lifecycle(srv, Method::POST, &format!("/v1/tenants/{tid}:suspend")).await;
    let paused = stays_unfired(srv, tid, "fired while suspended").await;
    assert!(paused >= fired);

    lifecycle(srv, Method::POST, &format!("/v1/tenants/{tid}:resume")).await;
    fires_after(srv, tid, paused, "did not fire again after resume").await;

    lifecycle(srv, Method::DELETE, &format!("/v1/tenants/{tid}")).await;
    stays_unfired(srv, tid, "fired while deleted").await;

    let resp = srv
        .op(Method::DELETE, &format!("/v1/schedules/tick?tenant={tid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let all = body(srv.op(Method::GET, "/v1/schedules").send().await.unwrap()).await;
    assert!(
        !all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "tick"),
        "{all}"
    );
}

/// `/readyz` says which optional backends are in use.
pub async fn readiness_names_the_optional_backends(srv: &TestServer) {
    let resp = srv.client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let r = body(resp).await;
    assert_eq!(
        r["checks"]["rate_limits"],
        json!({ "status": "ok", "backend": "in_process", "shared": false }),
        "{r}"
    );
    assert!(r["checks"]["store"]["backend"].is_string(), "{r}");
    assert!(r["checks"]["store"]["latency_ms"].is_number(), "{r}");
    // an unreachable Redis degrades the instance (its circuit opens) without making it unready
    let lonely = srv
        .second_instance_with(|c| c.limits.redis_url = "redis://127.0.0.1:1".into())
        .await;
    let resp = lonely
        .client
        .get(lonely.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "degraded is still ready");
    let r = body(resp).await;
    assert_eq!(r["status"], "degraded", "{r}");
    assert_eq!(r["checks"]["rate_limits"]["status"], "degraded", "{r}");
    assert_eq!(r["checks"]["rate_limits"]["circuit"], "open", "{r}");
    if let Ok(url) = std::env::var("TENANTRY_TEST_REDIS_URL") {
        let shared = srv
            .second_instance_with(move |c| c.limits.redis_url = url)
            .await;
        let r = body(
            shared
                .client
                .get(shared.url("/readyz"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r["status"], "ready", "{r}");
        assert_eq!(r["checks"]["rate_limits"]["circuit"], "closed", "{r}");
        assert!(r["checks"]["rate_limits"]["latency_ms"].is_number(), "{r}");
    }
    // the scheduler check names the process leading (the test server runs every role)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = body(srv.client.get(srv.url("/readyz")).send().await.unwrap()).await;
        if r["checks"]["scheduler"]["status"] == "ok" {
            assert!(r["checks"]["scheduler"]["leader"].is_string(), "{r}");
            break;
        }
        assert_eq!(r["checks"]["scheduler"]["status"], "none", "{r}");
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduler took the lease: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A tenant credential reads its own tenant, its own audit log and the editions catalog, with the
/// scopes the docs name; another tenant is not found, and another tenant's audit never shows.
pub async fn tenants_read_their_own_tenant_audit_and_editions(srv: &TestServer) {
    let a = tenant_named(srv, "Reader A").await;
    let b = tenant_named(srv, "Reader B").await;
    let (aid, aslug, bid) = (
        a["id"].as_str().unwrap(),
        a["slug"].as_str().unwrap(),
        b["id"].as_str().unwrap(),
    );
    let reader = key_with_scopes(srv, aid, &["tenants:read", "audit:read", "editions:read"]).await;

    for path in [format!("/v1/tenants/{aid}"), format!("/v1/tenants/{aslug}")] {
        let resp = srv
            .with_key(&reader, Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(body(resp).await["id"], aid);
    }
    let resp = srv
        .with_key(&reader, Method::GET, &format!("/v1/tenants/{bid}"))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::NOT_FOUND, "tenant_not_found").await;

    let audit = body(
        srv.with_key(&reader, Method::GET, "/v1/audit?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = audit["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{audit}");
    assert!(items.iter().all(|r| r["tenant_id"] == aid), "{audit}");
    let resp = srv
        .with_key(&reader, Method::GET, &format!("/v1/audit?tenant={bid}"))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::FORBIDDEN, "tenant_mismatch").await;

    let catalog = body(
        srv.with_key(&reader, Method::GET, "/v1/editions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(catalog["items"].as_array().unwrap().len() >= 3, "{catalog}");
    let resp = srv
        .with_key(&reader, Method::GET, "/v1/editions/free")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // without the scope: 403 naming it
    let jobs_only = key_with_scopes(srv, aid, &["jobs:read"]).await;
    for path in ["/v1/audit", "/v1/editions"] {
        let resp = srv
            .with_key(&jobs_only, Method::GET, path)
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
}

/// Schedules: fire times are whole seconds, a year field is refused, and a tenant's schedules
/// fire at most as often as its edition allows (free: every 300 s).
pub async fn schedules_are_bounded_by_the_edition_and_fire_on_whole_seconds(srv: &TestServer) {
    let t = tenant_named(srv, "Cron Free").await; // the free edition
    let key = &key_with_scopes(srv, t["id"].as_str().unwrap(), &["jobs:manage"]).await;
    for (body_, field) in [
        (
            json!({ "name": "fast", "interval_seconds": 60, "kind": "noop" }),
            "interval_seconds",
        ),
        (
            json!({ "name": "fast", "cron": "* * * * *", "kind": "noop" }),
            "cron",
        ),
        (
            json!({ "name": "fast", "cron": "*/10 * * * * *", "kind": "noop" }),
            "cron",
        ),
        (
            json!({ "name": "yearly", "cron": "0 0 3 1 1 * 2030", "kind": "noop" }),
            "cron",
        ),
    ] {
        let resp = srv
            .with_key(key, Method::POST, "/v1/schedules")
            .json(&body_)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], field, "{body_}: {p}");
    }
    for body_ in [
        json!({ "name": "five-minutes", "interval_seconds": 300, "kind": "noop", "enabled": false }),
        json!({ "name": "nightly", "cron": "0 3 * * *", "kind": "noop" }),
        json!({ "name": "new-year", "cron": "@yearly", "kind": "noop" }),
    ] {
        let resp = srv
            .with_key(key, Method::POST, "/v1/schedules")
            .json(&body_)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{body_}");
        let s = body(resp).await;
        if s["enabled"] == true {
            let next: chrono::DateTime<chrono::Utc> =
                s["next_fire_at"].as_str().unwrap().parse().unwrap();
            assert_eq!(next.timestamp_subsec_nanos(), 0, "{s}");
        }
    }
    // operators run the platform: no edition minimum for them
    let resp = srv
        .op(Method::POST, "/v1/schedules")
        .json(&json!({ "name": "platform-fast", "interval_seconds": 1, "kind": "noop", "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Lists that take no parameters refuse them (and the schedule list has `page_info` like every
/// list); a 405 names the method that was sent.
pub async fn unpaginated_lists_refuse_parameters_and_405_names_the_method(srv: &TestServer) {
    for path in [
        "/v1/schedules?limit=-1",
        "/v1/schedules?cursor=../../",
        "/v1/editions?bogus=1",
    ] {
        let resp = srv.op(Method::GET, path).send().await.unwrap();
        problem(resp, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let list = body(srv.op(Method::GET, "/v1/schedules").send().await.unwrap()).await;
    assert_eq!(own_schedules(&list), 0, "{list}");
    let resp = srv
        .op(Method::from_bytes(b"FOO").unwrap(), "/v1/tenants")
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["allow"].to_str().unwrap().contains("POST"));
    let p = problem(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("FOO is not allowed on /v1/tenants"),
        "{p}"
    );
}

/// Names people read refuse control characters and bidirectional overrides, on every resource.
pub async fn names_refuse_bidi_overrides(srv: &TestServer) {
    let evil = "invoice\u{202E}fdp.exe";
    let t = tenant_named(srv, "Bidi").await;
    let tid = t["id"].as_str().unwrap();
    for (path, body_) in [
        ("/v1/tenants".to_owned(), json!({ "name": evil })),
        (
            format!("/v1/tenants/{tid}/api-keys"),
            json!({ "name": evil, "scopes": ["jobs:read"] }),
        ),
        (
            "/v1/devices".to_owned(),
            json!({ "device_id": "d1", "name": evil }),
        ),
        (
            "/v1/editions".to_owned(),
            json!({ "key": "bidi", "name": evil, "limits": {
                "requests_per_minute": 1, "burst": 1, "concurrency": 1, "storage_gb": 1,
                "webhook_subscriptions": 1, "retention_days": 1 } }),
        ),
    ] {
        let resp = srv
            .op(Method::POST, &path)
            .header("x-tenant-id", tid)
            .json(&body_)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], "name", "{path}: {p}");
    }
}

/// A key's own rate limit can lower its edition's, never raise it.
pub async fn a_key_limit_cannot_exceed_its_edition(srv: &TestServer) {
    let t = tenant_named(srv, "Limited").await; // free: 60 requests per minute
    let path = format!("/v1/tenants/{}/api-keys", t["id"].as_str().unwrap());
    let resp = srv
        .op(Method::POST, &path)
        .json(&json!({ "name": "fast", "scopes": ["jobs:read"], "rate_limit_per_minute": 1000 }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "rate_limit_per_minute", "{p}");
    let resp = srv
        .op(Method::POST, &path)
        .json(&json!({ "name": "slow", "scopes": ["jobs:read"], "rate_limit_per_minute": 30 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// CORS is off by default (a preflight is a `405` like any unsupported method); with allowed
/// origins, preflights are answered and responses carry the CORS headers for those origins only.
pub async fn cors_is_off_by_default_and_answers_allowed_origins() {
    let preflight = |srv: &TestServer, origin: &str| {
        srv.client
            .request(Method::OPTIONS, srv.url("/v1/tenants"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
    };
    let plain = TestServer::sqlite().await;
    let resp = preflight(&plain, "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let srv = TestServer::start(tenantry_store::testing::sqlite().await, |c| {
        c.cors_allowed_origins = "https://app.example, https://admin.example".into();
    })
    .await;
    let resp = preflight(&srv, "https://app.example").send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("idempotency-key") && allowed.contains("authorization"),
        "{allowed}"
    );
    // an actual request from an allowed origin carries the header; another origin does not
    let resp = srv
        .op(Method::GET, "/v1/tenants")
        .header("origin", "https://admin.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    assert!(
        resp.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("ratelimit-remaining")
            || resp
                .headers()
                .get("access-control-expose-headers")
                .is_some()
    );
    let resp = preflight(&srv, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

pub async fn cursors_are_tamper_evident_and_bound_to_their_list(srv: &TestServer) {
    let a = tenant_named(srv, "Cursor A").await;
    tenant_named(srv, "Cursor B").await;
    tenant_named(srv, "Cursor C").await;
    let b = tenant_named(srv, "Cursor D").await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let next = |path: String| async move {
        let page = body(srv.op(Method::GET, &path).send().await.unwrap()).await;
        page["page_info"]["next_cursor"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let tenants = next("/v1/tenants?limit=1".into()).await;
    let get = |path: String| async move { srv.op(Method::GET, &path).send().await.unwrap() };
    // the real one works
    assert_eq!(
        get(format!("/v1/tenants?limit=1&cursor={tenants}"))
            .await
            .status(),
        200
    );
    // every changed character is refused
    let mut flipped = 0;
    for i in 0..tenants.len() - 1 {
        let mut forged = tenants.clone().into_bytes();
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let resp = get(format!("/v1/tenants?limit=1&cursor={forged}")).await;
        problem(resp, StatusCode::BAD_REQUEST, "invalid_cursor").await;
        flipped += 1;
    }
    assert!(flipped > 40);
    // a made-up one: base64 of the store's own position format
    let made_up = "YzE6MDE5MzAwMDAwMDAwNzAwMDgwMDAwMDAwMDAwMDAwMDA";
    let resp = get(format!("/v1/tenants?cursor={made_up}")).await;
    problem(resp, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    // a jobs cursor on another list, and one tenant's device cursor on another tenant's devices
    for i in 0..3 {
        let r = srv
            .op(Method::POST, &format!("/t/{a}/v1/devices"))
            .json(&json!({"device_id": format!("dev-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let devices = next(format!("/t/{a}/v1/devices?limit=1")).await;
    assert_eq!(
        get(format!("/t/{a}/v1/devices?limit=1&cursor={devices}"))
            .await
            .status(),
        200
    );
    let resp = get(format!("/t/{b}/v1/devices?limit=1&cursor={devices}")).await;
    problem(resp, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let resp = get(format!("/v1/tenants?limit=1&cursor={devices}")).await;
    problem(resp, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let resp = get(format!("/v1/audit?limit=1&cursor={tenants}")).await;
    problem(resp, StatusCode::BAD_REQUEST, "invalid_cursor").await;
}

pub async fn queued_jobs_pause_with_their_tenant(srv: &TestServer) {
    let t = tenant_named(srv, "Pausing").await;
    let tid = t["id"].as_str().unwrap();
    let job = body(
        srv.op(Method::POST, "/v1/jobs")
            .json(&json!({"kind": "noop", "tenant": tid, "run_at": "2999-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().unwrap());
    let state = || async {
        body(srv.op(Method::GET, &path).send().await.unwrap()).await["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state().await, "scheduled");
    let lifecycle = |op: &'static str| async move {
        let r = srv
            .op(Method::POST, &format!("/v1/tenants/{tid}:{op}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{op}");
    };
    lifecycle("suspend").await;
    assert_eq!(state().await, "paused");
    let listed = body(
        srv.op(Method::GET, &format!("/v1/jobs?state=paused&tenant={tid}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // new work for a suspended tenant is refused, not queued to wait
    let resp = srv
        .op(Method::POST, "/v1/jobs")
        .json(&json!({"kind": "noop", "tenant": tid}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::FORBIDDEN, "tenant_suspended").await;
    lifecycle("resume").await;
    assert_eq!(state().await, "scheduled");
    // deletion pauses too, restore brings the job back
    let r = srv
        .op(Method::DELETE, &format!("/v1/tenants/{tid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(state().await, "paused");
    lifecycle("restore").await;
    assert_eq!(state().await, "scheduled");
}

pub async fn error_messages_use_the_api_s_words(srv: &TestServer) {
    let t = tenant_named(srv, "Wordy").await;
    let tid = t["id"].as_str().unwrap();
    let rust = [
        "struct",
        "u64",
        "u32",
        "i16",
        "CronPattern",
        "Pattern",
        "TenantPatchIn",
        "enum ",
    ];
    let check = |p: &serde_json::Value| {
        let text = p.to_string();
        for word in rust {
            assert!(!text.contains(word), "'{word}' in {text}");
        }
    };
    let patch = srv
        .op(Method::PATCH, &format!("/v1/tenants/{tid}"))
        .header("if-match", t["etag"].as_str().unwrap_or("\"1\""))
        .header("content-type", "application/merge-patch+json")
        .body("5")
        .send()
        .await
        .unwrap();
    check(&problem(patch, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await);
    for body in [
        json!({"kind": "noop", "priority": "x"}),
        json!({"kind": "noop", "max_attempts": -1}),
        json!({"kind": "noop", "lease_seconds": 1e30}),
    ] {
        let r = srv
            .op(Method::POST, "/v1/jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        check(&problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await);
    }
    let r = srv
        .op(Method::POST, "/v1/schedules")
        .json(&json!({"name": "bad", "kind": "noop", "cron": "* * * * X"}))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    check(&p);
    assert!(p.to_string().contains("'X'"), "{p}");
    let r = srv
        .op(Method::GET, "/v1/tenants?limit=-1")
        .send()
        .await
        .unwrap();
    check(&problem(r, StatusCode::BAD_REQUEST, "invalid_query").await);
    // a non-ASCII If-Match is malformed, not missing
    let r = srv
        .op(Method::PATCH, &format!("/v1/tenants/{tid}"))
        .header(
            "if-match",
            reqwest::header::HeaderValue::from_bytes("\"é\"".as_bytes()).unwrap(),
        )
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::BAD_REQUEST, "invalid_header").await;
    assert!(p["detail"].as_str().unwrap().contains("If-Match"), "{p}");
}

/// Schedules in a list other than the platform's own (`telemetry-retention`,
/// `telemetry-partitions`, created at start-up).
fn own_schedules(list: &Value) -> usize {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["name"].as_str().unwrap_or("").starts_with("telemetry-"))
        .count()
}
