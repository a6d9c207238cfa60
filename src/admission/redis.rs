//! One rate budget and one pause per upstream, shared by every replica through Redis.
//!
//! Each admission is one atomic Lua script (GCRA, as in redis-gcra and go-redis's redis_rate):
//! it reads Redis's own clock (`TIME`), so the replicas' clocks never meet, and answers either
//! "go" (a slot taken) or how long until the next slot frees, so a waiting call sleeps exactly
//! that long instead of polling. The budget is keyed by upstream name and quota, so a changed
//! `rate_limit` starts a fresh budget rather than inheriting one paced for another quota.
//!
//! A vendor's Retry-After pause is a key every replica's admission reads in the same script.
//! It is stored as a length of time from Redis's clock, for the same reason.
//!
//! No Redis, no call: an admission that cannot reach Redis is an error, never a slot.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::clock::SharedClock;
use crate::ports::{Admission, AdmissionError, Admit};
use crate::redact::Redactor;

/// KEYS: budget, pause. ARGV: emission interval (µs), burst.
/// Returns `{0, 0}` (a slot taken), `{1, µs until the next slot}` or `{2, µs of pause left}`.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
    return {2, pause - now}
end
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
    tat = now
end
local allowed_at = tat - tolerance
if now < allowed_at then
    return {1, allowed_at - now}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {0, 0}
";

/// KEYS: pause. ARGV: µs of pause from now. Extends the pause, never shortens it; returns
/// whether it extended it.
const PAUSE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_end = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause_end <= current then
    return 0
end
redis.call('SET', KEYS[1], string.format('%d', pause_end), 'PX', math.ceil((pause_end - now) / 1000) + 1000)
return 1
";

/// KEYS: pause. Returns µs of pause left, 0 when none.
const PAUSED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then
    return pause - now
end
return 0
";

/// Redis as every upstream's admission: one connection shared by them all.
#[derive(Clone)]
pub struct RedisBudget {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    /// A `rediss://` URL: every connection is TLS, verified as `connect` was told.
    tls: bool,
    /// Opened on first use; a failed first attempt is tried again by the next caller.
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    /// The URL's password, in every form, kept out of error messages.
    redactor: Redactor,
    scripts: Scripts,
}

struct Scripts {
    admit: redis::Script,
    pause: redis::Script,
    paused: redis::Script,
}

/// Why Redis could not be used at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(String);

/// How long one Redis command may take before the admission counts Redis as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

impl RedisBudget {
    /// Checks that `url` answers (a PING within a second), so that a wrong URL or a Redis that
    /// is down stops start-up instead of holding every call. A `rediss://` URL is TLS, verified
    /// against `ca_file` (PEM) when given, else the system's roots.
    pub fn connect(url: &str, prefix: &str, ca_file: Option<&std::path::Path>) -> Result<Self, Unreachable> {
        let mut redactor = Redactor::default();
        let parsed = url::Url::parse(url).ok();
        if let Some(password) = parsed.as_ref().and_then(|u| u.password()) {
            redactor.secret(&secrecy::SecretString::from(password.to_owned()));
        }
        let fail = |e: redis::RedisError| Unreachable(redactor.text(format!("Redis does not answer: {e}")));
        let tls = parsed.as_ref().is_some_and(|u| u.scheme() == "rediss");
        let client = match ca_file {
            None => redis::Client::open(url).map_err(fail)?,
            Some(path) if !tls => {
                return Err(Unreachable(format!(
                    "rate_limit.redis_ca_file ({}) is set, but the URL is not rediss:// (TLS)",
                    path.display()
                )))
            }
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| Unreachable(format!("rate_limit.redis_ca_file {}: {e}", path.display())))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(url, certificates).map_err(fail)?
            }
        };
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .map_err(fail)?;
        conn.set_read_timeout(Some(Duration::from_secs(1))).map_err(fail)?;
        redis::cmd("PING").query::<String>(&mut conn).map_err(fail)?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                tls,
                connection: OnceCell::new(),
                prefix: prefix.to_owned(),
                redactor,
                scripts: Scripts {
                    admit: redis::Script::new(ADMIT),
                    pause: redis::Script::new(PAUSE),
                    paused: redis::Script::new(PAUSED),
                },
            }),
        })
    }

    /// Whether its connections are TLS (a `rediss://` URL).
    pub fn encrypted(&self) -> bool {
        self.shared.tls
    }

    /// The admission of one upstream, `per_second` calls a second with bursts of `burst`.
    pub fn upstream(&self, name: &str, per_second: u32, burst: u32, clock: SharedClock) -> RedisAdmission {
        let prefix = &self.shared.prefix;
        RedisAdmission {
            shared: self.shared.clone(),
            budget_key: format!("{prefix}:{name}:budget:{per_second}:{burst}"),
            pause_key: format!("{prefix}:{name}:pause"),
            interval_us: 1_000_000 / u64::from(per_second.max(1)),
            burst: burst.max(1),
            clock,
        }
    }
}

impl Shared {
    async fn connection(&self) -> Result<ConnectionManager, AdmissionError> {
        self.connection
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(RESPONSE_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: redis::RedisError) -> AdmissionError {
        AdmissionError(format!("Redis: {}", self.redactor.text(e.to_string())))
    }
}

/// One upstream's budget and pause in Redis.
pub struct RedisAdmission {
    shared: Arc<Shared>,
    budget_key: String,
    pause_key: String,
    interval_us: u64,
    burst: u32,
    /// The replica's clock, only to turn a pause's remaining length into a time of its own.
    clock: SharedClock,
}

impl RedisAdmission {
    fn micros_from_now(&self, micros: i64) -> DateTime<Utc> {
        self.clock.now() + chrono::Duration::microseconds(micros)
    }
}

#[async_trait::async_trait]
impl Admission for RedisAdmission {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn encrypted(&self) -> Option<bool> {
        Some(self.shared.tls)
    }

    async fn admit(&self) -> Result<Admit, AdmissionError> {
        let mut conn = self.shared.connection().await?;
        let (verdict, micros): (i64, i64) = self
            .shared
            .scripts
            .admit
            .key(&self.budget_key)
            .key(&self.pause_key)
            .arg(self.interval_us)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.shared.error(e))?;
        Ok(match verdict {
            0 => Admit::Now,
            1 => Admit::After(Duration::from_micros(micros.max(0) as u64)),
            _ => Admit::Paused(self.micros_from_now(micros)),
        })
    }

    async fn pause(&self, until: DateTime<Utc>) -> Result<bool, AdmissionError> {
        let micros = (until - self.clock.now()).num_microseconds().unwrap_or(i64::MAX).max(0);
        if micros == 0 {
            return Ok(false);
        }
        let mut conn = self.shared.connection().await?;
        let extended: i64 = self
            .shared
            .scripts
            .pause
            .key(&self.pause_key)
            .arg(micros)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.shared.error(e))?;
        Ok(extended == 1)
    }

    async fn paused_until(&self) -> Result<Option<DateTime<Utc>>, AdmissionError> {
        let mut conn = self.shared.connection().await?;
        let left: i64 = self
            .shared
            .scripts
            .paused
            .key(&self.pause_key)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.shared.error(e))?;
        Ok((left > 0).then(|| self.micros_from_now(left)))
    }
}
