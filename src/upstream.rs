//! One configured upstream and the way every call to it is made: its own HTTP client (connect
//! timeout), rate limiter, cap on calls in flight, total timeout, retry policy, Retry-After pause,
//! circuit breaker and credentials.
//!
//! Retries happen only where a second call cannot create a second code: after a 429 (the vendor
//! refused to process the call), after a connection that never opened, and after a 502/503 (a
//! proxy in front of the vendor answered). A timeout, a connection that broke after the request
//! went out, a 2xx whose body broke off, or a 504 may follow a create the vendor did make; those
//! are retried only where the upstream says `retry.unconfirmed = true` (a vendor that refuses a
//! second code of the same name, so that the retry's 409 reads as `already_exists`).
//!
//! An answer whose body breaks off after its status and headers arrived is reported with that
//! status, not as a broken connection: the vendor did answer. Every HTTP call is counted in
//! [`UpstreamStats`] and in [`Sent::calls`], the call an OAuth2 401 makes again included.
//!
//! Every wait a vendor imposes (a Retry-After pause, back-off, the breaker's cool-down) is
//! measured on the gateway's [`crate::clock`]; the per-call HTTP timeouts and the rate limiter
//! keep real time.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use promo_adapters::adapter::parse_retry_after;
use promo_adapters::adapter::RetryAfter;
use promo_adapters::operation::{Operation, RevokeOutcome};
use promo_adapters::read::{Cursor, Page, ReadOutcome, VendorCode};
use promo_adapters::{Adapter, FailureCause, Outcome, PromoCode, VendorKind, VendorRequest, VendorResponse};
use rand::Rng;
use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::auth::{Auth, AuthError, Authorization, Credentials};
use crate::clock::SharedClock;
use crate::config::{Breaker as BreakerConfig, Retry, UpstreamConfig};
use crate::ports::{Admission, AdmissionError, Admit};
use crate::redact::Redactor;

pub struct Upstream {
    pub name: String,
    pub vendor: VendorKind,
    pub adapter: Box<dyn Adapter>,
    pub timezone: chrono_tz::Tz,
    pub network_id: Option<String>,
    /// The vendor account's currency, for vendors whose amounts carry none.
    pub currency: Option<promo_adapters::money::Currency>,
    pub credentials: Credentials,
    /// The simulated vendor's base URL when the gateway runs with `--sandbox`.
    pub sandbox: Option<url::Url>,
    /// Every form in which the configured credentials are sent, for redacting answers.
    forms: Redactor,
    base_url: url::Url,
    /// The rate budget and the vendor's pause: this process's own, or one shared by replicas.
    admission: Arc<dyn Admission>,
    /// Calls in flight from this process (a per-process cap, whatever the admission).
    in_flight: Semaphore,
    timeout: Duration,
    limiter_wait: Duration,
    max_response_bytes: usize,
    retry: Retry,
    breaker_config: BreakerConfig,
    http: reqwest::Client,
    clock: SharedClock,
    /// The end of a pause this process cut to [`MAX_PAUSE`], while it lasts.
    capped: Mutex<Option<DateTime<Utc>>>,
    breaker: Mutex<Breaker>,
    stats: Mutex<UpstreamStats>,
}

/// How long to wait before asking an unreachable rate-limit backend again.
const ADMISSION_RETRY: Duration = Duration::from_millis(100);

/// What waiting for a slot came to.
enum Slot<'a> {
    Taken(SemaphorePermit<'a>),
    /// The upstream is paused: nothing was taken.
    Paused,
    /// An interactive caller's `limiter_wait_ms` ran out; with the rate-limit backend's error
    /// when it could not be asked.
    NotInTime(Option<AdmissionError>),
}

/// The longest a vendor's Retry-After pauses an upstream. A longer one (a vendor's bug, or
/// `Retry-After: 9999999999999999999999`, which is year 262142) is cut to this: the upstream
/// is tried again after an hour, and `/health` is `degraded` while such a pause lasts.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// How a delivery ended, before the engine turns it into a result. `O` is what the adapter
/// read an answer into: a create's [`Outcome`] or a revoke's [`RevokeOutcome`].
#[derive(Debug)]
pub enum Delivery<O = Outcome> {
    /// The vendor answered; the adapter read the answer.
    Answered(O),
    /// No complete answer within the timeout.
    TimedOut,
    /// The vendor could not be reached; the request never went out.
    Unreachable(String),
    /// The connection broke after the request went out: the vendor may have acted on it.
    Interrupted(String),
    /// No credentials could be presented.
    Auth(AuthError),
    /// Nothing sent: the vendor asked for a pause until `until`, longer than this caller waits.
    Paused { until: DateTime<Utc> },
    /// Nothing sent: no rate-limiter cell and in-flight slot within `limiter_wait_ms`.
    NoSlot {
        waited: Duration,
        /// Why the rate budget could not be asked, when that was the reason.
        backend: Option<AdmissionError>,
    },
    /// Nothing sent: the background caller halted (its job was paused or cancelled) before
    /// the call could go out.
    Withheld,
    /// Nothing sent: the circuit breaker is open. `until` is when a trial call will be let
    /// through; `None` while that trial is under way.
    Unavailable {
        until: Option<DateTime<Utc>>,
        failures: u32,
    },
}

/// How long a caller will wait for this upstream's rate limiter, Retry-After pauses and
/// back-off before taking a `throttled` answer instead.
#[derive(Clone, Copy)]
pub enum Patience<'a> {
    /// A client is holding an HTTP request open: waits are bounded by the upstream's settings.
    Interactive,
    /// A sync job: it goes at the upstream's pace however slow, and never takes `throttled`
    /// for an answer merely because the wait is long (a 429 does not use up its attempts). It
    /// may stop wanting the call while it waits (paused at shutdown, or cancelled): `Halt`.
    Background(&'a dyn Halt),
}

