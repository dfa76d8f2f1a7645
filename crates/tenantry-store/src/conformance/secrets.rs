//! Conformance cases of the secrets port.

use crate::Store;

/// The first stored value of a secret is the one every caller gets, concurrent ones included.
pub async fn the_first_secret_stored_wins(store: &dyn Store) {
    let s = store.secrets();
    let name = format!("conf-{}", uuid::Uuid::now_v7());
    let first = s.get_or_create(&name, b"first").await.unwrap();
    assert_eq!(first, b"first");
    assert_eq!(s.get_or_create(&name, b"second").await.unwrap(), b"first");
    let other = format!("{name}-race");
    let (a, b) = tokio::join!(s.get_or_create(&other, b"a"), s.get_or_create(&other, b"b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "concurrent creators agree");
    assert!(a == b"a" || a == b"b");
}
