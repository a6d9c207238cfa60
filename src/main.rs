use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tower_http::trace::TraceLayer;

/// One API for promotion codes across Spacebring, Partnero, Moltin, Limio and Loop.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The configuration file.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// Listen here instead of the file's `server.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        // stdout carries only the "listening on" line that scripts read.
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("promo-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), promo_gateway::StartupError> {
    let env = |name: &str| std::env::var(name).ok();
    let (config, router) = promo_gateway::app_from_file(&args.config, &env)?;
    let addr = args.listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| promo_gateway::StartupError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| promo_gateway::StartupError::Listen { addr, source })?;
    tracing::info!(%local, upstreams = config.upstreams.len(), "promo-gateway listening");
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {local}");
    axum::serve(listener, router.layer(TraceLayer::new_for_http()))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|source| promo_gateway::StartupError::Listen { addr, source })
}

/// Ctrl-C, or SIGTERM from a service manager: stop accepting, finish the requests in flight.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
