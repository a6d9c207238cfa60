//! `config.toml`: the listen address, where mappings live, and the named upstreams.
//!
//! The file holds no secret: each upstream names the environment variables its credentials come
//! from. A malformed file stops start-up with the dotted path of the bad key; a missing
//! credential does not (the upstream is reported unconfigured, see [`crate::auth`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use promo_adapters::mapping::Campaign;
use promo_adapters::money::Currency;
use promo_adapters::settings::{self, ApiVersion, AuthScheme, Settings, Vendor};
use promo_adapters::VendorKind;
use serde::Deserialize;

use crate::error::StartupError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Where the upstreams' rate budgets live: in this process, or shared through Redis.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Named upstream instances: two of one kind can coexist (`limio-eu`, `limio-us`).
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Request bodies larger than this are refused with 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A sync job's uploaded CSV or NDJSON file (streamed to disk, never held in memory) may be
    /// this large; a job's JSON body may be `max_job_json_bytes`.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    #[serde(default = "default_max_job_json")]
    pub max_job_json_bytes: usize,
    /// Directory of campaign mapping files, relative to the config file.
    #[serde(default = "default_mappings")]
    pub mappings_dir: PathBuf,
    /// Gateway API keys (`[[server.api_keys]]`); none: the API is open, and `serve` listens on
    /// loopback addresses only. See [`crate::gateway_auth`].
    #[serde(default)]
    pub api_keys: Vec<crate::gateway_auth::ApiKeyConfig>,
    /// On SIGTERM, how long requests in flight may take to finish before the process exits
    /// anyway; what did not finish stays pending in the ledger for the next start.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_ms: u64,
    /// How long a client may take to send a request's line and headers (and how long an idle
    /// keep-alive connection waits for its next request) before the connection is closed: a
    /// client sending one header byte a second would otherwise hold a connection for ever.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// How long a request body (other than a sync job's) may take to arrive in full after its
    /// headers; then 408 and the connection is closed.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_ms: u64,
    /// The same for a sync job's body (an upload of up to `max_upload_bytes`): 10 minutes
    /// carries the default 1 GiB at 1.8 MB/s.
    #[serde(default = "default_upload_read_timeout")]
    pub upload_read_timeout_ms: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes,
    /// so slow or idle clients cannot exhaust the process's file descriptors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_upload_bytes: default_max_upload(),
            max_job_json_bytes: default_max_job_json(),
            mappings_dir: default_mappings(),
            api_keys: Vec::new(),
            shutdown_grace_ms: default_shutdown_grace(),
            header_read_timeout_ms: default_header_read_timeout(),
            body_read_timeout_ms: default_body_read_timeout(),
            upload_read_timeout_ms: default_upload_read_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

/// `[rate_limit]`: without `redis_url_env`, each process keeps its own budget per upstream
/// (right for one process); with it, every replica draws on one budget per upstream in Redis.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The environment variable holding the `redis://` URL (it may carry a password).
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// Prefix of the gateway's Redis keys, for a Redis shared with other applications.
    #[serde(default)]
    pub redis_key_prefix: Option<String>,
    /// A `rediss://` Redis's CA (a PEM file) when it is not one the system trusts.
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
}

/// Where the ledger lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// The SQLite file, relative to the config file; created when absent.
    #[serde(default = "default_ledger_path")]
    pub path: PathBuf,
    /// How long an `Idempotency-Key` names its create; after that the key may be used again.
    #[serde(default = "default_key_hours")]
    pub idempotency_key_hours: u32,
    /// Room kept on the ledger's filesystem (a file beside it) so that the outcomes of calls
    /// already made can still be recorded when the disk fills; 0 keeps none.
    #[serde(default = "default_reserve_bytes")]
    pub reserve_bytes: u64,
    /// How long this process's hold on a create or job it works on lasts without renewal
    /// (renewed every third of it); another owner may take over the work only after it.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    /// The environment variable holding a `postgres://` URL: the ledger is then that database,
    /// shared by every replica, instead of the SQLite file at `path`. From the environment
    /// because the URL may carry a password.
    #[serde(default)]
    pub url_env: Option<String>,
    /// A `postgres://` URL without a password (local use, a socket or trust authentication);
    /// one with a password belongs in the variable `url_env` names.
    #[serde(default)]
    pub url: Option<String>,
}

