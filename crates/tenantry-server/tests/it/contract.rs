//! Property-based fuzzing of the API with schemathesis (PyPI), an independent implementation of
//! the OpenAPI contract: it reads `/openapi.json`, generates valid and invalid requests for every
//! operation, and checks that no answer is a 5xx, that answers conform to the schemas and status
//! codes documented, and that invalid input is refused. The allow-list of deliberate deviations is
//! `schemathesis.toml` at the repository root (each entry says why).

use std::time::Duration;

use reqwest::Method;
use tenantry_server::testing::TestServer;

use crate::support::*;

fn schemathesis() -> Option<std::process::Command> {
    if std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Some(std::process::Command::new("schemathesis"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but schemathesis is missing: pip install schemathesis"
    );
    eprintln!("skipped: schemathesis is not installed (pip install schemathesis)");
    None
}

/// One schemathesis pass with `credential`, over the operations `filter` selects.
async fn pass(srv: &TestServer, credential: &str, filter: &[&str]) -> Result<(), String> {
    let Some(mut st) = schemathesis() else {
        return Ok(());
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let url = format!("{}/openapi.json", srv.base_url);
    let credential = format!("Authorization: Bearer {credential}");
    let examples = std::env::var("TENANTRY_FUZZ_EXAMPLES").unwrap_or_else(|_| "20".into());
    let filter: Vec<String> = filter.iter().map(|s| (*s).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        st.current_dir(&root)
            .env("NO_COLOR", "1")
            .args(["run", &url, "--header", &credential])
            .args(["--max-examples", &examples, "--generation-deterministic"])
            .args(["--request-timeout", "10", "--no-color"])
            .args(&filter)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

pub async fn schemathesis_finds_nothing(srv: &TestServer) {
    if schemathesis().is_none() {
        return;
    }
    // enterprise: its rate limit leaves room for a few thousand requests
    let tenant = create_tenant(
        srv,
        serde_json::json!({"name": "Fuzzed", "edition": "enterprise"}),
    )
    .await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let (_, admin) = crate::access::tenant_key(srv, &tenant, &["tenant_admin"]).await;
    // the operator on what needs no tenant, then a tenant admin on everything
    let operator = pass(
        srv,
        &srv.operator_key,
        &[
            "--exclude-tag",
            "devices",
            "--exclude-tag",
            "whoami",
            "--exclude-tag",
            "telemetry",
            "--exclude-tag",
            "sources",
            "--exclude-tag",
            "records",
            "--exclude-tag",
            "webhooks",
            "--exclude-path-regex",
            "api-keys",
        ],
    )
    .await;
    // the live stream never ends, so a request/response fuzzer can only time out on it; its
    // parameters and errors are tested in tests/it/telemetry.rs
    let tenant_admin = pass(
        srv,
        &admin,
        &["--exclude-path-regex", "^/v1/telemetry/stream$"],
    )
    .await;
    if let Err(report) = &operator {
        eprintln!("operator pass:\n{report}");
    }
    if let Err(report) = &tenant_admin {
        eprintln!("tenant-admin pass:\n{report}");
    }
    assert!(
        operator.is_ok() && tenant_admin.is_ok(),
        "schemathesis found failures (above)"
    );
    // and the server is fine afterwards
    let r = srv.op(Method::GET, "/v1/tenants").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = Duration::ZERO;
}
