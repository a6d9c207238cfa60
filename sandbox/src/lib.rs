//! promo-sandbox: simulated vendors for promo-gateway, each judging the "create promo code"
//! call, and the calls that revoke one, exactly as its documents in `shared/vendor-docs/`
//! describe them.
//!
//! Every vendor lives under `http://ADDR/<kind>` followed by the vendor's own path
//! (`/loop/v1/admin/promos`, `/limio/objects/limio/promo_codes_v2`, ...). A request is checked
//! for its method, path, `Authorization` scheme and shape, content type, and its body against a
//! JSON Schema written by hand from the document (`schemas/`). A request that fails gets the
//! vendor's documented error answer listing every violation (or 400/422 where the document
//! gives none); one that passes gets the document's success answer, filled in from the request,
//! and its codes are held per vendor account (per credential), so a second code of the same
//! name answers 409. The calls after create of `shared/vendor-docs/lifecycle/` that revoke a
//! code are judged the same way and change what is held: Spacebring's archive and Limio v2's
//! `status: false` update mark the code so, Partnero's, Moltin's (one and bulk) and Limio v2's
//! deletes remove it, and any of them on a code the account does not hold answers 404.
//! The read calls of those documents answer from what is held, in their shape and paging
//! (Spacebring's get by uuid and list by coupon, Partnero's get by code and page-numbered list,
//! Moltin's `page[limit]`/`page[offset]` list of a promotion, Limio v2's get, Loop's list of its
//! active codes); a read changes nothing.
//! `GET`/`DELETE /<kind>/_sandbox/codes` list (with each code's revoked state, and the deleted
//! ones apart) and empty what a vendor holds;
//! `GET /<kind>/_sandbox/refusals` lists the requests it refused, each violation named.
//!
//! The crate does not depend on `promo-adapters` and shares no code with it: it is a second,
//! independent reading of the documents, so it can find where the adapters misread one.
//!
//! Faults on request: `x-sandbox-fault: 429;retry-after=2 | 503 | timeout | reset` on a call
//! makes its answer that fault; the same header on `POST /<kind>/_sandbox/faults` queues the
//! fault for that vendor's next call (for a caller that cannot add headers, like the gateway).
//! Each vendor answers 429 with `Retry-After` past its configured calls per second.

mod http;
mod judge;
mod reads;
mod state;
mod vendors;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use http::serve;

/// The vendors simulated, by the `kind` names of the gateway's config.toml; each is served under
/// `/<kind>`.
pub const KINDS: &[&str] = &["spacebring", "partnero", "moltin", "limio", "loop"];

/// The header that asks for a fault.
pub const FAULT_HEADER: &str = "x-sandbox-fault";

/// The simulated vendor `kind`'s API root on a sandbox listening at `addr`, to use as an
/// upstream's `base_url`; `None` for a kind the sandbox does not simulate.
pub fn base_url(kind: &str, addr: SocketAddr) -> Option<url::Url> {
    KINDS
        .contains(&kind)
        .then(|| url::Url::parse(&format!("http://{addr}/{kind}")).expect("a valid URL"))
}

/// The OAuth2 token endpoint of the simulated vendor `kind` (client-credentials and
/// refresh-token grants), to use as an upstream's `token_url`.
pub fn token_url(kind: &str, addr: SocketAddr) -> Option<url::Url> {
    KINDS
        .contains(&kind)
        .then(|| url::Url::parse(&format!("http://{addr}/{kind}/oauth2/token")).expect("a valid URL"))
}

/// The credentials a sandboxed gateway presents, by the environment variable names it reads
/// them from. They are fixed and public: the sandbox holds no secret, and a gateway pointed at
/// it must never carry a real vendor's credential there.
pub mod credentials {
    /// A bearer token every simulated vendor accepts (JWT-shaped, as Limio's document asks,
    /// and known to the sandbox as issued, so no token endpoint call is needed for it).
    pub const TOKEN_ENV: &str = "PROMO_SANDBOX_TOKEN";
    pub const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzYW5kYm94In0.c2FuZGJveA";
    /// HTTP Basic user and password.
    pub const USERNAME_ENV: &str = "PROMO_SANDBOX_USERNAME";
    pub const USERNAME: &str = "sandbox";
    pub const PASSWORD_ENV: &str = "PROMO_SANDBOX_PASSWORD";
    pub const PASSWORD: &str = "sandbox-secret";
    /// OAuth2 client id and secret (any pair is accepted; these are the ones a sandboxed gateway
    /// sends).
    pub const CLIENT_ID_ENV: &str = "PROMO_SANDBOX_CLIENT_ID";
    pub const CLIENT_ID: &str = "sandbox-client";
    pub const CLIENT_SECRET_ENV: &str = "PROMO_SANDBOX_CLIENT_SECRET";
    pub const CLIENT_SECRET: &str = "sandbox-client-secret";
    /// A refresh token for the refresh-token grant.
    pub const REFRESH_TOKEN_ENV: &str = "PROMO_SANDBOX_REFRESH_TOKEN";
    pub const REFRESH_TOKEN: &str = "sandbox-refresh-token";

