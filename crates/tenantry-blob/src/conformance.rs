//! The blob store conformance suite: every case runs against every adapter, each under keys of
//! its own.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use crate::{BlobError, BlobStore};

/// A unique key prefix for one case.
pub fn fresh(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("t{}-{nanos}-{n}-{name}", std::process::id())
}

/// What is put is got back byte for byte; a replaced object reads as the new one; a missing one
/// is `None`; deleting twice is fine.
pub async fn objects_round_trip(b: &dyn BlobStore) {
    let p = fresh("round");
    let key = format!("{p}/2026-11/events.ndjson.gz");
    assert_eq!(b.get(&key).await.unwrap(), None);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    b.put(&key, bytes.clone()).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap(), Some(bytes));
    b.put(&key, b"second".to_vec()).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&b"second"[..]));
    b.delete(&key).await.unwrap();
    b.delete(&key).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap(), None);
}

/// Listing shows the keys under a prefix, sorted, and nothing of a sibling prefix.
pub async fn listing_is_by_prefix_and_sorted(b: &dyn BlobStore) {
    let p = fresh("list");
    for k in ["b/2", "a/1", "b/1", "ab/1"] {
        b.put(&format!("{p}/{k}"), vec![1]).await.unwrap();
    }
    assert_eq!(
        b.list(&format!("{p}/b/")).await.unwrap(),
        [format!("{p}/b/1"), format!("{p}/b/2")]
    );
    assert_eq!(
        b.list(&format!("{p}/a")).await.unwrap(),
        [format!("{p}/a/1")]
    );
    assert_eq!(b.list(&p).await.unwrap().len(), 4);
    assert!(b.list(&fresh("empty")).await.unwrap().is_empty());
}

/// Keys that could escape the store or mean something else are refused before any I/O.
pub async fn unsafe_keys_are_refused(b: &dyn BlobStore) {
    for key in [
        "", "../x", "a/../b", "/abs", "a//b", "a b", "a\\b", "a/./b", "ü",
    ] {
        assert!(
            matches!(b.put(key, vec![1]).await, Err(BlobError::InvalidKey(_))),
            "{key:?}"
        );
        assert!(
            matches!(b.get(key).await, Err(BlobError::InvalidKey(_))),
            "{key:?}"
        );
    }
}

/// Generates one `#[tokio::test]` per conformance case for the adapter `$make` yields (an async
/// expression of `Option<impl BlobStore>`; `None` skips).
#[macro_export]
macro_rules! blob_conformance_suite {
    ($make:expr) => {
        $crate::blob_conformance_suite!(@cases $make; objects_round_trip, listing_is_by_prefix_and_sorted, unsafe_keys_are_refused);
    };
    (@cases $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                match $make {
                    Some(store) => $crate::conformance::$case(&store).await,
                    None => eprintln!("skipped: {} (no S3-compatible server)", stringify!($case)),
                }
            }
        )+
    };
}
