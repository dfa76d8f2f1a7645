//! Traces leave the `tenantry` binary over OTLP, configured only by OpenTelemetry's standard
//! variables, and arrive at a receiver built on OpenTelemetry's protocol definitions
//! (`otlp_receiver.py`: the `opentelemetry-proto` package with grpcio, an independent decoder), over
//! both protocols: a request continues the client's trace, names its route template and tenant,
//! its store operations are its children, and a job runs in the trace of the request that
//! enqueued it.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_receiver.py");

mod support;

use support::{BIN, collect as lines_of, post_json, stop, until};

fn operator_key() -> String {
    format!("tnt_op_{}", "Tr4".repeat(15))
}

/// The receiver, with the ports it listens on; `None` (skipped) when Python lacks its packages
/// outside CI.
struct Receiver {
    _child: Child,
    grpc: u16,
    http: u16,
    spans: Arc<Mutex<Vec<String>>>,
}

async fn receiver(test: &str) -> Option<Receiver> {
    let mut child = Command::new("python3")
        .arg(RECEIVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the OTLP receiver");
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let ports: Value = loop {
        if let Some(first) = stdout.lock().unwrap().first() {
            break serde_json::from_str(first).unwrap();
        }
        if let Ok(Some(_)) = child.try_wait() {
            let why = stderr.lock().unwrap().join("\n");
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: CI is set but the OTLP receiver cannot start \
                 (pip install opentelemetry-proto grpcio): {why}"
            );
            eprintln!("skipped {test}: pip install opentelemetry-proto grpcio ({why})");
            return None;
        }
        assert!(Instant::now() < deadline, "the OTLP receiver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Some(Receiver {
        _child: child,
        grpc: u16::try_from(ports["grpc"].as_u64().unwrap()).unwrap(),
        http: u16::try_from(ports["http"].as_u64().unwrap()).unwrap(),
        spans: stdout,
    })
}

fn sqlite_in(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("tenantry.db").display())
}

/// `tenantry serve` on the database at `url` with `env`; its base URL.
async fn serve(url: &str, env: &[(&str, String)]) -> (Child, String) {
    let key = operator_key();
    let mut all: Vec<(&str, &str)> = vec![("TENANTRY_BOOTSTRAP_OPERATOR_KEY", &key)];
    all.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    let served = support::serve(url, &all, &[]).await;
    (served.child, served.base)
}

fn spans(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("outbound").is_none())
        .collect()
}

fn find(spans: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    spans.iter().find(|s| pred(s))
}

