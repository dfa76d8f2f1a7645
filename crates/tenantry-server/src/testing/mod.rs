//! An in-process server for tests and benchmarks: a fresh store (SQLite or PostgreSQL), a known
//! operator key, and the API on an ephemeral loopback port.

pub mod fixture_source;

use std::sync::Arc;

use tenantry_domain::KeyKind;
use tenantry_store::testing::TestStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::access::keys::generate_key;
use crate::config::{Config, Secret};
use crate::platform::App;

/// Subdomains of this host name tenants in test servers.
pub const TEST_BASE_HOST: &str = "api.tenantry.test";

pub struct TestServer {
    pub base_url: String,
    pub operator_key: String,
    pub app: App,
    pub client: reqwest::Client,
    pub store: TestStore,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Where this server's telemetry archives go (`[telemetry] archive_url`).
    pub archive: std::path::PathBuf,
}

impl TestServer {
    /// Starts a server on a migrated `store`, with `tweak` applied to the default configuration.
    pub async fn start(store: TestStore, tweak: impl FnOnce(&mut Config)) -> Self {
        let key = generate_key(KeyKind::Operator);
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: store.url.clone(),
            bootstrap_operator_key: Some(Secret::new(key.clone())),
            shutdown_grace_seconds: 2,
            ..Config::default()
        };
        config.tenants.base_host = TEST_BASE_HOST.into();
        config.limits.edition_cache_seconds = 0;
        // archives in a directory of this server's own (removed when it is dropped)
        let archive =
            std::env::temp_dir().join(format!("tenantry-archive-{}", uuid::Uuid::new_v4()));
        config.telemetry.archive_url = archive.display().to_string();
        tweak(&mut config);
        let app = App::new(Arc::clone(&store.store), crate::app_settings(&config));
        let key = config
            .bootstrap_operator_key
            .as_ref()
            .map_or(key, |k| k.expose().to_owned());
        app.ensure_bootstrap_key(Some(&key))
            .await
            .expect("install operator key");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = app.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = crate::serve(served, &config, listener, shutdown).await {
                eprintln!("test server failed: {e:#}");
            }
        });
        Self {
            base_url: format!("http://{addr}"),
            operator_key: key,
            app,
            client: crate::http_client().build().expect("http client"),
            store,
            stop: Some(stop),
            task: Some(task),
            archive,
        }
    }

    pub async fn sqlite() -> Self {
        Self::start(tenantry_store::testing::sqlite().await, |_| {}).await
    }

    /// `None` when `TENANTRY_TEST_POSTGRES_URL` is not set.
    pub async fn postgres() -> Option<Self> {
        Some(Self::start(tenantry_store::testing::postgres().await?, |_| {}).await)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request with the operator key.
    pub fn op(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.operator_key)
    }

    /// A second server (another instance) on the same database, with the same operator key.
    pub async fn second_instance(&self) -> TestServer {
        self.second_instance_with(|_| {}).await
    }

    /// A second instance with its own configuration tweaks (e.g. the same Redis).
    pub async fn second_instance_with(&self, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let store = self.store.attach().await;
        let mut srv = Self::start(store, tweak).await;
        srv.operator_key = self.operator_key.clone();
        srv
    }

    /// A request with a given bearer credential.
    pub fn with_key(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.archive);
    }
}