/// A background caller's way to take back a call it no longer wants. The upstream asks before
/// every call goes out and races every wait before one (rate limiter, in-flight cap, a
/// Retry-After pause, back-off) against it, so that no call queued here goes out after its job
/// was paused or cancelled.
pub trait Halt: Send + Sync {
    /// Whether the caller no longer wants the call made.
    fn halted(&self) -> bool;
    /// Resolves once [`Halt::halted`] is true.
    fn until_halted(&self) -> futures::future::BoxFuture<'_, ()>;
}

impl Patience<'_> {
    fn is_interactive(self) -> bool {
        matches!(self, Patience::Interactive)
    }

    /// Runs `wait` to its end, or `None` once a background caller halts.
    async fn unless_halted<T>(self, wait: impl std::future::Future<Output = T>) -> Option<T> {
        match self {
            Patience::Interactive => Some(wait.await),
            Patience::Background(halt) => {
                tokio::select! {
                    biased;
                    () = halt.until_halted() => None,
                    done = wait => Some(done),
                }
            }
        }
    }

    fn halted(self) -> bool {
        matches!(self, Patience::Background(halt) if halt.halted())
    }
}

/// A delivery and the number of HTTP calls it took.
#[derive(Debug)]
pub struct Sent<O = Outcome> {
    pub delivery: Delivery<O>,
    pub calls: u32,
    /// When the upstream takes calls again: the end of the pause a Retry-After asked for, or of
    /// the breaker's cool-down.
    pub retry_at: Option<DateTime<Utc>>,
    /// A call's answer was lost after the request went out (timeout, broken connection, a 2xx
    /// whose body broke off, 504) and the call was made again (`retry.unconfirmed`): an
    /// `already_exists` may be that call's.
    pub unconfirmed_retry: bool,
}

/// The circuit breaker's state, as `/health` shows it (its schema: `http::openapi::BreakerStateDoc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// The cool-down is over: the next call is a trial (others fail fast while it runs).
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    /// Transient failures in a row.
    failures: u32,
    state: Circuit,
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed,
    Open { until: DateTime<Utc> },
    HalfOpen { trial_out: bool },
}

/// What a finished call says about the vendor's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It answered as an application does (2xx, 4xx, 429).
    Alive,
    /// A transient failure: timeout, unreachable, 5xx, an unreadable answer.
    Failing,
    /// Nothing learnt (the call was not made, or ended for a reason of the gateway's own).
    Unknown,
}

/// A call the breaker let through; it must learn how the call went. Dropped unsettled (the
/// call was abandoned), it learns nothing, and a trial's place goes to the next caller.
struct Ticket<'a> {
    upstream: &'a Upstream,
    trial: bool,
    settled: bool,
}

impl Ticket<'_> {
    fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.upstream.settle(self.trial, verdict);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.upstream.settle(self.trial, Verdict::Unknown);
        }
    }
}

/// Upper bounds (seconds) of the latency histogram's buckets; one more bucket counts the rest.
pub const LATENCY_BUCKETS_SECS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters of one upstream since start (for metrics): a plain snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpstreamStats {
    /// HTTP calls made, by how each ended.
    pub calls: CallCounts,
    /// Calls made again after a retryable outcome.
    pub retries: u64,
    /// Deliveries answered without a call because the breaker was open.
    pub fast_failures: u64,
    /// Deliveries answered `throttled` without a call: a pause longer than the caller waits,
    /// or no rate-limiter cell and in-flight slot in time.
    pub held: u64,
    /// Seconds spent waiting for the rate limiter and an in-flight slot (real time).
    pub limiter_wait_secs: f64,
    /// Seconds spent waiting out Retry-After pauses and back-off (on the gateway's clock).
    pub pause_wait_secs: f64,
    /// Duration of each HTTP call, connect to last byte read.
    pub latency: Latency,
}

/// HTTP calls by outcome class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    pub created: u64,
    pub already_exists: u64,
    /// Revoke calls the vendor answered with its documented success.
    pub revoked: u64,
    /// Read calls the vendor answered with the code or a page of codes.
    pub read: u64,
    /// Calls answered 404: the code (or its parent) not found at the vendor.
    pub not_found: u64,
    pub rejected: u64,
    pub throttled: u64,
    /// 5xx answers.
    pub server_error: u64,
    /// Answers that could not be read (wrong shape, not JSON, too large, the body cut off).
    pub invalid_response: u64,
    pub timeout: u64,
    /// The connection never opened.
    pub unreachable: u64,
    /// The connection broke after the request went out.
    pub interrupted: u64,
}

/// A fixed-bucket histogram: `counts[i]` holds the calls that took at most
/// `LATENCY_BUCKETS_SECS[i]` and more than the bucket before (not cumulative); the last counts the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub counts: [u64; LATENCY_BUCKETS_SECS.len() + 1],
    pub sum_secs: f64,
    pub count: u64,
}

impl Latency {
    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS_SECS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS_SECS.len());
        self.counts[bucket] += 1;
        self.sum_secs += secs;
        self.count += 1;
    }
}

/// One HTTP exchange as read off the wire.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Body,
}

impl Answer {
    /// The answer with every credential in its body redacted, before any adapter reads (or
    /// cuts) it.
    fn redacted(mut self, redactor: &Redactor) -> Self {
        if let Body::Read(body) = &mut self.body {
            if let Some(clean) = redactor.bytes(body) {
                *body = clean;
            }
        }
        self
    }
}

