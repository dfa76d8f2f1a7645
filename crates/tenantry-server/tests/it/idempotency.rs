use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantry_server::testing::TestServer;

use crate::support::*;

async fn tenant_count(srv: &TestServer) -> usize {
    body(
        srv.op(Method::GET, "/v1/tenants?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await["items"]
        .as_array()
        .unwrap()
        .len()
}

pub async fn same_key_same_body_replays(srv: &TestServer) {
    let send = |body: &'static str| {
        srv.op(Method::POST, "/v1/tenants")
            .header("idempotency-key", "create-umbrella-1")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let first = send(r#"{"name": "Umbrella", "slug": "umbrella"}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let (loc, etag) = (
        first.headers()["location"].clone(),
        first.headers()["etag"].clone(),
    );
    let first = body(first).await;
    // same JSON, other formatting and key order
    let again = send("{\n  \"slug\": \"umbrella\",\n  \"name\": \"Umbrella\"\n}")
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        (&again.headers()["location"], &again.headers()["etag"]),
        (&loc, &etag)
    );
    assert_eq!(body(again).await, first);
    assert_eq!(tenant_count(srv).await, 1);

    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .header("idempotency-key", "bad key with spaces")
        .json(&json!({ "name": "X" }))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST, "invalid_header").await;
}

