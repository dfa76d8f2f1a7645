//! Command-line interface. Commands that change data run offline against the configured database
//! (no server needed) and are audited with the `cli` actor.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tenantry_domain::{Actor, ActorKind, PageRequest, TenantRef, TenantStatus};
use tenantry_server::config::{Config, LogFormat, Overrides};
use tenantry_server::platform::{App, AppError, Ctx, TenantView};
use tenantry_server::tenants::{Lifecycle, NewTenant};
use tenantry_store::TenantFilter;

#[derive(Parser, Debug)]
#[command(
    name = "tenantry",
    version,
    about = "A multi-tenant SaaS backbone: tenants, editions, keys, audit — one binary."
)]
pub struct Cli {
    /// Configuration file (default: ./tenantry.toml when it exists).
    #[arg(long, global = true, env = "TENANTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://… or postgres://… (default: SQLite in the data directory).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Data directory for the embedded database.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format: json or pretty.
    #[arg(long, global = true, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Let an offline command create the embedded database when there is none (without it, a
    /// missing database is an error: the command would otherwise work on an empty new one).
    #[arg(long, global = true)]
    create_database: bool,
    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        other => Err(format!("'{other}' is not json or pretty")),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (migrates the database first).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
        /// What this process does: api, worker, scheduler (repeatable; default: all three).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Apply pending database migrations and exit (safe to run from many replicas at once).
    Migrate,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage tenants directly in the database.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Inspect and operate background jobs (the dead-letter console), offline on the database.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Device telemetry upkeep: retention now, archives, restoring an archive.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// Reproducible benchmarks (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Development helpers.
    #[command(subcommand)]
    Dev(DevCommand),
}

#[derive(Subcommand, Debug)]
enum DevCommand {
    /// Serve the fixture upstream API that source-sync tests and benchmarks pull from: paginated
    /// devices and vulnerabilities, with injectable faults (docs/sync.md lists its parameters).
    FixtureSource {
        /// Address to listen on (port 0 picks a free one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
}

#[derive(Subcommand, Debug)]
enum TelemetryCommand {
    /// Run retention now (as the `telemetry.retention` job does): remove every tenant's expired
    /// events, archiving them first where archival is on; tenants on legal hold are skipped.
    Retention,
    /// List archive manifests (of one tenant, or all).
    Archives {
        /// Tenant id.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Load an archive back into the database (checked against its manifest; events already
    /// stored count as duplicates).
    RestoreArchive {
        /// The manifest's key, as `archives` lists it.
        #[arg(long)]
        manifest: String,
    },
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// Enqueue a job of a registered kind (noop, sleep, fail, ...).
    Enqueue {
        #[arg(long)]
        kind: String,
        /// JSON payload.
        #[arg(long)]
        payload: Option<String>,
        /// Tenant id or slug.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        unique_key: Option<String>,
    },
    /// List jobs, newest first (one page; pass --cursor for the next).
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one job with its error history.
    Show { id: String },
    /// Send a dead, cancelled, retryable or scheduled job back to the queue now.
    Retry { id: String },
    /// Cancel a job (a running one stops at its next heartbeat).
    Cancel { id: String },
    /// Replay dead jobs matching a filter (--dry-run only counts them).
    Replay {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339; jobs that died at or after.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// RFC 3339; jobs that died before.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// retryable, permanent, lease_expired or unknown_kind (of the last attempt).
        #[arg(long)]
        error_kind: Option<String>,
        #[arg(long)]
        include_cancelled: bool,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate the configuration and print it (secrets masked).
    Check,
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: Option<String>,
        #[arg(long)]
        edition: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
    /// List tenants (one page; pass --cursor for the next).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        edition: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one tenant by id or slug.
    Show { tenant: String },
    /// Suspend a tenant (reads keep working, writes are refused).
    Suspend { tenant: String },
    /// Resume a suspended tenant.
    Resume { tenant: String },
    /// Soft-delete a tenant (restorable during the grace period).
    Delete { tenant: String },
    /// Restore a deleted tenant inside its grace period.
    Restore { tenant: String },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an API key; the secret is printed once.
    Create(KeyCreate),
}

#[derive(Args, Debug)]
struct KeyCreate {
    /// Create an operator key (the only kind the CLI creates).
    #[arg(long, required = true)]
    operator: bool,
    /// A name to recognise the key by.
    #[arg(long, default_value = "cli")]
    name: String,
    /// Expire the key after this many days.
    #[arg(long)]
    expires_in_days: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Tenant creation and reads over HTTP at a fixed concurrency, against /healthz as baseline.
    Http(tenantry_bench::http::HttpBenchArgs),
    /// Added latency of authentication + tenant resolution + rate limiting, against /healthz.
    Auth(tenantry_bench::http::AuthBenchArgs),
    /// A well-behaved tenant's latency while another floods at N times its limit.
    NoisyNeighbour(tenantry_bench::http::NoisyBenchArgs),
    /// Two serve processes on one PostgreSQL + Redis: is the limit cluster-wide?
    ClusterLimit(tenantry_bench::http::ClusterBenchArgs),
    /// The job engine: enqueue rate, end-to-end throughput with 1 and 2 worker processes,
    /// enqueue-to-start latency, against a raw SQL loop measured in the same run.
    Jobs(tenantry_bench::jobs::JobsBenchArgs),
    /// The cost of exporting traces (always_on, OTLP to a local receiver) against traces off,
    /// on reads and on job throughput, measured in the same run.
    Tracing(tenantry_bench::traces::TracingBenchArgs),
    /// Durable device-event ingest: the batch × concurrency matrix, half-load latency and a
    /// 10× burst, against the database's raw bulk path measured in the same run.
    Telemetry(tenantry_bench::telemetry::TelemetryBenchArgs),
    /// Source sync end to end from the fixture upstream: records/s against a plain client's pull,
    /// a second run that rewrites nothing, and peak RSS of a small and a ten times larger run.
    Sync(tenantry_bench::sync::SyncBenchArgs),
    /// The event fabric on NATS JetStream: relay throughput against a bare publish loop,
    /// end-to-end lag, fan-out to 1 000 realtime streams across two instances.
    Events(tenantry_bench::events::EventsBenchArgs),
    /// Webhook deliveries to a local receiver: deliveries/s against a bare client loop,
    /// commit-to-receipt latency at half that rate, and with 10 % of endpoints dead.
    Webhooks(tenantry_bench::webhooks::WebhooksBenchArgs),
}

/// A failure with the exit code to leave with: 2 for configuration, 1 for everything else.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn config(e: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self {
            code: 1,
            message: chain_text(e.chain().map(ToString::to_string)),
        }
    }
}

