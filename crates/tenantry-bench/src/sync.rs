//! `tenantry bench sync`: source sync end to end — a `tenantry serve` process of this binary
//! pulls the fixture upstream (`tenantry dev fixture-source`, here in the bench's process) into a
//! fresh SQLite or PostgreSQL database.
//!
//! In the same run:
//! - **the baseline**: the same pages pulled and parsed by a plain HTTP client in the bench
//!   process, storing nothing (what the upstream and the loopback allow);
//! - **scale**: one tenant's 10 000 devices and 50 000 vulnerabilities synced (records/s), then
//!   synced again with no upstream change (nothing rewritten: `upserted` must be 0);
//! - **memory**: the server's peak RSS (VmHWM) over a run of 50 000 records and over a run of
//!   500 000, each in a fresh process (target: the second within 25 % of the first).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::http::{BenchBackend, Instance, spawn_instance};

#[derive(clap::Args, Debug, Clone)]
pub struct SyncBenchArgs {
    /// Store to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// PostgreSQL server for --backend postgres (a scratch database is created and dropped).
    #[arg(long, env = "TENANTRY_TEST_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Devices of the scale phase.
    #[arg(long, default_value_t = 10_000)]
    pub devices: u64,
    /// Vulnerabilities of the scale phase.
    #[arg(long, default_value_t = 50_000)]
    pub vulnerabilities: u64,
    /// Records per upstream page.
    #[arg(long, default_value_t = 500)]
    pub page: u64,
    /// Records of the memory phase's small and large runs.
    #[arg(long, value_delimiter = ',', default_value = "50000,500000")]
    pub memory_runs: Vec<u64>,
}

