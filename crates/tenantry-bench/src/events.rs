//! `tenantry bench events`: the event fabric on NATS JetStream, with a fresh SQLite or
//! PostgreSQL store. In the same run:
//! - **relay throughput**: a backlog of events in the outbox published by the relay (sequence,
//!   read, publish pipelined, save the cursor), against **the baseline**: a bare JetStream
//!   publish loop (async-nats, pipelined the same way) of the same CloudEvents, already in memory;
//! - **end-to-end lag** at a steady write rate (default 2 000 events/s): from each event's
//!   commit time to its hand-over by the realtime hub (relay → JetStream → hub), p50/p99/max;
//! - **fan-out**: two server instances on one store and one stream, 1 000 open SSE streams (100
//!   per tenant, 10 tenants, half on each instance) while events are written at 200/s: delivery
//!   p50/p99 from commit to the client reading the message, and a check by sequence that every
//!   stream got each of its tenant's events exactly once, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tenantry_domain::{EditionKey, EventEnvelope, Isolation, Slug, Tenant, TenantId, TenantName};
use tenantry_server::events::{config::EventsConfig, hub, relay, runtime::EventsRuntime};
use tenantry_store::testing::TestStore;
use tenantry_store::{Changes, Store};

use crate::http::percentile;

#[derive(clap::Args, Debug, Clone)]
pub struct EventsBenchArgs {
    /// NATS JetStream server (a scratch stream is created and deleted).
    #[arg(
        long,
        env = "TENANTRY_TEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// PostgreSQL server (a scratch database is created and dropped); SQLite when absent.
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Events of the relay-throughput phase.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Write rate of the lag phase, events/s.
    #[arg(long, default_value_t = 2000)]
    pub rate: usize,
    /// Seconds the lag and fan-out phases run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Streams of the fan-out phase (spread over 10 tenants and two instances).
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Write rate of the fan-out phase, events/s.
    #[arg(long, default_value_t = 200)]
    pub fanout_rate: usize,
}

async fn fresh_store(args: &EventsBenchArgs) -> TestStore {
    match &args.postgres_url {
        Some(url) => tenantry_store::testing::postgres_on(url).await,
        None => tenantry_store::testing::sqlite().await,
    }
}

fn unique(name: &str) -> String {
    format!("bench_{}_{name}", uuid::Uuid::new_v4().simple())
}

fn tenant(n: usize) -> Tenant {
    Tenant::new(
        TenantId::new(),
        Slug::parse(&format!("bench-{n}-{}", uuid::Uuid::new_v4().simple())).expect("slug"),
        TenantName::parse(&format!("Bench {n}")).expect("name"),
        EditionKey::free(),
        None,
        Isolation::Pooled,
        chrono::Utc::now(),
    )
}

/// Appends `n` events of `tenant` to the outbox in one unit of work (a throwaway tenant's
/// creation carries them).
pub(crate) async fn write_events(
    store: &dyn Store,
    owner: TenantId,
    n: usize,
    seq: &mut usize,
) -> anyhow::Result<Vec<String>> {
    let carrier = tenant(*seq);
    let events: Vec<EventEnvelope> = (0..n)
        .map(|i| {
            EventEnvelope::v1(
                "device.created.v1",
                format!("d{}", *seq + i),
                Some(owner),
                Some(EditionKey::free()),
                None,
                chrono::Utc::now(),
                json!({ "device_id": format!("d{}", *seq + i), "name": null }),
            )
        })
        .collect();
    *seq += n;
    let ids = events.iter().map(|e| e.id.to_string()).collect();
    let audit = tenantry_domain::AuditRecord {
        id: tenantry_domain::AuditId::new(),
        occurred_at: chrono::Utc::now(),
        actor: tenantry_domain::Actor::system(),
        action: "bench.events".into(),
        resource_type: "tenant".into(),
        resource_id: carrier.id.to_string(),
        tenant_id: Some(carrier.id),
        trace_id: None,
        details: json!({}),
    };
    let changes = Changes {
        audit: vec![audit],
        events,
        ..Changes::default()
    };
    store.tenants().insert(&carrier, &changes).await?;
    Ok(ids)
}

