//! promo-gateway: one HTTP API for promotion codes across commerce platforms.
//!
//! This file is the composition root, the one place that names implementations. The layers,
//! each importing only those below it (`tests/layers.rs` checks it):
//! - `http`: the router, handlers, problem+json and the OpenAPI description;
//! - `engine`: validate, plan, record, deliver and resume creates and sync jobs;
//! - `upstream` (with `auth`, `redact`): calls to one vendor under its rate budget;
//! - `ports`: what the engine and upstreams need from outside (`Store`, `Admission`);
//! - `domain`: plain types and the ledger's rules as pure functions;
//! - implementations, chosen here: `store::sqlite`, `store::postgres`, `admission::local`, `admission::redis`.
//!
//! Vendor translation lives in the `promo-adapters` crate, which does no I/O. The simulated
//! vendors of `serve --sandbox` live in the `promo-sandbox` crate, named only here and in
//! `main.rs` ([`sandbox`] points the upstreams at them).

pub mod admission;
pub mod auth;
pub mod check_config;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod export;
pub mod gateway_auth;
pub mod http;
pub mod ports;
pub mod redact;
pub mod store;
pub mod upstream;

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use crate::http::Router;

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
    let gateway = Gateway::open(config_path, env, clock)?;
    gateway.resume();
    let router = http::api::router(gateway.engine.clone(), &gateway.config.server);
    Ok((gateway.config, router))
}

/// A configured engine on its ledger.
pub struct Gateway {
    pub config: Config,
    pub engine: Arc<Engine>,
    lease: std::time::Duration,
    /// The ledger is shared with other processes (PostgreSQL): they may die or stop and leave
    /// work to adopt while this one runs.
    shared: bool,
}

impl Gateway {
    /// Loads the config and mappings and opens (creating or migrating) the ledger.
    pub fn open(
        config_path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        clock: clock::SharedClock,
    ) -> Result<Self, StartupError> {
        Self::open_with(config_path, env, clock, None)
    }

    /// [`Gateway::open`], sandboxed when `sandbox` is given (see [`sandbox`]).
    pub fn open_with(
        config_path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        clock: clock::SharedClock,
        sandbox: Option<&Sandboxed>,
    ) -> Result<Self, StartupError> {
        let mut config = load_config(config_path, sandbox)?;
        let sandbox_env = sandbox_env(env);
        let env: &dyn Fn(&str) -> Option<String> = match sandbox {
            Some(_) => &sandbox_env,
            None => env,
        };
        gateway_auth::resolve(&mut config.server.api_keys, env).map_err(|message| StartupError::Config {
            path: config_path.to_owned(),
            message,
        })?;
        let campaigns = config::load_campaigns(&config.mappings_dir(config_path))?;
        let lease = std::time::Duration::from_secs(config.ledger.lease_seconds.into());
        let (store, shared) = ledger(&config, config_path, env)?;
        let upstreams = upstreams(&config, env, &clock)?;
        let engine = Arc::new(Engine::new(&config, campaigns, store, upstreams, clock)?);
        Ok(Self {
            config,
            engine,
            lease,
            shared,
        })
    }

    /// Inside a tokio runtime, takes over the work no live owner holds (the creates and sync
    /// jobs the last stop interrupted) and resumes it in the background, and keeps this
    /// process's leases renewed while it runs.
    pub fn resume(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = self.engine.clone();
        let (shared, every) = (self.shared, self.lease / 3);
        runtime.spawn(async move {
            adopt(&engine, "the last stop").await;
            if !shared {
                return;
            }
            // On a shared ledger, work of a replica that died is free once its lease runs
            // out, and work of one that stopped cleanly at once (it says so): look every third
            // of a lease, and whenever a replica says it released work.
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = engine.store.work_released() => {}
                }
                // A process that is stopping hands work over; it takes none.
                if engine.stopping() {
                    return;
                }
                adopt(&engine, "another process that stopped or died").await;
            }
        });
        self.keep_leases();
    }

    /// Inside a tokio runtime, keeps this process's leases renewed (every third of a lease)
    /// while it runs: what it works on stays its own. A CLI job on a shared ledger does only
    /// this (it adopts nothing from the serving replicas).
    pub fn keep_leases(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = self.engine.clone();
        let every = self.lease / 3;
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = engine.store.renew(engine.clock.now()).await {
                    tracing::warn!("could not renew this process's leases in the ledger: {e}");
                }
            }
        });
    }
}