struct Target {
    url: String,
    _pg: Option<tenantry_store::testing::PgTestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

async fn target(args: &SyncBenchArgs) -> anyhow::Result<Target> {
    Ok(match args.backend {
        BenchBackend::Sqlite => {
            let dir = tempfile::tempdir()?;
            Target {
                url: format!("sqlite://{}", dir.path().join("tenantry.db").display()),
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
                _pg: Some(db),
                _dir: None,
            }
        }
    })
}

async fn start(target: &Target, operator: &str) -> anyhow::Result<Instance> {
    spawn_instance(
        &target.url,
        operator,
        &[("TENANTRY_EGRESS_ALLOW_PRIVATE", "true".to_owned())],
    )
    .await
}

async fn tenant(
    client: &reqwest::Client,
    base: &str,
    operator: &str,
    name: &str,
) -> anyhow::Result<String> {
    let t: Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(operator)
        .json(&json!({ "name": name, "edition": "enterprise" }))
        .send()
        .await?
        .json()
        .await?;
    let id = t["id"].as_str().context("tenant id")?;
    let k: Value = client
        .post(format!("{base}/v1/tenants/{id}/api-keys"))
        .bearer_auth(operator)
        .json(&json!({ "name": "bench", "roles": ["tenant_admin"] }))
        .send()
        .await?
        .json()
        .await?;
    Ok(k["key"].as_str().context("key")?.to_owned())
}

async fn source(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    name: &str,
    url: &str,
) -> anyhow::Result<String> {
    let s: Value = client
        .post(format!("{base}/v1/sources"))
        .bearer_auth(key)
        .json(
            &json!({"name": name, "config": {"url": url, "items": "/items", "key": "/id",
            "record_type": name, "pagination": {"style": "next_link", "next": "/next"}}}),
        )
        .send()
        .await?
        .json()
        .await?;
    Ok(s["id"].as_str().context("source id")?.to_owned())
}

/// Runs a source and waits for its end: the run's view and how long it took.
async fn run(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    source: &str,
) -> anyhow::Result<(Value, Duration)> {
    let t0 = Instant::now();
    let r: Value = client
        .post(format!("{base}/v1/sources/{source}:run"))
        .bearer_auth(key)
        .send()
        .await?
        .json()
        .await?;
    let id = r["id"].as_str().context("run id")?.to_owned();
    loop {
        let runs: Value = client
            .get(format!("{base}/v1/sources/{source}/runs?limit=5"))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        if let Some(r) = runs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == id.as_str())
        {
            match r["status"].as_str() {
                Some("completed") => return Ok((r.clone(), t0.elapsed())),
                Some("dead") => bail!("the run died: {r}"),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pulls every page of `url` with a plain client (parsing each body, storing nothing);
/// records/s.
async fn baseline(client: &reqwest::Client, fixture: &str, url: &str) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let mut next = Some(url.to_owned());
    let mut n = 0usize;
    while let Some(u) = next {
        let page: Value = client.get(&u).send().await?.json().await?;
        n += page["items"].as_array().map_or(0, Vec::len);
        next = page["next"].as_str().map(|p| format!("{fixture}{p}"));
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

pub async fn run_sync(args: SyncBenchArgs) -> anyhow::Result<()> {
    let target = target(&args).await?;
    let backend = match args.backend {
        BenchBackend::Sqlite => "SQLite",
        BenchBackend::Postgres => "PostgreSQL",
    };
    let fixture = tenantry_server::testing::fixture_source::spawn().await?;
    let operator = tenantry_server::access::keys::generate_key(tenantry_domain::KeyKind::Operator);
    let client = tenantry_server::http_client().build()?;
    println!(
        "tenantry bench sync: {backend}, `tenantry serve` on loopback pulling the fixture upstream (in the bench process, same 2 cores), pages of {}",
        args.page
    );
    let devices = format!(
        "{fixture}/devices?count={}&limit={}",
        args.devices, args.page
    );
    let vulns = format!(
        "{fixture}/vulnerabilities?count={}&limit={}",
        args.vulnerabilities, args.page
    );
    let base_devices = baseline(&client, &fixture, &devices).await?;
    let base_vulns = baseline(&client, &fixture, &vulns).await?;
    println!(
        "\nbaseline (pages pulled and parsed by a plain client, nothing stored): devices {base_devices:.0} records/s, vulnerabilities {base_vulns:.0} records/s"
    );

    let server = start(&target, &operator).await?;
    let key = tenant(&client, &server.base, &operator, "scale").await?;
    let d = source(&client, &server.base, &key, "device", &devices).await?;
    let v = source(&client, &server.base, &key, "vulnerability", &vulns).await?;
    println!(
        "\n| run | source | records | pages | upserted | unchanged | seconds | records/s | of baseline |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (pass, label) in [(1, "first"), (2, "again, no upstream change")] {
        for (id, name, count, base) in [
            (&d, "devices", args.devices, base_devices),
            (&v, "vulnerabilities", args.vulnerabilities, base_vulns),
        ] {
            let (r, took) = run(&client, &server.base, &key, id).await?;
            let rate = count as f64 / took.as_secs_f64();
            println!(
                "| {label} | {name} | {count} | {} | {} | {} | {:.1} | {rate:.0} | {:.0} % |",
                r["pages"],
                r["upserted"],
                r["unchanged"],
                took.as_secs_f64(),
                100.0 * rate / base
            );
            if pass == 2 && r["upserted"] != 0 {
                bail!("the second run rewrote records: {r}");
            }
            if pass == 1 && r["upserted"] != count {
                bail!("the first run stored {} of {count}", r["upserted"]);
            }
        }
    }
    let mut server = server;
    server.child.kill().await.ok();

    println!("\n| memory run | records | seconds | records/s | server peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    for (i, &count) in args.memory_runs.iter().enumerate() {
        // a fresh process per run: its peak is this run's
        let mut server = start(&target, &operator).await?;
        let pid = server.child.id();
        let key = tenant(&client, &server.base, &operator, &format!("memory {i}")).await?;
        let url = format!(
            "{fixture}/vulnerabilities?count={count}&limit={}",
            args.page
        );
        let s = source(&client, &server.base, &key, "vulnerability", &url).await?;
        let idle = peak_rss_mib(pid);
        let (r, took) = run(&client, &server.base, &key, &s).await?;
        if r["upserted"] != count {
            bail!("the memory run stored {} of {count}", r["upserted"]);
        }
        let peak = peak_rss_mib(pid);
        println!(
            "| {} | {count} | {:.1} | {:.0} | {peak:.1} (idle {idle:.1}) |",
            i + 1,
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        peaks.push(peak);
        server.child.kill().await.ok();
    }
    if let [small, .., large] = peaks[..] {
        println!(
            "\npeak RSS of the largest run is {:.0} % of the smallest's (target ≤ 125 %)",
            100.0 * large / small
        );
    }
    Ok(())
}
