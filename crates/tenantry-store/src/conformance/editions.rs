//! Conformance cases: The editions port.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use tenantry_domain::{Edition, EditionKey};

use super::now;
use crate::{Changes, Constraint, Store, StoreError};

pub async fn default_editions_are_seeded(store: &dyn Store) {
    let editions = store.editions().list().await.expect("list editions");
    let keys: Vec<_> = editions.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["free", "standard", "enterprise"]);
    let standard = store
        .editions()
        .get(&EditionKey::parse("standard").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (standard.limits.requests_per_minute, standard.limits.burst),
        (600, 1200)
    );
    assert!(standard.builtin);
    assert!(
        store
            .editions()
            .get(&EditionKey::parse("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn custom_editions_are_unique(store: &dyn Store) {
    let mut e = Edition::defaults(now()).remove(1);
    e.key = EditionKey::parse("healthcare-pack").unwrap();
    e.builtin = false;
    e.description = None;
    store
        .editions()
        .insert(&e, &Changes::default())
        .await
        .expect("insert edition");
    assert_eq!(store.editions().get(&e.key).await.unwrap(), Some(e.clone()));
    let err = store
        .editions()
        .insert(&e, &Changes::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate(Constraint::EditionKey)),
        "{err:?}"
    );
}
