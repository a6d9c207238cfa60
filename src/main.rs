use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use promo_gateway::engine::jobs::{Format, JobSpec, Source};
use promo_gateway::{Gateway, StartupError};

mod cli_job;
mod help;

/// One API for promotion codes across Spacebring, Partnero, Moltin, Limio and Loop.
///
/// Without a subcommand the gateway serves its HTTP API (`serve`). `sync` and `mirror` run a
/// sync job in this process with a progress bar per target, and exit non-zero when any
/// delivery did not end with the code on the vendor.
#[derive(Parser)]
#[command(version, propagate_version = true, after_long_help = help::MAIN)]
struct Cli {
    /// The configuration file (default config.toml); the ledger and mappings are found
    /// relative to it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log lines as `text` (default) or `json` (one object a line, with the request id).
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    /// Start the simulated vendors in this process and send every upstream's calls there, with
    /// sandbox credentials and a ledger of this run's own: no vendor account is needed, and no
    /// real vendor is called. The same for every command that calls vendors or checks them.
    #[arg(long, global = true)]
    sandbox: bool,
    /// Where the simulated vendors listen with --sandbox (serve: 127.0.0.1:8081; sync and
    /// mirror: a free loopback port).
    #[arg(long, global = true)]
    sandbox_listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    #[command(after_long_help = help::SERVE)]
    Serve(ServeArgs),
    /// Check the config, each upstream's credentials and every campaign mapping; serve nothing.
    #[command(after_long_help = help::CHECK_CONFIG)]
    CheckConfig,
    /// Deliver the codes of a CSV or NDJSON file to targets, as one sync job.
    #[command(after_long_help = help::SYNC)]
    Sync(SyncArgs),
    /// Deliver every code the ledger holds for a campaign to targets where it is missing.
    #[command(after_long_help = help::MIRROR)]
    Mirror(MirrorArgs),
    /// Revoke a campaign's codes (those named, or every one) at their targets, as one sync job.
    #[command(after_long_help = help::REVOKE)]
    Revoke(RevokeArgs),
    /// Serve simulated vendors (no gateway): each vendor's create call, judged by its document.
    #[command(after_long_help = help::SANDBOX)]
    Sandbox(SandboxArgs),
}