/// An error and its causes as one line, each cause once: many errors repeat their source in
/// their own message (`database unavailable: connection refused`, then `connection refused`).
fn chain_text(messages: impl IntoIterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    for m in messages {
        if out.last().is_some_and(|outer| outer.contains(m.as_str())) {
            continue;
        }
        out.push(m);
    }
    out.join(": ")
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let mut message = e.to_string();
        if let AppError::Validation(v) = &e {
            message =
                v.0.iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ");
        }
        Self { code: 1, message }
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn cli_ctx() -> Ctx {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Ctx::new(
        Actor {
            kind: ActorKind::Cli,
            id: user,
        },
        Some(tenantry_server::platform::new_trace()),
    )
}

fn tenant_ref(s: &str) -> Result<TenantRef, Failure> {
    TenantRef::parse(s).ok_or_else(|| Failure {
        code: 1,
        message: format!("'{s}' is not a tenant id or slug"),
    })
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let listen = match &cli.command {
        Command::Serve { listen, .. } => listen.clone(),
        _ => None,
    };
    let roles = match &cli.command {
        Command::Serve { roles, .. } if !roles.is_empty() => Some(roles.join(",")),
        _ => None,
    };
    let overrides = Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        log_level: cli.log_level.clone(),
        log_format: cli.log_format,
        roles,
    };
    if let Command::Dev(DevCommand::FixtureSource { listen }) = &cli.command {
        let listener = tokio::net::TcpListener::bind(listen.as_str())
            .await
            .map_err(|e| Failure::config(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::config(e.to_string()))?;
        println!("fixture source listening on http://{addr} (try /devices and /vulnerabilities)");
        tenantry_server::testing::fixture_source::serve(listener)
            .await
            .map_err(|e| Failure::config(e.to_string()))?;
        return Ok(());
    }
    if let Command::Bench(bench) = cli.command {
        use tenantry_bench::http as bench;
        let run = match bench {
            BenchCommand::Http(args) => bench::run_http(args).await,
            BenchCommand::Auth(args) => bench::run_auth(args).await,
            BenchCommand::NoisyNeighbour(args) => bench::run_noisy(args).await,
            BenchCommand::ClusterLimit(args) => bench::run_cluster(args).await,
            BenchCommand::Jobs(args) => tenantry_bench::jobs::run_jobs(args).await,
            BenchCommand::Tracing(args) => tenantry_bench::traces::run_tracing(args).await,
            BenchCommand::Telemetry(args) => tenantry_bench::telemetry::run_telemetry(args).await,
            BenchCommand::Sync(args) => tenantry_bench::sync::run_sync(args).await,
            BenchCommand::Events(args) => tenantry_bench::events::run_events(args).await,
            BenchCommand::Webhooks(args) => tenantry_bench::webhooks::run_webhooks(args).await,
        };
        return run.map_err(Failure::from);
    }
    let config = Config::load(cli.config.as_deref(), &overrides).map_err(Failure::config)?;
    let to_stdout = matches!(cli.command, Command::Serve { .. });
    // traces are exported by the server (its requests, jobs and schedules), not by one-off commands
    let traces = tenantry_server::observability::init(&config, to_stdout, to_stdout)
        .map_err(|e| Failure::config(format!("cannot start the trace exporter: {e:#}")))?;

    match cli.command {
        Command::Serve { .. } => {
            let served = serve(config).await;
            if let Some(traces) = traces {
                // the batch processor runs on this runtime: flush from a blocking thread
                let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
            }
            served
        }
        Command::Migrate => {
            let store = tenantry_server::open_store(&config).await?;
            let ready = store.check_ready().await.is_ok();
            print_json(&json!({ "backend": store.backend().as_str(), "ready": ready }));
            store.close().await;
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            print_json(&json!({ "valid": true, "config": config.redacted() }));
            Ok(())
        }
        Command::Tenant(cmd) => {
            existing_database(&config, cli.create_database)?;
            tenant(config, cmd).await
        }
        Command::Telemetry(cmd) => {
            existing_database(&config, cli.create_database)?;
            telemetry(config, cmd).await
        }
        Command::Jobs(cmd) => {
            existing_database(&config, cli.create_database)?;
            jobs(config, cmd).await
        }
        Command::Key(KeyCommand::Create(args)) => {
            existing_database(&config, cli.create_database)?;
            let app = open_app(&config).await?;
            let expires = args
                .expires_in_days
                .map(|d| tenantry_server::platform::now() + chrono_days(d));
            let issued = app
                .create_operator_key(&cli_ctx(), &args.name, None, expires)
                .await?;
            print_json(&json!({
                "id": issued.record.id,
                "kind": "operator",
                "name": issued.record.name,
                "prefix": issued.record.lookup,
                "expires_at": issued.record.expires_at,
                "key": issued.secret,
                "note": "store this key now: it is not shown again",
            }));
            app.store().close().await;
            Ok(())
        }
        Command::Bench(_) | Command::Dev(_) => unreachable!("handled above"),
    }
}

fn chrono_days(d: u32) -> chrono::Duration {
    chrono::Duration::days(i64::from(d))
}

/// Offline commands work on an existing database: on SQLite, a missing file means the wrong
/// directory (or no server ever ran there), and creating an empty database would hide that.
fn existing_database(config: &Config, create: bool) -> Result<(), Failure> {
    match config.sqlite_path() {
        Some(path) if !create && !path.exists() => Err(Failure {
            code: 1,
            message: format!(
                "no database at {}: run the command where the server keeps its data \
                 (--data-dir, --database-url or TENANTRY_DATA_DIR), run `tenantry migrate` to \
                 create one, or pass --create-database",
                path.display()
            ),
        }),
        _ => Ok(()),
    }
}

async fn open_app(config: &Config) -> Result<App, Failure> {
    let store = tenantry_server::open_store(config).await?;
    Ok(App::new(store, tenantry_server::app_settings(config)))
}

fn parse_job_id(id: &str) -> Result<uuid::Uuid, Failure> {
    uuid::Uuid::parse_str(id).map_err(|_| Failure {
        code: 1,
        message: format!("'{id}' is not a job id (a UUID)"),
    })
}

async fn telemetry(config: Config, cmd: TelemetryCommand) -> Result<(), Failure> {
    let app = open_app(&config).await?;
    let result = match cmd {
        TelemetryCommand::Retention => {
            let report = app
                .run_telemetry_retention(tenantry_server::platform::now())
                .await?;
            serde_json::to_value(report).unwrap_or_default()
        }
        TelemetryCommand::Archives { tenant } => {
            let tenant = tenant
                .map(|t| {
                    t.parse::<uuid::Uuid>()
                        .map(tenantry_domain::TenantId::from_uuid)
                        .map_err(|_| Failure {
                            code: 1,
                            message: format!("--tenant: '{t}' is not a tenant id"),
                        })
                })
                .transpose()?;
            serde_json::json!({ "manifests": app.telemetry_archives(tenant).await? })
        }
        TelemetryCommand::RestoreArchive { manifest } => {
            serde_json::to_value(app.restore_telemetry_archive(&manifest).await?)
                .unwrap_or_default()
        }
    };
    print_json(&result);
    Ok(())
}

async fn jobs(config: Config, cmd: JobsCommand) -> Result<(), Failure> {
    use tenantry_server::jobs::http::jobs::JobView;
    use tenantry_server::jobs::service::JobRequest;
    use tenantry_server::platform::PlatformOrTenant;
    let app = open_app(&config).await?;
    let ctx = cli_ctx();
    let access = PlatformOrTenant::Platform;
    let view = |j| serde_json::to_value(JobView::from(j)).unwrap_or_default();
    let result = match cmd {
        JobsCommand::Enqueue {
            kind,
            payload,
            tenant,
            unique_key,
        } => {
            let payload = payload
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("--payload is not JSON: {e}"),
                })?;
            let registry = tenantry_server::jobs::workers::Registry::with_builtins(&app);
            let out = app
                .enqueue_jobs(
                    &ctx,
                    access,
                    &registry,
                    vec![JobRequest {
                        kind,
                        payload,
                        tenant,
                        queue: None,
                        priority: None,
                        run_at: None,
                        unique_key,
                        unique_window_seconds: None,
                        max_attempts: None,
                        lease_seconds: None,
                    }],
                    None,
                )
                .await?;
            let e = out[0];
            json!({ "id": e.id(), "status": if matches!(e, tenantry_store::jobs::Enqueued::New(_)) { "created" } else { "existing" } })
        }
        JobsCommand::List {
            state,
            kind,
            tenant,
            limit,
            cursor,
        } => {
            let state = state
                .map(|s| s.parse())
                .transpose()
                .map_err(|e: String| Failure {
                    code: 1,
                    message: e,
                })?;
            let tenant_id = match tenant {
                Some(t) => {
                    let r = tenantry_domain::TenantRef::parse(&t).ok_or_else(|| Failure {
                        code: 1,
                        message: format!("'{t}' is not a tenant id or slug"),
                    })?;
                    Some(app.get_tenant(&ctx, &r).await?.id)
                }
                None => None,
            };
            let after = cursor
                .map(|c| tenantry_domain::Cursor::decode(&c))
                .transpose()
                .map_err(|_| Failure {
                    code: 1,
                    message: "--cursor is not a cursor from a previous page".into(),
                })?;
            let page =
                tenantry_domain::PageRequest::new(Some(limit), after).map_err(|e| Failure {
                    code: 1,
                    message: e.to_string(),
                })?;
            let filter = tenantry_store::jobs::JobFilter {
                state,
                kind,
                tenant_id,
            };
            let page = app.list_jobs(access, &filter, page).await?;
            serde_json::to_value(page.map(JobView::from)).unwrap_or_default()
        }
        JobsCommand::Show { id } => view(app.get_job(access, parse_job_id(&id)?).await?),
        JobsCommand::Retry { id } => view(
            app.retry_job(&ctx, access, parse_job_id(&id)?, None)
                .await?,
        ),
        JobsCommand::Cancel { id } => view(
            app.cancel_job(&ctx, access, parse_job_id(&id)?, None)
                .await?,
        ),
        JobsCommand::Replay {
            kind,
            tenant,
            since,
            until,
            error_kind,
            include_cancelled,
            dry_run,
        } => {
            let error_kind = error_kind
                .map(|k| k.parse())
                .transpose()
                .map_err(|e: String| Failure {
                    code: 1,
                    message: e,
                })?;
            let filter = tenantry_store::jobs::ReplayFilter {
                kind,
                tenant_id: None,
                since,
                until,
                error_kind,
                include_cancelled,
            };
            let n = app
                .replay_jobs(&ctx, access, filter, tenant.as_deref(), dry_run)
                .await?;
            if dry_run {
                json!({ "would_replay": n, "dry_run": true })
            } else {
                json!({ "replayed": n, "dry_run": false })
            }
        }
    };
    print_json(&result);
    app.store().close().await;
    Ok(())
}