impl LedgerConfig {
    /// Where the PostgreSQL ledger is, when the config names one: the key that names it (for
    /// messages: `ledger.url_env (NAME)` or `ledger.url`), and the URL or why it cannot be had.
    pub fn database_url(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, Result<String, String>)> {
        if let Some(var) = &self.url_env {
            let url = env(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| "the variable is not set; it must hold the postgres:// URL of the ledger".to_owned());
            return Some((format!("ledger.url_env ({var})"), url));
        }
        self.url.as_ref().map(|url| ("ledger.url".to_owned(), Ok(url.clone())))
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            path: default_ledger_path(),
            idempotency_key_hours: default_key_hours(),
            reserve_bytes: default_reserve_bytes(),
            lease_seconds: default_lease_seconds(),
            url_env: None,
            url: None,
        }
    }
}

/// The room kept beside the ledger for outcomes when the disk fills (`ledger.reserve_bytes`).
pub const DEFAULT_RESERVE_BYTES: u64 = 1024 * 1024;

fn default_reserve_bytes() -> u64 {
    DEFAULT_RESERVE_BYTES
}

fn default_lease_seconds() -> u32 {
    30
}

fn default_key_hours() -> u32 {
    24
}

fn default_ledger_path() -> PathBuf {
    PathBuf::from("promo-gateway.db")
}

fn default_max_upload() -> u64 {
    1 << 30
}

fn default_max_job_json() -> usize {
    16 << 20
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_mappings() -> PathBuf {
    PathBuf::from("mappings")
}
fn default_shutdown_grace() -> u64 {
    10_000
}
fn default_header_read_timeout() -> u64 {
    10_000
}
fn default_body_read_timeout() -> u64 {
    30_000
}
fn default_upload_read_timeout() -> u64 {
    600_000
}
fn default_max_connections() -> usize {
    1024
}

/// The vendor API an upstream speaks, as written in the file: a `kind` name of the adapters'
/// registry ([`promo_adapters::vendors::REGISTRY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(pub &'static str);

impl Kind {
    /// The registry's entry for this kind: its settings and their rules.
    pub fn vendor(self) -> &'static Vendor {
        settings::vendor(self.0).expect("a Kind is read from the registry's names")
    }
}

/// Read as an enum of the registry's names, so that an unknown one is refused with the list.
impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{EnumAccess, Error, VariantAccess, Visitor};
        struct Name(Kind);
        impl<'de> Deserialize<'de> for Name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Names;
                impl Visitor<'_> for Names {
                    type Value = Name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("variant identifier")
                    }
                    fn visit_str<E: Error>(self, v: &str) -> Result<Name, E> {
                        let kinds = settings::kinds();
                        match kinds.iter().find(|k| **k == v) {
                            Some(k) => Ok(Name(Kind(k))),
                            None => Err(E::unknown_variant(v, kinds)),
                        }
                    }
                }
                deserializer.deserialize_identifier(Names)
            }
        }
        struct Kinds;
        impl<'de> Visitor<'de> for Kinds {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("enum Kind")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Kind, A::Error> {
                let (Name(kind), variant) = data.variant()?;
                variant.unit_variant()?;
                Ok(kind)
            }
        }
        deserializer.deserialize_enum("Kind", settings::kinds(), Kinds)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub kind: Kind,
    /// The vendor's API version, for vendors with several (see the vendor module's `VENDOR`).
    #[serde(default)]
    pub version: Option<ApiVersion>,
    /// The vendor's API root; for Limio the tenant, `https://{tenant}/api`.
    pub base_url: url::Url,
    pub auth: AuthConfig,
    pub rate_limit: RateLimit,
    /// One call, from connecting to the answer's last byte.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Opening the connection (TCP and TLS); a call that never connected is safe to retry.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default)]
    pub retry: Retry,
    /// Calls in flight at once to this upstream.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// How long a client's call may wait for the rate limiter and an in-flight slot before it
    /// is answered `throttled` (sync jobs wait as long as it takes).
    #[serde(default = "default_limiter_wait")]
    pub limiter_wait_ms: u64,
    #[serde(default)]
    pub breaker: Breaker,
    /// Answers longer than this are not read further: the call is `failed`.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// IANA zone in which the vendor counts date-only fields.
    #[serde(default = "default_tz")]
    pub timezone: chrono_tz::Tz,
    /// The vendor's network id, for vendors whose calls name one (a header).
    #[serde(default)]
    pub network_id: Option<String>,
    /// The currency of the vendor account, for vendors whose amounts carry none. Amounts in any
    /// other currency, or any amount while it is unset, are refused for this upstream.
    #[serde(default)]
    pub currency: Option<Currency>,
    /// The adapter kind the settings chose, once [`Config::parse`] checked them.
    #[serde(skip)]
    vendor: Option<VendorKind>,
    /// Set by `serve --sandbox` (never by the file): the simulated vendor this upstream was
    /// pointed at, in place of the file's `base_url` and credentials.
    #[serde(skip)]
    pub sandbox: Option<url::Url>,
}

