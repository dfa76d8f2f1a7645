//! `tenantry bench jobs`: the job engine's throughput and latency on SQLite or PostgreSQL, with
//! the database's own ceiling — a raw batched insert + claim + complete SQL loop on a bare table —
//! measured in the same run as the baseline.
//!
//! Phases (each on a fresh database): baseline; enqueue rate with one job per call and with 100
//! per call (the store's enqueue, as `POST /v1/jobs` uses it after validation); end-to-end no-op
//! jobs with 1 and 2 `tenantry serve --role worker` processes while producers keep the queue
//! bounded (batched, then one job per call); enqueue-to-start latency at half the measured rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tenantry_store::Store;
use tenantry_store::jobs::NewJob;

use crate::http::BenchBackend;

#[derive(clap::Args, Debug, Clone)]
pub struct JobsBenchArgs {
    #[arg(long, value_enum, default_value = "postgres")]
    pub backend: BenchBackend,
    /// PostgreSQL server for --backend postgres (scratch databases are created and dropped).
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Seconds of each end-to-end run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds of each enqueue-only phase.
    #[arg(long, default_value_t = 10)]
    pub enqueue_seconds: u64,
    /// Jobs each worker process runs at once.
    #[arg(long, default_value_t = 64)]
    pub worker_concurrency: u32,
    /// Only measure enqueue-to-start, at this many jobs per second (one per call).
    #[arg(long)]
    pub latency_only_at: Option<f64>,
    /// Run only the end-to-end phase with this many jobs per enqueue call (100: batched, 1: one
    /// job per call), with `--workers` worker processes.
    #[arg(long)]
    pub only_end_to_end: Option<usize>,
    /// Worker processes for `--only-end-to-end`.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

struct Db {
    url: String,
    _pg: Option<tenantry_store::testing::PgTestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh(args: &JobsBenchArgs) -> anyhow::Result<(Db, Arc<dyn Store>)> {
    let db = match args.backend {
        BenchBackend::Postgres => {
            let admin = args
                .postgres_url
                .as_deref()
                .context("--backend postgres needs --postgres-url or TENANTRY_TEST_POSTGRES_URL")?;
            let pg = tenantry_store::testing::PgTestDatabase::create_on(admin).await;
            Db {
                url: pg.url.clone(),
                _pg: Some(pg),
                _dir: None,
            }
        }
        BenchBackend::Sqlite => {
            let dir = tempfile::tempdir()?;
            Db {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                _pg: None,
                _dir: Some(dir),
            }
        }
    };
    let store = tenantry_store::connect(
        &db.url,
        &tenantry_store::ConnectOptions {
            max_connections: 20,
            ..Default::default()
        },
    )
    .await?;
    store.migrate().await?;
    Ok((db, store))
}

fn noop() -> NewJob {
    NewJob::new("noop", json!({}), tenantry_server::platform::now())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The database's ceiling for this machine: batches of 100 inserted, claimed with one
/// `UPDATE … RETURNING` and completed with another, on a bare table with one partial index
/// (PostgreSQL: vacuumed every second).
async fn baseline(args: &JobsBenchArgs, seconds: u64) -> anyhow::Result<f64> {
    let (db, store) = fresh(args).await?;
    store.close().await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut done = 0u64;
    let started = Instant::now();
    match args.backend {
        BenchBackend::Postgres => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::query("CREATE TABLE raw_jobs (id BIGSERIAL PRIMARY KEY, state TEXT NOT NULL, payload JSONB NOT NULL)")
                .execute(&mut c)
                .await?;
            sqlx::query("CREATE INDEX raw_jobs_ready ON raw_jobs (id) WHERE state = 'available'")
                .execute(&mut c)
                .await?;
            // vacuumed every second, as the engine's workers do under load: without it each claim
            // walks the dead index entries of every row claimed so far, and the "ceiling" sinks
            let mut vacuumed = Instant::now();
            while Instant::now() < deadline {
                if vacuumed.elapsed() >= Duration::from_secs(1) {
                    sqlx::query("VACUUM raw_jobs").execute(&mut c).await?;
                    vacuumed = Instant::now();
                }
                sqlx::query("INSERT INTO raw_jobs (state, payload) SELECT 'available', '{}' FROM generate_series(1, 100)")
                    .execute(&mut c)
                    .await?;
                let ids: Vec<i64> = sqlx::query_scalar(
                    "WITH picked AS (SELECT id FROM raw_jobs WHERE state = 'available' ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) UPDATE raw_jobs r SET state = 'running' FROM picked WHERE r.id = picked.id RETURNING r.id",
                )
                .fetch_all(&mut c)
                .await?;
                sqlx::query("UPDATE raw_jobs SET state = 'completed' WHERE id = ANY($1)")
                    .bind(&ids)
                    .execute(&mut c)
                    .await?;
                done += ids.len() as u64;
            }
        }
        BenchBackend::Sqlite => {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&mut c)
                .await?;
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut c)
                .await?;
            sqlx::query("CREATE TABLE raw_jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, payload TEXT NOT NULL)")
                .execute(&mut c)
                .await?;
            sqlx::query("CREATE INDEX raw_jobs_ready ON raw_jobs (id) WHERE state = 'available'")
                .execute(&mut c)
                .await?;
            while Instant::now() < deadline {
                sqlx::query("INSERT INTO raw_jobs (state, payload) SELECT 'available', '{}' FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT i FROM n)")
                    .execute(&mut c)
                    .await?;
                let ids: Vec<i64> = sqlx::query_scalar(
                    "UPDATE raw_jobs SET state = 'running' WHERE id IN (SELECT id FROM raw_jobs WHERE state = 'available' ORDER BY id LIMIT 100) RETURNING id",
                )
                .fetch_all(&mut c)
                .await?;
                sqlx::query("UPDATE raw_jobs SET state = 'completed' WHERE id IN (SELECT value FROM json_each(?1))")
                    .bind(sqlx::types::Json(&ids))
                    .execute(&mut c)
                    .await?;
                done += ids.len() as u64;
            }
        }
    }
    Ok(rate(done, started.elapsed()))
}