/// The outcome an adapter read, with every credential redacted from what it kept of the
/// vendor's words: a JSON answer may hold a credential in an escaped form that only parsing
/// turned back into the one sent.
/// What the transport needs of an operation's outcome, whatever the operation: how to go on
/// after it (retry, back off, settle the breaker), how to count it, and how to hide a
/// credential the vendor echoed in it. One transport then serves every operation.
pub trait OperationOutcome: std::fmt::Debug + Send + Sized {
    fn effect(&self) -> Effect;
    /// A failure the transport itself observed (an answer cut off or too large).
    fn failed(message: String, retryable: bool, cause: FailureCause) -> Self;
    fn throttled(retry_after: Option<RetryAfter>, message: String) -> Self;
    fn redacted(self, redactor: &Redactor) -> Self;
}

/// An outcome as the transport acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The vendor acted (or said there was nothing to do): done, the vendor is alive.
    Settled(Counted),
    Throttled,
    Failed {
        retryable: bool,
        cause: FailureCause,
    },
}

/// Which counter of [`CallCounts`] a settled answer adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Created,
    AlreadyExists,
    Revoked,
    Read,
    NotFound,
    Rejected,
}

impl OperationOutcome for Outcome {
    fn effect(&self) -> Effect {
        match self {
            Outcome::Created { .. } => Effect::Settled(Counted::Created),
            Outcome::AlreadyExists { .. } => Effect::Settled(Counted::AlreadyExists),
            Outcome::Rejected { .. } => Effect::Settled(Counted::Rejected),
            Outcome::Throttled { .. } => Effect::Throttled,
            Outcome::Failed { retryable, cause, .. } => Effect::Failed {
                retryable: *retryable,
                cause: *cause,
            },
        }
    }

    fn failed(message: String, retryable: bool, cause: FailureCause) -> Self {
        Outcome::Failed {
            message,
            retryable,
            cause,
        }
    }

    fn throttled(retry_after: Option<RetryAfter>, message: String) -> Self {
        Outcome::Throttled { retry_after, message }
    }

    fn redacted(self, redactor: &Redactor) -> Self {
        match self {
            Outcome::Created { vendor_id } => Outcome::Created {
                vendor_id: redactor.text(vendor_id),
            },
            Outcome::AlreadyExists { message } => Outcome::AlreadyExists {
                message: redactor.text(message),
            },
            Outcome::Rejected { status, message } => Outcome::Rejected {
                status,
                message: redactor.text(message),
            },
            Outcome::Throttled { retry_after, message } => Outcome::Throttled {
                retry_after,
                message: redactor.text(message),
            },
            Outcome::Failed {
                message,
                retryable,
                cause,
            } => Outcome::Failed {
                message: redactor.text(message),
                retryable,
                cause,
            },
        }
    }
}

impl OperationOutcome for RevokeOutcome {
    fn effect(&self) -> Effect {
        match self {
            RevokeOutcome::Revoked { .. } | RevokeOutcome::AlreadyRevoked { .. } => Effect::Settled(Counted::Revoked),
            RevokeOutcome::NotFound { .. } => Effect::Settled(Counted::NotFound),
            RevokeOutcome::Rejected { .. } => Effect::Settled(Counted::Rejected),
            RevokeOutcome::Throttled { .. } => Effect::Throttled,
            RevokeOutcome::Failed { retryable, cause, .. } => Effect::Failed {
                retryable: *retryable,
                cause: *cause,
            },
        }
    }

    fn failed(message: String, retryable: bool, cause: FailureCause) -> Self {
        RevokeOutcome::Failed {
            message,
            retryable,
            cause,
        }
    }

    fn throttled(retry_after: Option<RetryAfter>, message: String) -> Self {
        RevokeOutcome::Throttled { retry_after, message }
    }

    fn redacted(self, redactor: &Redactor) -> Self {
        match self {
            RevokeOutcome::Revoked { action } => RevokeOutcome::Revoked { action },
            RevokeOutcome::AlreadyRevoked { action, message } => RevokeOutcome::AlreadyRevoked {
                action,
                message: redactor.text(message),
            },
            RevokeOutcome::NotFound { missing, message } => RevokeOutcome::NotFound {
                missing,
                message: redactor.text(message),
            },
            RevokeOutcome::Rejected { status, message } => RevokeOutcome::Rejected {
                status,
                message: redactor.text(message),
            },
            RevokeOutcome::Throttled { retry_after, message } => RevokeOutcome::Throttled {
                retry_after,
                message: redactor.text(message),
            },
            RevokeOutcome::Failed {
                message,
                retryable,
                cause,
            } => RevokeOutcome::Failed {
                message: redactor.text(message),
                retryable,
                cause,
            },
        }
    }
}

/// What a read found, with every credential redacted from the vendor's words in it.
pub trait Found: std::fmt::Debug + Send + Sized {
    fn redacted(self, redactor: &Redactor) -> Self;
}

impl Found for VendorCode {
    fn redacted(mut self, redactor: &Redactor) -> Self {
        self.code = redactor.text(self.code);
        self.vendor_id = self.vendor_id.map(|id| redactor.text(id));
        let object = redactor.text(self.object.to_string());
        self.object = serde_json::from_str(&object).unwrap_or(serde_json::Value::Null);
        self.warnings = redacted_warnings(self.warnings, redactor);
        self
    }
}

impl Found for Page {
    fn redacted(mut self, redactor: &Redactor) -> Self {
        self.codes = self.codes.into_iter().map(|c| c.redacted(redactor)).collect();
        self.next = self.next.map(|c| Cursor(redactor.text(c.0)));
        self.warnings = redacted_warnings(self.warnings, redactor);
        self
    }
}

