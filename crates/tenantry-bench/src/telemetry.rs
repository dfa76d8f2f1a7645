//! `tenantry bench telemetry`: durable device-event ingest over HTTP against a `tenantry serve`
//! process of this binary, on a fresh SQLite or PostgreSQL database.
//!
//! In the same run:
//! - **the raw bulk path**: the same rows written straight into the same tables by the
//!   database's fastest bulk path (SQLite: prepared multi-row `INSERT`s in one transaction;
//!   PostgreSQL: `COPY` into both telemetry tables in one transaction), measured before and after
//!   the ingest matrix; the better of the two is the baseline;
//! - **the matrix**: batches of 1, 100 and 1 000 events at concurrency 1, 8 and 64 (closed loop):
//!   durable events/s (the `accepted` counts of `202` answers) and request p50/p99;
//! - **half load**: an open-loop client at half the rate reached with batches of 100 at
//!   concurrency 64, latencies measured from each request's scheduled time;
//! - **a burst** of ten times that rate against the default in-flight budget: how many requests
//!   were refused (`503` with `Retry-After`), whether what was acknowledged is exactly what is
//!   stored, and the server's peak RSS before and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use serde_json::json;

use crate::http::{BenchBackend, Instance, spawn_instance};

#[derive(clap::Args, Debug, Clone)]
pub struct TelemetryBenchArgs {
    /// Store to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// PostgreSQL server for --backend postgres (a scratch database is created and dropped).
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Seconds each phase of the matrix runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Batch sizes of the matrix.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub batches: Vec<usize>,
    /// Concurrencies of the matrix.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub concurrency: Vec<usize>,
    /// Rows of each raw bulk-path measurement.
    #[arg(long, default_value_t = 200_000)]
    pub raw_rows: usize,
}

/// Devices the events spread over.
const DEVICES: usize = 100;