#[derive(ClapArgs, Default)]
struct ServeArgs {
    /// Listen here instead of the file's `server.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(ClapArgs)]
struct SandboxArgs {
    /// Where the simulated vendors listen: http://ADDR/<vendor>/<the vendor's own path>.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Calls per second each vendor takes before answering 429 with Retry-After: `N` for every
    /// vendor, `KIND=N` for one (repeatable; default 50).
    #[arg(long = "rate-limit")]
    rate_limit: Vec<String>,
}

#[derive(ClapArgs)]
struct SyncArgs {
    /// The codes: `.csv` (a header row; columns code, percent_off, amount_off, currency,
    /// max_redemptions, starts_at, expires_at, description, first_time_only, active,
    /// customer_id, partner_id) or `.ndjson`/`.jsonl` (one code or object of fields per line).
    file: PathBuf,
    /// The campaign every code belongs to (a file in mappings/).
    #[arg(long)]
    campaign: String,
    /// Upstreams to deliver to, comma-separated (default: every upstream the campaign maps).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// `refuse` (default) or `skip_field`: what to do with a field a vendor cannot carry.
    #[arg(long)]
    on_unsupported: Option<String>,
    #[command(flatten)]
    results: ResultsArgs,
}

#[derive(ClapArgs)]
struct MirrorArgs {
    /// The campaign whose codes to mirror.
    #[arg(long)]
    campaign: String,
    /// Upstreams to mirror to, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    to: Vec<String>,
    #[command(flatten)]
    results: ResultsArgs,
}

#[derive(ClapArgs)]
struct RevokeArgs {
    /// The campaign whose codes to revoke.
    #[arg(long)]
    campaign: String,
    /// Codes to revoke, comma-separated (default: every code the ledger holds for the campaign).
    #[arg(long, value_delimiter = ',')]
    codes: Vec<String>,
    /// Upstreams to revoke at, comma-separated (default: every upstream the campaign maps).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// The hard revoke (a delete) where the vendor has one; Partnero and Moltin revoke only so.
    #[arg(long)]
    delete: bool,
    #[command(flatten)]
    results: ResultsArgs,
}

#[derive(ClapArgs)]
struct ResultsArgs {
    /// Write every result of the job, when it ends, to this file as CSV (the columns of
    /// `GET /v1/sync-jobs/{id}/results` with `Accept: text/csv`).
    #[arg(long, value_name = "PATH")]
    results_csv: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command-line job draws progress bars on stderr; per-delivery logs would scroll them away.
    let default_filter = match cli.command {
        Some(Command::Sync(_) | Command::Mirror(_) | Command::Revoke(_)) => "warn",
        _ => "info,tower_http=info",
    };
    let log_format = match cli.log_format {
        LogFormatArg::Text => promo_gateway::http::telemetry::LogFormat::Text,
        LogFormatArg::Json => promo_gateway::http::telemetry::LogFormat::Json,
    };
    promo_gateway::http::telemetry::init_logging(log_format, default_filter);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("promo-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, StartupError> {
    let vendors = Vendors::of(&cli)?;
    let config = cli.config.unwrap_or_else(|| PathBuf::from("config.toml"));
    match cli.command {
        None => serve(&config, cli.serve, vendors).await,
        Some(Command::Serve(args)) => serve(&config, args, vendors).await,
        Some(Command::Sync(args)) => sync(&config, args, vendors).await,
        Some(Command::Mirror(args)) => mirror(&config, args, vendors).await,
        Some(Command::Revoke(args)) => revoke(&config, args, vendors).await,
        Some(Command::CheckConfig) => check_config(&config, vendors),
        Some(Command::Sandbox(args)) => sandbox(args).await,
    }
    .map(|()| ExitCode::SUCCESS)
    .or_else(|e| match e {
        Exit::Code(code) => Ok(code),
        Exit::Error(e) => Err(e),
    })
}

/// How a command ends when it does not simply succeed: an exit status of its own (a job with
/// codes not delivered, problems found by check-config), or an error.
enum Exit {
    Code(ExitCode),
    Error(StartupError),
}

impl From<StartupError> for Exit {
    fn from(e: StartupError) -> Self {
        Exit::Error(e)
    }
}

/// Which vendors a command meets: the real ones, or (`--sandbox`) the simulated ones.
#[derive(Clone, Copy)]
enum Vendors {
    Real,
    Sandbox { listen: Option<SocketAddr> },
}

impl Vendors {
    /// The flags as every command reads them. A flag a command cannot honour is refused, never
    /// ignored: a `--sandbox` dropped without a word would call the real vendors.
    fn of(cli: &Cli) -> Result<Self, StartupError> {
        let refuse = |message: &str| Err(StartupError::Usage(message.to_owned()));
        let serving = matches!(cli.command, None | Some(Command::Serve(_)));
        if cli.serve.listen.is_some() && !serving {
            return refuse("--listen is where `serve` listens; give it to serve (a job or check serves no API)");
        }
        if let Some(Command::Sandbox(_)) = cli.command {
            if cli.sandbox || cli.sandbox_listen.is_some() {
                return refuse(
                    "sandbox: --sandbox and --sandbox-listen make no sense here: this command is the simulated vendors (move them with --listen)",
                );
            }
            if cli.config.is_some() {
                return refuse("sandbox: --config makes no sense here: the simulated vendors read no configuration");
            }
        }
        match (cli.sandbox, cli.sandbox_listen) {
            (true, listen) => Ok(Vendors::Sandbox { listen }),
            (false, None) => Ok(Vendors::Real),
            (false, Some(_)) => refuse("--sandbox-listen moves the simulated vendors of --sandbox; give --sandbox too"),
        }
    }
}

/// The simulated vendors of a `--sandbox` run, serving in this process, and the directory of
/// the run's own ledger, deleted (like the vendors' state) when this is dropped.
struct SandboxRun {
    target: promo_gateway::Sandboxed,
    _dir: tempfile::TempDir,
}

impl SandboxRun {
    async fn start(listen: SocketAddr) -> Result<Self, StartupError> {
        let listener = bind(listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen { addr: listen, source })?;
        let dir =
            tempfile::tempdir().map_err(|e| StartupError::Usage(format!("--sandbox: no temporary directory: {e}")))?;
        let ledger = dir.path().join("promo-gateway.sandbox.db");
        let vendors = promo_sandbox::Sandbox::new(promo_sandbox::Options::default());
        tokio::spawn(promo_sandbox::serve(listener, vendors, std::future::pending()));
        Ok(Self {
            target: promo_gateway::Sandboxed { addr, ledger },
            _dir: dir,
        })
    }

