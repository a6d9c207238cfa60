use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use promo_gateway::domain::job::JobState;
use promo_gateway::engine::jobs::{Format, JobSpec, JobStatus, Source};
use promo_gateway::engine::Status;
use promo_gateway::{Gateway, StartupError};

mod help;

/// One API for promotion codes across Spacebring, Partnero, Moltin, Limio and Loop.
///
/// Without a subcommand the gateway serves its HTTP API (`serve`). `sync` and `mirror` run a
/// sync job in this process with a progress bar per target, and exit non-zero when any
/// delivery did not end with the code on the vendor.
#[derive(Parser)]
#[command(version, propagate_version = true, after_long_help = help::MAIN)]
struct Cli {
    /// The configuration file; the ledger and mappings are found relative to it.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    /// Log lines as `text` (default) or `json` (one object a line, with the request id).
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
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
    /// Serve simulated vendors (no gateway): each vendor's create call, judged by its document.
    #[command(after_long_help = help::SANDBOX)]
    Sandbox(SandboxArgs),
}

#[derive(ClapArgs, Default)]
struct ServeArgs {
    /// Listen here instead of the file's `server.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Start the simulated vendors in this process and send every upstream's calls there, with
    /// sandbox credentials and a ledger of this run's own: no vendor account is needed, and no
    /// real vendor is called.
    #[arg(long)]
    sandbox: bool,
    /// Where the simulated vendors listen with --sandbox (default 127.0.0.1:8081).
    #[arg(long)]
    sandbox_listen: Option<SocketAddr>,
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
}