/// Takes over the work no live owner holds and resumes it in the background: the sync jobs,
/// and the creates (resent where the call may not have reached the vendor, with a warning).
async fn adopt(engine: &Arc<Engine>, left_by: &'static str) {
    let adopted = match engine.store.adopt(engine.clock.now()).await {
        Ok(adopted) => adopted,
        Err(e) => {
            tracing::error!("could not read the work {left_by} left from the ledger: {e}");
            return;
        }
    };
    for &id in &adopted.jobs {
        tracing::info!(job = id, "resuming a sync job interrupted by {left_by}");
        engine.clone().spawn_job(id);
    }
    if !adopted.creates.is_empty() {
        let engine = engine.clone();
        tokio::spawn(async move {
            match engine.resume(adopted.creates).await {
                Ok(n) => tracing::info!(creates = n, "resumed creates interrupted by {left_by}"),
                Err(e) => tracing::error!("could not resume interrupted creates: {e}"),
            }
        });
    }
}

/// The ledger the config names: PostgreSQL (`ledger.url_env` or `ledger.url`), shared by
/// replicas, or the SQLite file (`ledger.path`), which the caller holds the lock of. Whether it
/// is shared.
fn ledger(
    config: &Config,
    config_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Arc<dyn ports::Store>, bool), StartupError> {
    let lease = chrono::Duration::seconds(config.ledger.lease_seconds.into());
    let Some((key, url)) = config.ledger.database_url(env) else {
        let options = store::sqlite::Options {
            reserve_bytes: config.ledger.reserve_bytes,
            owner: owner_name(),
            lease,
            // The caller holds the file's lock: what the last process held is free.
            sole_owner: true,
        };
        let ledger = store::sqlite::Ledger::open_with(&config.ledger_path(config_path), options)?;
        return Ok((Arc::new(ledger), false));
    };
    let fail = |message: String| StartupError::Database {
        key: key.clone(),
        message,
    };
    let url = url.map_err(fail)?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| fail("a PostgreSQL ledger is opened inside the gateway's runtime".into()))?;
    let options = store::postgres::Options {
        owner: owner_name(),
        lease,
        ..store::postgres::Options::default()
    };
    let connect = store::postgres::Ledger::connect(&url, options);
    let ledger = tokio::task::block_in_place(|| runtime.block_on(connect)).map_err(|e| fail(e.to_string()))?;
    Ok((Arc::new(ledger), true))
}

/// `check-config`'s line on a PostgreSQL ledger: whether the variable holds a URL and the
/// database answers (nothing is written to it), and whether that is a problem. `None` for the
/// SQLite ledger, which `check-config` does not open.
pub fn check_ledger(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, bool)> {
    let (key, url) = config.ledger.database_url(env)?;
    let url = match url {
        Ok(url) => url,
        Err(why) => return Some((format!("ledger: PROBLEM: {key}: {why}"), true)),
    };
    let probe = async { store::postgres::Ledger::probe(&url).await };
    let answered = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => tokio::task::block_in_place(|| runtime.block_on(probe)),
        Err(_) => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(probe),
            Err(e) => return Some((format!("ledger: PROBLEM: {key}: no runtime to ask it: {e}"), true)),
        },
    };
    Some(match answered {
        Ok(host) => (format!("ledger: PostgreSQL at {host} ({key}) answers"), false),
        Err(e) => (format!("ledger: PROBLEM: {key}: {e}"), true),
    })
}

/// `check-config`'s line on the shared rate budget: whether the variable holds a URL and the
/// Redis answers (over TLS as a `rediss://` URL and `redis_ca_file` ask; nothing is written),
/// and whether that is a problem. `None` without `[rate_limit] redis_url_env`.
pub fn check_rate_limit(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, bool)> {
    let var = config.rate_limit.redis_url_env.as_ref()?;
    let key = format!("rate_limit.redis_url_env ({var})");
    let Some(url) = env(var).filter(|v| !v.is_empty()) else {
        return Some((
            format!("rate limit: PROBLEM: {key}: the variable is not set; it must hold the redis:// URL"),
            true,
        ));
    };
    let prefix = config.rate_limit.redis_key_prefix.as_deref().unwrap_or("promo-gateway");
    let ca = config.rate_limit.redis_ca_file.as_deref();
    Some(match admission::redis::RedisBudget::connect(&url, prefix, ca) {
        Ok(budget) => (
            format!(
                "rate limit: Redis ({key}) answers{}",
                if budget.encrypted() { ", over TLS" } else { "" }
            ),
            false,
        ),
        Err(e) => (format!("rate limit: PROBLEM: {key}: {e}"), true),
    })
}

