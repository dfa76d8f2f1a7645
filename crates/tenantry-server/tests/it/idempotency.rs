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
