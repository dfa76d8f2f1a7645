use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantry_domain::TenantId;
use tenantry_server::testing::TestServer;

use crate::support::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

pub async fn every_write_is_audited_with_an_event(srv: &TestServer) {
    let traceparent = format!("00-{TRACE}-b7ad6b7169203331-01");
    let resp = srv
        .op(Method::POST, "/v1/tenants")
        .header("traceparent", &traceparent)
        .json(&json!({ "name": "Audited" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let t = body(resp).await;
    let id = t["id"].as_str().unwrap();
    srv.op(Method::POST, &format!("/v1/tenants/{id}:suspend"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    srv.op(Method::PATCH, &format!("/v1/tenants/{id}"))
        .header("if-match", "*")
        .json(&json!({ "name": "Audited 2" }))
        .send()
        .await
        .unwrap();
    srv.op(Method::DELETE, &format!("/v1/tenants/{id}"))
        .send()
        .await
        .unwrap();
    srv.op(Method::POST, &format!("/v1/tenants/{id}:restore"))
        .send()
        .await
        .unwrap();

    let log = body(
        srv.op(Method::GET, &format!("/v1/audit?tenant={id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = log["items"].as_array().unwrap();
    let actions: Vec<_> = items
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.restore",
            "tenant.delete",
            "tenant.update",
            "tenant.suspend",
            "tenant.create"
        ]
    );
    let created = &items[4];
    assert_eq!(created["actor"]["kind"], "operator_key");
    assert!(
        created["actor"]["id"]
            .as_str()
            .is_some_and(|k| !k.starts_with("tnt_")),
        "the actor is the key id, never the secret"
    );
    assert_eq!(created["resource_type"], "tenant");
    assert_eq!(created["resource_id"], id);
    assert_eq!(created["tenant_id"], id);
    assert_eq!(created["trace_id"], TRACE);
    assert_eq!(created["details"]["slug"], "audited");
    assert_eq!(
        items[2]["details"]["changes"]["name"],
        json!({ "from": "Audited", "to": "Audited 2" })
    );

    // the outbox holds one event per change, in order, with the envelope fields
    let tid: TenantId = id.parse().unwrap();
    let events: Vec<_> = tenantry_store::conformance::logged_events(&*srv.store)
        .await
        .into_iter()
        .filter(|e| e.tenant_id == Some(tid))
        .collect();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "tenant.created.v1",
            "tenant.suspended.v1",
            "tenant.updated.v1",
            "tenant.deleted.v1",
            "tenant.restored.v1"
        ]
    );
    let e = &events[0];
    assert_eq!(
        (e.source.as_str(), e.schema_version, e.key.as_str()),
        ("tenantry", 1, id)
    );
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(e.edition.as_ref().map(|k| k.as_str()), Some("free"));
    assert_eq!(e.data["tenant"]["id"], id);

    // a failed write leaves no audit record and no event
    let before = tenantry_store::conformance::logged_events(&*srv.store)
        .await
        .len();
    assert_eq!(
        restored_status(srv, id).await,
        "suspended",
        "a suspended tenant is restored suspended"
    );
    let resp = srv
        .op(Method::POST, &format!("/v1/tenants/{id}:restore"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(
        tenantry_store::conformance::logged_events(&*srv.store)
            .await
            .len(),
        before
    );
}

pub async fn audit_filters_and_pagination(srv: &TestServer) {
    let a = tenant_named(srv, "Alpha").await;
    let b = tenant_named(srv, "Beta").await;
    let a_id = a["id"].as_str().unwrap();
    srv.op(Method::POST, &format!("/v1/tenants/{a_id}:suspend"))
        .send()
        .await
        .unwrap();

    let by_slug = body(
        srv.op(Method::GET, "/v1/audit?tenant=beta")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(by_slug["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_slug["items"][0]["tenant_id"], b["id"]);
    let suspends = body(
        srv.op(Method::GET, "/v1/audit?action=tenant.suspend")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(suspends["items"].as_array().unwrap().len(), 1);
    let future = body(
        srv.op(Method::GET, "/v1/audit?since=2999-01-01T00:00:00Z")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let window = body(
        srv.op(
            Method::GET,
            "/v1/audit?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert!(window["items"].as_array().unwrap().len() >= 3);

    let first = body(
        srv.op(Method::GET, "/v1/audit?limit=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        first["items"][0]["action"], "tenant.suspend",
        "newest first"
    );
    let cursor = first["page_info"]["next_cursor"].as_str().unwrap();
    let second = body(
        srv.op(Method::GET, &format!("/v1/audit?limit=1&cursor={cursor}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(second["items"][0]["action"], "tenant.create");
    assert_eq!(second["items"][0]["tenant_id"], b["id"]);

    problem(
        srv.op(Method::GET, "/v1/audit?since=yesterday")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    problem(
        srv.op(Method::GET, "/v1/audit?tenant=NOPE!")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    problem(
        srv.op(Method::GET, "/v1/audit?tenant=ghost-tenant")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    )
    .await;
}

async fn restored_status(srv: &TestServer, id: &str) -> String {
    body(
        srv.op(Method::GET, &format!("/v1/tenants/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}
