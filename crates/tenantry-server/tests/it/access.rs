//! Tenant keys, devices, scopes, tenant resolution and suspended tenants.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::testing::{TEST_BASE_HOST, TestServer};

use crate::support::*;

/// Creates a tenant key with `roles` through the operator; returns (key id, secret).
pub async fn tenant_key(srv: &TestServer, tenant: &str, roles: &[&str]) -> (String, String) {
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{tenant}/api-keys"))
        .json(&json!({ "name": format!("{roles:?}"), "roles": roles }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    let b = body(resp).await;
    (
        b["id"].as_str().unwrap().to_owned(),
        b["key"].as_str().unwrap().to_owned(),
    )
}

pub async fn tenant_keys_create_list_rotate_revoke(srv: &TestServer) {
    let a = tenant_named(srv, "Keyed").await;
    let tid = a["id"].as_str().unwrap();
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{tid}/api-keys"))
        .json(&json!({ "name": "ci", "scopes": ["devices:read"], "roles": ["tenant_admin"], "rate_limit_per_minute": 30 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created = body(resp).await;
    let (id, secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert!(secret.starts_with("tnt_sk_") && secret.len() >= 7 + 32);
    assert_eq!(location, format!("/v1/tenants/{tid}/api-keys/{id}"));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(
        (
            created["status"].as_str(),
            created["rate_limit_per_minute"].as_u64()
        ),
        (Some("active"), Some(30))
    );

    // the key works at once, for its own tenant, without naming it
    assert_eq!(
        srv.with_key(&secret, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // listing never shows a secret
    let list = body(
        srv.with_key(&secret, Method::GET, &format!("/v1/tenants/{tid}/api-keys"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("key").is_none() && !list.to_string().contains(&secret[10..]));

    // rotation: a new secret; the old one keeps working through the grace period
    let resp = srv
        .with_key(
            &secret,
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys/{id}:rotate"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let rotated = body(resp).await;
    let (new_id, new_secret) = (
        rotated["id"].as_str().unwrap().to_owned(),
        rotated["key"].as_str().unwrap().to_owned(),
    );
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["scopes"], created["scopes"]);
    for k in [&secret, &new_secret] {
        assert_eq!(
            srv.with_key(k, Method::GET, "/v1/devices")
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let resp = srv
        .with_key(
            &new_secret,
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys/{id}:rotate"),
        )
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::CONFLICT, "api_key_not_rotatable").await;
    // a rotation with no grace ends the old secret at once
    let resp = srv
        .with_key(
            &new_secret,
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys/{new_id}:rotate"),
        )
        .json(&json!({ "grace_seconds": 0 }))
        .send()
        .await
        .unwrap();
    let newest = body(resp).await["key"].as_str().unwrap().to_owned();
    problem(
        srv.with_key(&new_secret, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // revocation is immediate
    let resp = srv
        .op(Method::DELETE, &format!("/v1/tenants/{tid}/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    problem(
        srv.with_key(&secret, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    problem(
        srv.op(Method::DELETE, &format!("/v1/tenants/{tid}/api-keys/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "api_key_not_found",
    )
    .await;
    problem(
        srv.op(
            Method::DELETE,
            &format!("/v1/tenants/{tid}/api-keys/not-a-key"),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::NOT_FOUND,
        "api_key_not_found",
    )
    .await;
    assert_eq!(
        srv.with_key(&newest, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let statuses: Vec<String> = body(
        srv.op(Method::GET, &format!("/v1/tenants/{tid}/api-keys"))
            .send()
            .await
            .unwrap(),
    )
    .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["revoked", "expired", "active"]);

    // a replayed creation does not reveal the secret again
    let req = || {
        srv.op(Method::POST, &format!("/v1/tenants/{tid}/api-keys"))
            .header("idempotency-key", "mk-1")
            .json(&json!({ "name": "once", "roles": ["member"] }))
    };
    let first = body(req().send().await.unwrap()).await;
    let again = req().send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = body(again).await;
    assert_eq!(
        (again["id"].clone(), again["key"].clone()),
        (first["id"].clone(), Value::Null)
    );
    assert!(again["note"].as_str().unwrap().contains("rotate"));
}

pub async fn scopes_are_enforced_and_cannot_be_escalated(srv: &TestServer) {
    let tid = tenant_named(srv, "Scoped").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, member) = tenant_key(srv, &tid, &["member"]).await;
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    assert_eq!(
        srv.with_key(&member, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let p = problem(
        srv.with_key(&member, Method::POST, "/v1/devices")
            .json(&json!({ "device_id": "d1" }))
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("devices:manage"),
        "{p}"
    );
    let p = problem(
        srv.with_key(&member, Method::GET, &format!("/v1/tenants/{tid}/api-keys"))
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("keys:read"));

    // nobody grants what they do not hold
    for (body_, field) in [
        (json!({ "name": "x", "roles": ["operator"] }), "roles"),
        (
            json!({ "name": "x", "scopes": ["tenants:destroy"] }),
            "scopes",
        ),
        (json!({ "name": "x" }), "scopes"),
        (
            json!({ "name": "x", "roles": ["member"], "expires_at": "2000-01-01T00:00:00Z" }),
            "expires_at",
        ),
    ] {
        let resp = srv
            .with_key(&admin, Method::POST, &format!("/v1/tenants/{tid}/api-keys"))
            .json(&body_)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body_} → {p}"
        );
    }
    // an unknown scope's error lists the valid ones
    let resp = srv
        .with_key(&admin, Method::POST, &format!("/v1/tenants/{tid}/api-keys"))
        .json(&json!({ "name": "x", "scopes": ["tenants:destroy"] }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("valid: tenants:read, tenants:manage"),
        "{p}"
    );
    // granting a scope the caller does not hold is the caller's missing scope: 403
    for body_ in [
        json!({ "name": "x", "scopes": ["billing:manage"] }),
        json!({ "name": "x", "roles": ["billing_admin"] }),
    ] {
        let resp = srv
            .with_key(&admin, Method::POST, &format!("/v1/tenants/{tid}/api-keys"))
            .json(&body_)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert!(
            p["detail"].as_str().unwrap().contains("billing:manage"),
            "{body_} → {p}"
        );
    }
    let resp = srv
        .with_key(&admin, Method::POST, &format!("/v1/tenants/{tid}/api-keys"))
        .json(&json!({ "name": "ok", "roles": ["support_agent"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // operator-only routes refuse tenant credentials
    for (m, path) in [
        (Method::GET, "/v1/tenants".to_owned()),
        (Method::POST, "/v1/editions".to_owned()),
        (Method::POST, format!("/v1/tenants/{tid}:suspend")),
    ] {
        problem(
            srv.with_key(&admin, m, &path).send().await.unwrap(),
            StatusCode::FORBIDDEN,
            "operator_required",
        )
        .await;
    }
}

pub async fn tenant_resolution_sources(srv: &TestServer) {
    let a = tenant_named(srv, "Resolve A").await;
    let b = tenant_named(srv, "Resolve B").await;
    let (aid, aslug, bid) = (
        a["id"].as_str().unwrap(),
        a["slug"].as_str().unwrap(),
        b["id"].as_str().unwrap(),
    );
    let (_, ka) = tenant_key(srv, aid, &["tenant_admin"]).await;
    let reg = |key: &str, path: &str, device: &str| {
        srv.with_key(key, Method::POST, path)
            .json(&json!({ "device_id": device }))
    };

    // the credential's own tenant, or the same tenant named any way
    assert_eq!(
        reg(&ka, "/v1/devices", "by-credential")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        reg(&ka, "/v1/devices", "by-header-id")
            .header("x-tenant-id", aid)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        reg(&ka, "/v1/devices", "by-header-slug")
            .header("x-tenant-id", aslug)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        reg(&ka, &format!("/t/{aslug}/v1/devices"), "by-path")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let host = format!("{aslug}.{TEST_BASE_HOST}");
    assert_eq!(
        reg(&ka, "/v1/devices", "by-subdomain")
            .header("host", &host)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let listed = body(
        srv.op(Method::GET, "/v1/devices")
            .header("x-tenant-id", aid)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["page_info"]["count"], 5);

    // another tenant, existing or not: forbidden, and nothing is revealed
    for other in [bid, "no-such-tenant"] {
        let resp = srv
            .with_key(&ka, Method::GET, "/v1/devices")
            .header("x-tenant-id", other)
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::FORBIDDEN, "tenant_mismatch").await;
        problem(
            srv.with_key(&ka, Method::GET, &format!("/t/{other}/v1/devices"))
                .send()
                .await
                .unwrap(),
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
        )
        .await;
    }
    // sources that disagree
    let resp = srv
        .op(Method::GET, &format!("/t/{bid}/v1/devices"))
        .header("x-tenant-id", aid)
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::BAD_REQUEST, "tenant_ambiguous").await;
    assert!(p["detail"].as_str().unwrap().contains("X-Tenant-Id"), "{p}");
    let resp = srv
        .op(Method::GET, "/v1/devices")
        .header("x-tenant-id", aid)
        .header(
            "host",
            format!("{}.{TEST_BASE_HOST}", b["slug"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST, "tenant_ambiguous").await;
    // operators must name the tenant; an unknown one is simply not found
    problem(
        srv.op(Method::GET, "/v1/devices").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "tenant_required",
    )
    .await;
    problem(
        srv.op(Method::GET, "/v1/devices")
            .header("x-tenant-id", "no-such-tenant")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    )
    .await;
    assert_eq!(
        srv.op(Method::GET, &format!("/t/{bid}/v1/devices"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // the base host itself and foreign hosts name no tenant
    assert_eq!(
        srv.with_key(&ka, Method::GET, "/v1/devices")
            .header("host", TEST_BASE_HOST)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        srv.with_key(&ka, Method::GET, "/v1/devices")
            .header("host", "b.evil.example")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

pub async fn suspended_tenants_read_but_do_not_write(srv: &TestServer) {
    let tid = tenant_named(srv, "Paused").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, k) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    srv.op(Method::POST, &format!("/v1/tenants/{tid}:suspend"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        srv.with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let p = problem(
        srv.with_key(&k, Method::POST, "/v1/devices")
            .json(&json!({ "device_id": "d" }))
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    assert_eq!(p["tenantId"], tid.as_str());
    // operators can still clean up a suspended tenant
    let resp = srv
        .op(Method::POST, "/v1/devices")
        .header("x-tenant-id", &tid)
        .json(&json!({ "device_id": "d" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // a deleted tenant is gone for its credentials
    srv.op(Method::DELETE, &format!("/v1/tenants/{tid}"))
        .send()
        .await
        .unwrap();
    problem(
        srv.with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    )
    .await;
}

pub async fn devices_register_with_their_own_keys(srv: &TestServer) {
    let tid = tenant_named(srv, "Fleet").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    let resp = srv
        .with_key(&admin, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "pump-7", "name": "Pump 7", "metadata": { "site": "north" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["location"], "/v1/devices/pump-7");
    let d = body(resp).await;
    let device_key = d["key"].as_str().unwrap().to_owned();
    assert!(device_key.starts_with("tnt_dk_"));
    assert_eq!(d["metadata"]["site"], "north");
    let resp = srv
        .with_key(&admin, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "pump-7" }))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::CONFLICT, "device_exists").await;
    for bad in [
        json!({ "device_id": "" }),
        json!({ "device_id": "has space" }),
        json!({ "device_id": "x", "metadata": [1] }),
    ] {
        let resp = srv
            .with_key(&admin, Method::POST, "/v1/devices")
            .json(&bad)
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let got = body(
        srv.with_key(&admin, Method::GET, "/v1/devices/pump-7")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (got["name"].as_str(), got.get("key")),
        (Some("Pump 7"), None)
    );

    // the device key authenticates (it is not a 401) but may only write events for its device
    let p = problem(
        srv.with_key(&device_key, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("devices:read"));
    problem(
        srv.with_key(&device_key, Method::GET, "/v1/tenants")
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "operator_required",
    )
    .await;

    let resp = srv
        .with_key(&admin, Method::DELETE, "/v1/devices/pump-7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    problem(
        srv.with_key(&device_key, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    problem(
        srv.with_key(&admin, Method::GET, "/v1/devices/pump-7")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "device_not_found",
    )
    .await;
    problem(
        srv.with_key(&admin, Method::DELETE, "/v1/devices/pump-7")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "device_not_found",
    )
    .await;
}

pub async fn key_and_device_changes_are_audited(srv: &TestServer) {
    let tid = tenant_named(srv, "Traced").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (admin_id, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    let (victim, _) = tenant_key(srv, &tid, &["member"]).await;
    srv.with_key(
        &admin,
        Method::POST,
        &format!("/v1/tenants/{tid}/api-keys/{victim}:rotate"),
    )
    .send()
    .await
    .unwrap();
    srv.with_key(
        &admin,
        Method::DELETE,
        &format!("/v1/tenants/{tid}/api-keys/{victim}"),
    )
    .send()
    .await
    .unwrap();
    srv.with_key(&admin, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "cam" }))
        .send()
        .await
        .unwrap();
    srv.with_key(&admin, Method::DELETE, "/v1/devices/cam")
        .send()
        .await
        .unwrap();
    let log = body(
        srv.op(Method::GET, &format!("/v1/audit?tenant={tid}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let entries: Vec<(String, String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["actor"]["kind"].as_str().unwrap().into(),
                e["actor"]["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let actions: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        actions,
        [
            "device.delete",
            "device.create",
            "api_key.revoke",
            "api_key.rotate",
            "api_key.create",
            "api_key.create",
            "tenant.create"
        ]
    );
    assert_eq!(
        (entries[0].1.as_str(), entries[0].2.as_str()),
        ("tenant_key", admin_id.as_str()),
        "who did it, with which key"
    );
    assert_eq!(entries[4].1, "operator_key");
    assert!(
        !log.to_string().contains(&admin[12..]),
        "no secrets in the audit log"
    );
}

pub async fn revocation_and_rotation_across_two_instances(srv: &TestServer) {
    let other = srv.second_instance().await;
    let tid = tenant_named(srv, "Twin").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (id, k) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    assert_eq!(
        other
            .with_key(&k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // rotated on one instance: both secrets work on the other during the grace period
    let rotated = body(
        srv.with_key(
            &k,
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys/{id}:rotate"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let new_k = rotated["key"].as_str().unwrap().to_owned();
    for key in [&k, &new_k] {
        assert_eq!(
            other
                .with_key(key, Method::GET, "/v1/devices")
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    // revoked on one instance: refused by the other on the very next request
    let resp = other
        .with_key(
            &new_k,
            Method::DELETE,
            &format!(
                "/v1/tenants/{tid}/api-keys/{}",
                rotated["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    problem(
        srv.with_key(&new_k, Method::GET, "/v1/devices")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    other.stop().await;
}
