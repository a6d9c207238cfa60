//! Upstream credentials: read from the environment variables config.toml names, held as
//! secrets (never printed, logged or echoed), and turned into an `Authorization` header.
//!
//! OAuth2 tokens come from a [`TokenSource`] that fetches once, caches until shortly before
//! expiry, makes concurrent callers wait for the one fetch in flight instead of each fetching
//! (and share its error when it fails), and drops a token the upstream refused (401) so that
//! the next call fetches a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{AuthConfig, ClientAuth, Grant};
use crate::redact::Redactor;

/// Why no `Authorization` header could be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("the token endpoint answered {status}: {message}")]
    TokenRefused { status: u16, message: String },
    #[error("the token endpoint could not be reached: {0}")]
    TokenUnreachable(String),
    #[error("the token endpoint's answer has no usable access_token: {0}")]
    TokenGarbled(String),
}

/// An upstream's credentials, or the variables that would hold them.
pub enum Credentials {
    Ready(Auth),
    /// Names of the environment variables that are unset or empty.
    Missing(Vec<String>),
}

pub enum Auth {
    Bearer(SecretString),
    Basic {
        username: SecretString,
        password: SecretString,
    },
    OAuth2(Box<TokenSource>),
}

/// The header for one call. `token` is set for OAuth2, so a 401 can invalidate exactly it.
pub struct Authorization {
    pub value: HeaderValue,
    pub token: Option<SecretString>,
}

impl Credentials {
    /// Reads credentials through `env` (the process environment in the binary; a map in tests,
    /// since tests in one process cannot safely share environment variables).
    pub fn resolve(config: &AuthConfig, timeout: Duration, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut missing = Vec::new();
        let mut get = |name: &str| match env(name).filter(|v| !v.is_empty()) {
            Some(v) => SecretString::from(v),
            None => {
                missing.push(name.to_owned());
                SecretString::from(String::new())
            }
        };
        let auth = match config {
            AuthConfig::Bearer { token_env } => Auth::Bearer(get(token_env)),
            AuthConfig::Basic {
                username_env,
                password_env,
            } => Auth::Basic {
                username: get(username_env),
                password: get(password_env),
            },
            AuthConfig::Oauth2 {
                token_url,
                grant,
                client_id_env,
                client_secret_env,
                refresh_token_env,
                scopes,
                client_auth,
            } => {
                let client_id = get(client_id_env);
                let client_secret = get(client_secret_env);
                let refresh_token = refresh_token_env.as_deref().map(&mut get);
                let mut forms = Redactor::default();
                forms.basic(client_id.expose_secret(), client_secret.expose_secret());
                forms.basic(
                    &form_encoded(client_id.expose_secret()),
                    &form_encoded(client_secret.expose_secret()),
                );
                Auth::OAuth2(Box::new(TokenSource {
                    token_url: token_url.clone(),
                    grant: *grant,
                    client_id,
                    client_secret,
                    scopes: scopes.join(" "),
                    client_auth: *client_auth,
                    timeout,
                    state: Mutex::new(State {
                        token: None,
                        refresh_token,
                        failure: None,
                    }),
                    fetches: AtomicU64::new(0),
                    forms,
                }))
            }
        };
        if missing.is_empty() {
            Credentials::Ready(auth)
        } else {
            Credentials::Missing(missing)
        }
    }
}

