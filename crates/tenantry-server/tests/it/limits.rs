//! Edition-aware rate limits at the edge.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantry_server::testing::TestServer;

use crate::access::tenant_key;
use crate::support::*;

/// A tenant on a custom edition with `rpm` requests per minute and `burst`; returns its id.
async fn tenant_on(srv: &TestServer, name: &str, rpm: u32, burst: u32) -> String {
    let edition = format!("ed-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let limits = json!({ "requests_per_minute": rpm, "burst": burst, "concurrency": 1, "storage_gb": 1, "webhook_subscriptions": 1, "retention_days": 1 });
    let resp = srv
        .op(Method::POST, "/v1/editions")
        .json(&json!({ "key": edition, "name": name, "limits": limits }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    create_tenant(srv, json!({ "name": name, "edition": edition })).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn header(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()[name].to_str().unwrap().parse().unwrap()
}

pub async fn headers_then_429_after_the_burst(srv: &TestServer) {
    let tid = tenant_on(srv, "Tiny", 6, 3).await;
    let (_, k) = tenant_key(srv, &tid, &["member"]).await;
    for left in [2, 1, 0] {
        let resp = srv
            .with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            (
                header(&resp, "ratelimit-limit"),
                header(&resp, "ratelimit-remaining")
            ),
            (3, left)
        );
        assert_eq!(header(&resp, "x-ratelimit-remaining"), left);
        assert!(header(&resp, "ratelimit-reset") <= 30);
    }
    let resp = srv
        .with_key(&k, Method::GET, "/v1/devices")
        .send()
        .await
        .unwrap();
    let retry = header(&resp, "retry-after");
    assert!(
        (1..=10).contains(&retry),
        "one request per 10 s frees up: {retry}"
    );
    assert_eq!(header(&resp, "ratelimit-remaining"), 0);
    let p = problem(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(p["tenantId"], tid.as_str());
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("6 requests per minute"),
        "{p}"
    );
    // refused requests do not reach the handler or the store
    let resp = srv
        .with_key(&k, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let devices = body(
        srv.op(Method::GET, "/v1/devices")
            .header("x-tenant-id", &tid)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(devices["page_info"]["count"], 0);
    // operators are not tenant traffic
    assert!(
        srv.op(Method::GET, "/v1/tenants")
            .send()
            .await
            .unwrap()
            .headers()
            .get("ratelimit-limit")
            .is_none()
    );
}

pub async fn limits_are_per_tenant_and_per_key(srv: &TestServer) {
    let a = tenant_on(srv, "Flooded", 6, 2).await;
    let b = tenant_on(srv, "Calm", 6, 2).await;
    let (_, ka1) = tenant_key(srv, &a, &["member"]).await;
    let (_, ka2) = tenant_key(srv, &a, &["member"]).await;
    let (_, kb) = tenant_key(srv, &b, &["member"]).await;
    for _ in 0..2 {
        assert_eq!(
            srv.with_key(&ka1, Method::GET, "/v1/devices")
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    // the tenant's bucket is shared by its keys...
    let p = problem(
        srv.with_key(&ka2, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("tenant limit"),
        "{p}"
    );
    // ...and not by other tenants
    assert_eq!(
        srv.with_key(&kb, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // a key may carry a lower limit than its edition
    let std =
        create_tenant(srv, json!({ "name": "Standard Co", "edition": "standard" })).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{std}/api-keys"))
        .json(&json!({ "name": "slow", "roles": ["member"], "rate_limit_per_minute": 2 }))
        .send()
        .await
        .unwrap();
    let slow = body(resp).await["key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let resp = srv
            .with_key(&slow, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap();
        assert_eq!(
            (resp.status(), header(&resp, "ratelimit-limit")),
            (StatusCode::OK, 2)
        );
    }
    let p = problem(
        srv.with_key(&slow, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("key limit"), "{p}");
}

pub async fn edition_changes_apply_without_restart(srv: &TestServer) {
    let tid = tenant_on(srv, "Growing", 6, 2).await;
    let (_, k) = tenant_key(srv, &tid, &["member"]).await;
    for _ in 0..2 {
        srv.with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        srv.with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let resp = srv
        .op(Method::PATCH, &format!("/v1/tenants/{tid}"))
        .header("if-match", "*")
        .json(&json!({ "edition": "enterprise" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = srv
        .with_key(&k, Method::GET, "/v1/devices")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the upgrade applies at once, counting what was used"
    );
    assert_eq!(header(&resp, "ratelimit-limit"), 6000);
    assert_eq!(header(&resp, "ratelimit-remaining"), 6000 - 3);
}

/// The platform-wide limit applies across tenants.
pub async fn the_global_limit_applies_to_everyone() {
    let srv = TestServer::start(tenantry_store::testing::sqlite().await, |c| {
        c.limits.global_per_minute = 6;
        c.limits.global_burst = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            srv.op(Method::GET, "/v1/tenants")
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let p = problem(
        srv.op(Method::GET, "/v1/editions").send().await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("global"), "{p}");
    // probes are never limited
    assert_eq!(
        srv.client
            .get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// With Redis, two instances share one bucket; without, each limits alone.
pub async fn instances_share_limits_through_redis() {
    let Some(redis) = tenantry_limiter::conformance::redis_url() else {
        return tenantry_limiter::conformance::skip_notice("instances_share_limits_through_redis");
    };
    let one = TestServer::start(tenantry_store::testing::sqlite().await, |c| {
        c.limits.redis_url = redis.clone()
    })
    .await;
    let two = one
        .second_instance_with(|c| c.limits.redis_url = redis.clone())
        .await;
    let tid = tenant_on(&one, "Shared", 6, 5).await;
    let (_, k) = tenant_key(&one, &tid, &["member"]).await;
    let mut allowed = 0;
    for i in 0..12 {
        let srv = if i % 2 == 0 { &one } else { &two };
        if srv
            .with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5, "one burst of 5 across both instances");
    two.stop().await;

    // the same with in-process limiters: each instance has its own burst
    let one = TestServer::sqlite().await;
    let two = one.second_instance().await;
    let tid = tenant_on(&one, "Split", 6, 5).await;
    let (_, k) = tenant_key(&one, &tid, &["member"]).await;
    let mut allowed = 0;
    for i in 0..12 {
        let srv = if i % 2 == 0 { &one } else { &two };
        if srv
            .with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "each instance allows its own burst of 5");
}