fn config(nats: &str, name: &str) -> EventsConfig {
    EventsConfig {
        nats_url: nats.to_owned(),
        nats_stream: name.to_owned(),
        subject_prefix: name.to_owned(),
        ..EventsConfig::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn run_events(args: EventsBenchArgs) -> anyhow::Result<()> {
    println!(
        "tenantry bench events — store: {}, bus: NATS JetStream at {}",
        if args.postgres_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        args.nats_url
    );
    relay_throughput(&args).await?;
    // the scratch databases' removal makes PostgreSQL checkpoint: let it finish first
    tokio::time::sleep(Duration::from_secs(3)).await;
    lag(&args).await?;
    fanout(&args).await?;
    Ok(())
}

async fn relay_throughput(args: &EventsBenchArgs) -> anyhow::Result<()> {
    let ts = fresh_store(args).await;
    let store = Arc::clone(&ts.store);
    let owner = TenantId::new();
    let mut seq = 0;
    while seq < args.events {
        let _ = write_events(&*store, owner, 1000.min(args.events - seq), &mut seq).await?;
    }
    // the baseline: the same CloudEvents, in memory, published by a bare pipelined loop
    let log = store.events();
    while log.sequence(10_000).await? > 0 {}
    let mut messages = Vec::with_capacity(args.events);
    let mut after = 0;
    loop {
        let page = log.read_after(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        messages.extend(page.iter().map(relay::message));
    }
    let base_name = unique("baseline");
    let client = async_nats::connect(&args.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: base_name.clone(),
        subjects: vec![format!("{base_name}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    for chunk in messages.chunks(2000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for m in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.id.as_str());
            let subject = format!("{base_name}.{}.{}", m.partition, m.event_type);
            acks.push(
                js.publish_with_headers(subject, headers, m.payload.clone())
                    .await?,
            );
        }
        for a in acks {
            a.await?;
        }
    }
    let baseline = started.elapsed();
    js.delete_stream(&base_name).await?;

    // the relay, from a fresh store with the same backlog unsequenced
    let ts2 = fresh_store(args).await;
    let store2 = Arc::clone(&ts2.store);
    let mut seq = 0;
    while seq < args.events {
        let _ = write_events(&*store2, owner, 1000.min(args.events - seq), &mut seq).await?;
    }
    let name = unique("relay");
    let rt = Arc::new(EventsRuntime::new(config(&args.nats_url, &name)));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(relay::run(
        Arc::clone(&store2),
        Arc::clone(&rt),
        "bench".into(),
        stop,
    ));
    let want = args.events as i64;
    loop {
        if store2.events().cursor(relay::RELAY_CURSOR).await? >= want {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the relay did not finish in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let relayed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = task.await;
    let bus =
        tenantry_bus::NatsBus::connect(&args.nats_url, &name, &name, Duration::from_secs(3600))
            .await?;
    bus.delete_stream().await?;
    let rate = |d: Duration| args.events as f64 / d.as_secs_f64();
    println!(
        "\nrelay throughput ({} events, outbox → JetStream)",
        args.events
    );
    println!("{:<44} {:>12} {:>10}", "phase", "events/s", "seconds");
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "baseline: bare JetStream publish loop",
        rate(baseline),
        baseline.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "relay: sequence + read + publish + cursor",
        rate(relayed),
        relayed.as_secs_f64()
    );
    println!(
        "relay / baseline: {:.0} %  (target: ≥ 20 000 events/s)",
        100.0 * baseline.as_secs_f64() / relayed.as_secs_f64()
    );
    Ok(())
}

async fn lag(args: &EventsBenchArgs) -> anyhow::Result<()> {
    let ts = fresh_store(args).await;
    let store = Arc::clone(&ts.store);
    let name = unique("lag");
    let rt = Arc::new(EventsRuntime::new(config(&args.nats_url, &name)));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let relay_task = tokio::spawn(relay::run(
        Arc::clone(&store),
        Arc::clone(&rt),
        "bench".into(),
        stop.clone(),
    ));
    let hub_task = tokio::spawn(hub::run(Arc::clone(&store), Arc::clone(&rt), stop));
    let owner = TenantId::new();
    // the hub is up once it has a position; subscribe, then write
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rx = rt.hub().subscribe(owner);
    // (event id, when the hub handed it out)
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let delivered = Arc::clone(&delivered);
        tokio::spawn(async move {
            while let Ok(item) = rx.recv().await {
                let at = Instant::now();
                delivered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((item.id.clone(), at));
            }
        })
    };
    // when each event's transaction had committed (its write returned)
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate / 100).max(1);
    let mut seq = 0;
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let ids = write_events(&*store, owner, per_tick, &mut seq).await?;
        let at = Instant::now();
        committed.extend(ids.into_iter().map(|id| (id, at)));
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    let written = seq;
    if std::env::var_os("TENANTRY_BENCH_VERBOSE").is_some() {
        let st = store.events().stats().await?;
        let c = store.events().cursor(relay::RELAY_CURSOR).await?;
        println!(
            "after writes: head {} unsequenced {} relay {} hub {}",
            st.head,
            st.unsequenced,
            c,
            rt.hub().position()
        );
    }
    let count = || {
        delivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() < written && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let _ = relay_task.await;
    let _ = hub_task.await;
    collector.abort();
    let mut all: Vec<Duration> = delivered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(|(id, at)| committed.get(id).map(|c| at.saturating_duration_since(*c)))
        .collect();
    all.sort_unstable();
    let rate = written as f64 / args.seconds as f64;
    println!(
        "\nend-to-end lag at {rate:.0} events/s for {} s (the write's commit → relay → JetStream → hub)",
        args.seconds
    );
    println!("events written {written}, delivered {}", all.len());
    println!(
        "lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms  (target: p99 ≤ 100 ms)",
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 99.0)),
        ms(all.last().copied().unwrap_or_default())
    );
    let bus =
        tenantry_bus::NatsBus::connect(&args.nats_url, &name, &name, Duration::from_secs(3600))
            .await?;
    bus.delete_stream().await?;
    Ok(())
}

/// Reads one SSE stream, recording (position, delivery lag) of each message.
async fn read_stream(
    mut resp: reqwest::Response,
    out: Arc<Mutex<Vec<(i64, Duration)>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut text = String::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let chunk = tokio::time::timeout(Duration::from_millis(200), resp.chunk()).await;
        let chunk = match chunk {
            Err(_) => continue,
            Ok(Ok(Some(c))) => c,
            Ok(_) => return,
        };
        let now = chrono::Utc::now();
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            #[derive(serde::Deserialize)]
            struct Ce {
                sequence: Option<String>,
                time: chrono::DateTime<chrono::Utc>,
            }
            if let Ok(ce) = serde_json::from_str::<Ce>(data)
                && let Some(seq) = ce.sequence.and_then(|s| s.parse::<i64>().ok())
            {
                let lag = (now - ce.time).to_std().unwrap_or_default();
                out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((seq, lag));
            }
        }
    }
}

