//! Helpers shared by the cases.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tenantry_server::testing::TestServer;

pub async fn body(resp: Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts a Problem+JSON response and returns its body.
pub async fn problem(resp: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(resp.status(), status, "status of {}", resp.url());
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let b = body(resp).await;
    assert_eq!(b["type"], format!("urn:tenantry:problem:{code}"), "{b}");
    assert_eq!(b["status"], status.as_u16(), "{b}");
    assert!(b["title"].as_str().is_some_and(|t| !t.is_empty()), "{b}");
    assert!(b["detail"].as_str().is_some_and(|t| !t.is_empty()), "{b}");
    let trace = b["traceId"].as_str().unwrap_or_default();
    assert_eq!(trace.len(), 32, "traceId in {b}");
    b
}

pub async fn create_tenant(srv: &TestServer, payload: Value) -> Value {
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    body(resp).await
}

pub async fn tenant_named(srv: &TestServer, name: &str) -> Value {
    create_tenant(srv, json!({ "name": name })).await
}

/// A new key of `tenant` (id or slug) with exactly `scopes`, made by the operator; its secret.
pub async fn key_with_scopes(srv: &TestServer, tenant: &str, scopes: &[&str]) -> String {
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{tenant}/api-keys"))
        .json(&json!({ "name": "test key", "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    body(resp).await["key"].as_str().unwrap().to_owned()
}
