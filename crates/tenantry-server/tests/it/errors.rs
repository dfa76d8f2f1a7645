use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantry_server::testing::TestServer;

use crate::support::*;

pub async fn authentication_errors(srv: &TestServer) {
    let url = srv.url("/v1/tenants");
    let resp = srv.client.get(&url).send().await.unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"tenantry\""
    );
    problem(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let forged = format!(
        "{}{}",
        &srv.operator_key[..srv.operator_key.len() - 4],
        "AAAA"
    );
    let unknown = format!("tnt_op_{}", "Z".repeat(44));
    let tenant_key = format!("tnt_sk_{}", "Q".repeat(44));
    for auth in [
        "Bearer nonsense".to_owned(),
        format!("Basic {}", srv.operator_key),
        format!("Bearer {forged}"),
        format!("Bearer {unknown}"),
        format!("Bearer {tenant_key}"),
        "Bearer".to_owned(),
    ] {
        let resp = srv
            .client
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{auth}"
        );
        let p = problem(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(
            !p.to_string().contains(&srv.operator_key),
            "never echo a credential"
        );
    }
    let ok = srv
        .client
        .get(&url)
        .header("authorization", format!("bearer {}", srv.operator_key))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status(),
        StatusCode::OK,
        "the scheme is case-insensitive"
    );
}

pub async fn routing_errors(srv: &TestServer) {
    let resp = srv
        .op(Method::GET, "/v1/nothing-here")
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(p["instance"], "/v1/nothing-here");
    let resp = srv.client.get(srv.url("/")).send().await.unwrap();
    problem(resp, StatusCode::NOT_FOUND, "not_found").await;

    let resp = srv.op(Method::DELETE, "/v1/tenants").send().await.unwrap();
    assert!(resp.headers()["allow"].to_str().unwrap().contains("POST"));
    problem(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let resp = srv
        .op(Method::PUT, "/v1/tenants/acme")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let resp = srv
        .op(Method::DELETE, "/v1/editions/free")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

pub async fn body_errors(srv: &TestServer) {
    let post = |ct: Option<&'static str>, body: String| {
        let mut r = srv.op(Method::POST, "/v1/tenants").body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    problem(
        post(Some("text/plain"), r#"{"name":"x"}"#.into())
            .await
            .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    problem(
        post(None, r#"{"name":"x"}"#.into()).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let p = problem(
        post(Some("application/json"), r#"{"name": "#.into())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("line 1"), "{p}");
    problem(
        post(Some("application/json"), String::new()).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;

    let p = problem(
        post(Some("application/json"), r#"{"name": 5}"#.into())
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "name");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{p}"
    );
    let p = problem(
        post(
            Some("application/json"),
            r#"{"name": "x", "colour": "red"}"#.into(),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");
    let p = problem(
        post(Some("application/json; charset=utf-8"), "{}".into())
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("name"), "{p}");
    problem(
        post(Some("application/json"), "[]".into()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let p = problem(
        post(
            Some("application/json"),
            json!({ "name": " ", "slug": "UPPER", "region": "x", "isolation": "schema" })
                .to_string(),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "slug", "region", "isolation"],
        "every invalid field at once"
    );
    let p = problem(
        post(
            Some("application/json"),
            json!({ "name": "x", "slug": "0190a6f4-1c2b-7d3e-8f40-123456789abc" }).to_string(),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "slug");
}

/// A body over `body_limit_bytes` is refused with 413, whether it announces its length or not.
/// (A small limit keeps the whole body in socket buffers, so the client always reads the answer.)
pub async fn oversized_bodies_are_413() {
    let store = tenantry_store::testing::sqlite().await;
    let srv = TestServer::start(store, |c| c.body_limit_bytes = 2048).await;
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(3000));
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(p["traceId"].is_string());
    let fits = format!(r#"{{"name": "{}"}}"#, "x".repeat(100));
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .header("content-type", "application/json")
        .body(fits)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        body(srv.op(Method::GET, "/v1/tenants").send().await.unwrap()).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the small one was created"
    );
}

pub async fn query_errors(srv: &TestServer) {
    for q in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "status=zombie",
        "edition=NOT_VALID",
        "unknown=1",
    ] {
        let resp = srv
            .op(Method::GET, &format!("/v1/tenants?{q}"))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    for c in ["garbage", "YWJj", "%00"] {
        let resp = srv
            .op(Method::GET, &format!("/v1/tenants?cursor={c}"))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    }
}

pub async fn store_outage_is_503(srv: &TestServer) {
    srv.store.close().await;
    let resp = srv.op(Method::GET, "/v1/tenants").send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    let p = problem(resp, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    assert!(
        !p["detail"].as_str().unwrap().contains("postgres://"),
        "no connection details leak"
    );
    problem(
        srv.client.get(srv.url("/readyz")).send().await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert_eq!(
        srv.client
            .get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "the process is still up"
    );
}