fn default_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    2_000
}
fn default_limiter_wait() -> u64 {
    5_000
}
fn default_max_response() -> usize {
    1024 * 1024
}
fn default_in_flight() -> usize {
    16
}
fn default_tz() -> chrono_tz::Tz {
    chrono_tz::Tz::UTC
}

/// Where an upstream's credentials come from. Only names of environment variables live here.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer { token_env: String },
    /// `Authorization: Basic base64(user:password)`.
    Basic { username_env: String, password_env: String },
    /// OAuth2: a token from `token_url`, cached, shared and refreshed by the gateway.
    Oauth2 {
        token_url: url::Url,
        grant: Grant,
        client_id_env: String,
        client_secret_env: String,
        /// Required for the refresh-token grant.
        #[serde(default)]
        refresh_token_env: Option<String>,
        #[serde(default)]
        scopes: Vec<String>,
        /// How the client authenticates at the token endpoint.
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

/// RFC 6749 §2.3.1: HTTP Basic (which every server must accept) or form fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained calls per second.
    pub per_second: u32,
    /// Calls allowed at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Tries in all, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The first back-off; each next one doubles, with jitter.
    #[serde(default = "default_base_delay")]
    pub base_delay_ms: u64,
    /// No back-off is longer than this (a vendor's Retry-After is honoured as given).
    #[serde(default = "default_max_delay")]
    pub max_delay_ms: u64,
    /// The longest Retry-After pause a client's call sits through; a longer one is answered at
    /// once `throttled`, with the time the upstream takes calls again. 0: never wait one out.
    #[serde(default = "default_max_wait")]
    pub max_wait_ms: u64,
    /// Also retry after a timeout or a broken connection *after* the request went out (and
    /// after a 504). Only safe where the vendor refuses a second code of the same name, so that
    /// a retry cannot create a duplicate: its 409 is then read as `already_exists`.
    #[serde(default)]
    pub unconfirmed: bool,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            base_delay_ms: default_base_delay(),
            max_delay_ms: default_max_delay(),
            max_wait_ms: default_max_wait(),
            unconfirmed: false,
        }
    }
}

/// The circuit breaker: after `failures` transient failures in a row (timeouts, unreachable,
/// 5xx, unreadable answers), calls fail fast for `cool_down_ms`; then one trial call decides.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breaker {
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    #[serde(default = "default_cool_down")]
    pub cool_down_ms: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            failures: default_breaker_failures(),
            cool_down_ms: default_cool_down(),
        }
    }
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_cool_down() -> u64 {
    30_000
}
fn default_max_wait() -> u64 {
    30_000
}

fn default_attempts() -> u32 {
    3
}
fn default_base_delay() -> u64 {
    200
}
fn default_max_delay() -> u64 {
    5_000
}

impl UpstreamConfig {
    /// The adapter kind this upstream uses.
    pub fn vendor(&self) -> VendorKind {
        self.vendor.expect("Config::parse picks every upstream's adapter kind")
    }