/// `tasks` producers enqueue `per_call` jobs per call for `d`; returns jobs/s.
async fn enqueue_only(store: &Arc<dyn Store>, tasks: usize, per_call: usize, d: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + d;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, count) = (Arc::clone(store), Arc::clone(&count));
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let jobs: Vec<NewJob> = (0..per_call).map(|_| noop()).collect();
                if store.jobs().enqueue(&jobs).await.is_ok() {
                    count.fetch_add(per_call as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    rate(count.load(Ordering::Relaxed), started.elapsed())
}

async fn spawn_workers(
    db_url: &str,
    n: usize,
    concurrency: u32,
) -> anyhow::Result<Vec<tokio::process::Child>> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--role",
            "worker",
            "--log-level",
            "warn",
        ])
        .env("TENANTRY_DATABASE_URL", db_url)
        .env("TENANTRY_WORKER_CONCURRENCY", concurrency.to_string())
        .env("TENANTRY_DATABASE_MAX_CONNECTIONS", "10")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
        out.push(cmd.spawn()?);
    }
    Ok(out)
}

struct EndToEnd {
    completed_per_s: f64,
    enqueued_per_s: f64,
    max_pending: i64,
}

/// Counts unfinished jobs with one indexed query.
#[derive(Clone)]
enum Waiting {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// One count per partial index (pending, running): a single `state IN (…four…)` matches neither
/// index, and PostgreSQL scanned every job (finished ones included) five times a second.
const WAITING_SQL: &str =
    "SELECT (SELECT count(*) FROM jobs WHERE state IN ('scheduled', 'available', 'retryable'))
     + (SELECT count(*) FROM jobs WHERE state = 'running')";

impl Waiting {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("postgres") {
            Self::Pg(sqlx::PgPool::connect(url).await?)
        } else {
            Self::Sqlite(sqlx::SqlitePool::connect(url).await?)
        })
    }

    async fn count(&self) -> i64 {
        let n = match self {
            Self::Pg(p) => sqlx::query_scalar(WAITING_SQL).fetch_one(p).await,
            Self::Sqlite(p) => sqlx::query_scalar(WAITING_SQL).fetch_one(p).await,
        };
        n.unwrap_or(0)
    }
}