fn redacted_warnings(warnings: Vec<promo_adapters::Warning>, redactor: &Redactor) -> Vec<promo_adapters::Warning> {
    warnings
        .into_iter()
        .map(|w| promo_adapters::Warning {
            field: w.field,
            message: redactor.text(w.message),
        })
        .collect()
}

impl<T: Found> OperationOutcome for ReadOutcome<T> {
    fn effect(&self) -> Effect {
        match self {
            ReadOutcome::Found(_) => Effect::Settled(Counted::Read),
            ReadOutcome::NotFound { .. } => Effect::Settled(Counted::NotFound),
            ReadOutcome::Rejected { .. } => Effect::Settled(Counted::Rejected),
            ReadOutcome::Throttled { .. } => Effect::Throttled,
            ReadOutcome::Failed { retryable, cause, .. } => Effect::Failed {
                retryable: *retryable,
                cause: *cause,
            },
        }
    }

    fn failed(message: String, retryable: bool, cause: FailureCause) -> Self {
        ReadOutcome::Failed {
            message,
            retryable,
            cause,
        }
    }

    fn throttled(retry_after: Option<RetryAfter>, message: String) -> Self {
        ReadOutcome::Throttled { retry_after, message }
    }

    fn redacted(self, redactor: &Redactor) -> Self {
        match self {
            ReadOutcome::Found(found) => ReadOutcome::Found(found.redacted(redactor)),
            ReadOutcome::NotFound { message } => ReadOutcome::NotFound {
                message: redactor.text(message),
            },
            ReadOutcome::Rejected { status, message } => ReadOutcome::Rejected {
                status,
                message: redactor.text(message),
            },
            ReadOutcome::Throttled { retry_after, message } => ReadOutcome::Throttled {
                retry_after,
                message: redactor.text(message),
            },
            ReadOutcome::Failed {
                message,
                retryable,
                cause,
            } => ReadOutcome::Failed {
                message: redactor.text(message),
                retryable,
                cause,
            },
        }
    }
}

/// The body of an answer whose status line and headers arrived.
enum Body {
    Read(Vec<u8>),
    /// Longer than `max_response_bytes`, not read to the end.
    TooLarge,
    /// The body broke off (connection reset, closed early, timeout) after `received` bytes:
    /// the vendor did answer, with the status, but what it said is lost.
    CutOff {
        received: usize,
        error: String,
    },
}

/// Why one HTTP exchange gave no answer.
enum CallError {
    /// The connection never opened (refused, DNS, TLS, connect timeout): nothing was sent.
    NotSent(String),
    /// The request could not even be built (a malformed header value).
    Unsendable(String),
    /// The total timeout ran out; the request may have been processed.
    TimedOut,
    /// The connection broke after the request went out.
    Interrupted(String),
}

/// What to do after one call.
enum Next {
    Done,
    Retry {
        /// A timeout, broken connection, cut-off 2xx or 504 before it: only with `retry.unconfirmed`.
        unconfirmed: bool,
        /// Whether the call used up one of `retry.max_attempts`.
        counts: bool,
        /// Back-off before the next call (a Retry-After is waited out as a pause instead).
        backoff: bool,
    },
}

