//! promo-gateway: one HTTP API for promotion codes across commerce platforms.
//!
//! `config` reads config.toml and the campaign mappings, `auth` turns environment variables
//! into credentials, `upstream` makes rate-limited, retried calls to one vendor, `engine` fans
//! a code out to its targets, and `api` is the HTTP surface. Vendor translation lives in the
//! `promo-adapters` crate, which does no I/O.

pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
pub mod error;
pub mod upstream;

use std::path::Path;
use std::sync::Arc;

use axum::Router;

pub use config::Config;
pub use engine::Engine;
pub use error::StartupError;

/// Builds the router from a config file, reading credentials through `env`.
pub fn app_from_file(
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Router), StartupError> {
    let config = Config::load(config_path)?;
    let campaigns = config::load_campaigns(&config.mappings_dir(config_path))?;
    let engine = Engine::new(&config, campaigns, env)?;
    let router = api::router(Arc::new(engine), config.server.max_body_bytes);
    Ok((config, router))
}