    fn notice(&self) -> String {
        let addr = self.target.addr;
        format!("sandbox: simulated vendors on http://{addr} (GET http://{addr}/<vendor>/_sandbox/codes lists what each holds)")
    }
}

/// The simulated vendors for `vendors`, on `listen` unless the command line moved them.
async fn start_sandbox(vendors: Vendors, default: SocketAddr) -> Result<Option<SandboxRun>, StartupError> {
    match vendors {
        Vendors::Real => Ok(None),
        Vendors::Sandbox { listen } => SandboxRun::start(listen.unwrap_or(default)).await.map(Some),
    }
}

/// A CLI job's simulated vendors need no fixed port: a free loopback one, so that a job can
/// run beside `serve --sandbox`.
const ANY_LOOPBACK_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Opens the gateway, holding a SQLite ledger's lock file for the life of the process: two
/// processes on one file (a server and a CLI job) would both resume the same work. A
/// PostgreSQL ledger needs none: its work is owned under leases, so a CLI job may run beside
/// serving replicas.
fn open(
    config: &Path,
    sandbox: Option<&promo_gateway::Sandboxed>,
) -> Result<(Gateway, Option<std::fs::File>), StartupError> {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = promo_gateway::Config::load(config)?;
    // A sandboxed run keeps its own SQLite ledger, whatever the config names.
    if sandbox.is_none() && loaded.ledger.database_url(&env).is_some() {
        let gateway = Gateway::open_with(config, &env, Arc::new(promo_gateway::clock::SystemClock), None)?;
        return Ok((gateway, None));
    }
    let ledger = match sandbox {
        Some(target) => target.ledger.clone(),
        None => loaded.ledger_path(config),
    };
    let lock_path = ledger.with_extension("db.lock");
    let fail = |message: String| StartupError::Ledger {
        path: ledger.clone(),
        message,
    };
    let lock = std::fs::File::create(&lock_path).map_err(|e| fail(format!("{}: {e}", lock_path.display())))?;
    lock.try_lock().map_err(|_| {
        fail("another promo-gateway process is using this ledger; stop it, or send the job to its HTTP API (POST /v1/sync-jobs)".into())
    })?;
    let gateway = Gateway::open_with(config, &env, Arc::new(promo_gateway::clock::SystemClock), sandbox)?;
    Ok((gateway, Some(lock)))
}

/// Binds the simulated vendors' listener, or says which address could not be taken.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartupError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Listen { addr, source })
}

/// `sandbox`: the simulated vendors alone, until Ctrl-C or SIGTERM.
async fn sandbox(args: SandboxArgs) -> Result<(), Exit> {
    let mut options = promo_sandbox::Options::default();
    for arg in &args.rate_limit {
        options
            .rate_limit_arg(arg)
            .map_err(|e| StartupError::Usage(e.to_string()))?;
    }
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr().map_err(|source| StartupError::Listen {
        addr: args.listen,
        source,
    })?;
    for kind in promo_sandbox::KINDS {
        if let Some(url) = promo_sandbox::base_url(kind, addr) {
            println!("simulated vendor {url}");
        }
    }
    let stop = shutdown();
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {addr}");
    promo_sandbox::serve(listener, promo_sandbox::Sandbox::new(options), stop)
        .await
        .map_err(|source| StartupError::Listen { addr, source }.into())
}

/// `check-config`: the report on stdout; exit 1 when it found a problem. With `--sandbox`, the
/// configuration as a sandboxed run uses it: the simulated vendors and their credentials.
fn check_config(path: &Path, vendors: Vendors) -> Result<(), Exit> {
    let real = |name: &str| std::env::var(name).ok();
    let sandboxed = check_target(vendors);
    let sandbox_env = promo_gateway::sandbox_env(&real);
    let env: &dyn Fn(&str) -> Option<String> = if sandboxed.is_some() { &sandbox_env } else { &real };
    let config = promo_gateway::load_config(path, sandboxed.as_ref())?;
    let mut report = promo_gateway::check_config::check(path, &config, env)?;
    // A PostgreSQL ledger: its variable is set and the database answers.
    if let Some((line, problem)) = promo_gateway::check_ledger(&config, env) {
        report.add(&line, problem);
    }
    if let Some((line, problem)) = promo_gateway::check_rate_limit(&config, env) {
        report.add(&line, problem);
    }
    let report = report.finished();
    print!("{}", report.text);
    if report.problems == 0 {
        Ok(())
    } else {
        Err(Exit::Code(ExitCode::FAILURE))
    }
}

/// What `check-config --sandbox` checks against: where `serve --sandbox` would put the
/// simulated vendors, and the run's own ledger (which a check never opens).
fn check_target(vendors: Vendors) -> Option<promo_gateway::Sandboxed> {
    match vendors {
        Vendors::Real => None,
        Vendors::Sandbox { listen } => Some(promo_gateway::Sandboxed {
            addr: listen.unwrap_or(SERVE_SANDBOX),
            ledger: PathBuf::from("the sandbox's own ledger"),
        }),
    }
}

/// Where `serve --sandbox` puts the simulated vendors: a fixed port, for the README's curls.
const SERVE_SANDBOX: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8081);