impl Upstream {
    /// Each upstream has a client of its own, since the connect timeout is a client setting.
    /// Its rate budget comes from outside (`admission`): the composition root decides whether
    /// it is this process's own or shared.
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        env: &dyn Fn(&str) -> Option<String>,
        clock: SharedClock,
        admission: Arc<dyn Admission>,
    ) -> Result<Self, reqwest::Error> {
        let vendor = config.vendor();
        let timeout = Duration::from_millis(config.timeout_ms);
        let credentials = Credentials::resolve(&config.auth, timeout, env);
        let forms = match &credentials {
            Credentials::Ready(auth) => auth.forms(),
            Credentials::Missing(_) => Redactor::default(),
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("promo-gateway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .build()?;
        Ok(Self {
            name: name.to_owned(),
            vendor,
            adapter: promo_adapters::vendors::for_kind(vendor),
            timezone: config.timezone,
            network_id: config.network_id.clone(),
            currency: config.currency,
            credentials,
            sandbox: config.sandbox.clone(),
            forms,
            base_url: config.base_url.clone(),
            admission,
            in_flight: Semaphore::new(config.max_in_flight),
            timeout,
            limiter_wait: Duration::from_millis(config.limiter_wait_ms),
            max_response_bytes: config.max_response_bytes,
            retry: config.retry,
            breaker_config: config.breaker,
            http,
            clock,
            capped: Mutex::new(None),
            breaker: Mutex::new(Breaker {
                failures: 0,
                state: Circuit::Closed,
            }),
            stats: Mutex::new(UpstreamStats::default()),
        })
    }

    /// The full URL of a vendor path: the base URL's own path (Limio's `/api`) is kept. It is
    /// the URL as the HTTP client will send it (parsed, so resolved and encoded as the client
    /// would), and the dry run shows this same string.
    pub fn url(&self, path: &str) -> String {
        self.parsed_url(path).map_or_else(|joined| joined, String::from)
    }

    /// [`Upstream::url`] parsed, as the call takes it (the client would parse a string again);
    /// the joined text when it does not parse.
    fn parsed_url(&self, path: &str) -> Result<url::Url, String> {
        let joined = format!("{}{}", self.base_url.as_str().trim_end_matches('/'), path);
        url::Url::parse(&joined).map_err(|_| joined)
    }

    pub fn auth(&self) -> Option<&Auth> {
        match &self.credentials {
            Credentials::Ready(auth) => Some(auth),
            Credentials::Missing(_) => None,
        }
    }

    /// Every form of every credential a call with `authorization` sent: the configured ones,
    /// the OAuth2 tokens held now, and the token this call carried (it may have been replaced
    /// since).
    async fn redactor(&self, auth: &Auth, authorization: &Authorization) -> std::borrow::Cow<'_, Redactor> {
        let Some(issued) = auth.issued().await else {
            return std::borrow::Cow::Borrowed(&self.forms);
        };
        let mut forms = self.forms.clone();
        forms.extend(&issued);
        if let Some(token) = &authorization.token {
            forms.secret(token);
        }
        std::borrow::Cow::Owned(forms)
    }

    /// The time on the clock this upstream waits on.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The end of the current Retry-After pause, if one is under way.
    pub async fn paused_until(&self) -> Option<DateTime<Utc>> {
        self.pause_state().await.ok().flatten()
    }

    /// Where this upstream's rate budget lives (`local`, `redis`).
    pub fn rate_limit_backend(&self) -> &'static str {
        self.admission.backend()
    }

    /// Whether the connection to the shared rate budget is encrypted (`None`: a local budget).
    pub fn rate_limit_tls(&self) -> Option<bool> {
        self.admission.encrypted()
    }

    /// [`Upstream::paused_until`], or why the rate budget could not be asked (for `/health`).
    pub async fn pause_state(&self) -> Result<Option<DateTime<Utc>>, AdmissionError> {
        self.admission.paused_until().await
    }

    /// Whether the current pause is one the vendor asked to last longer than [`MAX_PAUSE`]
    /// (as this process saw it: the replica that met the Retry-After).
    pub fn pause_capped(&self) -> bool {
        let now = self.clock.now();
        lock(&self.capped).is_some_and(|until| until > now)
    }

    /// The breaker's state and, when open, the end of its cool-down.
    pub fn breaker(&self) -> (BreakerState, Option<DateTime<Utc>>) {
        let now = self.clock.now();
        match lock(&self.breaker).state {
            Circuit::Closed => (BreakerState::Closed, None),
            Circuit::Open { until } if until > now => (BreakerState::Open, Some(until)),
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => (BreakerState::HalfOpen, None),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> UpstreamStats {
        lock(&self.stats).clone()
    }

    /// Sends a translated request, honouring the breaker, a Retry-After pause, the rate limit,
    /// the in-flight cap and the retry policy, and has the adapter read the answer.
    pub async fn send(&self, auth: &Auth, code: &PromoCode, request: &VendorRequest, patience: Patience<'_>) -> Sent {
        let adapter = &self.adapter;
        self.send_as(auth, request, Operation::Create, patience, |answer| {
            adapter.parse(code, answer)
        })
        .await
    }

    /// [`Upstream::send`] for any operation: `read` is the adapter's reading of an answer to
    /// it, and `operation` says which 5xx may be retried and what an unreadable 2xx leaves
    /// unknown.
    pub async fn send_as<O: OperationOutcome>(
        &self,
        auth: &Auth,
        request: &VendorRequest,
        operation: Operation,
        patience: Patience<'_>,
        read: impl Fn(&VendorResponse<'_>) -> O,
    ) -> Sent<O> {
        let url = self.parsed_url(request.path.as_str());
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("adapters use standard methods");
        let mut sent = Sent {
            delivery: Delivery::Unreachable(String::new()),
            calls: 0,
            retry_at: None,
            unconfirmed_retry: false,
        };
        // Calls that count against retry.max_attempts, and retries so far (the back-off's exponent).
        let mut attempts = 0;
        let mut retries = 0;
        let mut refreshed = false;
        // The answer of the call before, returned as it is if no further call can be made.
        let mut last: Option<Delivery<O>> = None;
        loop {
            if let Err(unavailable) = self.breaker_allows() {
                return self.end(sent, last.unwrap_or(unavailable));
            }
            match patience.unless_halted(self.wait_out_pause(patience)).await {
                Some(Ok(())) => {}
                Some(Err(until)) => {
                    sent.retry_at = Some(until);
                    return self.end(sent, last.unwrap_or(Delivery::Paused { until }));
                }
                None => return self.end(sent, last.unwrap_or(Delivery::Withheld)),
            }
            let permit = match patience.unless_halted(self.slot(patience)).await {
                Some(Slot::Taken(permit)) => permit,
                // A pause began while this call waited: wait it out first.
                Some(Slot::Paused) => continue,
                Some(Slot::NotInTime(backend)) => {
                    let waited = self.limiter_wait;
                    return self.end(sent, last.unwrap_or(Delivery::NoSlot { waited, backend }));
                }
                None => return self.end(sent, last.unwrap_or(Delivery::Withheld)),
            };
            if self.paused_until().await.is_some() {
                // A pause began while this call waited for its slot.
                continue;
            }
            // The caller may have halted just as the slot came: the last moment to hold back.
            if patience.halted() {
                return self.end(sent, last.unwrap_or(Delivery::Withheld));
            }
            let ticket = match self.admit() {
                Ok(ticket) => ticket,
                Err(unavailable) => return self.end(sent, last.unwrap_or(unavailable)),
            };
            let authorization = match auth.authorization(&self.http).await {
                Ok(a) => a,
                Err(e) => return self.end(sent, Delivery::Auth(e)),
            };
            sent.calls += 1;
            attempts += 1;
            let started = Instant::now();
            let answer = self
                .call(method.clone(), &url, authorization.value.clone(), request)
                .await;
            drop(permit);
            let took = started.elapsed();
            // Where the vendor's words enter: nothing below, nor anything the answer reaches
            // (logs, results, the ledger), sees a credential the call carried.
            let redactor = self.redactor(auth, &authorization).await;
            let answer = answer.map(|a| a.redacted(&redactor));

            let status = answer.as_ref().ok().map(|a| a.status);
            let (delivery, verdict, next) = match answer {
                Err(CallError::NotSent(e)) => (
                    Delivery::Unreachable(e),
                    Verdict::Failing,
                    Next::Retry {
                        unconfirmed: false,
                        counts: true,
                        backoff: true,
                    },
                ),
                Err(CallError::Unsendable(e)) => (Delivery::Unreachable(e), Verdict::Unknown, Next::Done),
                Err(CallError::TimedOut) => (Delivery::TimedOut, Verdict::Failing, self.unconfirmed(operation)),
                Err(CallError::Interrupted(e)) => {
                    (Delivery::Interrupted(e), Verdict::Failing, self.unconfirmed(operation))
                }
                Ok(answer) => {
                    // A Retry-After on a 429 or a 503 pauses the upstream for every caller.
                    let paused = matches!(answer.status, 429 | 503)
                        && match answer.retry_after.as_deref().and_then(parse_retry_after) {
                            Some(retry_after) => {
                                sent.retry_at = Some(self.pause_until(retry_after.until(self.clock.now())).await);
                                true
                            }
                            None => false,
                        };
                    // A 2xx whose body broke off may have created the code, like a timeout.
                    let mut unconfirmed = false;
                    let outcome = match &answer.body {
                        Body::Read(body) => read(&VendorResponse {
                            status: answer.status,
                            retry_after: answer.retry_after.as_deref(),
                            body,
                        }),
                        Body::TooLarge => self.too_large(answer.status, operation),
                        Body::CutOff { received, error } => {
                            unconfirmed = (200..300).contains(&answer.status);
                            self.cut_off(&answer, *received, error, operation)
                        }
                    };
                    let (verdict, next) = match outcome.effect() {
                        Effect::Failed { .. } if unconfirmed => (Verdict::Failing, self.unconfirmed(operation)),
                        Effect::Settled(_) => (Verdict::Alive, Next::Done),
                        Effect::Throttled => (
                            Verdict::Alive,
                            Next::Retry {
                                unconfirmed: false,
                                counts: patience.is_interactive(),
                                backoff: !paused,
                            },
                        ),
                        Effect::Failed { retryable: true, .. } => (
                            Verdict::Failing,
                            Next::Retry {
                                unconfirmed: false,
                                counts: true,
                                backoff: !paused,
                            },
                        ),
                        Effect::Failed {
                            cause: FailureCause::ServerError { status: 504 },
                            ..
                        } => (Verdict::Failing, self.unconfirmed(operation)),
                        Effect::Failed { .. } => (Verdict::Failing, Next::Done),
                    };
                    (Delivery::Answered(outcome.redacted(&redactor)), verdict, next)
                }
            };
            // One refresh and one repeat when the upstream refuses an OAuth2 token: it may have
            // been revoked or expired early. A second 401 is the vendor's answer. The refused
            // call is counted like any other (stats, `calls`), but not against max_attempts.
            if status == Some(401) {
                if let (false, Auth::OAuth2(source), Some(token)) = (refreshed, auth, authorization.token.as_ref()) {
                    source.invalidate(token).await;
                    refreshed = true;
                    attempts -= 1;
                    ticket.settle(Verdict::Alive);
                    self.record(&delivery, took);
                    lock(&self.stats).retries += 1;
                    tracing::info!(upstream = %self.name, "OAuth2 token refused (401): calling again with a fresh one");
                    continue;
                }
            }
            ticket.settle(verdict);
            self.record(&delivery, took);

            let Next::Retry {
                unconfirmed,
                counts,
                backoff,
            } = next
            else {
                return self.end(sent, delivery);
            };
            if !counts {
                attempts -= 1;
            }
            if attempts >= self.retry.max_attempts {
                return self.end(sent, delivery);
            }
            sent.unconfirmed_retry |= unconfirmed;
            retries += 1;
            lock(&self.stats).retries += 1;
            tracing::warn!(upstream = %self.name, attempt = sent.calls, outcome = ?delivery, "retrying");
            last = Some(delivery);
            if backoff {
                let wait = self.backoff(retries);
                let from = self.clock.now();
                let slept = patience.unless_halted(self.clock.sleep(wait)).await;
                self.waited(from);
                if slept.is_none() {
                    // Halted between tries: the last answer stands.
                    return self.end(sent, last.take().expect("set above"));
                }
            }
        }
    }

    /// Retry after an unconfirmed outcome only where the upstream allows it, or where the
    /// call cannot have had an effect (a read).
    fn unconfirmed(&self, operation: Operation) -> Next {
        if operation.always_resendable() {
            Next::Retry {
                unconfirmed: false,
                counts: true,
                backoff: true,
            }
        } else if self.retry.unconfirmed {
            Next::Retry {
                unconfirmed: true,
                counts: true,
                backoff: true,
            }
        } else {
            Next::Done
        }
    }

    /// One HTTP exchange, the answer read chunk by chunk up to `max_response_bytes`.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &Result<url::Url, String>,
        authorization: reqwest::header::HeaderValue,
        request: &VendorRequest,
    ) -> Result<Answer, CallError> {
        // A URL that does not parse fails in the client as it always did, with its error.
        let call = match url {
            Ok(url) => self.http.request(method, url.clone()),
            Err(joined) => self.http.request(method, joined.as_str()),
        };
        let mut call = call
            .timeout(self.timeout)
            .header(reqwest::header::AUTHORIZATION, authorization);
        for (name, value) in &request.headers {
            call = call.header(name, value);
        }
        // After the adapter's headers: `json` adds a Content-Type only where none is set, so
        // the call never carries two (`header` appends, it does not replace). A call without a
        // body carries no Content-Type either.
        let call = match &request.body {
            Some(body) => call.json(body),
            None => call,
        };
        let mut response = call.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cap = self.max_response_bytes;
        let answer = |body| Answer {
            status,
            retry_after,
            body,
        };
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Ok(answer(Body::TooLarge));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return Ok(answer(Body::TooLarge));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(answer(Body::Read(body))),
                // The status and headers came: the vendor answered, only its body is lost.
                Err(e) => {
                    let error = if e.is_timeout() {
                        format!("no more of it within the timeout of {} ms", self.timeout.as_millis())
                    } else {
                        crate::auth::describe(e)
                    };
                    return Ok(answer(Body::CutOff {
                        received: body.len(),
                        error,
                    }));
                }
            }
        }
    }

    /// An answer whose body broke off: its status is all the gateway knows. A 2xx may have
    /// created the code; a 429 is throttling and a 5xx a server error whatever the body said;
    /// another status is an answer that could not be read.
    fn cut_off<O: OperationOutcome>(&self, answer: &Answer, received: usize, error: &str, operation: Operation) -> O {
        let status = answer.status;
        let what = format!(
            "{} answered {status} but the body broke off after {received} bytes ({error})",
            self.vendor
        );
        match status {
            429 => O::throttled(answer.retry_after.as_deref().and_then(parse_retry_after), what),
            500.. => O::failed(
                what,
                operation.retries_server_error(status),
                FailureCause::ServerError { status },
            ),
            200..=299 => O::failed(
                format!("{what}; {}", operation.unreadable_hint()),
                false,
                FailureCause::UnreadableAnswer { status },
            ),
            _ => O::failed(
                format!("{what}; the vendor's reason was lost"),
                false,
                FailureCause::UnreadableAnswer { status },
            ),
        }
    }

    /// An answer longer than `max_response_bytes`, read no further.
    fn too_large<O: OperationOutcome>(&self, status: u16, operation: Operation) -> O {
        let cap = self.max_response_bytes;
        let hint;
        let (cause, tail) = match status {
            500.. => (FailureCause::ServerError { status }, ""),
            // Only a success may have taken effect; a refusal's reason is merely lost.
            200..=299 => {
                hint = format!("; {}", operation.unreadable_hint());
                (FailureCause::UnreadableAnswer { status }, hint.as_str())
            }
            _ => (
                FailureCause::UnreadableAnswer { status },
                "; the vendor's reason was lost",
            ),
        };
        O::failed(
            format!(
                "{} answered {status} with more than {cap} bytes (max_response_bytes), which the gateway does not read{tail}",
                self.vendor
            ),
            false,
            cause,
        )
    }

    /// Waits out a Retry-After pause under way; `Err(until)` when it lasts longer than an
    /// interactive caller waits (`retry.max_wait_ms`).
    async fn wait_out_pause(&self, patience: Patience<'_>) -> Result<(), DateTime<Utc>> {
        // A pause may be extended while it is waited out: look again after each.
        while let Some(until) = self.paused_until().await {
            let from = self.clock.now();
            let too_long = (until - from)
                .to_std()
                .is_ok_and(|wait| wait > Duration::from_millis(self.retry.max_wait_ms));
            if patience.is_interactive() && too_long {
                return Err(until);
            }
            self.clock.sleep_until(until).await;
            self.waited(from);
        }
        Ok(())
    }

    /// Extends the pause to `until`, cut to [`MAX_PAUSE`] from now (a shorter Retry-After does
    /// not shorten it). Returns the end of the pause asked for, as cut.
    async fn pause_until(&self, until: DateTime<Utc>) -> DateTime<Utc> {
        let latest = self.clock.now() + chrono::Duration::from_std(MAX_PAUSE).expect("an hour");
        let capped = until > latest;
        let until = until.min(latest);
        if capped {
            *lock(&self.capped) = Some(until);
        }
        match self.admission.pause(until).await {
            Ok(true) => tracing::warn!(upstream = %self.name, %until, capped, "the vendor asked for a pause"),
            Ok(false) => {}
            Err(e) => tracing::warn!(upstream = %self.name, %until, "could not share the vendor's pause: {e}"),
        }
        until
    }

    /// A slot of the rate budget and one of the in-flight cap; [`Slot::NotInTime`] when an
    /// interactive caller would wait longer than `limiter_wait_ms` for them.
    async fn slot(&self, patience: Patience<'_>) -> Slot<'_> {
        let started = Instant::now();
        let backend_error = Mutex::new(None);
        let ready = async {
            if !self.rate_slot(&backend_error).await {
                return Slot::Paused;
            }
            Slot::Taken(self.in_flight.acquire().await.expect("never closed"))
        };
        let slot = match patience {
            Patience::Interactive => match tokio::time::timeout(self.limiter_wait, ready).await {
                Ok(slot) => slot,
                Err(_) => Slot::NotInTime(lock(&backend_error).take()),
            },
            Patience::Background(_) => ready.await,
        };
        lock(&self.stats).limiter_wait_secs += started.elapsed().as_secs_f64();
        slot
    }

    /// Waits (real time) for a slot of the rate budget; `false`, with none taken, when the
    /// upstream is paused. While the budget cannot be asked, no call goes out: it asks again.
    async fn rate_slot(&self, backend_error: &Mutex<Option<AdmissionError>>) -> bool {
        loop {
            match self.admission.admit().await {
                Ok(Admit::Now) => return true,
                Ok(Admit::After(wait)) => tokio::time::sleep(wait).await,
                Ok(Admit::Paused(_)) => return false,
                Err(e) => {
                    tracing::warn!(upstream = %self.name, "no call without the rate budget's word: {e}");
                    *lock(backend_error) = Some(e);
                    tokio::time::sleep(ADMISSION_RETRY).await;
                }
            }
        }
    }

    /// Fails fast while the breaker is open or its trial is under way, without taking the trial.
    fn breaker_allows<O>(&self) -> Result<(), Delivery<O>> {
        let now = self.clock.now();
        let breaker = lock(&self.breaker);
        match breaker.state {
            Circuit::Open { until } if now < until => Err(Delivery::Unavailable {
                until: Some(until),
                failures: breaker.failures,
            }),
            Circuit::HalfOpen { trial_out: true } => Err(Delivery::Unavailable {
                until: None,
                failures: breaker.failures,
            }),
            _ => Ok(()),
        }
    }

    /// Lets a call through the breaker: any while closed, one trial once the cool-down is over.
    fn admit<O>(&self) -> Result<Ticket<'_>, Delivery<O>> {
        self.breaker_allows()?;
        let mut breaker = lock(&self.breaker);
        let trial = match breaker.state {
            Circuit::Closed => false,
            _ => {
                breaker.state = Circuit::HalfOpen { trial_out: true };
                tracing::info!(upstream = %self.name, "breaker half-open: a trial call goes through");
                true
            }
        };
        Ok(Ticket {
            upstream: self,
            trial,
            settled: false,
        })
    }

    fn settle(&self, trial: bool, verdict: Verdict) {
        let now = self.clock.now();
        let mut breaker = lock(&self.breaker);
        match verdict {
            Verdict::Alive => {
                if !matches!(breaker.state, Circuit::Closed) {
                    tracing::info!(upstream = %self.name, "breaker closed: the vendor answers again");
                }
                breaker.failures = 0;
                breaker.state = Circuit::Closed;
            }
            Verdict::Failing => {
                breaker.failures = breaker.failures.saturating_add(1);
                let trips = trial
                    || (matches!(breaker.state, Circuit::Closed) && breaker.failures >= self.breaker_config.failures);
                if trips {
                    let cool_down = chrono::Duration::milliseconds(
                        i64::try_from(self.breaker_config.cool_down_ms).unwrap_or(i64::MAX),
                    );
                    let until = now.checked_add_signed(cool_down).unwrap_or(DateTime::<Utc>::MAX_UTC);
                    breaker.state = Circuit::Open { until };
                    tracing::warn!(upstream = %self.name, failures = breaker.failures, %until, "breaker open");
                }
            }
            Verdict::Unknown => {
                if trial && matches!(breaker.state, Circuit::HalfOpen { .. }) {
                    breaker.state = Circuit::HalfOpen { trial_out: false };
                }
            }
        }
    }

    /// The delivery as the engine gets it; counts the deliveries answered without a call.
    fn end<O>(&self, mut sent: Sent<O>, delivery: Delivery<O>) -> Sent<O> {
        match &delivery {
            Delivery::Unavailable { until, .. } => {
                lock(&self.stats).fast_failures += 1;
                sent.retry_at = *until;
            }
            Delivery::Paused { .. } | Delivery::NoSlot { .. } => lock(&self.stats).held += 1,
            _ => {}
        }
        sent.delivery = delivery;
        sent
    }

    /// Counts one HTTP call by how it ended.
    fn record<O: OperationOutcome>(&self, delivery: &Delivery<O>, took: Duration) {
        let mut stats = lock(&self.stats);
        stats.latency.observe(took);
        let calls = &mut stats.calls;
        let counter = match delivery {
            Delivery::Answered(o) => match o.effect() {
                Effect::Settled(Counted::Created) => &mut calls.created,
                Effect::Settled(Counted::AlreadyExists) => &mut calls.already_exists,
                Effect::Settled(Counted::Revoked) => &mut calls.revoked,
                Effect::Settled(Counted::Read) => &mut calls.read,
                Effect::Settled(Counted::NotFound) => &mut calls.not_found,
                Effect::Settled(Counted::Rejected) => &mut calls.rejected,
                Effect::Throttled => &mut calls.throttled,
                Effect::Failed {
                    cause: FailureCause::ServerError { .. },
                    ..
                } => &mut calls.server_error,
                Effect::Failed { .. } => &mut calls.invalid_response,
            },
            Delivery::TimedOut => &mut calls.timeout,
            Delivery::Interrupted(_) => &mut calls.interrupted,
            _ => &mut calls.unreachable,
        };
        *counter += 1;
    }

    /// Adds the clock time since `from` to the time spent waiting on the vendor.
    fn waited(&self, from: DateTime<Utc>) {
        let secs = (self.clock.now() - from).to_std().unwrap_or_default().as_secs_f64();
        lock(&self.stats).pause_wait_secs += secs;
    }

    /// Exponential back-off with full jitter: a random wait up to `base_delay_ms` doubled per
    /// retry, capped at `max_delay_ms`.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .retry
            .base_delay_ms
            .saturating_mul(1 << (retry.max(1) - 1).min(20))
            .min(self.retry.max_delay_ms);
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }
}

/// Sorts a transport error by whether the request can have reached the vendor.
fn transport_error(e: reqwest::Error) -> CallError {
    if e.is_builder() {
        CallError::Unsendable(crate::auth::describe(e))
    } else if e.is_connect() {
        // Connect errors (a connect timeout included) come before a byte of the request is sent.
        CallError::NotSent(crate::auth::describe(e))
    } else if e.is_timeout() {
        CallError::TimedOut
    } else {
        CallError::Interrupted(crate::auth::describe(e))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_upper_bounds_and_the_last_counts_the_rest() {
        let mut l = Latency::default();
        for ms in [1, 25, 26, 700, 60_000] {
            l.observe(Duration::from_millis(ms));
        }
        assert_eq!(l.counts, [2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(l.count, 5);
        assert!((l.sum_secs - 60.752).abs() < 1e-9, "{}", l.sum_secs);
    }
}
