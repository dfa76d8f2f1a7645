//! `tenantry bench http`: tenant creation and reads over real HTTP on loopback, at a fixed
//! concurrency, on a fresh SQLite or PostgreSQL store. The baseline — `GET /healthz`, which runs
//! the same server, middleware, client and loopback but no authentication and no store — is
//! measured in the same run, so the figures show what the store path costs on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use tenantry_server::testing::TestServer;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

#[derive(clap::Args, Debug, Clone)]
pub struct HttpBenchArgs {
    /// Store to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// PostgreSQL server for --backend postgres (a scratch database is created and dropped).
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub name: &'static str,
    pub requests: usize,
    pub errors: usize,
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `concurrency` workers for `duration`; each calls `request(worker, n)` in a loop.
pub(crate) async fn phase<F, Fut>(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    request: F,
) -> PhaseResult
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let request = Arc::clone(&request);
        let errors = Arc::clone(&errors);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut n = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if !request(w, n).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(t.elapsed());
                n += 1;
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
    PhaseResult {
        name,
        requests: all.len(),
        errors: errors.load(Ordering::Relaxed),
        rps: all.len() as f64 / elapsed,
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        max: all.last().copied().unwrap_or_default(),
    }
}

pub async fn run_http(args: HttpBenchArgs) -> anyhow::Result<()> {
    let store = match args.backend {
        BenchBackend::Sqlite => tenantry_store::testing::sqlite().await,
        BenchBackend::Postgres => {
            let url = args
                .postgres_url
                .as_deref()
                .context("--backend postgres needs --postgres-url or TENANTRY_TEST_POSTGRES_URL")?;
            tenantry_store::testing::postgres_on(url).await
        }
    };
    let concurrency = args.concurrency.max(1);
    let duration = Duration::from_secs(args.seconds.max(1));
    let srv = Arc::new(TestServer::start(store, |_| {}).await);
    let client = tenantry_server::http_client()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let auth = format!("Bearer {}", srv.operator_key);
    println!(
        "tenantry bench http: backend={:?} concurrency={concurrency} seconds/phase={} cores={}",
        args.backend,
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let healthz = srv.url("/healthz");
    let c = client.clone();
    let baseline = phase(
        "GET /healthz (baseline)",
        concurrency,
        duration,
        move |_, _| {
            let req = c.get(&healthz);
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        },
    )
    .await;

    let ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, a, url, sink) = (
        client.clone(),
        auth.clone(),
        srv.url("/v1/tenants"),
        Arc::clone(&ids),
    );
    let create = phase("POST /v1/tenants", concurrency, duration, move |w, n| {
        let req = c
            .post(&url)
            .header("authorization", &a)
            .json(&json!({ "name": format!("bench {w} {n}") }));
        let sink = Arc::clone(&sink);
        async move {
            match req.send().await {
                Ok(r) if r.status().as_u16() == 201 => {
                    if let Ok(v) = r.json::<serde_json::Value>().await
                        && let Some(id) = v["id"].as_str()
                        && let Ok(mut ids) = sink.lock()
                    {
                        ids.push(id.to_owned());
                    }
                    true
                }
                _ => false,
            }
        }
    })
    .await;

    let ids: Arc<Vec<String>> = Arc::new(ids.lock().map(|v| v.clone()).unwrap_or_default());
    anyhow::ensure!(
        !ids.is_empty(),
        "no tenant was created; cannot measure reads"
    );
    let (c, a, base) = (client.clone(), auth.clone(), srv.base_url.clone());
    let get = phase(
        "GET /v1/tenants/{id}",
        concurrency,
        duration,
        move |w, n| {
            let id = &ids[(w * 7919 + n) % ids.len()];
            let req = c
                .get(format!("{base}/v1/tenants/{id}"))
                .header("authorization", &a);
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        },
    )
    .await;

    println!(
        "{:<26} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms", "vs baseline"
    );
    for r in [&baseline, &create, &get] {
        println!(
            "{:<26} {:>9} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>11.1}%",
            r.name,
            r.requests,
            r.errors,
            r.rps,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
            100.0 * r.rps / baseline.rps.max(f64::MIN_POSITIVE),
        );
    }
    if let Ok(srv) = Arc::try_unwrap(srv) {
        srv.stop().await;
    }
    Ok(())
}

