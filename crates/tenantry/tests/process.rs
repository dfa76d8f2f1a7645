//! Tests of the `tenantry` binary as a process: durability across SIGKILL, concurrent migrations,
//! the bootstrap key, configuration errors, JSON logs, and the offline CLI.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

mod support;

use support::{Served, collect, tenantry, wait_for};

fn operator_key() -> String {
    format!("tnt_op_{}", "Kx7".repeat(15))
}

async fn serve(db_url: &str, key: Option<&str>) -> Served {
    serve_with(db_url, key, &[]).await
}

async fn serve_with(db_url: &str, key: Option<&str>, env: &[(&str, &str)]) -> Served {
    let mut env = env.to_vec();
    if let Some(k) = key {
        env.push(("TENANTRY_BOOTSTRAP_OPERATOR_KEY", k));
    }
    support::serve(db_url, &env, &[]).await
}

async fn run(db_url: &str, args: &[&str]) -> (i32, Value, String) {
    let out = tenantry(db_url)
        .args(args)
        .output()
        .await
        .expect("run tenantry");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tenantry.db").display())
}

async fn durability_after_sigkill(db_url: &str) {
    let key = operator_key();
    let client = tenantry_server::http_client().build().expect("http client");
    let mut first = serve(db_url, Some(&key)).await;
    let resp = client
        .post(format!("{}/v1/tenants", first.base))
        .bearer_auth(&key)
        .json(&json!({ "name": "Survivor" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    // SIGKILL right after the 201: no chance to flush or shut down cleanly
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();

    let second = serve(db_url, Some(&key)).await;
    let id = created["id"].as_str().unwrap();
    let resp = client
        .get(format!("{}/v1/tenants/{id}", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), created);
    let audit: Value = client
        .get(format!("{}/v1/audit?tenant={id}", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["items"][0]["action"], "tenant.create",
        "the audit record survived with it"
    );
}

#[tokio::test]
async fn sqlite_tenant_survives_sigkill_after_201() {
    let dir = tempfile::tempdir().unwrap();
    durability_after_sigkill(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn postgres_tenant_survives_sigkill_after_201() {
    let Some(db) = tenantry_store::testing::PgTestDatabase::create().await else {
        return tenantry_store::testing::skip_notice("postgres_tenant_survives_sigkill_after_201");
    };
    durability_after_sigkill(&db.url).await;
}

#[tokio::test]
async fn four_concurrent_migrations_apply_each_version_once() {
    let Some(db) = tenantry_store::testing::PgTestDatabase::create().await else {
        return tenantry_store::testing::skip_notice(
            "four_concurrent_migrations_apply_each_version_once",
        );
    };
    let runs: Vec<_> = (0..4)
        .map(|_| tenantry(&db.url).arg("migrate").output())
        .collect();
    let mut handles = Vec::new();
    for r in runs {
        handles.push(tokio::spawn(r));
    }
    for h in handles {
        let out = h.await.unwrap().unwrap();
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["ready"], true);
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version, COUNT(*) FROM _sqlx_migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|(_, n)| *n == 1),
        "each migration recorded once: {rows:?}"
    );
    let editions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM editions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(editions, 3);
    pool.close().await;
}

#[tokio::test]
async fn first_start_prints_a_one_time_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut first = serve(&url, None).await;
    let line = wait_for(&first.stderr, "operator API key").await;
    let key = line
        .split_whitespace()
        .find(|w| w.starts_with("tnt_op_"))
        .unwrap()
        .to_owned();
    let resp = tenantry_server::http_client()
        .build()
        .expect("http client")
        .get(format!("{}/v1/tenants", first.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    assert!(
        !first
            .stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&key)),
        "the key never reaches the log"
    );

    let mut second = serve(&url, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("tnt_op_")),
        "shown once only"
    );
    second.child.start_kill().unwrap();
}

#[tokio::test]
async fn json_logs_carry_trace_and_tenant_ids_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key = operator_key();
    let mut s = serve(&sqlite_url(dir.path()), Some(&key)).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created: Value = tenantry_server::http_client()
        .build()
        .expect("http client")
        .post(format!("{}/v1/tenants", s.base))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({ "name": "Logged" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let line = wait_for(&s.stdout, "request completed").await;
    let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["span"]["trace_id"], trace);
    assert_eq!(v["span"]["tenant_id"], id);
    assert_eq!(v["http.status"], 201);
    assert_eq!(v["span"]["http.route"], "/v1/tenants");
    s.child.start_kill().unwrap();
    s.child.wait().await.unwrap();
    let all = s.stdout.lock().unwrap().join("\n");
    assert!(!all.contains(&key), "no secrets in logs");
    for l in s.stdout.lock().unwrap().iter() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

#[tokio::test]
async fn invalid_configuration_fails_naming_the_key() {
    let out = tenantry("sqlite://x.db")
        .env("TENANTRY_LISTEN", "not-an-address")
        .args(["config", "check"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TENANTRY_LISTEN") && err.contains("not-an-address"),
        "{err}"
    );

    let out = tenantry("mysql://nope")
        .args(["serve"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "log_levl = \"debug\"\n").unwrap();
    let out = tenantry("sqlite://x.db")
        .arg("--config")
        .arg(dir.path().join("bad.toml"))
        .args(["config", "check"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_levl"));

    let (code, v, _) = run(&sqlite_url(dir.path()), &["config", "check"]).await;
    assert_eq!((code, v["valid"].as_bool()), (0, Some(true)));
    let (code, v, _) = run("postgres://u:hunter2@127.0.0.1/db", &["config", "check"]).await;
    assert_eq!(code, 0);
    assert!(
        !v.to_string().contains("hunter2"),
        "passwords are masked: {v}"
    );
}

#[tokio::test]
async fn offline_commands_refuse_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    for args in [
        &["tenant", "list"][..],
        &["key", "create", "--operator"][..],
        &["jobs", "list"][..],
    ] {
        let (code, _, err) = run(&url, args).await;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("no database at") && err.contains("--create-database"),
            "{err}"
        );
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
    let (code, list, err) = run(&url, &["--create-database", "tenant", "list"]).await;
    assert_eq!(
        (code, list["items"].as_array().map(Vec::len)),
        (0, Some(0)),
        "{err}"
    );
}

#[tokio::test]
async fn cli_manages_tenants_offline() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let (code, _, err) = run(&url, &["migrate"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, t, err) = run(
        &url,
        &[
            "tenant",
            "create",
            "--name",
            "Offline Co",
            "--edition",
            "standard",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (t["slug"].as_str(), t["edition"].as_str()),
        (Some("offline-co"), Some("standard"))
    );
    let (code, s, _) = run(&url, &["tenant", "suspend", "offline-co"]).await;
    assert_eq!((code, s["status"].as_str()), (0, Some("suspended")));
    let (code, _, err) = run(&url, &["tenant", "suspend", "offline-co"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot suspend a tenant that is suspended"),
        "{err}"
    );
    let (code, list, _) = run(&url, &["tenant", "list", "--status", "suspended"]).await;
    assert_eq!((code, list["page_info"]["count"].as_u64()), (0, Some(1)));
    for verb in ["resume", "delete", "restore"] {
        let (code, _, err) = run(&url, &["tenant", verb, "offline-co"]).await;
        assert_eq!(code, 0, "{verb}: {err}");
    }
    let (code, shown, _) = run(&url, &["tenant", "show", t["id"].as_str().unwrap()]).await;
    assert_eq!((code, shown["status"].as_str()), (0, Some("active")));
    let (code, _, err) = run(&url, &["tenant", "create", "--name", "Bad", "--slug", "NO"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("slug"), "{err}");

    let (code, k, _) = run(&url, &["key", "create", "--operator", "--name", "ci"]).await;
    assert_eq!(code, 0);
    let key = k["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tnt_op_"));
    // the new key works against a server on the same database, and the CLI's changes are audited
    let mut s = serve(&url, None).await;
    let audit: Value = tenantry_server::http_client()
        .build()
        .expect("http client")
        .get(format!("{}/v1/audit?tenant=offline-co", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &audit["items"].as_array().unwrap().last().unwrap();
    assert_eq!(first["action"], "tenant.create");
    assert_eq!(first["actor"]["kind"], "cli");
    assert_eq!(first["trace_id"].as_str().map(str::len), Some(32));
    s.child.start_kill().unwrap();
}

/// A process without the API role neither makes nor shows the operator key, and says where its
/// health endpoints are instead of an API URL; the first API process makes the key.
#[tokio::test]
async fn only_the_api_process_makes_and_shows_the_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut cmd = tenantry(&url);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--role", "worker"]);
    let mut worker = cmd.spawn().expect("spawn a worker");
    let stderr = collect(worker.stderr.take().unwrap());
    let _stdout = collect(worker.stdout.take().unwrap());
    let banner = wait_for(&stderr, "roles: worker").await;
    assert!(banner.contains("no API here"), "{banner}");
    // let the worker get going: it has migrated once it printed its banner
    let (code, keys, _) = run(&url, &["tenant", "list"]).await;
    assert_eq!(code, 0);
    assert!(keys["items"].is_array());
    assert!(
        !stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("operator API key")),
        "a worker showed an operator key"
    );
    worker.start_kill().unwrap();
    let _ = worker.wait().await;
    let api = serve(&url, None).await;
    wait_for(&api.stderr, "operator API key (shown once").await;
    drop(api);
}

#[tokio::test]
async fn an_unreachable_database_is_reported_once_and_exits_non_zero() {
    // nothing listens on port 1
    let (code, _, stderr) = run("postgres://postgres@127.0.0.1:1/x", &["serve"]).await;
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains("the database is unavailable"), "{line}");
    assert_eq!(
        line.matches("Connection refused").count(),
        1,
        "each cause is said once: {line}"
    );
}

/// No secret reaches the logs, at any level: every log line of a run at `trace` (the server's and
/// every library's) is searched for the operator key, a tenant key and its rotated successor, a
/// device key, the HS256 secret, a Redis password, a credential that was refused, and the trace
/// exporter's credential header (sent to a receiver that is not there, so that its failures are
/// reported too; credentials in its URL are refused at start-up).
#[tokio::test]
async fn no_secret_reaches_the_logs_at_any_level() {
    let dir = tempfile::tempdir().unwrap();
    let key = operator_key();
    let hs256 = "hs256-secret-that-must-never-be-logged-0123456789";
    let redis_password = "redis-password-never-logged";
    let redis = format!("redis://:{redis_password}@127.0.0.1:6379");
    let otlp_header = "otlp-header-secret-never-logged-0123";
    let closed = support::closed_port();
    let otlp = format!("http://127.0.0.1:{closed}");
    let otlp_headers = format!("x-api-key={otlp_header}");
    let mut s = serve_with(
        &sqlite_url(dir.path()),
        Some(&key),
        &[
            ("TENANTRY_LOG_LEVEL", "trace"),
            ("TENANTRY_AUTH_JWT_HS256_SECRET", hs256),
            ("TENANTRY_REDIS_URL", &redis),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
            ("OTEL_EXPORTER_OTLP_HEADERS", &otlp_headers),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let http = tenantry_server::http_client().build().unwrap();
    let call = |method: reqwest::Method, path: &str, bearer: &str, body: Option<Value>| {
        let mut r = http
            .request(method, format!("{}{path}", s.base))
            .bearer_auth(bearer);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let tenant: Value = call(
        reqwest::Method::POST,
        "/v1/tenants",
        &key,
        Some(json!({"name": "Secretive"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let issued: Value = call(
        reqwest::Method::POST,
        &format!("/v1/tenants/{tid}/api-keys"),
        &key,
        Some(json!({"name": "ci", "roles": ["tenant_admin"]})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let tenant_secret = issued["key"].as_str().unwrap().to_owned();
    let device: Value = call(
        reqwest::Method::POST,
        "/v1/devices",
        &tenant_secret,
        Some(json!({"device_id": "probe-1"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let device_secret = device["key"].as_str().unwrap().to_owned();
    let r = call(
        reqwest::Method::GET,
        "/v1/devices/probe-1",
        &device_secret,
        None,
    )
    .await
    .unwrap();
    assert!(r.status().is_success() || r.status().is_client_error());
    let rotated: Value = call(
        reqwest::Method::POST,
        &format!(
            "/v1/tenants/{tid}/api-keys/{}:rotate",
            issued["id"].as_str().unwrap()
        ),
        &key,
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let successor = rotated["key"].as_str().unwrap().to_owned();
    let refused = "tnt_sk_ThisIsNotAKeyButLooksLikeOne0000000000000000";
    let r = call(reqwest::Method::GET, "/v1/whoami", refused, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // the exporter has failed at least once: readiness says so, without its credentials
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let ready = http
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if ready.contains("spans are dropped") {
            break ready;
        }
        assert!(std::time::Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    s.child.start_kill().unwrap();
    s.child.wait().await.unwrap();
    let all = format!(
        "{}\n{}\n{ready}",
        s.stdout.lock().unwrap().join("\n"),
        s.stderr.lock().unwrap().join("\n")
    );
    assert!(
        all.lines().count() > 50,
        "a trace-level run logs plenty: {all}"
    );
    for (what, secret) in [
        ("the operator key", key.as_str()),
        ("a tenant key", tenant_secret.as_str()),
        ("a rotated key", successor.as_str()),
        ("a device key", device_secret.as_str()),
        ("the HS256 secret", hs256),
        ("the Redis password", redis_password),
        ("a refused credential", refused),
        ("the OTLP receiver's header", otlp_header),
    ] {
        // the secret part of a key is what must not leak (its public prefix may be logged)
        let tail = &secret[secret.len() - 24..];
        assert!(!all.contains(tail), "{what} is in the logs");
    }
}