async fn fanout(args: &EventsBenchArgs) -> anyhow::Result<()> {
    use tenantry_server::testing::TestServer;
    let ts = fresh_store(args).await;
    let name = unique("fanout");
    let tweak = |c: &mut tenantry_server::config::Config| {
        c.events = config(&args.nats_url, &name);
        c.events.stream_buffer = 4096;
        c.http.max_connections = 4096;
        c.limits.global_per_minute = 1_000_000;
        c.limits.global_burst = 100_000;
    };
    let a = TestServer::start(ts, tweak).await;
    let b = a.second_instance_with(tweak).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2000)
        .build()?;
    let tenants = 10;
    let mut keys = Vec::new();
    for t in 0..tenants {
        let r: serde_json::Value = a
            .op(reqwest::Method::POST, "/v1/tenants")
            .json(&json!({ "name": format!("Fan {t}"), "edition": "enterprise" }))
            .send()
            .await?
            .json()
            .await?;
        let id: TenantId = r["id"]
            .as_str()
            .context("tenant id")?
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let k: serde_json::Value = a
            .op(reqwest::Method::POST, &format!("/v1/tenants/{id}/api-keys"))
            .json(&json!({ "name": "bench", "scopes": ["events:read"] }))
            .send()
            .await?
            .json()
            .await?;
        keys.push((id, k["key"].as_str().context("key")?.to_owned()));
    }
    let per_tenant = args.streams / tenants;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    let mut records = Vec::new();
    for (t, (_, key)) in keys.iter().enumerate() {
        for s in 0..per_tenant {
            let srv = if s % 2 == 0 { &a } else { &b };
            let resp = client
                .get(srv.url("/v1/stream?types=device.*"))
                .bearer_auth(key)
                .send()
                .await?;
            if resp.status() != reqwest::StatusCode::OK {
                bail!("stream {t}/{s}: {}", resp.status());
            }
            let out = Arc::new(Mutex::new(Vec::new()));
            records.push((t, Arc::clone(&out)));
            readers.push(tokio::spawn(read_stream(resp, out, stop.clone())));
        }
    }
    println!(
        "\nfan-out: {} streams open ({per_tenant} per tenant, {tenants} tenants, two instances)",
        readers.len()
    );
    // writes spread over the tenants, round robin, in units of work of one event
    let store = Arc::clone(&a.store.store);
    let tick = Duration::from_millis(50);
    let per_tick = (args.fanout_rate / 20).max(1);
    let mut written: HashMap<usize, Vec<i64>> = HashMap::new();
    let mut seq = 0;
    let mut n = 0usize;
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        for _ in 0..per_tick {
            let t = n % tenants;
            n += 1;
            let _ = write_events(&*store, keys[t].0, 1, &mut seq).await?;
            written.entry(t).or_default();
        }
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    // what each tenant's log holds (the truth each stream is checked against)
    let mut expected: HashMap<usize, Vec<i64>> = HashMap::new();
    while store.events().stats().await?.unsequenced > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (t, (id, _)) in keys.iter().enumerate() {
        let filter = tenantry_store::events::EventFilter {
            event_type: Some("device.*".into()),
            ..Default::default()
        };
        let mut after = 0;
        loop {
            let page = store
                .events()
                .list(
                    tenantry_store::events::LogPartition::Tenant(*id),
                    &filter,
                    after,
                    1000,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            expected
                .entry(t)
                .or_default()
                .extend(page.iter().map(|e| e.seq));
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = records.iter().all(|(t, r)| {
            r.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len()
                >= expected.get(t).map_or(0, Vec::len)
        });
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = r.await;
    }
    let mut lags = Vec::new();
    let mut wrong = 0;
    for (t, r) in &records {
        let got = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
        if Some(&seqs) != expected.get(t) {
            wrong += 1;
        }
        lags.extend(got.iter().map(|(_, l)| *l));
    }
    lags.sort_unstable();
    println!(
        "events written {total} ({:.0}/s), deliveries {} (expected {})",
        total as f64 / args.seconds as f64,
        lags.len(),
        total * per_tenant
    );
    println!(
        "delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms  (target: p99 ≤ 100 ms)",
        ms(percentile(&lags, 50.0)),
        ms(percentile(&lags, 99.0)),
        ms(lags.last().copied().unwrap_or_default())
    );
    println!(
        "streams with a lost, repeated or misordered event: {wrong} of {} (checked by sequence)",
        records.len()
    );
    b.stop().await;
    a.stop().await;
    let bus =
        tenantry_bus::NatsBus::connect(&args.nats_url, &name, &name, Duration::from_secs(3600))
            .await?;
    bus.delete_stream().await?;
    if wrong > 0 {
        bail!("{wrong} streams did not get exactly their tenant's events");
    }
    Ok(())
}