    /// The value of one of the variables above.
    pub fn value(name: &str) -> Option<&'static str> {
        match name {
            TOKEN_ENV => Some(TOKEN),
            USERNAME_ENV => Some(USERNAME),
            PASSWORD_ENV => Some(PASSWORD),
            CLIENT_ID_ENV => Some(CLIENT_ID),
            CLIENT_SECRET_ENV => Some(CLIENT_SECRET),
            REFRESH_TOKEN_ENV => Some(REFRESH_TOKEN),
            _ => None,
        }
    }
}

/// Why the sandbox could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("--rate-limit {0}: give N or KIND=N (N calls per second, at least 1; KIND one of {KINDS:?})")]
    RateLimit(String),
}

/// How the simulated vendors behave beyond their documents.
#[derive(Debug, Clone)]
pub struct Options {
    /// Calls per second each vendor takes before answering 429 with `Retry-After`; `None`: no
    /// limit. Real vendors limit callers; a merchant's integration should meet a 429 here first.
    pub rate_limit: Option<u32>,
    /// Per-kind limits that replace `rate_limit`.
    pub rate_limits: BTreeMap<String, u32>,
    /// How long a `timeout` fault holds the call before answering 504 (longer than any
    /// client's timeout, so that the client gives up first).
    pub hang: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rate_limit: Some(50),
            rate_limits: BTreeMap::new(),
            hang: Duration::from_secs(120),
        }
    }
}

impl Options {
    /// Reads one `--rate-limit` argument: `N` for every vendor, or `KIND=N` for one.
    pub fn rate_limit_arg(&mut self, arg: &str) -> Result<(), SandboxError> {
        let bad = || SandboxError::RateLimit(arg.to_owned());
        let (kind, n) = match arg.split_once('=') {
            Some((kind, n)) => (Some(kind.trim()), n),
            None => (None, arg),
        };
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        match kind {
            None => self.rate_limit = Some(n),
            Some(kind) if KINDS.contains(&kind) => {
                self.rate_limits.insert(kind.to_owned(), n);
            }
            Some(_) => return Err(bad()),
        }
        Ok(())
    }

    fn limit_of(&self, kind: &str) -> Option<u32> {
        self.rate_limits.get(kind).copied().or(self.rate_limit)
    }
}

/// One rule a request broke: where (a JSON pointer into the body, or `header:NAME`,
/// `method`, `path`), which rule (the schema keyword, or `auth`, `content-type`...), and the
/// message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub rule: String,
    pub message: String,
}

impl Violation {
    pub(crate) fn new(pointer: impl Into<String>, rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }
}

/// A request a simulated vendor refused for breaking its document.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub vendor: &'static str,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub violations: Vec<Violation>,
}

/// A code a simulated vendor holds.
#[derive(Debug, Clone, Serialize)]
pub struct HeldCode {
    pub code: String,
    /// The vendor's collection: `promo_code_v2` and `promo_code_v3` are apart at Limio, the
    /// promotion's codes at Moltin.
    pub collection: String,
    /// The account (credential) holding it, with secrets shortened.
    pub account: String,
    /// The id the success answer gave.
    pub id: String,
    /// The number of the call that created it (calls are numbered from 1 as they arrive at
    /// any vendor): the codes of one Moltin call share it.
    pub call: u64,
    pub created_at: String,
    /// The body of the create call, as judged (for a Limio v2 code, of its latest update).
    pub request: serde_json::Value,
    /// The code as the vendor's later answers show it: its create's success answer, changed by
    /// the calls since (Spacebring's `archiveDate`, Limio's `data`).
    pub answer: serde_json::Value,
    /// Whether and how the code was revoked; `None`: live.
    pub revoked: Option<Revocation>,
    /// The account's key, which calls after create must present again.
    #[serde(skip)]
    pub(crate) account_key: String,
}

/// A revoke a simulated vendor carried out on a code.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Revocation {
    /// `archived` (Spacebring), `deactivated` (Limio v2's `status: false`), `deleted`.
    pub state: &'static str,
    pub at: String,
    /// The number of the call that did it (numbered as creates are).
    pub call: u64,
}

/// The simulated vendors and their state; clones share it.
#[derive(Clone)]
pub struct Sandbox {
    state: Arc<state::State>,
}

impl Sandbox {
    pub fn new(options: Options) -> Self {
        Self {
            state: Arc::new(state::State::new(options)),
        }
    }

    /// The HTTP surface. Serve it with [`serve`], which also carries out the `reset` fault.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Every request refused so far for breaking a document (not duplicates, faults or rate
    /// limits), oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.state.refusals()
    }

    /// The codes the vendor `kind` holds, oldest first, every account included: live, archived
    /// and deactivated ones, each with its [`HeldCode::revoked`].
    pub fn codes(&self, kind: &str) -> Vec<HeldCode> {
        self.state.codes(kind)
    }

    /// The codes the vendor `kind` has deleted, in the order of their deletes: no longer held,
    /// kept here only for the listing.
    pub fn deleted(&self, kind: &str) -> Vec<HeldCode> {
        self.state.deleted(kind)
    }
}