    /// The vendor settings, as the adapters' registry reads them.
    pub fn settings(&self) -> Settings<'_> {
        Settings {
            version: self.version,
            network_id: self.network_id.as_deref(),
            currency: self.currency,
            timezone: self.timezone,
            auth: match self.auth {
                AuthConfig::Bearer { .. } => AuthScheme::Bearer,
                AuthConfig::Basic { .. } => AuthScheme::Basic,
                AuthConfig::Oauth2 { .. } => AuthScheme::Oauth2,
            },
        }
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, StartupError> {
        let text = std::fs::read_to_string(path).map_err(|e| StartupError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        Self::parse(&text).map_err(|message| StartupError::Config {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config: Config = parse_toml(text)?;
        config.check()?;
        Ok(config)
    }

    /// Rules serde cannot express, each naming its key.
    fn check(&mut self) -> Result<(), String> {
        crate::gateway_auth::check(&self.server.api_keys)?;
        let server = &self.server;
        for (key, value) in [
            ("header_read_timeout_ms", server.header_read_timeout_ms),
            ("body_read_timeout_ms", server.body_read_timeout_ms),
            ("upload_read_timeout_ms", server.upload_read_timeout_ms),
            ("max_connections", server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(format!("server.{key}: must be at least 1"));
            }
        }
        if self.ledger.url_env.is_some() && self.ledger.url.is_some() {
            return Err(
                "ledger.url, ledger.url_env: name the PostgreSQL ledger once (url_env when the URL holds a password)"
                    .into(),
            );
        }
        if let Some(url) = &self.ledger.url {
            // Never echo the URL: it is what must not hold a password.
            match url::Url::parse(url) {
                Ok(u) if !matches!(u.scheme(), "postgres" | "postgresql") => {
                    return Err("ledger.url: must be a postgres:// URL".into())
                }
                Ok(u) if u.password().is_some() => {
                    return Err("ledger.url: holds a password; put the URL in an environment variable and name it in ledger.url_env".into())
                }
                Ok(_) => {}
                Err(_) => return Err("ledger.url: must be a postgres:// URL".into()),
            }
        }
        if self.ledger.lease_seconds < 3 {
            return Err("ledger.lease_seconds: must be at least 3 (a lease is renewed every third of it)".into());
        }
        for (name, u) in &mut self.upstreams {
            let key = |k: &str| format!("upstreams.{name}.{k}");
            if u.rate_limit.per_second == 0 {
                return Err(format!("{}: must be at least 1", key("rate_limit.per_second")));
            }
            if u.rate_limit.burst == 0 {
                return Err(format!("{}: must be at least 1", key("rate_limit.burst")));
            }
            if u.timeout_ms == 0 {
                return Err(format!("{}: must be at least 1", key("timeout_ms")));
            }
            if u.connect_timeout_ms == 0 {
                return Err(format!("{}: must be at least 1", key("connect_timeout_ms")));
            }
            if u.retry.max_attempts == 0 {
                return Err(format!("{}: must be at least 1", key("retry.max_attempts")));
            }
            if u.retry.max_delay_ms < u.retry.base_delay_ms {
                return Err(format!(
                    "{}: must be at least retry.base_delay_ms ({})",
                    key("retry.max_delay_ms"),
                    u.retry.base_delay_ms
                ));
            }
            if u.max_in_flight == 0 {
                return Err(format!("{}: must be at least 1", key("max_in_flight")));
            }
            if u.limiter_wait_ms == 0 {
                return Err(format!("{}: must be at least 1", key("limiter_wait_ms")));
            }
            if u.breaker.failures == 0 {
                return Err(format!("{}: must be at least 1", key("breaker.failures")));
            }
            if u.breaker.cool_down_ms == 0 {
                return Err(format!("{}: must be at least 1", key("breaker.cool_down_ms")));
            }
            if u.max_response_bytes == 0 {
                return Err(format!("{}: must be at least 1", key("max_response_bytes")));
            }
            match settings::configure(u.kind.vendor(), &u.settings()) {
                Ok(vendor) => u.vendor = Some(vendor),
                Err(e) => return Err(format!("{}: {}", key(e.key), e.message)),
            }
            if let AuthConfig::Oauth2 {
                grant: Grant::RefreshToken,
                refresh_token_env: None,
                ..
            } = u.auth
            {
                return Err(format!(
                    "{}: required with grant = \"refresh_token\"",
                    key("auth.refresh_token_env")
                ));
            }
        }
        Ok(())
    }

    /// The mappings directory, resolved against the config file's own directory.
    pub fn mappings_dir(&self, config_path: &Path) -> PathBuf {
        relative_to(config_path, &self.server.mappings_dir)
    }

    /// The ledger file, resolved against the config file's own directory.
    pub fn ledger_path(&self, config_path: &Path) -> PathBuf {
        relative_to(config_path, &self.ledger.path)
    }
}

fn relative_to(config_path: &Path, path: &Path) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join(path)
}

/// Deserializes TOML; an error names the dotted path of the offending key.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.trim();
        if path == "." {
            inner.to_owned()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Loads every `<campaign>.toml` in a directory. A malformed file stops start-up, naming it.
pub fn load_campaigns(dir: &Path) -> Result<BTreeMap<String, Campaign>, StartupError> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(StartupError::Read {
                path: dir.to_owned(),
                source: e,
            })
        }
    };
    for entry in entries {
        let path = entry
            .map_err(|e| StartupError::Read {
                path: dir.to_owned(),
                source: e,
            })?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| StartupError::Read {
            path: path.clone(),
            source: e,
        })?;
        let campaign: Campaign = parse_toml(&text).map_err(|message| StartupError::Config {
            path: path.clone(),
            message,
        })?;
        out.insert(name, campaign);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOP: &str = r#"
[upstreams.loop]
kind = "loop"
base_url = "https://payments.platform.loop.health"
auth = { scheme = "bearer", token_env = "LOOP_API_TOKEN" }
rate_limit = { per_second = 10, burst = 10 }
"#;

