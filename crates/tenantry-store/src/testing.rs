//! Test support: a fresh, migrated store per test.
//!
//! SQLite stores live in a temporary directory. PostgreSQL stores get a database of their own,
//! created on the server named by `TENANTRY_TEST_POSTGRES_URL` and dropped when the handle is
//! dropped (even when the test panics). Without that variable the PostgreSQL helpers return `None`
//! and the suites that need them report themselves skipped; `.ci/run` always sets it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::{ConnectOptions, Store, connect};

pub const POSTGRES_URL_VAR: &str = "TENANTRY_TEST_POSTGRES_URL";

/// Runs `futures` concurrently on this task and returns their outputs in order (a tiny
/// `join_all`, without another dependency).
pub async fn join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The PostgreSQL server for tests, if configured.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// A database created for one test; dropped (with its connections) when this is dropped.
pub struct PgTestDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgTestDatabase {
    /// Creates an empty database, or `None` without `TENANTRY_TEST_POSTGRES_URL`. Panics when the
    /// variable is set but the server cannot be used: a configured suite never skips silently.
    pub async fn create() -> Option<Self> {
        Some(Self::create_on(&postgres_url()?).await)
    }

    /// Creates an empty database on the server of `admin_url`. Panics when it cannot.
    pub async fn create_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tenantry_t_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is unreachable: {e}")
        });
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside a runtime; use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn.execute(AssertSqlSafe(sql)).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A migrated store and what keeps its database alive.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub url: String,
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgTestDatabase),
    /// Another handle on a database some other `TestStore` owns.
    Attached,
}

impl TestStore {
    /// A second, independent connection pool on the same database (a second instance).
    pub async fn attach(&self) -> TestStore {
        let store = connect(&self.url, &ConnectOptions::default())
            .await
            .expect("attach to test database");
        TestStore {
            store,
            url: self.url.clone(),
            _guard: Guard::Attached,
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

/// A migrated SQLite store in a temporary directory.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("tenantry.db").display());
    let store = connect(&url, &ConnectOptions::default())
        .await
        .expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    TestStore {
        store,
        url,
        _guard: Guard::Sqlite(dir),
    }
}

/// A migrated PostgreSQL store in a database of its own, or `None` when not configured.
pub async fn postgres() -> Option<TestStore> {
    Some(postgres_on(&postgres_url()?).await)
}

/// A migrated PostgreSQL store in a new database on the server of `admin_url`.
pub async fn postgres_on(admin_url: &str) -> TestStore {
    let db = PgTestDatabase::create_on(admin_url).await;
    let store = connect(&db.url, &ConnectOptions::default())
        .await
        .expect("open postgres");
    store.migrate().await.expect("migrate postgres");
    TestStore {
        store,
        url: db.url.clone(),
        _guard: Guard::Postgres(db),
    }
}

/// Reports why a PostgreSQL test did nothing. Under CI (`CI` set) a skip is a failure: CI must
/// run every suite.
pub fn skip_notice(test: &str) {
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CI is set but {POSTGRES_URL_VAR} is not; the PostgreSQL suite must run in CI"
        );
    }
    eprintln!("skipped {test}: set {POSTGRES_URL_VAR} to run the PostgreSQL suite");
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_database_names() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://h/test?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
