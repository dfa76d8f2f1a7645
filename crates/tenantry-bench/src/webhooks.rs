//! `tenantry bench webhooks`: deliveries from the event log to a fast local receiver, on a fresh
//! SQLite or PostgreSQL store, with the dispatcher running in the server as it does in
//! production. In the same run:
//! - **the baseline**: a bare client loop (the same HTTP client library, the same concurrency,
//!   the same signed bodies) POSTing to the same receiver — what the client and the receiver
//!   alone can do;
//! - **throughput**: a backlog of events fanned out to `subscriptions` subscriptions, delivered:
//!   deliveries/s from the first commit to the last receipt;
//! - **latency** at half that rate: from each event's commit to its receipt, p50/p99;
//! - **a dead neighbour**: the same rate, with 10 % more subscriptions whose endpoint never
//!   answers (every attempt times out) enabled in two of four slices (without, with, with,
//!   without): the healthy subscriptions' p99 in the slices with them against those without.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tenantry_domain::TenantId;
use tenantry_server::testing::TestServer;
use tenantry_store::testing::TestStore;

use crate::events::write_events;
use crate::http::percentile;

#[derive(clap::Args, Debug, Clone)]
pub struct WebhooksBenchArgs {
    /// PostgreSQL server (a scratch database is created and dropped); SQLite when absent.
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Healthy subscriptions (each gets every event). The dead-neighbour phase adds a ninth as
    /// many (10 % of the total) that never answer.
    #[arg(long, default_value_t = 18)]
    pub subscriptions: usize,
    /// Events of the throughput phase (deliveries: events × subscriptions).
    #[arg(long, default_value_t = 3000)]
    pub events: usize,
    /// Seconds the latency phases run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// What the receiver got: (path, event id, when).
type Got = Arc<Mutex<Vec<(String, String, Instant)>>>;

/// A receiver: `/dead` never answers (the attempt times out); anything else answers 204 at once.
async fn receiver() -> anyhow::Result<(u16, Got)> {
    let got: Got = Arc::default();
    let g = Arc::clone(&got);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let g = Arc::clone(&g);
        async move {
            let at = Instant::now();
            let path = uri.path().to_owned();
            if path == "/dead" {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let id = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            g.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((path, id, at));
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((port, got))
}

fn count(got: &Got, ids: &HashSet<String>) -> usize {
    got.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(p, id, _)| p != "/dead" && ids.contains(id))
        .count()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn run_webhooks(args: WebhooksBenchArgs) -> anyhow::Result<()> {
    let backend = if args.postgres_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "tenantry bench webhooks — store: {backend}, {} subscriptions, a local receiver",
        args.subscriptions
    );
    let store: TestStore = match &args.postgres_url {
        Some(url) => tenantry_store::testing::postgres_on(url).await,
        None => tenantry_store::testing::sqlite().await,
    };
    let srv = TestServer::start(store, |c| {
        c.egress.allow_private = true;
        c.webhooks.allow_http = true;
        c.limits.global_per_minute = 1_000_000;
        c.limits.global_burst = 100_000;
        c.log_level = "warn".into();
    })
    .await;
    let (port, got) = receiver().await?;
    let t: Value = srv
        .op(reqwest::Method::POST, "/v1/tenants")
        .json(&json!({ "name": "Hooked bench", "edition": "enterprise" }))
        .send()
        .await?
        .json()
        .await?;
    let tenant: TenantId = t["id"]
        .as_str()
        .context("tenant id")?
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let subscribe = |path: String| {
        let req = srv
            .op(reqwest::Method::POST, "/v1/webhooks/subscriptions")
            .header("x-tenant-id", tenant.to_string())
            .json(&json!({ "url": format!("http://127.0.0.1:{port}{path}"),
                           "event_types": ["device.*"],
                           "delivery_policy": {"timeout_ms": 2000} }));
        async move {
            let r = req.send().await?;
            if r.status() != reqwest::StatusCode::CREATED {
                bail!("subscribing: {} {}", r.status(), r.text().await?);
            }
            let v: Value = r.json().await?;
            Ok::<_, anyhow::Error>(v["id"].as_str().unwrap_or_default().to_owned())
        }
    };
    for i in 0..args.subscriptions {
        subscribe(format!("/s{i}")).await?;
    }
    let store = Arc::clone(&srv.store.store);
    let subs = args.subscriptions;

    // the baseline: the same client library, concurrency and bodies, no dispatcher
    let deliveries = args.events * subs;
    let concurrency = subs * 16;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let body = json!({"specversion": "1.0", "id": "baseline", "type": "device.created.v1",
                      "source": "/tenantry/platform", "data": {"device_id": "d"}})
    .to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, body) = (client.clone(), Arc::clone(&next), body.clone());
            let url = format!("http://127.0.0.1:{port}/baseline");
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < deliveries {
                    let _ = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("webhook-id", "msg_baseline")
                        .header("webhook-signature", "v1,AAAA")
                        .body(body.clone())
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let baseline = started.elapsed();
    got.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();

    // throughput: a backlog written as fast as the store takes it, delivered to every subscription
    let mut seq = 0;
    let mut ids = HashSet::new();
    let started = Instant::now();
    while seq < args.events {
        let n = 500.min(args.events - seq);
        ids.extend(write_events(&*store, tenant, n, &mut seq).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&got, &ids) < deliveries {
        if Instant::now() > deadline {
            bail!(
                "only {} of {deliveries} deliveries in 10 minutes",
                count(&got, &ids)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    let rate = deliveries as f64 / delivered.as_secs_f64();
    let base_rate = deliveries as f64 / baseline.as_secs_f64();
    println!(
        "\nthroughput ({deliveries} deliveries: {} events × {subs} subscriptions)",
        args.events
    );
    println!("{:<52} {:>14} {:>9}", "phase", "deliveries/s", "seconds");
    println!(
        "{:<52} {:>14.0} {:>9.2}",
        format!("baseline: bare client loop, {concurrency} at once"),
        base_rate,
        baseline.as_secs_f64()
    );
    println!(
        "{:<52} {:>14.0} {:>9.2}",
        "tenantry: commit → fan-out → claim → sign → POST → record",
        rate,
        delivered.as_secs_f64()
    );
    println!(
        "tenantry / baseline: {:.0} %  (target on PostgreSQL: ≥ 5 000 deliveries/s)",
        100.0 * rate / base_rate
    );

    // latency at half that rate
    let half = rate / 2.0;
    let (p50, p99, n) = p50_p99(steady(&args, &store, tenant, &got, half, &mut seq, None).await?);
    println!(
        "\nlatency at {:.0} deliveries/s ({:.0} events/s), commit → receipt, {n} deliveries",
        half,
        half / subs as f64
    );
    println!(
        "p50 {:.1} ms, p99 {:.1} ms  (target: p99 ≤ 200 ms)",
        ms(p50),
        ms(p99)
    );

    // a dead neighbour: 10 % more subscriptions whose endpoint never answers, enabled in two of
    // four slices (each time with a fresh circuit: the worst case, every attempt of a slice's
    // first wave hangs to its timeout), so that both sides see the same tables and the same time
    let dead = subs.div_ceil(9);
    let mut dead_ids = Vec::new();
    for _ in 0..dead {
        dead_ids.push(subscribe("/dead".into()).await?);
    }
    let set_dead = |enabled: bool| {
        let reqs: Vec<_> = dead_ids
            .iter()
            .map(|id| {
                srv.op(
                    reqwest::Method::PATCH,
                    &format!("/v1/webhooks/subscriptions/{id}"),
                )
                .header("x-tenant-id", tenant.to_string())
                .json(&json!({ "enabled": enabled }))
            })
            .collect();
        async move {
            for r in reqs {
                let r = r.send().await?;
                if !r.status().is_success() {
                    bail!("toggling a dead subscription: {}", r.status());
                }
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let slice = (args.seconds / 2).max(2);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    // A B B A: both sides at the same mean time into the run (the tables grow as it goes)
    for on in [false, true, true, false] {
        set_dead(on).await?;
        // the dispatcher reads subscriptions again within 2 s
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let lat = steady(&args, &store, tenant, &got, half, &mut seq, Some(slice)).await?;
        if on {
            with.extend(lat)
        } else {
            without.extend(lat)
        }
    }
    let (a50, a99, an) = p50_p99(without);
    let (d50, d99, dn) = p50_p99(with);
    println!(
        "\nthe same rate, {dead} more subscriptions ({:.0} % of all) whose endpoint never answers enabled in half of four {slice} s slices (without, with, with, without)",
        100.0 * dead as f64 / (subs + dead) as f64
    );
    println!(
        "slices without them: p50 {:.1} ms, p99 {:.1} ms ({an} deliveries)",
        ms(a50),
        ms(a99)
    );
    println!(
        "slices with them:    p50 {:.1} ms, p99 {:.1} ms ({dn} deliveries): p99 × {:.2}  (target: ≤ 1.5×)",
        ms(d50),
        ms(d99),
        d99.as_secs_f64() / a99.as_secs_f64().max(1e-6)
    );
    srv.stop().await;
    Ok(())
}

/// Writes events at `rate` deliveries/s for `seconds`, then waits for them; commit → receipt of
/// each delivery to a healthy endpoint.
async fn steady(
    args: &WebhooksBenchArgs,
    store: &Arc<dyn tenantry_store::Store>,
    tenant: TenantId,
    got: &Got,
    rate: f64,
    seq: &mut usize,
    seconds: Option<u64>,
) -> anyhow::Result<Vec<Duration>> {
    let tick = Duration::from_millis(10);
    let seconds = seconds.unwrap_or(args.seconds);
    let events_per_sec = (rate / args.subscriptions as f64).max(1.0);
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut owed = 0.0;
    while started.elapsed() < Duration::from_secs(seconds) {
        owed += events_per_sec * tick.as_secs_f64();
        let n = owed.floor() as usize;
        owed -= n as f64;
        if n > 0 {
            let ids = write_events(&**store, tenant, n, seq).await?;
            let at = Instant::now();
            committed.extend(ids.into_iter().map(|id| (id, at)));
        }
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    let ids: HashSet<String> = committed.keys().cloned().collect();
    let want = ids.len() * args.subscriptions;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(got, &ids) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lat: Vec<Duration> = got
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(p, _, _)| p != "/dead")
        .filter_map(|(_, id, at)| committed.get(id).map(|c| at.saturating_duration_since(*c)))
        .collect();
    if lat.len() < want {
        bail!("only {} of {want} deliveries arrived", lat.len());
    }
    Ok(lat)
}

fn p50_p99(mut lat: Vec<Duration>) -> (Duration, Duration, usize) {
    lat.sort_unstable();
    (percentile(&lat, 50.0), percentile(&lat, 99.0), lat.len())
}