#[derive(ClapArgs)]
struct MirrorArgs {
    /// The campaign whose codes to mirror.
    #[arg(long)]
    campaign: String,
    /// Upstreams to mirror to, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    to: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command-line job draws progress bars on stderr; per-delivery logs would scroll them away.
    let default_filter = match cli.command {
        Some(Command::Sync(_) | Command::Mirror(_)) => "warn",
        _ => "info,tower_http=info",
    };
    let log_format = match cli.log_format {
        LogFormatArg::Text => promo_gateway::http::telemetry::LogFormat::Text,
        LogFormatArg::Json => promo_gateway::http::telemetry::LogFormat::Json,
    };
    promo_gateway::http::telemetry::init_logging(log_format, default_filter);
    let outcome = match cli.command {
        None => serve(&cli.config, cli.serve).await.map(|()| ExitCode::SUCCESS),
        Some(Command::Serve(args)) => serve(&cli.config, args).await.map(|()| ExitCode::SUCCESS),
        Some(Command::Sync(args)) => sync(&cli.config, args).await,
        Some(Command::Mirror(args)) => mirror(&cli.config, args).await,
        Some(Command::CheckConfig) => check_config(&cli.config),
        Some(Command::Sandbox(args)) => sandbox(args).await.map(|()| ExitCode::SUCCESS),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("promo-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the gateway, holding a SQLite ledger's lock file for the life of the process: two
/// processes on one file (a server and a CLI job) would both resume the same work. A
/// PostgreSQL ledger needs none: its work is owned under leases, so a CLI job may run beside
/// serving replicas.
fn open(config: &Path) -> Result<(Gateway, Option<std::fs::File>), StartupError> {
    open_with(config, None)
}

fn open_with(
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
async fn sandbox(args: SandboxArgs) -> Result<(), StartupError> {
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
        .map_err(|source| StartupError::Listen { addr, source })
}

/// `check-config`: the report on stdout; exit 1 when it found a problem.
fn check_config(config: &Path) -> Result<ExitCode, StartupError> {
    let env = |name: &str| std::env::var(name).ok();
    let mut report = promo_gateway::check_config::check(config, &env)?;
    // A PostgreSQL ledger: its variable is set and the database answers.
    let loaded = promo_gateway::Config::load(config)?;
    if let Some((line, problem)) = promo_gateway::check_ledger(&loaded, &env) {
        report.text.push_str(&line);
        report.text.push('\n');
        report.problems += usize::from(problem);
    }
    print!("{}", report.text);
    Ok(if report.problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn serve(config: &Path, args: ServeArgs) -> Result<(), StartupError> {
    // With --sandbox: the simulated vendors first (the gateway points at their address), and a
    // ledger of this run's own, deleted when the process ends, like the vendors' state.
    let mut sandbox_dir = None;
    let sandboxed = if args.sandbox {
        let wanted = args.sandbox_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081)));
        let listener = bind(wanted).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen { addr: wanted, source })?;
        let dir =
            tempfile::tempdir().map_err(|e| StartupError::Usage(format!("--sandbox: no temporary directory: {e}")))?;
        let ledger = dir.path().join("promo-gateway.sandbox.db");
        sandbox_dir = Some(dir);
        let vendors = promo_sandbox::Sandbox::new(promo_sandbox::Options::default());
        tokio::spawn(promo_sandbox::serve(listener, vendors, std::future::pending()));
        println!("sandbox: simulated vendors on http://{addr} (GET http://{addr}/<vendor>/_sandbox/codes lists what each holds)");
        Some(promo_gateway::Sandboxed { addr, ledger })
    } else {
        None
    };
    let (gateway, _lock) = open_with(config, sandboxed.as_ref())?;
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
    let served = promo_gateway::http::shutdown::serve(listener, router, limits, gateway.engine.clone(), grace, stop)
        .await
        .map_err(|source| StartupError::Listen { addr, source });
    drop(sandbox_dir);
    served
}

async fn sync(config: &Path, args: SyncArgs) -> Result<ExitCode, StartupError> {
    let (gateway, _lock) = open(config)?;
    let format = match args.file.extension().and_then(|e| e.to_str()) {
        Some("csv") => Format::Csv,
        Some("ndjson" | "jsonl") => Format::Ndjson,
        _ => {
            return Err(StartupError::Usage(format!(
                "{}: name a .csv, .ndjson or .jsonl file",
                args.file.display()
            )))
        }
    };
    if !args.file.is_file() {
        return Err(StartupError::Usage(format!("{}: no such file", args.file.display())));
    }
    let targets = if args.targets.is_empty() {
        gateway
            .engine
            .campaign(&args.campaign)
            .map(|c| c.upstreams.keys().cloned().collect())
            .unwrap_or_default()
    } else {
        args.targets
    };
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
    run_job(&gateway, spec).await
}

async fn mirror(config: &Path, args: MirrorArgs) -> Result<ExitCode, StartupError> {
    let (gateway, _lock) = open(config)?;
    let spec = JobSpec {
        campaign: args.campaign,
        targets: args.to,
        template: Default::default(),
        on_unsupported: None,
        source: Source::Mirror,
    };
    run_job(&gateway, spec).await
}

/// Starts a job, draws a bar per target until it ends (Ctrl-C cancels it cleanly), and prints
/// the summary. Non-zero exit when any delivery did not end with the code on the vendor.
async fn run_job(gateway: &Gateway, spec: JobSpec) -> Result<ExitCode, StartupError> {
    // On a shared ledger the serving replicas would adopt a job whose lease ran out.
    gateway.keep_leases();
    let engine = &gateway.engine;
    let id = engine
        .start_job(spec)
        .await
        .map_err(|e| StartupError::Usage(e.to_string()))?;
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:32}] {pos}/{len} {per_sec:>10} eta {eta:>4} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let mut status = engine.job_status(id).await.map_err(usage)?;
    let progress: Vec<(String, ProgressBar)> = status
        .targets_progress
        .iter()
        .map(|(target, p)| {
            let bar = bars.add(
                ProgressBar::new(p.total)
                    .with_style(style.clone())
                    .with_prefix(target.clone()),
            );
            (target.clone(), bar)
        })
        .collect();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        for (target, bar) in &progress {
            if let Some(p) = status.targets_progress.get(target) {
                bar.set_position(p.total - p.pending);
                bar.set_message(problems(&p.counts));
            }
        }
        if status.job.state != JobState::Running {
            break;
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                eprintln!("cancelling: calls in flight finish and are recorded");
                status = engine.cancel_job(id).await.map_err(usage)?;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        status = engine.job_status(id).await.map_err(usage)?;
    }
    for (_, bar) in &progress {
        bar.finish();
    }
    print!("{}", summary(&status));
    Ok(if status.failed() > 0 || undelivered(&status) > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// A refusal, worded as the API words it.
fn usage(e: impl Into<promo_gateway::http::error::ApiError>) -> StartupError {
    StartupError::Usage(e.into().to_string())
}

/// Deliveries that ended without the code on the vendor.
fn undelivered(status: &JobStatus) -> u64 {
    status
        .targets_progress
        .values()
        .flat_map(|p| p.counts.iter())
        .filter(|(s, _)| !s.is_delivered())
        .map(|(_, n)| n)
        .sum()
}

fn problems(counts: &std::collections::BTreeMap<Status, u64>) -> String {
    counts
        .iter()
        .filter(|(s, n)| !s.is_delivered() && **s != Status::Pending && **n > 0)
        .map(|(s, n)| format!("{} {n}", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table printed when a job ends: one row per target, one column per state seen.
fn summary(status: &JobStatus) -> String {
    let columns: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| status.targets_progress.values().any(|p| p.counts.contains_key(s)))
        .collect();
    let mut out = format!(
        "sync job {} {}: {} codes, campaign {}\n",
        status.job.id,
        format!("{:?}", status.job.state).to_lowercase(),
        status.job.total,
        status.job.campaign
    );
    out.push_str(&format!("{:<14}", "target"));
    for c in &columns {
        out.push_str(&format!("{:>16}", c.as_str()));
    }
    out.push('\n');
    for (target, p) in &status.targets_progress {
        out.push_str(&format!("{target:<14}"));
        for c in &columns {
            out.push_str(&format!("{:>16}", p.counts.get(c).copied().unwrap_or(0)));
        }
        out.push('\n');
    }
    if undelivered(status) > 0 {
        out.push_str(&format!(
            "see GET /v1/sync-jobs/{}/results?status=failed for each failure; POST /v1/sync-jobs/{}/retry sends them again\n",
            status.job.id, status.job.id
        ));
    }
    out
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
