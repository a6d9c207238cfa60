//! promo-gateway: one HTTP API for promotion codes across commerce platforms.
//!
//! `config` reads config.toml and the campaign mappings, `auth` turns environment variables
//! into credentials, `upstream` makes rate-limited, retried calls to one vendor, `engine` fans
//! a code out to its targets, and `api` is the HTTP surface. Vendor translation lives in the
//! `promo-adapters` crate, which does no I/O.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod ledger;
pub mod upstream;

use std::path::Path;
use std::sync::Arc;

use axum::Router;

pub use config::Config;
pub use engine::Engine;
pub use error::StartupError;

/// Builds the router from a config file, reading credentials through `env`, and (inside a
/// tokio runtime) starts resending the creates that a crash interrupted.
pub fn app_from_file(
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Router), StartupError> {
    app(config_path, env, Arc::new(clock::SystemClock))
}

/// [`app_from_file`] on a given clock: tests move a [`clock::ManualClock`] by hand.
pub fn app(
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    clock: clock::SharedClock,
) -> Result<(Config, Router), StartupError> {
    let config = Config::load(config_path)?;
    let campaigns = config::load_campaigns(&config.mappings_dir(config_path))?;
    let ledger_path = config.ledger_path(config_path);
    let ledger = ledger::Ledger::open(&ledger_path)?;
    let interrupted = ledger.interrupted().map_err(|e| StartupError::Ledger {
        path: ledger_path,
        message: e.to_string(),
    })?;
    let engine = Arc::new(Engine::new(&config, campaigns, ledger, env, clock)?);
    if let (false, Ok(runtime)) = (interrupted.is_empty(), tokio::runtime::Handle::try_current()) {
        let engine = engine.clone();
        runtime.spawn(async move {
            match engine.resume(interrupted).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(creates = n, "resumed creates interrupted by the last stop"),
                Err(e) => tracing::error!("could not resume interrupted creates: {e}"),
            }
        });
    }
    let router = api::router(engine, config.server.max_body_bytes);
    Ok((config, router))
}
