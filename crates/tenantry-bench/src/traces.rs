//! `tenantry bench tracing`: what exporting traces costs. The same binary is served twice per
//! round on a fresh store — traces off, and traces on (sampler `always_on`, every span exported
//! over OTLP/HTTP to a receiver in this process) — and each is measured on `GET /v1/tenants/{id}`
//! at a fixed concurrency and on end-to-end job throughput (no-op jobs enqueued in batches of 100,
//! each run traced as a child of its enqueuing request). Rounds alternate the order, so drift
//! of the machine hits both modes alike; the figures are the means.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::http::{BenchBackend, HttpBenchArgs, phase, spawn_instance};

#[derive(clap::Args, Debug, Clone)]
pub struct TracingBenchArgs {
    /// The store, the read phase's concurrency and its length (as `bench http`).
    #[command(flatten)]
    pub http: HttpBenchArgs,
    /// Jobs per throughput measurement.
    #[arg(long, default_value_t = 5000)]
    pub jobs: usize,
    /// Rounds (each measures both modes; the order alternates).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The sampler of the traced instance (`OTEL_TRACES_SAMPLER`): `always_on` exports every
    /// span, the worst case.
    #[arg(long, default_value = "always_on")]
    pub sampler: String,
    /// Its argument (`OTEL_TRACES_SAMPLER_ARG`), for the ratio samplers.
    #[arg(long, default_value_t = 1.0)]
    pub sampler_arg: f64,
}

