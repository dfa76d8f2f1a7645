//! Command-line interface. Commands that change data run offline against the configured database
//! (no server needed) and are audited with the `cli` actor.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tenantry_domain::{Actor, ActorKind, PageRequest, TenantRef, TenantStatus};
use tenantry_server::app::{App, AppError, Ctx, Lifecycle, NewTenant, TenantView};
use tenantry_server::config::{Config, LogFormat, Overrides};
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
    /// Reproducible benchmarks (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
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
    Http(tenantry_server::bench::HttpBenchArgs),
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
            message: format!("{e:#}"),
        }
    }
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
        Some(tenantry_server::app::new_trace().trace_id_hex()),
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
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        log_level: cli.log_level.clone(),
        log_format: cli.log_format,
    };
    if let Command::Bench(BenchCommand::Http(args)) = cli.command {
        return tenantry_server::bench::run_http(args)
            .await
            .map_err(Failure::from);
    }
    let config = Config::load(cli.config.as_deref(), &overrides).map_err(Failure::config)?;
    let to_stdout = matches!(cli.command, Command::Serve { .. });
    tenantry_server::telemetry::init_logging(&config, to_stdout);

    match cli.command {
        Command::Serve { .. } => serve(config).await,
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
        Command::Tenant(cmd) => tenant(config, cmd).await,
        Command::Key(KeyCommand::Create(args)) => {
            let app = open_app(&config).await?;
            let expires = args
                .expires_in_days
                .map(|d| tenantry_server::app::now() + chrono_days(d));
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
        Command::Bench(_) => unreachable!("handled above"),
    }
}

fn chrono_days(d: u32) -> chrono::Duration {
    chrono::Duration::days(i64::from(d))
}

async fn open_app(config: &Config) -> Result<App, Failure> {
    let store = tenantry_server::open_store(config).await?;
    Ok(App::new(store, tenantry_server::app_settings(config)))
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
    let generated = app
        .ensure_bootstrap_key(config.bootstrap_operator_key.as_ref().map(|k| k.expose()))
        .await?;
    let addr = listener.local_addr().map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    // The banner is for the person at the terminal: stderr, never the log (it may hold a secret).
    eprintln!(
        "tenantry {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    if config.uses_sqlite() {
        eprintln!("  data directory: {}", config.data_dir.display());
    }
    eprintln!(
        "  database: {} ({})",
        tenantry_server::config::redact_url(&config.database_url()),
        app.store().backend().as_str()
    );
    if let Some(key) = generated {
        eprintln!("  operator API key (shown once; store it now): {key}");
        eprintln!("  try: curl -H 'Authorization: Bearer {key}' http://{addr}/v1/tenants");
    }
    tracing::info!(%addr, backend = app.store().backend().as_str(), "listening");
    tenantry_server::serve(app, &config, listener, tenantry_server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