async fn serve(config: &Path, args: ServeArgs, vendors: Vendors) -> Result<(), Exit> {
    // With --sandbox: the simulated vendors first (the gateway points at their address), and a
    // ledger of this run's own, deleted when the process ends, like the vendors' state.
    let sandbox = start_sandbox(vendors, SERVE_SANDBOX).await?;
    if let Some(run) = &sandbox {
        println!("{}", run.notice());
    }
    let (gateway, _lock) = open(config, sandbox.as_ref().map(|s| &s.target))?;
    // Before resuming anything: no keys, no listening beyond loopback.
    promo_gateway::gateway_auth::require_on(
        args.listen.unwrap_or(gateway.config.server.listen),
        &gateway.config.server.api_keys,
    )?;
    gateway.resume();
    let addr = args.listen.unwrap_or(gateway.config.server.listen);
    let router = promo_gateway::http::api::router(gateway.engine.clone(), &gateway.config.server);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartupError::Listen { addr, source })?;
    let stop = shutdown();
    tracing::info!(%local, upstreams = gateway.config.upstreams.len(), "promo-gateway listening");
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {local}");
    let grace = Duration::from_millis(gateway.config.server.shutdown_grace_ms);
    let router = promo_gateway::http::telemetry::layer(router);
    let limits = promo_gateway::http::slow_clients::Limits::of(&gateway.config.server);
    promo_gateway::http::shutdown::serve(listener, router, limits, gateway.engine.clone(), grace, stop)
        .await
        .map_err(|source| StartupError::Listen { addr, source }.into())
}