/// `db_system` is what the store spans must name for the database at `db_url`.
async fn spans_reach_the_receiver(protocol: &str, db_url: &str, db_system: &str) {
    let test = format!("spans_reach_the_receiver({protocol}, {db_system})");
    let Some(rx) = receiver(&test).await else {
        return;
    };
    let port = if protocol == "grpc" { rx.grpc } else { rx.http };
    let (child, base) = serve(
        db_url,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_SERVICE_NAME", "tenantry-under-test".to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=ci,team=platform".to_owned(),
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
            // an outbound call: the key set is downloaded at start-up
            (
                "TENANTRY_AUTH_JWT_JWKS_URL",
                format!("http://127.0.0.1:{}/jwks", rx.http),
            ),
            ("TENANTRY_AUTH_JWT_ISSUER", "https://idp.test".to_owned()),
            ("TENANTRY_AUTH_JWT_AUDIENCE", "tenantry".to_owned()),
        ],
    )
    .await;
    let client = tenantry_server::http_client().build().unwrap();
    let op = operator_key();

    // a tenant, and a key of its own
    let tenant = post_json(
        &client,
        &format!("{base}/v1/tenants"),
        &op,
        &[],
        &json!({ "name": "Traced" }),
    )
    .await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let key = post_json(
        &client,
        &format!("{base}/v1/tenants/{tenant_id}/api-keys"),
        &op,
        &[],
        &json!({ "name": "traced", "scopes": ["tenants:read", "jobs:manage", "telemetry:write"] }),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();

    // a read, continuing the client's trace
    let (read_trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let resp = client
        .get(format!("{base}/v1/tenants/{tenant_id}"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{read_trace}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(echoed.starts_with(&format!("00-{read_trace}-")), "{echoed}");

    // a job, enqueued under another client trace
    let job_trace = "0af7651916cd43dd8448eb211c80319c";
    let enqueued = post_json(
        &client,
        &format!("{base}/v1/jobs"),
        &key,
        &[("traceparent", format!("00-{job_trace}-b7ad6b7169203331-01"))],
        &json!({ "kind": "noop" }),
    )
    .await;
    let job_id = enqueued["id"].as_str().unwrap().to_owned();

    // the request span: the route template, the tenant, the client's trace and span as parent
    let read = until("the GET span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["kind"] == "SPAN_KIND_SERVER" && s["trace_id"] == read_trace
        })
        .cloned()
    })
    .await;
    assert_eq!(read["protocol"], protocol);
    assert_eq!(read["name"], "GET /v1/tenants/{target}");
    assert_eq!(read["parent_span_id"], client_span);
    let attrs = &read["attributes"];
    assert_eq!(attrs["http.route"], "/v1/tenants/{target}");
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.response.status_code"], 200);
    assert_eq!(attrs["url.path"], format!("/v1/tenants/{tenant_id}"));
    assert_eq!(attrs["tenant.id"], tenant_id.as_str());
    assert_eq!(
        echoed,
        format!("00-{read_trace}-{}-01", read["span_id"].as_str().unwrap()),
        "the response names the server span"
    );
    // the resource: standard variables and built-in attributes
    let res = &read["resource"];
    assert_eq!(res["service.name"], "tenantry-under-test");
    assert_eq!(res["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(res["deployment.environment"], "ci");
    assert_eq!(res["team"], "platform");
    assert!(
        res["service.instance.id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    // its store operations are its children, with the database conventions
    let get = until("the store span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["parent_span_id"] == read["span_id"]
                && s["attributes"]["db.operation.name"] == "tenants.get"
        })
        .cloned()
    })
    .await;
    assert_eq!(get["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(get["trace_id"], read_trace);
    assert_eq!(get["attributes"]["db.system"], db_system);

    // the job runs in the trace of the request that enqueued it, as its child
    let run = until("the job span", &rx.spans, |l| {
        find(&spans(l), |s| s["attributes"]["job.id"] == job_id.as_str()).cloned()
    })
    .await;
    let enqueue = until("the POST /v1/jobs span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["kind"] == "SPAN_KIND_SERVER" && s["trace_id"] == job_trace
        })
        .cloned()
    })
    .await;
    assert_eq!(enqueue["name"], "POST /v1/jobs");
    assert_eq!(run["name"], "job noop");
    assert_eq!(run["kind"], "SPAN_KIND_CONSUMER");
    assert_eq!(run["trace_id"], job_trace);
    assert_eq!(run["parent_span_id"], enqueue["span_id"]);
    assert_eq!(run["attributes"]["tenant.id"], tenant_id.as_str());
    assert_eq!(run["attributes"]["job.kind"], "noop");

    // device events: the group commit's span links to the request's span, the store's span is
    // its child
    let ingest_trace = "7c3a9d4f1e2b4c5d8e9f0a1b2c3d4e5f";
    let resp = client
        .post(format!("{base}/v1/telemetry"))
        .bearer_auth(&key)
        .header(
            "traceparent",
            format!("00-{ingest_trace}-1a2b3c4d5e6f7a8b-01"),
        )
        .json(
            &json!({ "events": [{ "event_id": "t1", "device_id": "m1", "type": "temperature",
            "value": 1.0, "recorded_at": chrono::Utc::now().to_rfc3339() }] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let ingest = until("the POST /v1/telemetry span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["kind"] == "SPAN_KIND_SERVER" && s["trace_id"] == ingest_trace
        })
        .cloned()
    })
    .await;
    let commit = until("the group commit span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["name"] == "telemetry group commit"
                && s["links"]
                    .as_array()
                    .is_some_and(|ls| ls.iter().any(|k| k["span_id"] == ingest["span_id"]))
        })
        .cloned()
    })
    .await;
    assert_eq!(commit["attributes"]["telemetry.events"], 1);
    let insert = until("the commit's store span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["parent_span_id"] == commit["span_id"]
                && s["attributes"]["db.operation.name"] == "telemetry.insert"
        })
        .cloned()
    })
    .await;
    assert_eq!(insert["trace_id"], commit["trace_id"]);

    // a read in the tenant's scope: its store span names the tenant too
    let scoped_trace = "5b8efff798038103d269b633813fc60c";
    let resp = client
        .get(format!("{base}/v1/jobs/{job_id}"))
        .bearer_auth(&key)
        .header(
            "traceparent",
            format!("00-{scoped_trace}-eee19b7ec3c1b174-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let scoped = until("the scoped store span", &rx.spans, |l| {
        find(&spans(l), |s| {
            s["trace_id"] == scoped_trace
                && s["attributes"]["db.operation.name"] == "job_console.get_job"
        })
        .cloned()
    })
    .await;
    assert_eq!(scoped["attributes"]["tenant.id"], tenant_id.as_str());

    // the outbound call carried its client span's context
    let sent = until("the JWKS download", &rx.spans, |l| {
        l.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["outbound"] == "/jwks")
    })
    .await;
    let traceparent = sent["traceparent"].as_str().expect("traceparent injected");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let call = until("the JWKS client span", &rx.spans, |l| {
        find(&spans(l), |s| s["span_id"] == parts[2]).cloned()
    })
    .await;
    assert_eq!(call["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(call["name"], "GET");
    assert_eq!(call["trace_id"], parts[1]);
    assert_eq!(call["attributes"]["http.response.status_code"], 200);
    assert!(
        call["attributes"]["url.full"]
            .as_str()
            .unwrap()
            .ends_with("/jwks")
    );

    // readiness reports the exporter
    let ready: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["otlp"]["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["otlp"]["protocol"], protocol);
    assert_eq!(ready["status"], "ready");
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    spans_reach_the_receiver("grpc", &sqlite_in(dir.path()), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_over_http_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    spans_reach_the_receiver("http/protobuf", &sqlite_in(dir.path()), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_postgresql_instance_name_their_database() {
    let Some(db) = tenantry_store::testing::PgTestDatabase::create().await else {
        return tenantry_store::testing::skip_notice(
            "spans_of_a_postgresql_instance_name_their_database",
        );
    };
    spans_reach_the_receiver("grpc", &db.url, "postgresql").await;
}

/// A receiver that does not answer degrades readiness (still 200) and loses spans only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_degrades_readiness() {
    let port = support::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = serve(
        &sqlite_in(dir.path()),
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_owned()),
        ],
    )
    .await;
    let client = tenantry_server::http_client().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ready: Value = resp.json().await.unwrap();
        if ready["checks"]["otlp"]["status"] == "degraded" {
            assert_eq!(ready["status"], "degraded");
            assert_eq!(ready["checks"]["otlp"]["protocol"], "http/protobuf");
            assert!(
                ready["checks"]["otlp"]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("spans are dropped"),
                "{ready}"
            );
            // the API itself is unaffected
            let tenants = client
                .get(format!("{base}/v1/tenants"))
                .bearer_auth(operator_key())
                .send()
                .await
                .unwrap();
            assert_eq!(tenants.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(child).await;
}

/// Invalid `[otel]` values stop start-up with exit code 2, naming the standard variable.
#[tokio::test]
async fn invalid_trace_settings_name_their_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env("TENANTRY_DATA_DIR", dir.path())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env(var, value)
            .args(["config", "check"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}
