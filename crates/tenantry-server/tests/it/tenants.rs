use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantry_server::testing::TestServer;

use crate::support::*;

pub async fn create_returns_201_with_location_etag_and_body(srv: &TestServer) {
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .json(&json!({ "name": "Acme Corp", "slug": "acme", "edition": "standard", "region": "eu-west" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let t = body(resp).await;
    assert_eq!(
        location,
        format!("/v1/tenants/{}", t["id"].as_str().unwrap())
    );
    let id = uuid::Uuid::parse_str(t["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["name"], "Acme Corp");
    assert_eq!(t["status"], "active");
    assert_eq!(t["edition"], "standard");
    assert_eq!(t["region"], "eu-west");
    assert_eq!(t["isolation"], "pooled");
    assert!(t["created_at"].is_string() && t["updated_at"].is_string());

    let defaults = tenant_named(srv, "Bare").await;
    assert_eq!(
        (defaults["edition"].as_str(), defaults["region"].is_null()),
        (Some("free"), true)
    );
}

pub async fn slugs_are_derived_and_unique(srv: &TestServer) {
    let a = tenant_named(srv, "Globex Corporation!").await;
    assert_eq!(a["slug"], "globex-corporation");
    // the same name again gets a suffixed slug instead of failing
    let b = tenant_named(srv, "Globex Corporation!").await;
    let slug = b["slug"].as_str().unwrap();
    assert!(
        slug.starts_with("globex-corporation-") && slug.len() > "globex-corporation-".len(),
        "{slug}"
    );
    // an explicit slug that is taken is a conflict
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .json(&json!({ "name": "X", "slug": "globex-corporation" }))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::CONFLICT, "slug_taken").await;
    assert!(p["detail"].as_str().unwrap().contains("globex-corporation"));
    let unicode = tenant_named(srv, "東京").await;
    assert!(unicode["slug"].as_str().unwrap().starts_with("tenant-"));
}

pub async fn get_by_id_or_slug(srv: &TestServer) {
    let t = create_tenant(srv, json!({ "name": "Initech", "slug": "initech" })).await;
    let id = t["id"].as_str().unwrap();
    for key in [id, "initech"] {
        let resp = srv
            .op(Method::GET, &format!("/v1/tenants/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["etag"], "\"1\"");
        assert_eq!(body(resp).await, t);
    }
    let resp = srv
        .op(Method::GET, "/v1/tenants/nobody-here")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::NOT_FOUND, "tenant_not_found").await;
    let resp = srv
        .op(
            Method::GET,
            &format!("/v1/tenants/{}", uuid::Uuid::now_v7()),
        )
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::NOT_FOUND, "tenant_not_found").await;
    let resp = srv
        .op(Method::GET, "/v1/tenants/NOT%20VALID")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::NOT_FOUND, "tenant_not_found").await;
}

pub async fn list_is_cursor_paginated_and_filtered(srv: &TestServer) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let edition = if i % 2 == 0 { "free" } else { "enterprise" };
        let t = create_tenant(
            srv,
            json!({ "name": format!("List {i}"), "edition": edition }),
        )
        .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    srv.op(Method::POST, &format!("/v1/tenants/{}:suspend", ids[0]))
        .send()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut url = "/v1/tenants?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = body(srv.op(Method::GET, &url).send().await.unwrap()).await;
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert_eq!(page["page_info"]["count"], items.len());
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        if page["page_info"]["has_next_page"] == true {
            url = format!(
                "/v1/tenants?limit=2&cursor={}",
                page["page_info"]["next_cursor"].as_str().unwrap()
            );
        } else {
            assert!(page["page_info"]["next_cursor"].is_null());
            break;
        }
    }
    assert_eq!(
        (seen, pages),
        (ids.clone(), 3),
        "every tenant once, in creation order"
    );

    let page = body(
        srv.op(Method::GET, "/v1/tenants?edition=enterprise")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let got: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[1].as_str(), ids[3].as_str()]);
    let page = body(
        srv.op(Method::GET, "/v1/tenants?status=suspended")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["items"][0]["id"], ids[0].as_str());
    assert_eq!(page["page_info"]["count"], 1);
}