async fn tenant(config: Config, cmd: TenantCommand) -> Result<(), Failure> {
    let app = open_app(&config).await?;
    let ctx = cli_ctx();
    let view =
        |t: &tenantry_domain::Tenant| serde_json::to_value(TenantView::from(t)).unwrap_or_default();
    let result = match cmd {
        TenantCommand::Create {
            name,
            slug,
            edition,
            region,
        } => {
            let t = app
                .create_tenant(
                    &ctx,
                    NewTenant {
                        name,
                        slug,
                        edition,
                        region,
                        isolation: None,
                    },
                    None,
                )
                .await?;
            view(&t)
        }
        TenantCommand::List {
            status,
            edition,
            limit,
            cursor,
        } => {
            let status = status
                .map(|s| s.parse::<TenantStatus>())
                .transpose()
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("--status: {e}"),
                })?;
            let edition = edition
                .map(|e| tenantry_domain::EditionKey::parse(&e))
                .transpose()
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("--edition: {e}"),
                })?;
            let after = cursor
                .map(|c| tenantry_domain::Cursor::decode(&c))
                .transpose()
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("--cursor: {e}"),
                })?;
            let page = PageRequest::new(Some(limit), after).map_err(|e| Failure {
                code: 1,
                message: format!("--limit: {e}"),
            })?;
            let page = app
                .list_tenants(&TenantFilter { status, edition }, page)
                .await?;
            serde_json::to_value(page.map(|t| TenantView::from(&t))).unwrap_or_default()
        }
        TenantCommand::Show { tenant } => view(&app.get_tenant(&ctx, &tenant_ref(&tenant)?).await?),
        TenantCommand::Suspend { tenant } => {
            transition(&app, &ctx, &tenant, Lifecycle::Suspend).await?
        }
        TenantCommand::Resume { tenant } => {
            transition(&app, &ctx, &tenant, Lifecycle::Resume).await?
        }
        TenantCommand::Delete { tenant } => {
            transition(&app, &ctx, &tenant, Lifecycle::Delete).await?
        }
        TenantCommand::Restore { tenant } => {
            transition(&app, &ctx, &tenant, Lifecycle::Restore).await?
        }
    };
    print_json(&result);
    app.store().close().await;
    Ok(())
}

