//! One configured upstream and the way every call to it is made: its own rate limiter, its
//! own cap on calls in flight, its timeout, its retry policy and its credentials.
//!
//! Retries happen only where a second call cannot create a second code: after a 429 (the
//! vendor refused to process the call), after a connection that never opened, and after a
//! 502/503 (a proxy in front of the vendor answered). A timeout or a 504 is *not* retried: the vendor
//! may have created the code before the answer was lost, and a retry would then be reported as
//! "already exists" or, worse, create a duplicate on a vendor that allows them.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use promo_adapters::{Adapter, Outcome, PromoCode, VendorKind, VendorRequest, VendorResponse};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::auth::{Auth, AuthError, Credentials};
use crate::clock::SharedClock;
use crate::config::{Retry, UpstreamConfig};

pub struct Upstream {
    pub name: String,
    pub vendor: VendorKind,
    pub adapter: Box<dyn Adapter>,
    pub timezone: chrono_tz::Tz,
    pub network_id: Option<String>,
    pub credentials: Credentials,
    base_url: url::Url,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    timeout: Duration,
    retry: Retry,
    http: reqwest::Client,
    clock: SharedClock,
}

/// How a delivery ended, before the engine turns it into a result.
#[derive(Debug)]
pub enum Delivery {
    /// The vendor answered; the adapter read the answer.
    Answered(Outcome),
    /// No complete answer within the timeout.
    TimedOut,
    /// The vendor could not be reached.
    Unreachable(String),
    /// No credentials could be presented.
    Auth(AuthError),
}

/// How long a caller will wait for this upstream's rate limiter, Retry-After pauses and
/// back-off before taking a `throttled` answer instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// A client is holding an HTTP request open: waits are bounded by the upstream's settings.
    Interactive,
    /// A sync job: it goes at the upstream's pace however slow, and never takes `throttled`
    /// for an answer merely because the wait is long.
    Background,
}

/// A delivery and the number of HTTP calls it took.
#[derive(Debug)]
pub struct Sent {
    pub delivery: Delivery,
    pub calls: u32,
}

impl Upstream {
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        http: reqwest::Client,
        env: &dyn Fn(&str) -> Option<String>,
        clock: SharedClock,
    ) -> Self {
        let vendor = config.vendor();
        let timeout = Duration::from_millis(config.timeout_ms);
        let per_second = NonZeroU32::new(config.rate_limit.per_second).expect("checked by Config::check");
        let burst = NonZeroU32::new(config.rate_limit.burst).expect("checked by Config::check");
        Self {
            name: name.to_owned(),
            vendor,
            adapter: promo_adapters::vendors::for_kind(vendor),
            timezone: config.timezone,
            network_id: config.network_id.clone(),
            credentials: Credentials::resolve(&config.auth, timeout, env),
            base_url: config.base_url.clone(),
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            in_flight: Semaphore::new(config.max_in_flight),
            timeout,
            retry: config.retry,
            http,
            clock,
        }
    }

    /// The full URL of a vendor path: the base URL's own path (Limio's `/api`) is kept.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url.as_str().trim_end_matches('/'), path)
    }

    pub fn auth(&self) -> Option<&Auth> {
        match &self.credentials {
            Credentials::Ready(auth) => Some(auth),
            Credentials::Missing(_) => None,
        }
    }

    /// Replaces any credential of this upstream that `text` contains: vendors do echo tokens
    /// in their error messages ("token abc123 is revoked").
    pub async fn redact(&self, text: String) -> String {
        match self.auth() {
            Some(auth) => crate::auth::redact(text, &auth.secrets().await),
            None => text,
        }
    }

    /// Sends a translated request, honouring the rate limit, the in-flight cap and the retry
    /// policy, and has the adapter read the answer.
    pub async fn send(&self, auth: &Auth, code: &PromoCode, request: &VendorRequest, _patience: Patience) -> Sent {
        let url = self.url(request.path.as_str());
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("adapters use standard methods");
        let mut calls = 0;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.limiter.until_ready().await;
            let permit = self.in_flight.acquire().await.expect("never closed");
            let authorization = match auth.authorization(&self.http).await {
                Ok(a) => a,
                Err(e) => {
                    return Sent {
                        delivery: Delivery::Auth(e),
                        calls,
                    }
                }
            };
            let mut call = self
                .http
                .request(method.clone(), &url)
                .timeout(self.timeout)
                .header(reqwest::header::AUTHORIZATION, authorization.value);
            for (name, value) in &request.headers {
                call = call.header(name, value);
            }
            // After the adapter's headers: `json` adds a Content-Type only where none is set, so
            // the call never carries two (`header` appends, it does not replace).
            let call = call.json(&request.body);
            calls += 1;
            let answer = match call.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    response.bytes().await.map(|body| (status, retry_after, body))
                }
                Err(e) => Err(e),
            };
            drop(permit);
            let (status, retry_after, body) = match answer {
                Ok(a) => a,
                Err(e) if e.is_timeout() => {
                    return Sent {
                        delivery: Delivery::TimedOut,
                        calls,
                    }
                }
                Err(e) if e.is_connect() && attempt < self.retry.max_attempts => {
                    tracing::warn!(upstream = %self.name, attempt, "connection failed, retrying");
                    self.clock.sleep(self.backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => {
                    return Sent {
                        delivery: Delivery::Unreachable(crate::upstream::describe(e)),
                        calls,
                    }
                }
            };
            // One refresh and one retry when the upstream refuses an OAuth2 token: it may have
            // been revoked or expired early. A second 401 is the vendor's answer.
            if status == 401 && !refreshed {
                if let (Auth::OAuth2(source), Some(token)) = (auth, authorization.token.as_ref()) {
                    source.invalidate(token).await;
                    refreshed = true;
                    attempt -= 1;
                    continue;
                }
            }
            let outcome = self.adapter.parse(
                code,
                &VendorResponse {
                    status,
                    retry_after: retry_after.as_deref(),
                    body: &body,
                },
            );
            let wait = match &outcome {
                Outcome::Throttled { retry_after, .. } => Some(self.backoff(attempt, *retry_after)),
                Outcome::Failed { retryable: true, .. } => Some(self.backoff(attempt, None)),
                _ => None,
            };
            match wait {
                Some(wait) if attempt < self.retry.max_attempts => {
                    tracing::warn!(upstream = %self.name, attempt, status, "retrying in {wait:?}");
                    self.clock.sleep(wait).await;
                }
                _ => {
                    return Sent {
                        delivery: Delivery::Answered(outcome),
                        calls,
                    }
                }
            }
        }
    }

    /// Exponential back-off with full jitter, or the vendor's Retry-After, capped either way.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::from_millis(self.retry.max_delay_ms);
        let wait = retry_after.unwrap_or_else(|| {
            let ceiling = self.retry.base_delay_ms.saturating_mul(1 << (attempt - 1).min(16));
            Duration::from_millis(rand::rng().random_range(0..=ceiling))
        });
        wait.min(cap)
    }
}

/// A transport error with its causes ("error sending request: ... Connection refused"), and
/// without the URL, which is configuration rather than news to the caller.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