    #[test]
    fn the_issue_shape_parses() {
        let c = Config::parse(LOOP).unwrap();
        assert_eq!(c.upstreams["loop"].vendor(), VendorKind::Loop);
        assert_eq!(c.upstreams["loop"].timeout_ms, 10_000);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = LOOP.replace("per_second = 10", "per_second = \"ten\"");
        let e = Config::parse(&bad).unwrap_err();
        assert!(e.starts_with("upstreams.loop.rate_limit.per_second"), "{e}");

        let bad = LOOP.replace("kind = \"loop\"", "kind = \"lop\"");
        let e = Config::parse(&bad).unwrap_err();
        assert!(e.starts_with("upstreams.loop.kind"), "{e}");

        let bad = LOOP.replace("[upstreams.loop]", "[upstreams.loop]\ntimeout = 5");
        let e = Config::parse(&bad).unwrap_err();
        assert!(e.contains("timeout"), "{e}");

        let bad = LOOP.replace("kind = \"loop\"", "kind = \"limio\"");
        let e = Config::parse(&bad).unwrap_err();
        assert!(e.starts_with("upstreams.loop.version"), "{e}");
    }

    #[test]
    fn spacebring_bearer_needs_a_network_id() {
        let text = r#"
[upstreams.sb]
kind = "spacebring"
base_url = "https://api.spacebring.com"
auth = { scheme = "bearer", token_env = "SB_TOKEN" }
rate_limit = { per_second = 1, burst = 1 }
"#;
        let e = Config::parse(text).unwrap_err();
        assert!(e.starts_with("upstreams.sb.network_id"), "{e}");
        let basic = text.replace(
            r#"{ scheme = "bearer", token_env = "SB_TOKEN" }"#,
            r#"{ scheme = "basic", username_env = "K", password_env = "S" }"#,
        );
        assert!(Config::parse(&basic).is_ok());
    }

    #[test]
    fn spacebring_oauth_needs_a_network_id() {
        let text = r#"
[upstreams.sb]
kind = "spacebring"
base_url = "https://api.spacebring.com"
auth = { scheme = "oauth2", grant = "client_credentials", token_url = "https://api.spacebring.com/oauth2/token", client_id_env = "A", client_secret_env = "B" }
rate_limit = { per_second = 1, burst = 1 }
"#;
        let e = Config::parse(text).unwrap_err();
        assert!(e.starts_with("upstreams.sb.network_id"), "{e}");
    }
}