async fn sync(config: &Path, args: SyncArgs, vendors: Vendors) -> Result<(), Exit> {
    let format = match args.file.extension().and_then(|e| e.to_str()) {
        Some("csv") => Format::Csv,
        Some("ndjson" | "jsonl") => Format::Ndjson,
        _ => {
            return Err(
                StartupError::Usage(format!("{}: name a .csv, .ndjson or .jsonl file", args.file.display())).into(),
            )
        }
    };
    if !args.file.is_file() {
        return Err(StartupError::Usage(format!("{}: no such file", args.file.display())).into());
    }
    let sandbox = start_sandbox(vendors, ANY_LOOPBACK_PORT).await?;
    let (gateway, _lock) = open(config, sandbox.as_ref().map(|s| &s.target))?;
    let targets = gateway.engine.targets_or_campaigns(&args.campaign, args.targets);
    let spec = JobSpec {
        campaign: args.campaign,
        targets,
        template: Default::default(),
        on_unsupported: args.on_unsupported.map(serde_json::Value::String),
        source: Source::File {
            path: args.file,
            format,
            max_item_bytes: gateway.config.server.max_body_bytes,
        },
    };
    run_job(&gateway, spec, sandbox.as_ref(), args.results.results_csv).await
}

async fn mirror(config: &Path, args: MirrorArgs, vendors: Vendors) -> Result<(), Exit> {
    let sandbox = start_sandbox(vendors, ANY_LOOPBACK_PORT).await?;
    let (gateway, _lock) = open(config, sandbox.as_ref().map(|s| &s.target))?;
    let spec = JobSpec {
        campaign: args.campaign,
        targets: args.to,
        template: Default::default(),
        on_unsupported: None,
        source: Source::Mirror,
    };
    run_job(&gateway, spec, sandbox.as_ref(), args.results.results_csv).await
}

async fn revoke(config: &Path, args: RevokeArgs, vendors: Vendors) -> Result<(), Exit> {
    let sandbox = start_sandbox(vendors, ANY_LOOPBACK_PORT).await?;
    let (gateway, _lock) = open(config, sandbox.as_ref().map(|s| &s.target))?;
    let targets = gateway.engine.targets_or_campaigns(&args.campaign, args.targets);
    let spec = JobSpec {
        campaign: args.campaign,
        targets,
        template: Default::default(),
        on_unsupported: None,
        source: Source::Revoke {
            codes: (!args.codes.is_empty()).then_some(args.codes),
            delete: args.delete,
        },
    };
    run_job(&gateway, spec, sandbox.as_ref(), args.results.results_csv).await
}

/// Runs the job with its progress bars and summary; exit 2 when a code did not end on a vendor.
async fn run_job(
    gateway: &Gateway,
    spec: JobSpec,
    sandbox: Option<&SandboxRun>,
    results_csv: Option<PathBuf>,
) -> Result<(), Exit> {
    let ledger = match sandbox {
        Some(run) => {
            eprintln!("{}", run.notice());
            cli_job::Ledger::Sandbox
        }
        None => cli_job::Ledger::Kept,
    };
    match cli_job::run(gateway, spec, ledger, results_csv.as_deref()).await? {
        cli_job::Ended::Delivered => Ok(()),
        cli_job::Ended::Undelivered => Err(Exit::Code(ExitCode::from(2))),
    }
}

/// Ctrl-C, or SIGTERM from a service manager: stop accepting, finish the requests in flight.
fn shutdown() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered now, before the "listening on" line: a SIGTERM that arrives before the server
    // first polls this future must stop it cleanly, not kill it (the signal's default action).
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = signals;
            tokio::select! {
                () = received(term.as_mut()) => {},
                () = received(int.as_mut()) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// The next delivery of a signal; never, when it could not be registered.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