pub async fn same_key_other_body_is_refused(srv: &TestServer) {
    let key = "create-hooli";
    let first = srv
        .op(Method::POST, "/v1/tenants")
        .header("idempotency-key", key)
        .json(&json!({ "name": "Hooli" }))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .header("idempotency-key", key)
        .json(&json!({ "name": "Hooli XYZ" }))
        .send()
        .await
        .unwrap();
    problem(
        resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    // the same key on another operation is another key
    let resp = srv.op(Method::POST, "/v1/editions").header("idempotency-key", key)
        .json(&json!({ "key": "hooli-pack", "name": "Hooli", "limits": { "requests_per_minute": 1, "burst": 1, "concurrency": 1, "storage_gb": 1, "webhook_subscriptions": 1, "retention_days": 1 } }))
        .send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(tenant_count(srv).await, 1);
}

pub async fn concurrent_retries_create_one_tenant(srv: &TestServer) {
    let mut handles = Vec::new();
    for _ in 0..8 {
        let req = srv
            .op(Method::POST, "/v1/tenants")
            .header("idempotency-key", "storm")
            .json(&json!({ "name": "Storm" }));
        handles.push(tokio::spawn(async move { req.send().await }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in handles {
        let resp = h.await.unwrap().unwrap();
        match resp.status() {
            StatusCode::CREATED => {
                ids.insert(body(resp).await["id"].as_str().unwrap().to_owned());
            }
            // a retry that raced the first request while it was still writing is told to retry
            StatusCode::CONFLICT => {
                problem(resp, StatusCode::CONFLICT, "idempotency_in_progress").await;
            }
            other => panic!("unexpected {other}: {:?}", resp.text().await),
        }
    }
    assert_eq!(
        ids.len(),
        1,
        "every successful answer names the same tenant"
    );
    assert_eq!(tenant_count(srv).await, 1);
}

pub async fn lifecycle_operations_are_idempotent(srv: &TestServer) {
    let t = tenant_named(srv, "Suspendable").await;
    let path = format!("/v1/tenants/{}:suspend", t["id"].as_str().unwrap());
    let first = srv
        .op(Method::POST, &path)
        .header("idempotency-key", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first = body(first).await;
    let again = srv
        .op(Method::POST, &path)
        .header("idempotency-key", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a retried suspend is answered, not refused as a second suspend"
    );
    assert_eq!(body(again).await, first);
    let without = srv.op(Method::POST, &path).send().await.unwrap();
    problem(without, StatusCode::CONFLICT, "invalid_transition").await;
}

/// Sends `method path` (with `body`, if any) twice with one `Idempotency-Key`: the second is the
/// first's answer, replayed. Returns the status and body of the first.
async fn twice(
    srv: &TestServer,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    key: &str,
) -> (StatusCode, String) {
    let (status, first, again) = send_twice(srv, method.clone(), path, body, key).await;
    assert_eq!(again, first, "{method} {path} replays its body");
    (status, first)
}

async fn send_twice(
    srv: &TestServer,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    key: &str,
) -> (StatusCode, String, String) {
    let send = || {
        let mut r = srv.op(method.clone(), path).header("idempotency-key", key);
        if let Some(b) = &body {
            r = r.json(b);
        }
        r.send()
    };
    let first = send().await.unwrap();
    let status = first.status();
    assert!(status.is_success(), "{method} {path}: {status}");
    let first = first.text().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), status, "{method} {path} replays its status");
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "{method} {path}"
    );
    (status, first, again.text().await.unwrap())
}

pub async fn every_write_honours_idempotency_keys(srv: &TestServer) {
    let t = tenant_named(srv, "Retrying").await;
    let tid = t["id"].as_str().unwrap();
    let tenant = |p: &str| format!("/t/{tid}{p}");

    // devices: a retried delete is the first answer, not a 404
    let created = srv
        .op(Method::POST, &tenant("/v1/devices"))
        .json(&json!({"device_id": "d-1", "name": "Sensor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let (status, _) = twice(
        srv,
        Method::DELETE,
        &tenant("/v1/devices/d-1"),
        None,
        "del-d",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let again = srv
        .op(Method::DELETE, &tenant("/v1/devices/d-1"))
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::NOT_FOUND, "device_not_found").await;

    // API keys: revoke and rotate
    let keys = format!("/v1/tenants/{tid}/api-keys");
    let key = |name: &'static str| {
        let keys = keys.clone();
        async move {
            body(
                srv.op(Method::POST, &keys)
                    .json(&json!({"name": name, "scopes": ["devices:read"]}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let revoked = key("revoked").await;
    let (status, _) = twice(
        srv,
        Method::DELETE,
        &format!("{keys}/{revoked}"),
        None,
        "revoke",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let rotated = key("rotated").await;
    let path = format!("{keys}/{rotated}:rotate");
    let (_, first, again) = send_twice(srv, Method::POST, &path, None, "rot").await;
    let (first, again): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&again).unwrap(),
    );
    assert_eq!(
        again["id"], first["id"],
        "the replay names the same successor"
    );
    assert!(
        first["key"].is_string() && again["key"].is_null(),
        "secrets are not stored: {again}"
    );

    // schedules: create, then delete
    let schedule = json!({"name": "nightly", "tenant": tid, "kind": "noop", "cron": "0 3 * * *"});
    let (status, _) = twice(srv, Method::POST, "/v1/schedules", Some(schedule), "sched").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the replay is the 201, not a 200 update"
    );
    let (status, _) = twice(
        srv,
        Method::DELETE,
        &format!("/v1/schedules/nightly?tenant={tid}"),
        None,
        "unsched",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // jobs: cancel, then retry the cancelled job
    let job = body(
        srv.op(Method::POST, "/v1/jobs")
            .json(&json!({"kind": "noop", "tenant": tid, "run_at": "2999-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let (_, cancelled) = twice(
        srv,
        Method::POST,
        &format!("/v1/jobs/{id}:cancel"),
        None,
        "c",
    )
    .await;
    assert!(cancelled.contains(r#""state":"cancelled""#), "{cancelled}");
    let (_, retried) = twice(
        srv,
        Method::POST,
        &format!("/v1/jobs/{id}:retry"),
        None,
        "r",
    )
    .await;
    assert!(retried.contains(r#""state":"available""#), "{retried}");
}

pub async fn job_replay_refuses_idempotency_keys(srv: &TestServer) {
    let resp = srv
        .op(Method::POST, "/v1/jobs:replay")
        .header("idempotency-key", "r1")
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::BAD_REQUEST, "invalid_header").await;
    assert!(p["detail"].as_str().unwrap().contains("safe"), "{p}");
}
