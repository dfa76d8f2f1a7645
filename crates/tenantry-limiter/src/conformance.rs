//! The rate limiter conformance suite: every case runs against every adapter. Each case names its
//! buckets with a fresh prefix, so cases can share one Redis.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use std::time::Duration;

use tenantry_domain::gcra::Limit;

use crate::{Check, RateLimiter};

pub const REDIS_URL_VAR: &str = "TENANTRY_TEST_REDIS_URL";

/// A unique bucket-name prefix for one case.
pub fn fresh(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("t{}:{nanos}:{n}:{name}", std::process::id())
}

fn check(key: &str, limit: Limit) -> Check {
    Check {
        key: key.to_owned(),
        limit,
    }
}

pub async fn burst_then_refuse_with_an_exact_wait(l: &dyn RateLimiter) {
    let key = fresh("burst");
    let limit = Limit::per_minute(60, 5);
    for expected_left in (0..5).rev() {
        let v = l.check(&[check(&key, limit)]).await.unwrap();
        assert!(v.allowed);
        assert_eq!(v.decisions[0].remaining, expected_left);
    }
    let refused = l.check(&[check(&key, limit)]).await.unwrap();
    assert!(!refused.allowed);
    let wait = refused.decisions[0].retry_after_us;
    assert!(
        wait > 0 && wait <= 1_000_000,
        "one request per second frees up: {wait} µs"
    );
    assert_eq!(refused.decisions[0].remaining, 0);
}

pub async fn a_refusal_consumes_nothing_in_any_bucket(l: &dyn RateLimiter) {
    let (key, tenant) = (fresh("key"), fresh("tenant"));
    let (wide, narrow) = (Limit::per_minute(60, 10), Limit::per_minute(60, 2));
    for _ in 0..2 {
        assert!(
            l.check(&[check(&key, wide), check(&tenant, narrow)])
                .await
                .unwrap()
                .allowed
        );
    }
    let v = l
        .check(&[check(&key, wide), check(&tenant, narrow)])
        .await
        .unwrap();
    assert!(!v.allowed);
    assert!(
        v.decisions[0].allowed && !v.decisions[1].allowed,
        "the tenant bucket refused"
    );
    assert_eq!(v.binding().unwrap().0, 1);
    // the key bucket was charged for the two allowed requests only
    let alone = l.check(&[check(&key, wide)]).await.unwrap();
    assert_eq!(alone.decisions[0].remaining, 7);
}

pub async fn buckets_are_independent(l: &dyn RateLimiter) {
    let (a, b) = (fresh("a"), fresh("b"));
    let limit = Limit::per_minute(60, 1);
    assert!(l.check(&[check(&a, limit)]).await.unwrap().allowed);
    assert!(!l.check(&[check(&a, limit)]).await.unwrap().allowed);
    assert!(
        l.check(&[check(&b, limit)]).await.unwrap().allowed,
        "b has its own bucket"
    );
}

pub async fn a_changed_limit_applies_at_once(l: &dyn RateLimiter) {
    let key = fresh("upgrade");
    let free = Limit::per_minute(60, 2);
    let enterprise = Limit::per_minute(3000, 100);
    for _ in 0..2 {
        assert!(l.check(&[check(&key, free)]).await.unwrap().allowed);
    }
    assert!(!l.check(&[check(&key, free)]).await.unwrap().allowed);
    let v = l.check(&[check(&key, enterprise)]).await.unwrap();
    assert!(
        v.allowed,
        "the upgraded edition's burst applies to the same bucket"
    );
    assert!(v.decisions[0].remaining > 90);
}

pub async fn the_sustained_rate_refills(l: &dyn RateLimiter) {
    let key = fresh("refill");
    let limit = Limit::per_minute(1200, 1); // one every 50 ms
    assert!(l.check(&[check(&key, limit)]).await.unwrap().allowed);
    let refused = l.check(&[check(&key, limit)]).await.unwrap();
    assert!(!refused.allowed);
    tokio::time::sleep(Duration::from_micros(
        refused.decisions[0].retry_after_us + 2_000,
    ))
    .await;
    assert!(
        l.check(&[check(&key, limit)]).await.unwrap().allowed,
        "allowed once the announced wait passed"
    );
}

/// A limiter with a shared backend answers a probe, and says its circuit is closed; one without
/// has nothing to probe. Either way the probe agrees with `backend()`.
pub async fn a_probe_agrees_with_the_backend(l: &dyn RateLimiter) {
    match (l.backend(), l.probe().await) {
        ("in_process", None) => assert_eq!(l.circuit_open(), None),
        ("redis", Some(Ok(latency))) => {
            assert!(latency < std::time::Duration::from_secs(2), "{latency:?}");
            assert_ne!(
                l.circuit_open(),
                Some(true),
                "Redis answered: the circuit is closed"
            );
        }
        (backend, probe) => panic!("backend {backend} probed as {probe:?}"),
    }
}

/// Generates one `#[tokio::test]` per case; `$make` yields `Option<impl RateLimiter>`.
#[macro_export]
macro_rules! limiter_conformance_suite {
    ($make:expr) => {
        $crate::limiter_conformance_suite!(@cases $make;
            burst_then_refuse_with_an_exact_wait,
            a_refusal_consumes_nothing_in_any_bucket,
            buckets_are_independent,
            a_changed_limit_applies_at_once,
            the_sustained_rate_refills,
            a_probe_agrees_with_the_backend,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                match $make {
                    Some(limiter) => $crate::conformance::$case(&limiter).await,
                    None => $crate::conformance::skip_notice(stringify!($case)),
                }
            }
        )+
    };
}

/// The Redis server for tests, if configured.
pub fn redis_url() -> Option<String> {
    std::env::var(REDIS_URL_VAR)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// Reports a skipped Redis case; under CI (`CI` set) a skip is a failure.
pub fn skip_notice(test: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: CI is set but {REDIS_URL_VAR} is not; the Redis suite must run in CI");
    }
    eprintln!("skipped {test}: set {REDIS_URL_VAR} to run the Redis suite");
}