/// One event as JSON text: a random client id (the expensive case for a unique index), a
/// device, a value, and a time up to an hour in the past (out of order).
fn event_json(out: &mut String, at: chrono::DateTime<Utc>) {
    use std::fmt::Write as _;
    let id = uuid::Uuid::new_v4();
    let n = id.as_u128();
    let device = (n % DEVICES as u128) as usize;
    let recorded = at - chrono::Duration::milliseconds(((n >> 64) as i64).rem_euclid(3_600_000));
    let _ = write!(
        out,
        r#"{{"event_id":"{id}","device_id":"dev-{device}","type":"temperature","value":{}.5,"recorded_at":"{}"}}"#,
        (n >> 32) % 100,
        recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
}

fn batch_body(size: usize) -> String {
    let at = Utc::now();
    let mut s = String::with_capacity(size * 150 + 16);
    s.push_str(r#"{"events":["#);
    for i in 0..size {
        if i > 0 {
            s.push(',');
        }
        event_json(&mut s, at);
    }
    s.push_str("]}");
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Where the bench's server and its direct connection point.
struct Target {
    url: String,
    backend: BenchBackend,
    _pg: Option<tenantry_store::testing::PgTestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

async fn target(args: &TelemetryBenchArgs) -> anyhow::Result<Target> {
    Ok(match args.backend {
        BenchBackend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("tenantry.db").display());
            Target {
                url,
                backend: args.backend,
                _pg: None,
                _dir: Some(dir),
            }
        }
        BenchBackend::Postgres => {
            let admin = args
                .postgres_url
                .as_deref()
                .context("--backend postgres needs --postgres-url or TENANTRY_TEST_POSTGRES_URL")?;
            let db = tenantry_store::testing::PgTestDatabase::create_on(admin).await;
            Target {
                url: db.url.clone(),
                backend: args.backend,
                _pg: Some(db),
                _dir: None,
            }
        }
    })
}

/// A tenant on an edition without request limits, and its admin key.
async fn bench_tenant(
    client: &reqwest::Client,
    base: &str,
    operator: &str,
    name: &str,
) -> anyhow::Result<(uuid::Uuid, String)> {
    // the edition may exist already (a second instance on the same database)
    let _ = client
        .post(format!("{base}/v1/editions"))
        .bearer_auth(operator)
        .json(
            &json!({ "key": "bench-unlimited", "name": "Bench", "limits": {
            "requests_per_minute": 100_000_000, "burst": 100_000_000, "concurrency": 1000,
            "storage_gb": 1, "webhook_subscriptions": 1, "retention_days": 30 } }),
        )
        .send()
        .await?;
    let t: serde_json::Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(operator)
        .json(&json!({ "name": name, "edition": "bench-unlimited" }))
        .send()
        .await?
        .json()
        .await?;
    let id: uuid::Uuid = t["id"].as_str().context("tenant id")?.parse()?;
    let k: serde_json::Value = client
        .post(format!("{base}/v1/tenants/{id}/api-keys"))
        .bearer_auth(operator)
        .json(&json!({ "name": "bench", "roles": ["tenant_admin"] }))
        .send()
        .await?
        .json()
        .await?;
    Ok((id, k["key"].as_str().context("key")?.to_owned()))
}

/// The server process's memory: (current RSS, peak RSS) in MiB.
fn rss_mib(pid: Option<u32>) -> (f64, f64) {
    let Some(pid) = pid else {
        return (0.0, 0.0);
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The raw bulk path: `rows` events for `tenant` written straight into the telemetry tables.
/// Returns rows per second.
async fn raw_bulk(target: &Target, tenant: uuid::Uuid, rows: usize) -> anyhow::Result<f64> {
    let at = Utc::now();
    let events: Vec<(String, String, f64, chrono::DateTime<Utc>)> = (0..rows)
        .map(|i| {
            let id = uuid::Uuid::new_v4();
            let n = id.as_u128();
            (
                id.to_string(),
                format!("dev-{}", n % DEVICES as u128),
                (i % 100) as f64 + 0.5,
                at - chrono::Duration::milliseconds(((n >> 64) as i64).rem_euclid(3_600_000)),
            )
        })
        .collect();
    match target.backend {
        BenchBackend::Postgres => {
            use std::fmt::Write as _;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&target.url)
                .await?;
            let mut ids = String::with_capacity(rows * 90);
            let mut full = String::with_capacity(rows * 160);
            for (id, device, value, recorded) in &events {
                let recorded = recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let received = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let _ = writeln!(ids, "{tenant},{id},{recorded}");
                let _ = writeln!(
                    full,
                    "{tenant},{id},{device},temperature,{value},{{}},,{recorded},{received}"
                );
            }
            let started = Instant::now();
            let mut tx = pool.begin().await?;
            let mut copy = tx
                .copy_in_raw(
                    "COPY telemetry_event_ids (tenant_id, event_id, recorded_at) FROM STDIN (FORMAT csv)",
                )
                .await?;
            copy.send(ids.into_bytes()).await?;
            copy.finish().await?;
            let mut copy = tx
                .copy_in_raw(
                    "COPY telemetry_events (tenant_id, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at) FROM STDIN (FORMAT csv)",
                )
                .await?;
            copy.send(full.into_bytes()).await?;
            copy.finish().await?;
            tx.commit().await?;
            let rate = rows as f64 / started.elapsed().as_secs_f64();
            pool.close().await;
            Ok(rate)
        }
        BenchBackend::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = target.url.parse()?;
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    options
                        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                        .busy_timeout(Duration::from_secs(30)),
                )
                .await?;
            let micros = |t: chrono::DateTime<Utc>| t.timestamp_micros();
            let started = Instant::now();
            let mut tx = pool.begin().await?;
            for chunk in events.chunks(500) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO telemetry_events (tenant_id, event_id, device_id, type, value, \"values\", payload, recorded_at, received_at) ",
                );
                qb.push_values(chunk, |mut b, (id, device, value, recorded)| {
                    b.push_bind(tenant)
                        .push_bind(id)
                        .push_bind(device)
                        .push_bind("temperature")
                        .push_bind(value)
                        .push_bind("{}")
                        .push_bind(None::<String>)
                        .push_bind(micros(*recorded))
                        .push_bind(micros(at));
                });
                qb.build().persistent(true).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            let rate = rows as f64 / started.elapsed().as_secs_f64();
            pool.close().await;
            Ok(rate)
        }
    }
}

/// Events stored for `tenant`, counted in the database.
async fn stored_count(target: &Target, tenant: uuid::Uuid) -> anyhow::Result<i64> {
    Ok(match target.backend {
        BenchBackend::Postgres => {
            let pool = sqlx::PgPool::connect(&target.url).await?;
            let n =
                sqlx::query_scalar("SELECT count(*) FROM telemetry_events WHERE tenant_id = $1")
                    .bind(tenant)
                    .fetch_one(&pool)
                    .await?;
            pool.close().await;
            n
        }
        BenchBackend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&target.url).await?;
            let n = sqlx::query_scalar("SELECT count(*) FROM telemetry_events WHERE tenant_id = ?")
                .bind(tenant)
                .fetch_one(&pool)
                .await?;
            pool.close().await;
            n
        }
    })
}