impl Auth {
    pub async fn authorization(&self, http: &reqwest::Client) -> Result<Authorization, AuthError> {
        let (value, token) = match self {
            Auth::Bearer(token) => (format!("Bearer {}", token.expose_secret()), None),
            Auth::Basic { username, password } => (basic(username, password), None),
            Auth::OAuth2(source) => {
                let token = source.token(http).await?;
                (format!("Bearer {}", token.expose_secret()), Some(token))
            }
        };
        let mut value =
            HeaderValue::from_str(&value).map_err(|_| AuthError::TokenGarbled("not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(Authorization { value, token })
    }

    /// Every form in which this upstream's configured credentials are sent. An OAuth2 source's
    /// tokens change over time: [`Auth::issued`] adds them.
    pub fn forms(&self) -> Redactor {
        let mut forms = Redactor::default();
        match self {
            Auth::Bearer(token) => {
                forms.secret(token);
            }
            Auth::Basic { username, password } => {
                forms.basic(username.expose_secret(), password.expose_secret());
            }
            Auth::OAuth2(source) => {
                forms.extend(&source.forms);
            }
        }
        forms
    }

    /// The OAuth2 tokens this upstream holds now (access and refresh), in every form they are
    /// sent in; `None` for a static credential.
    pub async fn issued(&self) -> Option<Redactor> {
        match self {
            Auth::OAuth2(source) => Some(source.issued().await),
            Auth::Bearer(_) | Auth::Basic { .. } => None,
        }
    }

    /// What a dry run shows in place of the header.
    pub fn redacted(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "Basic [redacted]",
            Auth::Bearer(_) | Auth::OAuth2(_) => "Bearer [redacted]",
        }
    }
}

fn basic(username: &SecretString, password: &SecretString) -> String {
    let raw = format!("{}:{}", username.expose_secret(), password.expose_secret());
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// A cached, shared OAuth2 access token (client-credentials or refresh-token grant).
pub struct TokenSource {
    token_url: url::Url,
    grant: Grant,
    client_id: SecretString,
    client_secret: SecretString,
    scopes: String,
    client_auth: ClientAuth,
    timeout: Duration,
    /// Held across the fetch: that is what makes concurrent callers share one fetch.
    state: Mutex<State>,
    fetches: AtomicU64,
    /// The client's id and secret in every form [`TokenSource::fetch`] sends them.
    forms: Redactor,
}

struct State {
    token: Option<Cached>,
    /// The refresh-token grant's current refresh token; rotated when the server sends a new one.
    refresh_token: Option<SecretString>,
    /// When the last fetch failed, and why: callers that were already waiting for that fetch
    /// get its error instead of each trying again in turn (and each waiting out the timeout).
    failure: Option<(Instant, AuthError)>,
}

struct Cached {
    access: SecretString,
    /// When to stop using it: a little before the server's expiry, so no call carries a token
    /// that expires in flight.
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds. RFC 6749 makes it a number, but some servers (Azure AD v1) send a string.
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `expires_in` as a non-negative number or a numeric string; anything else counts as absent
/// (the default lifetime applies) rather than making a good token unusable.
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[derive(Deserialize)]
struct TokenErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Servers that omit `expires_in` get this lifetime.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A longer `expires_in` is cut to this (a huge one would overflow `Instant` arithmetic).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

impl TokenSource {
    /// Token fetches made so far (for `/health` and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub async fn token(&self, http: &reqwest::Client) -> Result<SecretString, AuthError> {
        let arrived = Instant::now();
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.token {
            if Instant::now() < cached.renew_at {
                return Ok(cached.access.clone());
            }
        }
        if let Some((failed_at, error)) = &state.failure {
            if *failed_at > arrived {
                return Err(error.clone());
            }
        }
        let fetched_at = Instant::now();
        let answer = match self.fetch(http, state.refresh_token.as_ref()).await {
            Ok(answer) => answer,
            Err(e) => {
                state.failure = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        state.failure = None;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs)
            .min(MAX_LIFETIME);
        // Renew a tenth of the lifetime early, at most 30 s: measured from before the request
        // was sent, so the server's clock started later than ours and the margin only grows.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        let access = SecretString::from(answer.access_token);
        state.token = Some(Cached {
            access: access.clone(),
            renew_at: fetched_at + lifetime - margin,
        });
        if let Some(rotated) = answer.refresh_token {
            state.refresh_token = Some(SecretString::from(rotated));
        }
        Ok(access)
    }

    /// Forgets `stale` if it is still the cached token (another caller may already have
    /// replaced it, and that newer token must survive).
    pub async fn invalidate(&self, stale: &SecretString) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|c| c.access.expose_secret() == stale.expose_secret())
        {
            state.token = None;
        }
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        refresh_token: Option<&SecretString>,
    ) -> Result<TokenAnswer, AuthError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut form: Vec<(&str, &str)> = Vec::new();
        match self.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            Grant::RefreshToken => {
                form.push(("grant_type", "refresh_token"));
                if let Some(rt) = refresh_token {
                    form.push(("refresh_token", rt.expose_secret()));
                }
            }
        }
        if !self.scopes.is_empty() {
            form.push(("scope", &self.scopes));
        }
        let mut request = http
            .post(self.token_url.clone())
            .timeout(self.timeout)
            .header("Accept", "application/json");
        match self.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: the id and secret are form-encoded first, then joined by
                // `:` and base64-encoded, so that a `:` or non-ASCII byte in them survives.
                request = request.basic_auth(
                    form_encoded(self.client_id.expose_secret()),
                    Some(form_encoded(self.client_secret.expose_secret())),
                );
            }
            ClientAuth::Body => {
                form.push(("client_id", self.client_id.expose_secret()));
                form.push(("client_secret", self.client_secret.expose_secret()));
            }
        }
        // reqwest's error text can include the URL but never the form body, so it is safe to show.
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::TokenUnreachable(describe(e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| AuthError::TokenUnreachable(describe(e)))?;
        if !(200..300).contains(&status) {
            // Only the standard error fields are shown: a token endpoint's free text is not
            // ours to vouch for and might echo what it was sent.
            let message = serde_json::from_slice::<TokenErrorAnswer>(&body)
                .map(|e| match e.error_description {
                    Some(d) => format!("{}: {d}", e.error),
                    None => e.error,
                })
                .unwrap_or_else(|_| "no OAuth2 error body".into());
            // ...and even those must not carry back a credential we sent.
            let message = self.redact(message, refresh_token);
            return Err(AuthError::TokenRefused { status, message });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| AuthError::TokenGarbled(self.redact(e.to_string(), refresh_token)))?;
        if answer.access_token.is_empty() {
            return Err(AuthError::TokenGarbled("access_token is empty".into()));
        }
        Ok(answer)
    }

    /// Replaces every credential this source sends, in every form, with `[redacted]`.
    fn redact(&self, text: String, refresh_token: Option<&SecretString>) -> String {
        let mut forms = self.forms.clone();
        if let Some(rt) = refresh_token {
            forms.secret(rt);
        }
        forms.text(text)
    }

    /// The tokens this source holds or has handed out, for redacting vendor messages.
    async fn issued(&self) -> Redactor {
        let state = self.state.lock().await;
        let mut forms = Redactor::default();
        for token in state
            .refresh_token
            .iter()
            .chain(state.token.as_ref().map(|t| &t.access))
        {
            forms.secret(token);
        }
        forms
    }
}

/// RFC 6749 §2.3.1: a client id or secret is form-encoded before it is put in a Basic pair.
fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A transport error (a token endpoint's or a vendor's) with its causes ("error sending request: ... Connection refused"), and
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