/// This process's name as an owner of work in the ledger: unique across restarts and hosts.
fn owner_name() -> String {
    format!("pid-{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// Where a sandboxed gateway (`serve --sandbox`) sends its calls and keeps its ledger.
pub struct Sandboxed {
    /// The simulated vendors' address.
    pub addr: std::net::SocketAddr,
    /// The ledger of the sandboxed run. Never the configured one: codes "created" at simulated
    /// vendors would otherwise count as created at the real ones, which would then never be
    /// called for them.
    pub ledger: std::path::PathBuf,
}

/// The config file, pointed at the simulated vendors when `sandbox` is given: what a sandboxed
/// run serves and what `check-config --sandbox` checks are one and the same.
pub fn load_config(config_path: &Path, sandbox: Option<&Sandboxed>) -> Result<Config, StartupError> {
    let mut config = Config::load(config_path)?;
    if let Some(target) = sandbox {
        self::sandbox(&mut config, target)?;
    }
    Ok(config)
}

/// The environment of a sandboxed run: the sandbox's own credentials under the variables
/// [`sandbox`] names, and everything else (the gateway's API keys) from `env`.
pub fn sandbox_env(env: &dyn Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        promo_sandbox::credentials::value(name)
            .map(str::to_owned)
            .or_else(|| env(name))
    }
}

/// Points every upstream at its simulated vendor: the base URL, an OAuth2 token URL, and the
/// sandbox's own credential variables in place of the file's (so no real credential is sent
/// to the sandbox, and none needs to be set). Only URLs on the sandbox remain, so a sandboxed
/// gateway calls no real vendor.
pub fn sandbox(config: &mut Config, target: &Sandboxed) -> Result<(), StartupError> {
    use promo_sandbox::credentials as vars;
    for (name, u) in &mut config.upstreams {
        let kind = u.kind.0;
        let unsimulated = || {
            StartupError::Usage(format!(
                "--sandbox: upstreams.{name}: no simulated vendor for kind {kind}"
            ))
        };
        let base_url = promo_sandbox::base_url(kind, target.addr).ok_or_else(unsimulated)?;
        u.auth = match &u.auth {
            config::AuthConfig::Bearer { .. } => config::AuthConfig::Bearer {
                token_env: vars::TOKEN_ENV.into(),
            },
            config::AuthConfig::Basic { .. } => config::AuthConfig::Basic {
                username_env: vars::USERNAME_ENV.into(),
                password_env: vars::PASSWORD_ENV.into(),
            },
            config::AuthConfig::Oauth2 {
                grant,
                refresh_token_env,
                scopes,
                client_auth,
                ..
            } => config::AuthConfig::Oauth2 {
                token_url: promo_sandbox::token_url(kind, target.addr).ok_or_else(unsimulated)?,
                grant: *grant,
                client_id_env: vars::CLIENT_ID_ENV.into(),
                client_secret_env: vars::CLIENT_SECRET_ENV.into(),
                refresh_token_env: refresh_token_env.as_ref().map(|_| vars::REFRESH_TOKEN_ENV.into()),
                scopes: scopes.clone(),
                client_auth: *client_auth,
            },
        };
        u.base_url = base_url.clone();
        u.sandbox = Some(base_url);
    }
    config.ledger.path = target.ledger.clone();
    // Never the shared database either, for the same reason; nor the real vendors' shared rate
    // budget, which simulated calls would spend.
    config.ledger.url_env = None;
    config.ledger.url = None;
    config.rate_limit.redis_url_env = None;
    Ok(())
}

/// Every configured upstream, each with its rate budget: this process's own, or one shared
/// through Redis when `[rate_limit] redis_url_env` is set.
fn upstreams(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    clock: &clock::SharedClock,
) -> Result<std::collections::BTreeMap<String, Arc<upstream::Upstream>>, StartupError> {
    let shared = match &config.rate_limit.redis_url_env {
        None => None,
        Some(var) => {
            let fail = |message: String| StartupError::RateLimit {
                var: var.clone(),
                message,
            };
            let url = env(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| fail("the variable is not set; it must hold the redis:// URL".into()))?;
            let prefix = config.rate_limit.redis_key_prefix.as_deref().unwrap_or("promo-gateway");
            let ca = config.rate_limit.redis_ca_file.as_deref();
            let budget = admission::redis::RedisBudget::connect(&url, prefix, ca).map_err(|e| fail(e.to_string()))?;
            Some(budget)
        }
    };
    config
        .upstreams
        .iter()
        .map(|(name, u)| {
            let admission: Arc<dyn ports::Admission> = match &shared {
                Some(budget) => {
                    Arc::new(budget.upstream(name, u.rate_limit.per_second, u.rate_limit.burst, clock.clone()))
                }
                None => {
                    let per_second = NonZeroU32::new(u.rate_limit.per_second).expect("checked by Config::check");
                    let burst = NonZeroU32::new(u.rate_limit.burst).expect("checked by Config::check");
                    Arc::new(admission::local::LocalAdmission::new(per_second, burst, clock.clone()))
                }
            };
            let upstream = upstream::Upstream::new(name, u, env, clock.clone(), admission)?;
            Ok((name.clone(), Arc::new(upstream)))
        })
        .collect()
}
