use reqwest::{Method, StatusCode};
use tenantry_server::testing::TestServer;

use crate::support::*;

pub async fn trace_context_and_request_id_are_honoured(srv: &TestServer) {
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = srv
        .op(Method::GET, "/v1/tenants/nobody-home")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    let tp = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && !tp.contains("00f067aa0ba902b7"),
        "same trace, our own span: {tp}"
    );
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let p = problem(resp, StatusCode::NOT_FOUND, "tenant_not_found").await;
    assert_eq!(p["traceId"], trace);

    // without (or with an invalid) traceparent a new trace starts
    for header in [
        None,
        Some("garbage"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let mut req = srv.client.get(srv.url("/healthz"));
        if let Some(h) = header {
            req = req.header("traceparent", h);
        }
        let resp = req.send().await.unwrap();
        let tp = resp.headers()["traceparent"].to_str().unwrap();
        assert_eq!(tp.len(), 55, "{tp}");
        assert!(!tp.contains("00000000000000000000000000000000"));
        assert_eq!(resp.headers()["x-request-id"].to_str().unwrap().len(), 32);
    }
}

pub async fn health_readiness_and_metrics(srv: &TestServer) {
    let h = body(srv.client.get(srv.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(h["status"], "ok");
    let r = body(srv.client.get(srv.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r["status"], "ready");
    assert_eq!(
        r["checks"]["store"]["backend"],
        srv.store.backend().as_str()
    );

    tenant_named(srv, "Measured").await;
    srv.op(Method::GET, "/v1/tenants/measured")
        .send()
        .await
        .unwrap();
    srv.op(Method::GET, "/v1/no-such-route/12345")
        .send()
        .await
        .unwrap();
    let resp = srv.client.get(srv.url("/metrics")).send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/v1/tenants/{target}",status="200",le="0.005"}"#), "{text}");
    assert!(
        text.contains(r#"route="/v1/tenants",status="201""#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404""#),
        "unknown paths share one label: {text}"
    );
    assert!(!text.contains("12345"), "raw paths never become labels");
}