struct Phase {
    /// Events acknowledged (`accepted` of the `202` answers).
    accepted: u64,
    events_per_s: f64,
    requests: usize,
    refused: usize,
    failed: usize,
    p50: Duration,
    p99: Duration,
}

/// Closed loop: `concurrency` clients each send batches of `batch` events back to back.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    batch: usize,
    concurrency: usize,
    seconds: u64,
) -> Phase {
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds.max(1));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), url.to_owned(), key.to_owned());
        let (accepted, refused, failed) = (accepted.clone(), refused.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let body = batch_body(batch);
                let t = Instant::now();
                let r = send(&client, &url, &key, body).await;
                latencies.push(t.elapsed());
                match r {
                    Sent::Accepted(n) => {
                        accepted.fetch_add(n, Ordering::Relaxed);
                    }
                    Sent::Refused => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Sent::Failed => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Phase {
        accepted: accepted.load(Ordering::Relaxed),
        events_per_s: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        requests: all.len(),
        refused: refused.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
    }
}

enum Sent {
    Accepted(u64),
    /// 503 or 429 with Retry-After.
    Refused,
    Failed,
}

async fn send(client: &reqwest::Client, url: &str, key: &str, body: String) -> Sent {
    let r = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let Ok(r) = r else { return Sent::Failed };
    match r.status().as_u16() {
        202 => match r.json::<serde_json::Value>().await {
            Ok(v) => Sent::Accepted(v["accepted"].as_u64().unwrap_or(0)),
            Err(_) => Sent::Failed,
        },
        429 | 503 if r.headers().contains_key("retry-after") => {
            if std::env::var_os("TENANTRY_BENCH_DEBUG").is_some() {
                eprintln!(
                    "refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
            }
            Sent::Refused
        }
        _ => Sent::Failed,
    }
}

/// Open loop: a request of `batch` events every `1 / rate` s for `seconds`, at most `cap` in
/// flight (a tick finding `cap` in flight is counted as not sent). Latency from each request's
/// scheduled time. Returns the phase and the events acknowledged.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    batch: usize,
    requests_per_s: f64,
    seconds: u64,
    cap: usize,
) -> (Phase, usize) {
    let interval = Duration::from_secs_f64(1.0 / requests_per_s.max(0.1));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds.max(1));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(cap));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut skipped = 0;
    let mut tasks = Vec::new();
    let mut next = tokio::time::Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep_until(next).await;
        let scheduled = Instant::now();
        next += interval;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (client, url, key) = (client.clone(), url.to_owned(), key.to_owned());
        let (accepted, refused, failed) = (accepted.clone(), refused.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match send(&client, &url, &key, batch_body(batch)).await {
                Sent::Accepted(n) => {
                    accepted.fetch_add(n, Ordering::Relaxed);
                }
                Sent::Refused => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Sent::Failed => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            scheduled.elapsed()
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.push(l);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (
        Phase {
            accepted: accepted.load(Ordering::Relaxed),
            events_per_s: accepted.load(Ordering::Relaxed) as f64 / elapsed,
            requests: all.len(),
            refused: refused.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            p50: percentile(&all, 50.0),
            p99: percentile(&all, 99.0),
        },
        skipped,
    )
}

async fn start(target: &Target, key: &str, env: &[(&str, String)]) -> anyhow::Result<Instance> {
    spawn_instance(&target.url, key, env).await
}

pub async fn run_telemetry(args: TelemetryBenchArgs) -> anyhow::Result<()> {
    let target = target(&args).await?;
    let backend = match args.backend {
        BenchBackend::Sqlite => "SQLite",
        BenchBackend::Postgres => "PostgreSQL",
    };
    let operator = tenantry_server::access::keys::generate_key(tenantry_domain::KeyKind::Operator);
    let client = tenantry_server::http_client()
        .pool_max_idle_per_host(256)
        .build()?;
    println!(
        "tenantry bench telemetry: {backend}, `tenantry serve` on loopback (client in this process, same 2 cores), {} s per phase, events over {DEVICES} devices with random ids",
        args.seconds
    );
    // the matrix's server: an in-flight budget that holds 64 batches of 1 000
    let mut matrix_env = vec![(
        "TENANTRY_TELEMETRY_MAX_IN_FLIGHT_EVENTS",
        "100000".to_owned(),
    )];
    if let Ok(w) = std::env::var("TENANTRY_TELEMETRY_COMMIT_WORKERS") {
        matrix_env.push(("TENANTRY_TELEMETRY_COMMIT_WORKERS", w));
    }
    let mut server = start(&target, &operator, &matrix_env).await?;
    let url = format!("{}/v1/telemetry", server.base);
    let (raw_tenant, _) = bench_tenant(&client, &server.base, &operator, "raw bulk").await?;
    let (_, key) = bench_tenant(&client, &server.base, &operator, "ingest").await?;
    // devices register on their first event: warm up once
    let _ = closed_loop(&client, &url, &key, 100, 4, 1).await;
    let raw_before = raw_bulk(&target, raw_tenant, args.raw_rows).await?;
    println!(
        "\nraw bulk path ({}): {raw_before:.0} rows/s",
        match args.backend {
            BenchBackend::Sqlite => "prepared multi-row INSERT, one transaction",
            BenchBackend::Postgres =>
                "COPY into telemetry_event_ids and telemetry_events, one transaction",
        }
    );
    println!(
        "\n| batch | concurrency | durable events/s | requests | refused | failed | p50 ms | p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &batch in &args.batches {
        for &conc in &args.concurrency {
            let p = closed_loop(&client, &url, &key, batch, conc, args.seconds).await;
            println!(
                "| {batch} | {conc} | {:.0} | {} | {} | {} | {} | {} |",
                p.events_per_s,
                p.requests,
                p.refused,
                p.failed,
                ms(p.p50),
                ms(p.p99)
            );
        }
    }
    print_commits(&client, &server.base).await;
    // the target: batches of 100 at concurrency 64 against the raw bulk path measured just
    // before and just after it, on a table of the same size
    let raw_pre = raw_bulk(&target, raw_tenant, args.raw_rows).await?;
    let reference = closed_loop(&client, &url, &key, 100, 64, args.seconds.max(5))
        .await
        .events_per_s;
    let raw_post = raw_bulk(&target, raw_tenant, args.raw_rows).await?;
    let raw = (raw_pre + raw_post) / 2.0;
    println!(
        "\ntarget phase: batches of 100 at concurrency 64: {reference:.0} durable events/s; raw bulk path just before {raw_pre:.0} and just after {raw_post:.0} rows/s (on the table as large as during the phase)"
    );
    println!(
        "  = {:.0} % of their mean {raw:.0} rows/s, {:.0} % of the larger (target ≥ 50 %); {:.0} % of the raw rate on the near-empty table at the start",
        100.0 * reference / raw,
        100.0 * reference / raw_pre.max(raw_post),
        100.0 * reference / raw_before
    );
    server.child.kill().await.ok();

    // half load and the burst, on a server with the default configuration
    server = start(&target, &operator, &[]).await?;
    let pid = server.child.id();
    let url = format!("{}/v1/telemetry", server.base);
    let (_, key) = bench_tenant(&client, &server.base, &operator, "half load").await?;
    let _ = closed_loop(&client, &url, &key, 100, 4, 1).await;
    let half = reference / 2.0;
    let (p, skipped) = open_loop(
        &client,
        &url,
        &key,
        100,
        half / 100.0,
        args.seconds.max(10),
        1024,
    )
    .await;
    println!(
        "\nhalf load (open loop, batches of 100 at {half:.0} events/s offered): {:.0} durable events/s, {} requests, p50 {} ms, p99 {} ms (target ≤ 50 ms), refused {}, failed {}, not sent {skipped}",
        p.events_per_s,
        p.requests,
        ms(p.p50),
        ms(p.p99),
        p.refused,
        p.failed
    );
    let (rss_before, peak_before) = rss_mib(pid);
    let (burst_tenant, key) = bench_tenant(&client, &server.base, &operator, "burst").await?;
    let offered = reference * 10.0;
    let (p, skipped) = open_loop(
        &client,
        &url,
        &key,
        1000,
        offered / 1000.0,
        args.seconds.max(5),
        256,
    )
    .await;
    let (rss_after, peak_after) = rss_mib(pid);
    let stored = stored_count(&target, burst_tenant).await?;
    let acked = p.accepted as i64;
    println!(
        "burst (open loop, batches of 1 000 at {offered:.0} events/s offered, ≤ 256 in flight, default budgets of 50 000 events and 16 MiB of bodies): {} requests, {} refused with Retry-After, {} failed, not sent {skipped}; p99 {} ms",
        p.requests,
        p.refused,
        p.failed,
        ms(p.p99)
    );
    println!(
        "  acknowledged {acked} events, stored {stored}: {}",
        if stored == acked {
            "exactly what was acknowledged"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "  server RSS before the burst {rss_before:.0} MiB (peak so far {peak_before:.0} MiB), after {rss_after:.0} MiB (peak {peak_after:.0} MiB)"
    );
    server.child.kill().await.ok();
    Ok(())
}

/// The server's own account of its group commits (from `/metrics`): how many, how large, how
/// long the store took for each.
async fn print_commits(client: &reqwest::Client, base: &str) {
    let Ok(text) = client.get(format!("{base}/metrics")).send().await else {
        return;
    };
    let text = text.text().await.unwrap_or_default();
    let value = |prefix: &str| {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let commits = value("telemetry_commit_events_count");
    let events = value("telemetry_commit_events_sum");
    let insert_s = value("store_operation_duration_seconds_sum{operation=\"telemetry.insert\"");
    if std::env::var_os("TENANTRY_BENCH_DEBUG").is_some() {
        for l in text.lines().filter(|l| {
            l.starts_with("store_operation_duration_seconds_count")
                || l.starts_with("store_operation_duration_seconds_sum")
                || l.starts_with("telemetry_commit_wait_seconds_sum")
                || l.starts_with("telemetry_commit_wait_seconds_count")
                || l.starts_with("telemetry_ingest_duration_seconds_sum")
                || l.starts_with("telemetry_ingest_duration_seconds_count")
                || (l.starts_with("http_request_duration_seconds_")
                    && l.contains("telemetry")
                    && !l.contains("bucket"))
        }) {
            println!("{l}");
        }
    }
    if commits > 0.0 {
        println!(
            "\ngroup commits over the matrix: {commits:.0}, {:.0} events each on average, {:.1} ms in the store each",
            events / commits,
            1000.0 * insert_s / commits
        );
    }
}
