//! `tenantry bench http`: tenant creation and reads over real HTTP on loopback, at a fixed
//! concurrency, on a fresh SQLite or PostgreSQL store. The baseline — `GET /healthz`, which runs
//! the same server, middleware, client and loopback but no authentication and no store — is
//! measured in the same run, so the figures show what the store path costs on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::testing::TestServer;

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `concurrency` workers for `duration`; each calls `request(worker, n)` in a loop.
async fn phase<F, Fut>(
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
    let client = reqwest::Client::builder()
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