/// Latency percentiles of a set of samples.
fn summary(mut v: Vec<Duration>) -> (usize, Duration, Duration) {
    v.sort_unstable();
    (v.len(), percentile(&v, 50.0), percentile(&v, 99.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sends `rate` requests per second (open loop: a slow answer does not slow the sender) for
/// `duration`; returns the latencies of successful requests and the count of each status.
async fn open_loop(
    client: reqwest::Client,
    url: String,
    key: String,
    rate: u32,
    duration: Duration,
) -> (Vec<Duration>, usize, usize) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        tick.tick().await;
        let req = client.get(&url).bearer_auth(&key);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            (t.elapsed(), status)
        }));
    }
    let (mut ok, mut limited, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        if let Ok((d, status)) = t.await {
            match status {
                200 => {
                    ok += 1;
                    lat.push(d);
                }
                429 => limited += 1,
                _ => {}
            }
        }
    }
    (lat, ok, limited)
}

async fn tenant_with_key(
    srv: &TestServer,
    client: &reqwest::Client,
    name: &str,
    edition: &str,
) -> anyhow::Result<String> {
    let t: serde_json::Value = client
        .post(srv.url("/v1/tenants"))
        .bearer_auth(&srv.operator_key)
        .json(&json!({ "name": name, "edition": edition }))
        .send()
        .await?
        .json()
        .await?;
    let id = t["id"].as_str().context("tenant created")?;
    let k: serde_json::Value = client
        .post(srv.url(&format!("/v1/tenants/{id}/api-keys")))
        .bearer_auth(&srv.operator_key)
        .json(&json!({ "name": "bench", "roles": ["member"] }))
        .send()
        .await?
        .json()
        .await?;
    Ok(k["key"].as_str().context("key created")?.to_owned())
}

