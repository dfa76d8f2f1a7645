use reqwest::{Method, StatusCode};
use serde_json::json;
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
    // (the path itself, not its id: numbers such as 12345 can appear in any sum or count)
    assert!(
        !text.contains("/v1/no-such-route"),
        "raw paths never become labels"
    );
}

/// Every metric recorded in the source (`counter!`, `gauge!`, `histogram!` with a literal name)
/// is in the catalog that `/metrics` describes, and in `docs/observability.md`; and the other way
/// round.
pub fn the_metrics_catalog_matches_the_source_and_the_docs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut recorded = std::collections::BTreeSet::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("tests") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for mac in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in text.match_indices(mac) {
                        let rest = text[at + mac.len()..].trim_start();
                        if let Some(rest) = rest.strip_prefix('"') {
                            recorded.insert(rest[..rest.find('"').unwrap()].to_owned());
                        }
                    }
                }
            }
        }
    }
    let catalog: std::collections::BTreeSet<String> = tenantry_server::observability::catalog()
        .map(|m| m.name.to_owned())
        .collect();
    assert_eq!(
        recorded, catalog,
        "recorded in the source vs. in the catalog"
    );
    let doc = std::fs::read_to_string(root.join("docs/observability.md")).unwrap();
    for name in &catalog {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "docs/observability.md does not list {name}"
        );
    }
}

