//! The cross-tenant harness. It walks the route table (`tenantry_server::platform::http::routes::api()`), so
//! every route — including ones added later — is tried with tenant B's credentials against tenant
//! A's resources, in every way a tenant can be named. No attempt may succeed, no response may carry
//! A's data, and afterwards A's data must be exactly as before.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::platform::http::routes::{Access, api};
use tenantry_server::testing::TestServer;

use crate::access::tenant_key;
use crate::support::*;

struct Fixture {
    a_id: String,
    a_slug: String,
    a_device: String,
    a_key_id: String,
    a_job: String,
    a_schedule: String,
    a_source: String,
    a_subscription: String,
    a_admin: String,
    b_admin: String,
}

/// Fills a route's path parameters with tenant A's resources. A parameter without a fixture fails
/// the harness: whoever adds a route with a new kind of parameter must teach the harness about it.
fn concrete_path(path: &str, f: &Fixture) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("balanced braces") + start;
        let value = match &rest[start + 1..end] {
            "tenant" | "target" => f.a_id.as_str(),
            "device_id" => f.a_device.as_str(),
            "key" => f.a_key_id.as_str(),
            "job" => f.a_job.as_str(),
            "name" => f.a_schedule.as_str(),
            "source" => f.a_source.as_str(),
            "subscription" => f.a_subscription.as_str(),
            other => panic!(
                "the cross-tenant harness has no fixture for path parameter {{{other}}} in {path}; add one"
            ),
        };
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A plausible body for each write, so that authorization — not validation — decides.
fn body_for(path: &str) -> Value {
    if path.contains("deliveries:replay") {
        json!({ "subscription_id": "00000000-0000-7000-8000-000000000000",
                "from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z" })
    } else if path.contains("webhooks") {
        json!({ "url": "https://93.184.215.14/smuggled", "event_types": ["*"] })
    } else if path.contains("sources") {
        json!({ "name": "smuggled", "config": {"url": "https://vendor.example/x", "items": "/items",
                "key": "/id", "record_type": "device"} })
    } else if path.contains("schedules") {
        json!({ "name": "smuggled", "interval_seconds": 60, "kind": "noop" })
    } else if path.contains("jobs") {
        json!({ "kind": "noop" })
    } else if path.contains("api-keys") {
        json!({ "name": "smuggled", "roles": ["member"] })
    } else if path.contains("devices") {
        json!({ "device_id": "smuggled" })
    } else {
        json!({ "name": "smuggled" })
    }
}