#[derive(clap::Args, Debug, Clone)]
pub struct AuthBenchArgs {
    /// Redis for the cluster-wide limiter measurement (skipped without it).
    #[arg(long, env = "TENANTRY_TEST_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// The cost of authentication + tenant resolution + rate limiting per request: `GET /v1/whoami`
/// (which does exactly that) against `GET /healthz` (none of it), in the same run, with the
/// in-process and the Redis limiter.
pub async fn run_auth(args: AuthBenchArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds.max(1));
    let client = tenantry_server::http_client()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .build()?;
    println!(
        "tenantry bench auth: SQLite store, concurrency={} seconds/phase={} cores={}",
        args.concurrency,
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<40} {:>10} {:>9} {:>9} {:>14} {:>14}",
        "phase", "req/s", "p50 ms", "p99 ms", "added p50 µs", "added p99 µs"
    );
    let mut limiters = vec![("in_process", None)];
    match &args.redis_url {
        Some(url) => limiters.push(("redis", Some(url.clone()))),
        None => println!("(no --redis-url / TENANTRY_TEST_REDIS_URL: Redis limiter not measured)"),
    }
    for (name, redis) in limiters {
        let srv = Arc::new(
            TestServer::start(tenantry_store::testing::sqlite().await, |c| {
                c.limits.redis_url = redis.clone().unwrap_or_default();
                c.limits.edition_cache_seconds = 5;
            })
            .await,
        );
        let key = tenant_with_key(&srv, &client, "auth bench", "enterprise").await?;
        // an enterprise limit would stop a long benchmark; give this tenant room
        let big = json!({ "key": "bench-unlimited", "name": "Bench", "limits": { "requests_per_minute": 100_000_000, "burst": 100_000_000, "concurrency": 1000, "storage_gb": 1, "webhook_subscriptions": 1, "retention_days": 1 } });
        let _ = client
            .post(srv.url("/v1/editions"))
            .bearer_auth(&srv.operator_key)
            .json(&big)
            .send()
            .await?;
        let whoami: serde_json::Value = client
            .get(srv.url("/v1/whoami"))
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await?;
        let tid = whoami["tenant"]["id"]
            .as_str()
            .context("whoami works")?
            .to_owned();
        client
            .patch(srv.url(&format!("/v1/tenants/{tid}")))
            .bearer_auth(&srv.operator_key)
            .header("if-match", "*")
            .json(&json!({ "edition": "bench-unlimited" }))
            .send()
            .await?;
        let (c, url) = (client.clone(), srv.url("/healthz"));
        let base = phase("GET /healthz", args.concurrency, duration, move |_, _| {
            let req = c.get(&url);
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        let (c, url, k) = (client.clone(), srv.url("/v1/whoami"), key.clone());
        let full = phase("GET /v1/whoami", args.concurrency, duration, move |_, _| {
            let req = c.get(&url).bearer_auth(&k);
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        let added = |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()) * 1e6;
        println!(
            "{:<40} {:>10.0} {:>9.3} {:>9.3} {:>14} {:>14}",
            format!("GET /healthz (baseline, {name} run)"),
            base.rps,
            ms(base.p50),
            ms(base.p99),
            "-",
            "-"
        );
        println!(
            "{:<40} {:>10.0} {:>9.3} {:>9.3} {:>14.0} {:>14.0}",
            format!("GET /v1/whoami (limiter: {name})"),
            full.rps,
            ms(full.p50),
            ms(full.p99),
            added(full.p50, base.p50),
            added(full.p99, base.p99)
        );
        if full.errors > 0 || base.errors > 0 {
            println!(
                "  errors: baseline {} / whoami {}",
                base.errors, full.errors
            );
        }
        if let Ok(srv) = Arc::try_unwrap(srv) {
            srv.stop().await;
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct NoisyBenchArgs {
    /// Requests per second of the well-behaved tenant (enterprise edition).
    #[arg(long, default_value_t = 40)]
    pub victim_rate: u32,
    /// How many times its limit the noisy tenant (standard edition, 600/min) sends.
    #[arg(long, default_value_t = 10)]
    pub flood_multiplier: u32,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

/// One tenant floods at N× its limit; another tenant's latency is measured alone and during the
/// flood, in the same run.
pub async fn run_noisy(args: NoisyBenchArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds.max(1));
    let srv = TestServer::start(tenantry_store::testing::sqlite().await, |c| {
        c.limits.edition_cache_seconds = 5
    })
    .await;
    let client = tenantry_server::http_client().build().expect("http client");
    let victim = tenant_with_key(&srv, &client, "victim", "enterprise").await?;
    let noisy = tenant_with_key(&srv, &client, "noisy", "standard").await?;
    let flood_rate = 10 * args.flood_multiplier; // standard: 600/min = 10/s
    println!(
        "tenantry bench noisy-neighbour: victim {}/s (enterprise), noisy tenant {flood_rate}/s = {}x its 600/min limit; {} s per phase",
        args.victim_rate,
        args.flood_multiplier,
        duration.as_secs()
    );
    let url = srv.url("/v1/whoami");
    let (alone, ok_alone, _) = open_loop(
        client.clone(),
        url.clone(),
        victim.clone(),
        args.victim_rate,
        duration,
    )
    .await;
    let flood = tokio::spawn(open_loop(
        client.clone(),
        url.clone(),
        noisy,
        flood_rate,
        duration,
    ));
    let (during, ok_during, limited_victim) =
        open_loop(client.clone(), url, victim, args.victim_rate, duration).await;
    let (_, flood_ok, flood_limited) = flood.await?;
    let (n1, p50a, p99a) = summary(alone);
    let (n2, p50b, p99b) = summary(during);
    println!(
        "{:<34} {:>8} {:>9} {:>9}",
        "victim tenant", "ok", "p50 ms", "p99 ms"
    );
    println!(
        "{:<34} {:>8} {:>9.3} {:>9.3}",
        "alone (baseline)",
        n1.max(ok_alone),
        ms(p50a),
        ms(p99a)
    );
    println!(
        "{:<34} {:>8} {:>9.3} {:>9.3}",
        "while the neighbour floods",
        n2.max(ok_during),
        ms(p50b),
        ms(p99b)
    );
    println!(
        "noisy tenant: {flood_ok} accepted, {flood_limited} refused with 429; victim refused: {limited_victim}"
    );
    let rise = 100.0 * (p99b.as_secs_f64() / p99a.as_secs_f64().max(1e-9) - 1.0);
    println!("victim p99 change during the flood: {rise:+.1}% (target: at most +50%)");
    srv.stop().await;
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterBenchArgs {
    /// PostgreSQL server (a scratch database is created and dropped).
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: String,
    /// Redis shared by both instances.
    #[arg(long, env = "TENANTRY_TEST_REDIS_URL")]
    pub redis_url: String,
    /// Seconds of hammering.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Concurrent clients per instance.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Also run without Redis (each instance limits alone) for comparison.
    #[arg(long)]
    pub with_local_comparison: bool,
}

pub(crate) struct Instance {
    pub(crate) child: tokio::process::Child,
    pub(crate) base: String,
}

/// A `tenantry serve` process of this very binary on `db_url`, with `env` added.
pub(crate) async fn spawn_instance(
    db_url: &str,
    key: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Instance> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .env("TENANTRY_DATABASE_URL", db_url)
        .env("TENANTRY_BOOTSTRAP_OPERATOR_KEY", key)
        // the data directory (archives) outside the working directory
        .env(
            "TENANTRY_DATA_DIR",
            std::env::temp_dir().join(format!("tenantry-bench-{}", std::process::id())),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.split("listening on ").nth(1) {
                return Some(addr.trim().to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("instance did not start")?;
    // the instance's own warnings and errors, with TENANTRY_BENCH_DEBUG set
    let debug = std::env::var_os("TENANTRY_BENCH_DEBUG").is_some();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if debug {
                eprintln!("instance: {line}");
            }
        }
    });
    Ok(Instance { child, base })
}

/// Two `tenantry serve` processes on one PostgreSQL and one Redis; a Free tenant hammered through
/// both. Compares accepted requests with what one limiter allows (burst + rate × time).
pub async fn run_cluster(args: ClusterBenchArgs) -> anyhow::Result<()> {
    let mut modes = vec![("redis", Some(args.redis_url.clone()))];
    if args.with_local_comparison {
        modes.push(("in_process (no Redis)", None));
    }
    println!(
        "tenantry bench cluster-limit: 2 processes, PostgreSQL + Redis, free edition (60/min, burst 120), {} clients per instance, {} s",
        args.concurrency, args.seconds
    );
    for (mode, redis) in modes {
        let db = tenantry_store::testing::PgTestDatabase::create_on(&args.postgres_url).await;
        let key = tenantry_server::access::keys::generate_key(tenantry_domain::KeyKind::Operator);
        // migrate once, then start both
        let env = [
            ("TENANTRY_REDIS_URL", redis.clone().unwrap_or_default()),
            ("TENANTRY_EDITION_CACHE_SECONDS", "5".to_owned()),
        ];
        let first = spawn_instance(&db.url, &key, &env).await?;
        let second = spawn_instance(&db.url, &key, &env).await?;
        let client = tenantry_server::http_client().build().expect("http client");
        let t: serde_json::Value = client
            .post(format!("{}/v1/tenants", first.base))
            .bearer_auth(&key)
            .json(&json!({ "name": "cluster bench", "edition": "free" }))
            .send()
            .await?
            .json()
            .await?;
        let tid = t["id"].as_str().context("tenant")?;
        let k: serde_json::Value = client
            .post(format!("{}/v1/tenants/{tid}/api-keys", first.base))
            .bearer_auth(&key)
            .json(&json!({ "name": "bench", "roles": ["member"] }))
            .send()
            .await?
            .json()
            .await?;
        let tenant_key = k["key"].as_str().context("key")?.to_owned();
        let ok = Arc::new(AtomicUsize::new(0));
        let limited = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.seconds.max(1));
        let mut workers = Vec::new();
        for base in [&first.base, &second.base] {
            for _ in 0..args.concurrency.max(1) {
                let (c, url, k, ok, limited) = (
                    client.clone(),
                    format!("{base}/v1/whoami"),
                    tenant_key.clone(),
                    ok.clone(),
                    limited.clone(),
                );
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        match c
                            .get(&url)
                            .bearer_auth(&k)
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                        {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(429) => limited.fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                    }
                }));
            }
        }
        for w in workers {
            let _ = w.await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let single = 120.0 + (60.0 * elapsed / 60.0).floor();
        let accepted = ok.load(Ordering::Relaxed) as f64;
        println!(
            "{mode:<22} accepted {accepted:>6.0}  refused {:>7}  over {elapsed:.1} s; one limiter allows {single:.0}: deviation {:+.2}%",
            limited.load(Ordering::Relaxed),
            100.0 * (accepted / single - 1.0)
        );
        for mut i in [first, second] {
            let _ = i.child.start_kill();
            let _ = i.child.wait().await;
        }
        drop(db);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
