//! The hostile-input probe (re-runnable; issue 10). It walks the route table, so routes added later
//! are probed too, and sends each one malformed, oversized, slow and NUL-laden requests with a
//! valid operator credential (so that the handlers, not authentication, meet the input). Every
//! answer must be a 4xx Problem+JSON (never a 5xx, never a success for a write), nothing may be
//! stored (the audit logs, which record every change, stay as they were), and the server must be
//! healthy afterwards.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::platform::http::routes::{Access, api};
use tenantry_server::testing::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Fills path parameters with `value` (the same hostile value in every parameter).
fn fill(path: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("balanced braces") + start;
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Fills path parameters with real resources of `tenant` (so that bodies and queries are what
/// decides), or a made-up name for parameters without one.
fn real(path: &str, tenant: &str, job: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("balanced braces") + start;
        out.push_str(match &rest[start + 1..end] {
            "tenant" | "target" => tenant,
            "job" => job,
            "device_id" => "probe-device",
            "name" => "probe-schedule",
            _ => "probe",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A JSON document with U+0000 in every string and key, shaped like the route's bodies.
fn nul_laden() -> Value {
    json!({
        "name": "a\u{0}b", "slug": "a\u{0}b", "kind": "noop\u{0}", "device_id": "d\u{0}",
        "edition": "free\u{0}", "key": "k\u{0}", "description": "\u{0}", "cron": "* * * * *\u{0}",
        "scopes": ["devices:read\u{0}"], "roles": ["member\u{0}"], "tenant": "t\u{0}",
        "payload": {"x\u{0}": "\u{0}"}, "metadata": {"m": "\u{0}"}, "queue": "q\u{0}",
        "limits": {"requests_per_minute": 1}, "interval_seconds": 60,
    })
}

struct Probe<'a> {
    srv: &'a TestServer,
    tenant: String,
    sent: usize,
}

impl Probe<'_> {
    /// Sends one request and checks the answer.
    async fn send(
        &mut self,
        method: &Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        what: &str,
    ) {
        let mut req = self
            .srv
            .op(method.clone(), url)
            .header("x-tenant-id", &self.tenant)
            .header("if-match", "*");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} [{what}]: no answer: {e:?}"));
        self.sent += 1;
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        let what = format!("{method} {url} [{what}] → {status}: {text}");
        assert!(!status.is_server_error(), "{what}");
        let write = *method != Method::GET;
        assert!(
            !(write && status.is_success()),
            "a hostile write succeeded: {what}"
        );
        if status.is_client_error() {
            assert_eq!(ct, "application/problem+json", "{what}");
            let p: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {what}"));
            assert!(
                p["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("urn:tenantry:problem:")),
                "{what}"
            );
            assert_eq!(p["traceId"].as_str().map(str::len), Some(32), "{what}");
        }
    }
}

async fn audit_total(srv: &TestServer, tenant: &str) -> (usize, usize) {
    let count = |path: String| async move {
        let mut n = 0;
        let mut url = format!("{path}?limit=200");
        loop {
            let page = body(srv.op(Method::GET, &url).send().await.unwrap()).await;
            n += page["items"].as_array().unwrap().len();
            match page["page_info"]["next_cursor"].as_str() {
                Some(c) => url = format!("{path}?limit=200&cursor={c}"),
                None => return n,
            }
        }
    };
    (
        count("/v1/audit".to_owned()).await,
        count(format!("/t/{tenant}/v1/audit")).await,
    )
}

pub async fn hostile_requests_to_every_route_are_refused_cleanly(srv: &TestServer) {
    let t = tenant_named(srv, "Probed").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let job = body(
        srv.op(Method::POST, "/v1/jobs")
            .json(&json!({"kind": "noop", "tenant": tenant, "run_at": "2999-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let job = job["id"].as_str().unwrap().to_owned();
    let before = audit_total(srv, &tenant).await;
    let mut probe = Probe {
        srv,
        tenant: tenant.clone(),
        sent: 0,
    };
    let oversized = vec![b' '; 1024 * 1024 + 1];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let specs = api().specs;
    for spec in specs.iter().filter(|s| s.access != Access::Public) {
        let m = &spec.method;
        let good = real(spec.path, &tenant, &job);
        let json = Some("application/json");
        // hostile path parameters (routes without one get them as a trailing segment)
        if spec.path.contains('{') {
            for value in ["a%00b", "..%2F..%2Fetc", &"x".repeat(8 * 1024), "%E2%80%AE"] {
                probe
                    .send(m, &fill(spec.path, value), None, Vec::new(), "path")
                    .await;
            }
        }
        // hostile queries
        for q in [
            "x=%00",
            "limit=-1",
            "limit=99999999999999999999",
            "cursor=..%2F..",
            "tenant=%00",
            "state=%00",
        ] {
            let sep = if good.contains('?') { '&' } else { '?' };
            probe
                .send(m, &format!("{good}{sep}{q}"), None, Vec::new(), "query")
                .await;
        }
        if *m == Method::GET {
            continue;
        }
        // hostile bodies
        let nul = serde_json::to_vec(&nul_laden()).unwrap();
        let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
            ("NUL-laden", json, nul),
            ("malformed", json, b"{\"name\": ".to_vec()),
            ("wrong shape", json, b"[1, 2, 3]".to_vec()),
            ("huge number", json, b"{\"priority\": 1e999}".to_vec()),
            ("deep nesting", json, deep.clone()),
            ("oversized", json, oversized.clone()),
            ("not JSON", Some("text/plain"), b"name=x".to_vec()),
            ("invalid UTF-8", json, b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ];
        for (what, ct, body) in cases {
            probe.send(m, &good, ct, body, what).await;
        }
    }
    // slow requests: a body that never comes, to every write route at once (the body timeout is
    // short in this server)
    let addr = srv.base_url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for spec in specs
        .iter()
        .filter(|s| s.access != Access::Public && s.method != Method::GET)
    {
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Tenant-Id: {tenant}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\"",
            spec.method,
            real(spec.path, &tenant, &job),
            srv.operator_key
        );
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
            (head, String::from_utf8_lossy(&out).to_string())
        }));
    }
    for task in slow {
        let (head, answer) = task.await.unwrap();
        let line = head.lines().next().unwrap_or_default().to_owned();
        // answered (408, or refused before the body was needed) and closed; never a 5xx
        assert!(answer.starts_with("HTTP/1.1 4"), "slow {line} → {answer:?}");
        assert!(
            answer.contains("application/problem+json"),
            "slow {line} → {answer}"
        );
    }
    assert!(
        probe.sent > 300,
        "the probe sent only {} requests",
        probe.sent
    );

    // nothing was stored, and the server is well
    assert_eq!(
        audit_total(srv, &tenant).await,
        before,
        "a hostile request changed something"
    );
    for path in ["/healthz", "/readyz"] {
        let r = srv
            .client
            .get(format!("{}{path}", srv.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let r = srv.op(Method::GET, "/v1/tenants").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The probe's server: short body timeout, so that the slow requests end quickly.
pub fn tweak(c: &mut tenantry_server::config::Config) {
    c.http.body_timeout_ms = 300;
    c.http.header_timeout_ms = 300;
}
