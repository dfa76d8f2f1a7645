//! Conformance cases: The root store: migrations and readiness.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use crate::Store;

pub async fn migrations_are_idempotent_and_ready(store: &dyn Store) {
    store.check_ready().await.expect("ready after migrate");
    assert!(
        store.migrate().await.expect("second migrate").is_empty(),
        "nothing new to apply"
    );
    store.check_ready().await.expect("still ready");
}
