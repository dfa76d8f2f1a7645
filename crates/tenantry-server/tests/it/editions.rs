use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantry_server::testing::TestServer;

use crate::support::*;

pub async fn default_catalog(srv: &TestServer) {
    let page = body(srv.op(Method::GET, "/v1/editions").send().await.unwrap()).await;
    let items = page["items"].as_array().unwrap();
    let keys: Vec<_> = items.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["free", "standard", "enterprise"]);
    let expected = [
        (60, 120, 10, 1, 1, 7),
        (600, 1200, 50, 50, 5, 30),
        (3000, 6000, 200, 500, 20, 90),
    ];
    for (e, (rpm, burst, conc, gb, hooks, days)) in items.iter().zip(expected) {
        let l = &e["limits"];
        assert_eq!(
            (
                &l["requests_per_minute"],
                &l["burst"],
                &l["concurrency"],
                &l["storage_gb"],
                &l["webhook_subscriptions"],
                &l["retention_days"]
            ),
            (
                &json!(rpm),
                &json!(burst),
                &json!(conc),
                &json!(gb),
                &json!(hooks),
                &json!(days)
            ),
            "{e}"
        );
        assert_eq!(e["builtin"], true);
    }
    let free = body(
        srv.op(Method::GET, "/v1/editions/free")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(free["limits"]["requests_per_minute"], 60);
    problem(
        srv.op(Method::GET, "/v1/editions/platinum")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "edition_not_found",
    )
    .await;
    problem(
        srv.op(Method::GET, "/v1/editions/NOT_A_KEY")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "edition_not_found",
    )
    .await;
}

pub async fn custom_editions(srv: &TestServer) {
    let limits = json!({ "requests_per_minute": 900, "burst": 1800, "concurrency": 60, "storage_gb": 100, "webhook_subscriptions": 8, "retention_days": 365 });
    let resp = srv
        .op(Method::POST, "/v1/editions")
        .json(&json!({ "key": "healthcare-pack", "name": "Healthcare Pack", "description": "HIPAA", "limits": limits }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["location"], "/v1/editions/healthcare-pack");
    let e = body(resp).await;
    assert_eq!(
        (
            e["builtin"].as_bool(),
            e["limits"]["retention_days"].as_u64()
        ),
        (Some(false), Some(365))
    );

    let resp = srv
        .op(Method::POST, "/v1/editions")
        .json(&json!({ "key": "healthcare-pack", "name": "Again", "limits": limits }))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::CONFLICT, "edition_exists").await;

    let mut bad = limits.clone();
    bad["concurrency"] = json!(0);
    let resp = srv
        .op(Method::POST, "/v1/editions")
        .json(&json!({ "key": "X", "name": " ", "limits": bad }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["key", "name", "limits.concurrency"]);
    let resp = srv
        .op(Method::POST, "/v1/editions")
        .json(&json!({ "key": "partial", "name": "P", "limits": { "burst": 5 } }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(
        p["errors"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("limits"),
        "{p}"
    );

    // tenants can use it, and not an edition that does not exist
    let t = create_tenant(
        srv,
        json!({ "name": "Clinic", "edition": "healthcare-pack" }),
    )
    .await;
    assert_eq!(t["edition"], "healthcare-pack");
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .json(&json!({ "name": "Nope", "edition": "platinum" }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "edition");
}
