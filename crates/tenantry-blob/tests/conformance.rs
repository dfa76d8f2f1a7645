//! The blob store conformance suite on every adapter: a local directory, and S3 as served by
//! moto (PyPI `moto[server]`, an independent S3 implementation), started here on a free port.
//! Without `moto_server` the S3 cases are skipped with a notice, except under CI, which installs
//! it (`.ci/run`) and fails without it.

#![allow(clippy::unwrap_used)]

mod local {
    fn make() -> Option<tenantry_blob::ObjectBlobs> {
        // the directory lives as long as the test process: each case uses keys of its own
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        Some(tenantry_blob::ObjectBlobs::local(dir.path()).unwrap())
    }
    tenantry_blob::blob_conformance_suite!(make());
}

/// A moto S3 server for this test process (started once), and a fresh bucket on it.
async fn moto_bucket() -> Option<tenantry_blob::ObjectBlobs> {
    static ENDPOINT: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    // the test's own HTTP client (moto's bucket calls) needs a TLS provider installed
    let _ = rustls::crypto::ring::default_provider().install_default();
    let endpoint = ENDPOINT
        .get_or_init(|| async {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let spawned = std::process::Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let Ok(child) = spawned else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but moto_server is missing: pip install 'moto[server]'"
                );
                return None;
            };
            // the server outlives the cases; it is killed when the test process exits
            std::mem::forget(child);
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..200 {
                if reqwest::get(&url).await.is_ok() {
                    return Some(url);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("moto_server did not start on {url}");
        })
        .await
        .clone()?;
    let bucket = tenantry_blob::conformance::fresh("bucket").to_lowercase();
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let overrides = tenantry_blob::S3Overrides {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        credentials: Some(("testing".into(), "testing".into())),
    };
    Some(
        tenantry_blob::ObjectBlobs::s3_with(&format!("s3://{bucket}/archive"), &overrides).unwrap(),
    )
}

mod s3_on_moto {
    tenantry_blob::blob_conformance_suite!(super::moto_bucket().await);
}
