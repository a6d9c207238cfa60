//! What stops the gateway from starting. A request's refusals are the domain's
//! (`crate::domain::error`) and become HTTP answers in one place, `crate::http::error`.

use std::path::PathBuf;

/// What stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the ledger {path}: {message}")]
    Ledger { path: PathBuf, message: String },
    /// The PostgreSQL ledger cannot be used: an unset variable, a URL it cannot read, a database
    /// that does not answer. Names the key and the host, never the URL (it may hold a password).
    #[error("cannot open the ledger: {key}: {message}")]
    Database { key: String, message: String },
    /// The shared rate budget cannot be used: `[rate_limit]` names a variable that is unset,
    /// or a Redis that does not answer. Never shows the URL (it may hold a password).
    #[error("rate_limit.redis_url_env ({var}): {message}")]
    RateLimit { var: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A command-line job that cannot start (a bad file, a job the API would refuse).
    #[error("{0}")]
    Usage(String),
    /// `serve` on an address other hosts can reach, with no gateway API key configured.
    #[error("refusing to listen on {addr} without gateway authentication: it is not a loopback address and no [[server.api_keys]] is configured; add server.api_keys to the config (see docs/configuration.md, Gateway authentication) or listen on 127.0.0.1")]
    Unprotected { addr: std::net::SocketAddr },
}
