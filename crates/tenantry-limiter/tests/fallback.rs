//! When Redis goes away the limiter keeps deciding (in-process, with a warning and a metric) and
//! returns to Redis when it is back. Uses a throwaway `redis-server` on a free port.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use tenantry_domain::gcra::Limit;
use tenantry_limiter::{Check, RateLimiter, Resilient};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_redis(port: u16) -> Option<Child> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: no redis-server binary ({e})");
            return None;
        }
        Err(e) => panic!("CI needs the redis-server binary for the fallback test: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(child)
}

async fn wait_until(mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn falls_back_while_redis_is_down_and_returns_when_it_is_back() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let limiter = Resilient::new(
        &url,
        "fallback-test:",
        Duration::from_millis(200),
        Duration::from_millis(100),
    )
    .await;
    let check = [Check {
        key: "k".into(),
        limit: Limit::per_minute(6000, 1000),
    }];

    // no Redis yet: decisions are made in-process, never an error
    assert!(limiter.is_degraded());
    assert!(limiter.check(&check).await.unwrap().allowed);
    assert_eq!(limiter.backend(), "in_process");
    assert_eq!(limiter.circuit_open(), Some(true), "the circuit is open");
    assert!(
        matches!(limiter.probe().await, Some(Err(_))),
        "a probe says why"
    );

    let Some(mut redis) = start_redis(port).await else {
        return;
    };
    wait_until(async || {
        let _ = limiter.check(&check).await.unwrap();
        !limiter.is_degraded()
    })
    .await;
    assert_eq!(limiter.backend(), "redis");

    // Redis dies: the next decisions fall back at once
    redis.kill().await.unwrap();
    let _ = redis.wait().await;
    wait_until(async || {
        assert!(
            limiter.check(&check).await.unwrap().allowed,
            "requests keep being decided"
        );
        limiter.is_degraded()
    })
    .await;

    // and it comes back; a readiness probe alone closes the circuit
    let Some(_redis) = start_redis(port).await else {
        return;
    };
    wait_until(async || matches!(limiter.probe().await, Some(Ok(_)))).await;
    assert_eq!(limiter.circuit_open(), Some(false));
    assert_eq!(limiter.backend(), "redis");
}