/// Producers keep up to `bound` jobs pending while `workers` processes drain the queue.
async fn end_to_end(
    args: &JobsBenchArgs,
    workers: usize,
    per_call: usize,
    producers: usize,
) -> anyhow::Result<EndToEnd> {
    let (db, store) = fresh(args).await?;
    let mut children = spawn_workers(&db.url, workers, args.worker_concurrency).await?;
    let bound: i64 = 20_000;
    let pending = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let enqueued = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..producers {
        let (store, stop, enqueued, pending) = (
            Arc::clone(&store),
            Arc::clone(&stop),
            Arc::clone(&enqueued),
            Arc::clone(&pending),
        );
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if pending.load(Ordering::Relaxed) as i64 >= bound {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let jobs: Vec<NewJob> = (0..per_call).map(|_| noop()).collect();
                if store.jobs().enqueue(&jobs).await.is_ok() {
                    enqueued.fetch_add(per_call as u64, Ordering::Relaxed);
                    pending.fetch_add(per_call as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    // warm up (workers start, caches fill), then measure over the window
    let warm = Duration::from_secs(5);
    let window = Duration::from_secs(args.seconds.max(5));
    let mut max_pending = 0;
    // jobs not finished yet, counted through the pending/running indexes (a count over every
    // job, finished ones included, would load the database during the measurement); no-op jobs
    // never fail, so completed = enqueued - waiting
    let waiting_db = Waiting::connect(&db.url).await?;
    let sample = |waiting_db: &Waiting| {
        let waiting_db = waiting_db.clone();
        let enqueued = Arc::clone(&enqueued);
        async move {
            let enq = enqueued.load(Ordering::Relaxed) as i64;
            let waiting = waiting_db.count().await;
            (enq - waiting, waiting)
        }
    };
    let t0 = Instant::now();
    while t0.elapsed() < warm {
        let (_, waiting) = sample(&waiting_db).await;
        pending.store(waiting.max(0) as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (done0, _) = sample(&waiting_db).await;
    let enq0 = enqueued.load(Ordering::Relaxed);
    let start = Instant::now();
    while start.elapsed() < window {
        let (_, waiting) = sample(&waiting_db).await;
        max_pending = max_pending.max(waiting);
        pending.store(waiting.max(0) as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (done1, _) = sample(&waiting_db).await;
    let elapsed = start.elapsed();
    let enq1 = enqueued.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    for c in &mut children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    store.close().await;
    Ok(EndToEnd {
        completed_per_s: rate((done1 - done0).max(0) as u64, elapsed),
        enqueued_per_s: rate(enq1 - enq0, elapsed),
        max_pending,
    })
}

/// Single-job enqueues at `per_s` (open loop) for `d`, one worker process; enqueue-to-start of
/// every job, from its stored times.
async fn latency(
    args: &JobsBenchArgs,
    per_s: f64,
    d: Duration,
) -> anyhow::Result<(f64, f64, usize)> {
    let (db, store) = fresh(args).await?;
    // PostgreSQL: a separate worker process, woken through LISTEN/NOTIFY. SQLite: the worker in
    // this process, as the embedded default runs it (SQLite has no wake-up across processes; a
    // second process would find new jobs only by polling, and contend for the file's write lock).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut children = Vec::new();
    let mut in_process = None;
    match args.backend {
        BenchBackend::Postgres => {
            children = spawn_workers(&db.url, 1, args.worker_concurrency).await?;
        }
        BenchBackend::Sqlite => {
            let worker = tenantry_server::jobs::workers::Worker::new(
                Arc::clone(&store),
                Arc::new(tenantry_server::jobs::workers::Registry::synthetic()),
                tenantry_server::jobs::workers::worker_id(),
                tenantry_server::jobs::workers::WorkerSettings {
                    concurrency: args.worker_concurrency as usize,
                    ..Default::default()
                },
            );
            in_process = Some(tokio::spawn(worker.run(stop_rx)));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // worker up
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s.max(1.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + d;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        tick.tick().await;
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.jobs().enqueue(&[noop()]).await.is_ok()
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // let the last ones start
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut waits: Vec<f64> = Vec::new();
    let mut page = tenantry_domain::PageRequest::first(200);
    loop {
        let p = store
            .job_console()
            .list_jobs(
                tenantry_store::jobs::JobScope::System,
                &Default::default(),
                page,
            )
            .await?;
        for j in &p.items {
            if let Some(at) = j.attempted_at {
                waits.push((at - j.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
        match p
            .page_info
            .next_cursor
            .as_deref()
            .map(tenantry_domain::Cursor::decode)
        {
            Some(Ok(c)) => page = tenantry_domain::PageRequest::new(Some(200), Some(c))?,
            _ => break,
        }
    }
    for c in &mut children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    let _ = stop_tx.send(true);
    if let Some(w) = in_process {
        let _ = w.await;
    }
    store.close().await;
    waits.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if waits.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * waits.len() as f64).ceil() as usize;
        waits[i.clamp(1, waits.len()) - 1]
    };
    Ok((pct(50.0), pct(99.0), waits.len()))
}

fn latency_label(backend: BenchBackend) -> &'static str {
    match backend {
        BenchBackend::Postgres => "enqueue-to-start, one worker process",
        BenchBackend::Sqlite => "enqueue-to-start, worker in the same process",
    }
}

pub async fn run_jobs(args: JobsBenchArgs) -> anyhow::Result<()> {
    let backend = match args.backend {
        BenchBackend::Postgres => "PostgreSQL",
        BenchBackend::Sqlite => "SQLite",
    };
    println!(
        "tenantry bench jobs: {backend}, no-op jobs, {} cores, worker concurrency {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.worker_concurrency
    );
    if let Some(per_s) = args.latency_only_at {
        let (p50, p99, n) = latency(&args, per_s, Duration::from_secs(15)).await?;
        println!(
            "{:<58} p50 {:.1} ms  p99 {:.1} ms  ({n} jobs at {:.0}/s)",
            latency_label(args.backend),
            p50,
            p99,
            per_s
        );
        return Ok(());
    }
    if let Some(per_call) = args.only_end_to_end {
        let per_call = per_call.clamp(1, 1000);
        let producers = if per_call == 1 { 32 } else { 4 };
        let e = end_to_end(&args, args.workers.max(1), per_call, producers).await?;
        println!(
            "{:<58} {:>10.0} jobs/s  (enqueued {:.0}/s, max queue {})",
            format!(
                "end to end, {per_call} job(s) per enqueue call, {} worker process(es), {} s",
                args.workers.max(1),
                args.seconds
            ),
            e.completed_per_s,
            e.enqueued_per_s,
            e.max_pending
        );
        return Ok(());
    }
    let enqueue_d = Duration::from_secs(args.enqueue_seconds.max(1));
    let base = baseline(&args, args.enqueue_seconds.max(1)).await?;
    println!(
        "{:<58} {:>10.0} jobs/s",
        "baseline: raw SQL insert+claim+complete, batches of 100", base
    );
    let (_db, store) = fresh(&args).await?;
    let single = enqueue_only(&store, 16, 1, enqueue_d).await;
    println!(
        "{:<58} {:>10.0} jobs/s",
        "enqueue, one job per call (16 callers)", single
    );
    store.close().await;
    let (_db, store) = fresh(&args).await?;
    let batched = enqueue_only(&store, 4, 100, enqueue_d).await;
    println!(
        "{:<58} {:>10.0} jobs/s",
        "enqueue, 100 jobs per call (4 callers)", batched
    );
    store.close().await;
    let mut best = 0.0f64;
    for workers in [1, 2] {
        let e = end_to_end(&args, workers, 100, 4).await?;
        best = best.max(e.completed_per_s);
        println!(
            "{:<58} {:>10.0} jobs/s  (enqueued {:.0}/s, max queue {})  {:.0}% of baseline",
            format!(
                "end to end, batched enqueue, {workers} worker process(es), {} s",
                args.seconds
            ),
            e.completed_per_s,
            e.enqueued_per_s,
            e.max_pending,
            100.0 * e.completed_per_s / base.max(1.0)
        );
    }
    let mut best_single = 0.0f64;
    for workers in [1, 2] {
        let e = end_to_end(&args, workers, 1, 32).await?;
        best_single = best_single.max(e.completed_per_s);
        println!(
            "{:<58} {:>10.0} jobs/s  (enqueued {:.0}/s, max queue {})",
            format!("end to end, one job per enqueue call, {workers} worker process(es)"),
            e.completed_per_s,
            e.enqueued_per_s,
            e.max_pending
        );
    }
    // half the one-job-per-call rate: the latency phase enqueues one job per call
    let half = (best_single / 2.0).max(1.0);
    let (p50, p99, n) = latency(&args, half, Duration::from_secs(15)).await?;
    println!(
        "{:<58} p50 {:.1} ms  p99 {:.1} ms  ({n} jobs at {:.0}/s)",
        format!(
            "{}, half the one-per-call rate",
            latency_label(args.backend)
        ),
        p50,
        p99,
        half
    );
    let _ = best;
    Ok(())
}