/// `promtool check metrics` (Prometheus's own linter) accepts a live `/metrics` with every
/// family populated that a short run populates.
pub async fn promtool_accepts_the_live_metrics() {
    let Some(mut promtool) = promtool() else {
        return;
    };
    let srv = TestServer::sqlite().await;
    tenant_named(&srv, "Metered").await;
    let job = body(
        srv.op(Method::POST, "/v1/jobs")
            .json(&serde_json::json!({"kind": "noop"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().unwrap());
    for _ in 0..200 {
        let j = body(srv.op(Method::GET, &path).send().await.unwrap()).await;
        if j["state"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let text = metrics_text(&srv).await;
    for family in [
        "http_request_duration_seconds",
        "store_operation_duration_seconds",
        "jobs_completed_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} missing:\n{text}"
        );
    }
    let mut child = promtool
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn promtool() -> Option<std::process::Command> {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Some(std::process::Command::new("promtool"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but promtool is missing: apt-get install prometheus"
    );
    eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
    None
}

/// The SLO rules in `deploy/prometheus/` are valid and behave as their unit tests say; the
/// dashboard queries only metrics the server records and the rules record.
pub fn slo_rules_and_dashboard_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/slo-rules.yml")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/tenantry.json")).unwrap(),
    )
    .unwrap();
    let known: Vec<String> = tenantry_server::observability::catalog()
        .map(|m| m.name.to_owned())
        .collect();
    let mut queries = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            queries.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(queries.len() > 10);
    for q in &queries {
        // every identifier that names a metric: a recorded family (with its histogram suffixes)
        // or a recording rule
        for word in q.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            let family = word
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            let metric_like = word.contains('_') && !word.chars().next().unwrap().is_ascii_digit();
            let promql = ["histogram_quantile", "legend_format"];
            if metric_like && !promql.contains(&word) {
                assert!(
                    known.iter().any(|k| k == family)
                        || (word.starts_with("slo:") && rules.contains(&format!("record: {word}"))),
                    "the dashboard queries '{word}', which nothing records: {q}"
                );
            }
        }
    }
    let Some(mut check) = promtool() else { return };
    let out = check
        .current_dir(&root)
        .args(["check", "rules", "deploy/prometheus/slo-rules.yml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = promtool()
        .unwrap()
        .current_dir(&root)
        .args([
            "test",
            "rules",
            "deploy/prometheus/tests/slo-rules.test.yml",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Per-tenant series exist only for the tenants of `tenant_metrics`; every other tenant is
/// counted as `other`, so cardinality is the operator's choice. Listed tenants also get their
/// footprint: storage bytes and active devices.
pub async fn per_tenant_metrics_are_opt_in(srv: &TestServer) {
    let listed = tenant_named(srv, "Watched").await;
    let unlisted = tenant_named(srv, "Crowd").await;
    let (listed, unlisted) = (
        listed["id"].as_str().unwrap().to_owned(),
        unlisted["id"].as_str().unwrap().to_owned(),
    );
    // two devices of the listed tenant, one of which has used its key
    let (_, admin) = crate::access::tenant_key(srv, &listed, &["tenant_admin"]).await;
    let mut device_keys = Vec::new();
    for device in ["meter-1", "meter-2"] {
        let r = srv
            .with_key(&admin, Method::POST, "/v1/devices")
            .json(&json!({ "device_id": device }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        device_keys.push(body(r).await["key"].as_str().unwrap().to_owned());
    }
    // authenticated (a device key has no scope for whoami: 403, but its use counts)
    let r = srv
        .with_key(&device_keys[0], Method::GET, "/v1/whoami")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);
    // the use is recorded off the request path: wait for it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let keys = body(
            srv.op(Method::GET, &format!("/v1/tenants/{listed}/api-keys"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let used = keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kind"] == "device" && k["last_used_at"].is_string())
            .count();
        if used == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{keys}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let watching = listed.clone();
    let srv = srv
        .second_instance_with(move |c| c.tenant_metrics = watching)
        .await;
    for t in [&listed, &unlisted] {
        let r = srv
            .op(Method::GET, &format!("/v1/tenants/{t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = srv
            .op(Method::GET, &format!("/t/{t}/v1/devices/none"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let text = metrics_text(&srv).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tenant_http_requests_total{"))
        .collect();
    for class in ["2xx", "4xx"] {
        for tenant in [listed.as_str(), "other"] {
            let want = format!("tenant=\"{tenant}\"");
            assert!(
                series
                    .iter()
                    .any(|l| l.contains(&want) && l.contains(&format!("class=\"{class}\""))),
                "no {class} series for {tenant}: {series:?}"
            );
        }
    }
    assert!(
        !text.contains(&unlisted),
        "an unlisted tenant got series of its own"
    );
    // the footprint is read at start-up, then once a minute
    let gauge = |text: &str, name: &str| -> Option<f64> {
        let prefix = format!("{name}{{tenant=\"{listed}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = metrics_text(&srv).await;
        if gauge(&text, "tenant_active_devices").is_some() {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no footprint gauges");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        gauge(&text, "tenant_active_devices"),
        Some(1.0),
        "one device used its key"
    );
    let bytes = gauge(&text, "tenant_storage_bytes").unwrap();
    assert!(
        bytes > 500.0,
        "three keys, two devices, audit records: {bytes}"
    );
    assert!(!text.contains(&format!("tenant_storage_bytes{{tenant=\"{unlisted}\"}}")));
}

/// `/openapi.json` documents every route of the route table exactly once, with its scope, and
/// `/docs` renders it without anything from another origin.
pub async fn the_openapi_document_covers_every_route(srv: &TestServer) {
    let doc = body(
        srv.client
            .get(srv.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(doc["openapi"], "3.1.0");
    let specs = tenantry_server::platform::http::routes::api().specs;
    let mut seen = std::collections::HashSet::new();
    for spec in &specs {
        let method = spec.method.as_str().to_ascii_lowercase();
        assert!(
            seen.insert((spec.path, method.clone())),
            "{} {} is in the route table twice",
            spec.method,
            spec.path
        );
        let op = &doc["paths"][spec.path][&method];
        assert!(
            op.is_object(),
            "{} {} is not documented",
            spec.method,
            spec.path
        );
        assert!(
            op["responses"]["4XX"].is_object(),
            "{} {}: no problem answer",
            spec.method,
            spec.path
        );
        if let tenantry_server::platform::http::routes::Access::Tenant(scope) = spec.access {
            assert_eq!(
                op["x-required-scope"],
                scope.as_str(),
                "{} {}",
                spec.method,
                spec.path
            );
        }
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        specs.len(),
        "operations documented that are not routes"
    );
    // schemas are real: a body and an answer
    let create = &doc["paths"]["/v1/tenants"]["post"];
    let name = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert!(
        doc["components"]["schemas"][name]["properties"]["name"].is_object(),
        "{doc}"
    );
    let page = srv.client.get(srv.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/openapi.json") && !html.contains("https://"),
        "self-contained"
    );
}

async fn metrics_text(srv: &TestServer) -> String {
    let resp = srv.client.get(srv.url("/metrics")).send().await.unwrap();
    resp.text().await.unwrap()
}