async fn transition(
    app: &App,
    ctx: &Ctx,
    tenant: &str,
    op: Lifecycle,
) -> Result<serde_json::Value, Failure> {
    let t = app
        .transition_tenant(ctx, &tenant_ref(tenant)?, op, None, None)
        .await?;
    Ok(serde_json::to_value(TenantView::from(&t)).unwrap_or_default())
}

async fn serve(config: Config) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr())
        .await
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot listen on {}: {e}", config.listen),
        })?;
    let app = open_app(&config).await?;
    // The operator key is made (once per database) by a process that serves the API, where it
    // can be used; a worker or scheduler alone never makes or shows one.
    let roles = config.roles();
    let generated = if roles.api {
        app.ensure_bootstrap_key(config.bootstrap_operator_key.as_ref().map(|k| k.expose()))
            .await?
    } else {
        None
    };
    let addr = listener.local_addr().map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    // The banner is for the person at the terminal: stderr, never the log (it may hold a secret).
    eprintln!(
        "tenantry {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    if !roles.api {
        let running: Vec<&str> = [(roles.worker, "worker"), (roles.scheduler, "scheduler")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, r)| *r)
            .collect();
        eprintln!(
            "  roles: {} (no API here: only /healthz, /readyz and /metrics)",
            running.join(" and ")
        );
    }
    if config.uses_sqlite() {
        eprintln!("  data directory: {}", config.data_dir.display());
    }
    eprintln!(
        "  database: {} ({})",
        tenantry_server::config::redact_url(&config.database_url()),
        app.store().backend().as_str()
    );
    let redis = config.limits.redis_url.trim();
    if redis.is_empty() {
        eprintln!(
            "  rate limits: in process (set [limits] redis_url to share them across instances)"
        );
    } else {
        eprintln!(
            "  rate limits: shared through Redis at {}",
            tenantry_server::config::redact_url(redis)
        );
    }
    if let Some(key) = generated {
        eprintln!("  operator API key (shown once; store it now): {key}");
        eprintln!("  try: curl -H 'Authorization: Bearer {key}' http://{addr}/v1/tenants");
    }
    tracing::info!(%addr, backend = app.store().backend().as_str(), "listening");
    tenantry_server::serve(app, &config, listener, tenantry_server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod chain_tests {
    #[test]
    fn each_cause_is_said_once() {
        let chain = [
            "cannot migrate the database",
            "the database is unavailable: error communicating with database: Connection refused (os error 111)",
            "error communicating with database: Connection refused (os error 111)",
            "Connection refused (os error 111)",
        ];
        assert_eq!(
            super::chain_text(chain.map(String::from)),
            "cannot migrate the database: the database is unavailable: error communicating with database: Connection refused (os error 111)"
        );
    }
}