pub async fn patch_requires_current_etag(srv: &TestServer) {
    let t = create_tenant(srv, json!({ "name": "Patchy", "region": "us" })).await;
    let path = format!("/v1/tenants/{}", t["id"].as_str().unwrap());
    let patch = json!({ "name": "Patchy Two", "edition": "standard", "region": null });

    let resp = srv
        .op(Method::PATCH, &path)
        .json(&patch)
        .send()
        .await
        .unwrap();
    problem(
        resp,
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
    )
    .await;

    let resp = srv
        .op(Method::PATCH, &path)
        .header("if-match", "\"7\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["etag"],
        "\"1\"",
        "a 412 tells the current ETag"
    );
    problem(resp, StatusCode::PRECONDITION_FAILED, "precondition_failed").await;

    let resp = srv
        .op(Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["etag"], "\"2\"");
    let updated = body(resp).await;
    assert_eq!(
        (updated["name"].as_str(), updated["edition"].as_str()),
        (Some("Patchy Two"), Some("standard"))
    );
    assert!(updated["region"].is_null());

    // the old ETag is stale now
    let resp = srv
        .op(Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(&json!({ "name": "Late" }))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::PRECONDITION_FAILED, "precondition_failed").await;
    // bad values are reported per field
    let resp = srv
        .op(Method::PATCH, &path)
        .header("if-match", "*")
        .json(&json!({ "name": "", "edition": "platinum" }))
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
    assert_eq!(fields, ["name", "edition"]);
    assert_eq!(
        p["tenantId"], t["id"],
        "problems about a known tenant name it"
    );
}

pub async fn lifecycle_transitions(srv: &TestServer) {
    let t = tenant_named(srv, "Cycle").await;
    let id = t["id"].as_str().unwrap();
    let op = |verb: &str| format!("/v1/tenants/{id}:{verb}");

    let s = body(srv.op(Method::POST, &op("suspend")).send().await.unwrap()).await;
    assert_eq!(s["status"], "suspended");
    let resp = srv.op(Method::POST, &op("suspend")).send().await.unwrap();
    let p = problem(resp, StatusCode::CONFLICT, "invalid_transition").await;
    assert_eq!(p["tenantId"], id);
    let r = body(srv.op(Method::POST, &op("resume")).send().await.unwrap()).await;
    assert_eq!(r["status"], "active");
    problem(
        srv.op(Method::POST, &op("resume")).send().await.unwrap(),
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;

    let resp = srv
        .op(Method::DELETE, &format!("/v1/tenants/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let d = body(resp).await;
    assert_eq!(d["status"], "deleted");
    let deleted_at =
        chrono::DateTime::parse_from_rfc3339(d["deleted_at"].as_str().unwrap()).unwrap();
    let purge_after =
        chrono::DateTime::parse_from_rfc3339(d["purge_after"].as_str().unwrap()).unwrap();
    assert_eq!(purge_after - deleted_at, chrono::Duration::days(30));
    problem(
        srv.op(Method::DELETE, &format!("/v1/tenants/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
    problem(
        srv.op(Method::POST, &op("suspend")).send().await.unwrap(),
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
    // still readable by operators, so that it can be restored
    assert_eq!(
        body(
            srv.op(Method::GET, &format!("/v1/tenants/{id}"))
                .send()
                .await
                .unwrap()
        )
        .await["status"],
        "deleted"
    );

    let restored = body(srv.op(Method::POST, &op("restore")).send().await.unwrap()).await;
    assert_eq!(restored["status"], "active");
    assert!(restored.get("deleted_at").is_none() && restored.get("purge_after").is_none());
    problem(
        srv.op(Method::POST, &op("restore")).send().await.unwrap(),
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;

    problem(
        srv.op(Method::POST, &op("explode")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{id}"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["allow"].to_str().unwrap().contains("PATCH"));
    problem(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    problem(
        srv.op(Method::POST, "/v1/tenants/no-such-tenant:suspend")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    )
    .await;
}

pub async fn restore_after_the_grace_window_is_refused(srv: &TestServer) {
    use tenantry_domain::{TenantId, TenantRef};
    let t = tenant_named(srv, "Expired").await;
    let id: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    body(
        srv.op(Method::DELETE, &format!("/v1/tenants/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // move the purge date into the past directly in the store
    let stored = srv
        .store
        .tenants()
        .get(&TenantRef::Id(id))
        .await
        .unwrap()
        .unwrap();
    let mut expired = stored.clone();
    expired.purge_after = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
    expired.version += 1;
    srv.store
        .tenants()
        .update(&expired, stored.version, &Default::default())
        .await
        .unwrap();
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{id}:restore"))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::CONFLICT, "restore_window_closed").await;
}