async fn snapshot(srv: &TestServer, f: &Fixture) -> (Value, Value, Value, Value, Value, Value) {
    let mut job = body(
        srv.with_key(&f.a_admin, Method::GET, &format!("/v1/jobs/{}", f.a_job))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // the worker may run it meanwhile; what matters is that it is A's and unchanged by B
    for volatile in [
        "state",
        "attempt",
        "lease_owner",
        "lease_expires_at",
        "heartbeat_at",
        "attempted_at",
        "finished_at",
    ] {
        job.as_object_mut().unwrap().remove(volatile);
    }
    let schedules = body(
        srv.with_key(&f.a_admin, Method::GET, "/v1/schedules")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let devices = body(
        srv.with_key(&f.a_admin, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let keys = body(
        srv.with_key(
            &f.a_admin,
            Method::GET,
            &format!("/v1/tenants/{}/api-keys", f.a_id),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let sources = body(
        srv.with_key(&f.a_admin, Method::GET, "/v1/sources")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let subscriptions = body(
        srv.with_key(&f.a_admin, Method::GET, "/v1/webhooks/subscriptions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    (devices, keys, job, schedules, sources, subscriptions)
}

pub async fn no_route_lets_tenant_b_touch_tenant_a(srv: &TestServer) {
    let a = create_tenant(srv, json!({"name": "Victim", "edition": "enterprise"})).await;
    let b = create_tenant(srv, json!({"name": "Intruder", "edition": "enterprise"})).await;
    let (a_id, b_id) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    let (_, a_admin) = tenant_key(srv, &a_id, &["tenant_admin"]).await;
    let (a_key_id, _) = tenant_key(srv, &a_id, &["member"]).await;
    let (_, b_admin) = tenant_key(srv, &b_id, &["tenant_admin"]).await;
    let resp = srv
        .with_key(&a_admin, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "a-secret-device" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let job = body(
        srv.with_key(&a_admin, Method::POST, "/v1/jobs")
            .json(
                &json!({ "kind": "sleep", "payload": {"ms": 1}, "run_at": "2100-01-01T00:00:00Z" }),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    let resp = srv
        .with_key(&a_admin, Method::POST, "/v1/schedules")
        .json(&json!({ "name": "a-secret-schedule", "interval_seconds": 3600, "kind": "noop", "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let source = body(
        srv.with_key(&a_admin, Method::POST, "/v1/sources")
            .json(&json!({ "name": "a-secret-source", "enabled": false,
                "config": {"url": "https://vendor.example/a", "items": "/items", "key": "/id",
                           "record_type": "device", "headers": {"Authorization": "Bearer a-secret-token"}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let subscription = body(
        srv.with_key(&a_admin, Method::POST, "/v1/webhooks/subscriptions")
            .json(
                &json!({ "url": "https://93.184.215.14/a-secret-hook", "event_types": ["*"],
                           "enabled": false, "description": "a-secret-subscription" }),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    let f = Fixture {
        a_subscription: subscription["id"].as_str().unwrap().to_owned(),
        a_source: source["id"].as_str().unwrap().to_owned(),
        a_job: job["id"].as_str().unwrap().to_owned(),
        a_schedule: "a-secret-schedule".into(),
        a_slug: a["slug"].as_str().unwrap().to_owned(),
        a_id,
        a_device: "a-secret-device".into(),
        a_key_id,
        a_admin,
        b_admin,
    };
    let before = snapshot(srv, &f).await;
    let a_markers = [
        f.a_id.as_str(),
        f.a_slug.as_str(),
        f.a_device.as_str(),
        f.a_key_id.as_str(),
        f.a_job.as_str(),
        f.a_schedule.as_str(),
        f.a_source.as_str(),
        "a-secret-source",
        "a-secret-token",
        f.a_subscription.as_str(),
        "a-secret-subscription",
        "a-secret-hook",
    ];

    let specs = api().specs;
    let mut tried = 0;
    for spec in specs.iter().filter(|s| s.access != Access::Public) {
        let path = concrete_path(spec.path, &f);
        // every way of pointing B's credential at A
        let attempts = [
            ("as is", path.clone(), None),
            ("X-Tenant-Id id", path.clone(), Some(f.a_id.clone())),
            ("X-Tenant-Id slug", path.clone(), Some(f.a_slug.clone())),
            ("/t/ prefix", format!("/t/{}{path}", f.a_id), None),
        ];
        for (how, url, header) in attempts {
            let send = |with_body: bool| {
                let mut req = srv.with_key(&f.b_admin, spec.method.clone(), &url);
                if let Some(h) = &header {
                    req = req.header("x-tenant-id", h);
                }
                if with_body && matches!(spec.method, Method::POST | Method::PATCH | Method::PUT) {
                    req = req.header("if-match", "*").json(&body_for(spec.path));
                }
                req.send()
            };
            let mut resp = send(true).await.unwrap();
            if resp.status() == StatusCode::BAD_REQUEST {
                // an operation that takes no body refuses one before it looks anything up
                let text = resp.text().await.unwrap();
                assert!(text.contains("takes no body"), "{text}");
                resp = send(false).await.unwrap();
            }
            let status = resp.status();
            let endless = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            // a live stream never ends: what B's stream carries is tested in
            // tests/it/telemetry.rs (`the_live_stream_carries_only_the_callers_events`)
            let text = if endless {
                String::new()
            } else {
                resp.text().await.unwrap()
            };
            let what = format!("{} {} ({how}) → {status}: {text}", spec.method, spec.path);
            tried += 1;
            match spec.access {
                Access::Operator => assert_eq!(status, StatusCode::FORBIDDEN, "{what}"),
                Access::Tenant(_) => {
                    let names_a =
                        spec.path.contains("{tenant}") || header.is_some() || how == "/t/ prefix";
                    if names_a {
                        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                        assert!(text.contains("tenant_mismatch"), "{what}");
                    } else if status.is_success() {
                        // B acting on B's own tenant: allowed, but nothing of A may show or change
                        assert!(
                            a_markers.iter().skip(2).all(|m| !text.contains(m)),
                            "A's data leaked: {what}"
                        );
                    } else {
                        assert!(
                            status == StatusCode::NOT_FOUND
                                || status == StatusCode::UNPROCESSABLE_ENTITY,
                            "{what}"
                        );
                    }
                }
                Access::Public => unreachable!(),
            }
            assert!(!text.contains(&f.a_admin), "a secret leaked: {what}");
        }
    }
    assert!(
        tried >= 4 * 14,
        "the harness walked only {tried} attempts: is the route table complete?"
    );
    assert_eq!(snapshot(srv, &f).await, before, "tenant A's data changed");
    // and A's credential still works on A
    assert_eq!(
        srv.with_key(
            &f.a_admin,
            Method::GET,
            &format!("/v1/devices/{}", f.a_device)
        )
        .send()
        .await
        .unwrap()
        .status(),
        StatusCode::OK
    );
}