/// An OTLP/HTTP receiver that accepts every batch and keeps only counts (the benchmark measures
/// the sender; decoding is the trace tests' business).
struct Sink {
    port: u16,
    batches: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

async fn sink() -> anyhow::Result<Sink> {
    let (batches, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (b, n) = (Arc::clone(&batches), Arc::clone(&bytes));
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            b.fetch_add(1, Ordering::Relaxed);
            n.fetch_add(body.len() as u64, Ordering::Relaxed);
            async {
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Sink {
        port,
        batches,
        bytes,
    })
}

#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    jobs_per_s: f64,
}

/// `jobs_completed_total{kind="noop"}` from `/metrics`.
async fn completed(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("jobs_completed_total{") && l.contains("kind=\"noop\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

async fn measure(
    args: &TracingBenchArgs,
    traced: Option<u16>,
    client: &reqwest::Client,
) -> anyhow::Result<Figures> {
    let key = tenantry_server::access::keys::generate_key(tenantry_domain::KeyKind::Operator);
    let dir = tempfile::tempdir()?;
    let pg = match args.http.backend {
        BenchBackend::Sqlite => None,
        BenchBackend::Postgres => {
            let url =
                args.http.postgres_url.as_deref().context(
                    "--backend postgres needs --postgres-url or TENANTRY_TEST_POSTGRES_URL",
                )?;
            Some(tenantry_store::testing::PgTestDatabase::create_on(url).await)
        }
    };
    let db_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("tenantry.db").display()),
    };
    let mut env = vec![("TENANTRY_WORKER_CONCURRENCY", "32".to_owned())];
    if let Some(port) = traced {
        env.extend([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ("OTEL_TRACES_SAMPLER", args.sampler.clone()),
            ("OTEL_TRACES_SAMPLER_ARG", args.sampler_arg.to_string()),
        ]);
    }
    let mut instance = spawn_instance(&db_url, &key, &env).await?;
    let base = instance.base.clone();
    let auth = format!("Bearer {key}");

    // reads
    let tenant: serde_json::Value = client
        .post(format!("{base}/v1/tenants"))
        .header("authorization", &auth)
        .json(&json!({ "name": "traced bench" }))
        .send()
        .await?
        .json()
        .await?;
    let url = format!(
        "{base}/v1/tenants/{}",
        tenant["id"].as_str().context("tenant created")?
    );
    let (c, a) = (client.clone(), auth.clone());
    let reads = phase(
        "GET /v1/tenants/{id}",
        args.http.concurrency.max(1),
        Duration::from_secs(args.http.seconds.max(1)),
        move |_, _| {
            let req = c.get(&url).header("authorization", &a);
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        },
    )
    .await;
    anyhow::ensure!(reads.errors == 0, "{} reads failed", reads.errors);

    // jobs: enqueue in batches of 100 (4 callers at once), until every one has completed
    let started = Instant::now();
    let batch = json!({ "jobs": vec![json!({ "kind": "noop" }); 100] });
    let batches = args.jobs.div_ceil(100);
    let next = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (c, a, b, next, base) = (
            client.clone(),
            auth.clone(),
            batch.clone(),
            Arc::clone(&next),
            base.clone(),
        );
        callers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < batches as u64 {
                let r = c
                    .post(format!("{base}/v1/jobs"))
                    .header("authorization", &a)
                    .json(&b)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "enqueue: {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    for c in callers {
        c.await??;
    }
    let total = (batches * 100) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while completed(client, &base).await? < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let jobs_per_s = total as f64 / started.elapsed().as_secs_f64();
    let _ = instance.child.kill().await;
    drop(pg); // the scratch database is dropped with it
    Ok(Figures {
        rps: reads.rps,
        p50_ms: reads.p50.as_secs_f64() * 1e3,
        p99_ms: reads.p99.as_secs_f64() * 1e3,
        jobs_per_s,
    })
}

fn mean(v: &[Figures]) -> Figures {
    let n = v.len().max(1) as f64;
    let sum = |f: fn(&Figures) -> f64| v.iter().map(f).sum::<f64>() / n;
    Figures {
        rps: sum(|f| f.rps),
        p50_ms: sum(|f| f.p50_ms),
        p99_ms: sum(|f| f.p99_ms),
        jobs_per_s: sum(|f| f.jobs_per_s),
    }
}

pub async fn run_tracing(args: TracingBenchArgs) -> anyhow::Result<()> {
    let sink = sink().await?;
    let client = tenantry_server::http_client()
        .pool_max_idle_per_host(args.http.concurrency.max(4))
        .build()?;
    println!(
        "tenantry bench tracing: backend={:?} sampler={} ({}) concurrency={} read seconds={} jobs={} rounds={} cores={}",
        args.http.backend,
        args.sampler,
        args.sampler_arg,
        args.http.concurrency,
        args.http.seconds,
        args.jobs,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<6} {:<5} {:>10} {:>9} {:>9} {:>10}",
        "round", "mode", "GET req/s", "p50 ms", "p99 ms", "jobs/s"
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds.max(1) {
        // alternate which mode goes first
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for traced in order {
            let f = measure(&args, traced.then_some(sink.port), &client).await?;
            println!(
                "{round:<6} {:<5} {:>10.0} {:>9.2} {:>9.2} {:>10.0}",
                if traced { "on" } else { "off" },
                f.rps,
                f.p50_ms,
                f.p99_ms,
                f.jobs_per_s
            );
            if traced { &mut on } else { &mut off }.push(f);
        }
    }
    let (off, on) = (mean(&off), mean(&on));
    let cost = |base: f64, with: f64| 100.0 * (base - with) / base.max(f64::MIN_POSITIVE);
    println!(
        "mean   off   {:>10.0} {:>9.2} {:>9.2} {:>10.0}",
        off.rps, off.p50_ms, off.p99_ms, off.jobs_per_s
    );
    println!(
        "mean   on    {:>10.0} {:>9.2} {:>9.2} {:>10.0}",
        on.rps, on.p50_ms, on.p99_ms, on.jobs_per_s
    );
    println!(
        "exported: {} batches, {} KiB of OTLP/protobuf",
        sink.batches.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed) / 1024
    );
    let (reads, jobs) = (cost(off.rps, on.rps), cost(off.jobs_per_s, on.jobs_per_s));
    println!(
        "tracing cost: GET /v1/tenants/{{id}} {reads:+.1}% fewer req/s, jobs {jobs:+.1}% fewer jobs/s (target: at most 10%) -> {}",
        if reads <= 10.0 && jobs <= 10.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
