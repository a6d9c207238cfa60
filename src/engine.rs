//! The fan-out engine: one validated code, one translated call per target, all targets in
//! parallel, one result per target.
//!
//! Work happens in two phases so that a request the gateway refuses changes nothing anywhere:
//! first every target is translated (pure, no I/O), and only when the request as a whole holds
//! (no passthrough tries to overwrite an adapter's field) are the calls made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use promo_adapters::adapter::translate;
use promo_adapters::mapping::Campaign;
use promo_adapters::model::{validate, ValidationContext};
use promo_adapters::{
    BuildContext, BuildError, CreateRequest, FailureCause, Outcome, Problems, PromoCode, Translation, VendorKind,
    Warning,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Credentials;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::{ApiError, StartupError};
use crate::ledger::{Begin, Ledger, Unfinished};
use crate::upstream::{Delivery, Patience, Sent, Upstream};

pub struct Engine {
    ledger: Ledger,
    upstreams: BTreeMap<String, Arc<Upstream>>,
    campaigns: BTreeMap<String, Campaign>,
    upstream_names: BTreeSet<String>,
    campaign_names: BTreeSet<String>,
}

/// What became of the code at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The vendor created it (`vendor_id` says under which id).
    Created,
    /// The vendor already has a code by that name.
    AlreadyExists,
    /// The vendor refused it; sending it again will not help.
    Rejected,
    /// The vendor is rate-limiting us and retries ran out.
    Throttled,
    /// A transient fault, a timeout or an untrustworthy answer.
    Failed,
    /// The vendor cannot carry a restriction the code has; nothing was sent.
    Unsupported,
    /// The code breaks a rule of this vendor or contradicts its campaign mapping; nothing sent.
    Invalid,
    /// Credentials or a mapping key are missing; nothing sent.
    Unconfigured,
    /// Dry run: the request below is what would be sent.
    WouldSend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    VendorRejected,
    AlreadyExists,
    RateLimited,
    UpstreamError,
    InvalidResponse,
    Timeout,
    Unreachable,
    Auth,
    UnsupportedField,
    InvalidForVendor,
    ContradictsMapping,
    MissingMapping,
    MissingCredentials,
    UnknownUpstream,
    /// A create interrupted by a restart whose target could not be resent.
    NotResumed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The vendor's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// The request a dry run shows: exactly what would be sent, with credentials redacted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestPreview {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetResult {
    pub upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorKind>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    pub warnings: Vec<Warning>,
    /// HTTP calls made to the vendor (retries included).
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestPreview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateResponse {
    pub code: String,
    pub dry_run: bool,
    /// The ledger's id for this create (`GET /v1/requests/{id}`); absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<i64>,
    pub results: Vec<TargetResult>,
}

impl CreateResponse {
    fn new(code: &PromoCode, request_id: Option<i64>, results: Vec<TargetResult>) -> Self {
        Self {
            code: code.code.clone(),
            dry_run: request_id.is_none(),
            request_id,
            results,
        }
    }
}

/// A create's answer, and whether it is the replay of an earlier one (same idempotency key).
pub struct Answer {
    pub response: CreateResponse,
    pub replayed: bool,
}

impl TargetResult {
    fn new(upstream: &str, vendor: Option<VendorKind>, status: Status) -> Self {
        Self {
            upstream: upstream.to_owned(),
            vendor,
            status,
            vendor_id: None,
            error: None,
            warnings: Vec::new(),
            attempts: 0,
            request: None,
        }
    }

    fn with_error(mut self, kind: ErrorKind, message: impl Into<String>) -> Self {
        self.error = Some(TargetError {
            kind,
            message: message.into(),
            field: None,
            http_status: None,
            retry_after_secs: None,
        });
        self
    }

    fn with_field(mut self, field: impl Into<String>) -> Self {
        if let Some(e) = self.error.as_mut() {
            e.field = Some(field.into());
        }
        self
    }
}

/// Which delivery of a create this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The create as it came in.
    First,
    /// A repeat under the same idempotency key, sending what failed.
    Repeat,
    /// After a restart, sending what a stop left pending.
    Resume,
}

/// A target after the pure phase.
enum Plan {
    Send {
        upstream: Arc<Upstream>,
        translation: Translation,
    },
    Done(TargetResult),
}

impl Plan {
    /// A target whose credentials are missing is settled here, without a call.
    fn settle_credentials(self, target: &str) -> Plan {
        match self {
            Plan::Send { upstream, translation } => match &upstream.credentials {
                Credentials::Missing(vars) => {
                    Plan::Done(missing_credentials(translated(target, &upstream, &translation), vars))
                }
                Credentials::Ready(_) => Plan::Send { upstream, translation },
            },
            done => done,
        }
    }
}

impl Engine {
    pub fn new(
        config: &Config,
        campaigns: BTreeMap<String, Campaign>,
        ledger: Ledger,
        env: &dyn Fn(&str) -> Option<String>,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("promo-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let upstreams: BTreeMap<String, Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    Arc::new(Upstream::new(name, u, http.clone(), env, clock.clone())),
                )
            })
            .collect();
        Ok(Self {
            ledger,
            upstream_names: upstreams.keys().cloned().collect(),
            campaign_names: campaigns.keys().cloned().collect(),
            upstreams,
            campaigns,
        })
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// Validates, translates and (unless `dry_run`) records and sends one code to its targets.
    /// With an idempotency key, a repeat of a finished create replays its recorded answer.
    pub async fn create(&self, body: &Value, dry_run: bool, key: Option<String>) -> Result<Answer, ApiError> {
        let request = validate(body, &self.validation_context()).map_err(ApiError::Invalid)?;
        let plans = self.plan(&request)?;
        let code = &request.promo;
        if dry_run {
            let results = plans
                .into_iter()
                .map(|(target, plan)| preview_result(&target, plan))
                .collect();
            return Ok(Answer {
                response: CreateResponse::new(code, None, results),
                replayed: false,
            });
        }
        let plans: Vec<(String, Plan)> = plans
            .into_iter()
            .map(|(t, p)| {
                let p = p.settle_credentials(&t);
                (t, p)
            })
            .collect();
        // Recorded before any call: from here on the ledger knows of every target.
        let settled = plans
            .iter()
            .map(|(target, plan)| {
                let result = match plan {
                    Plan::Done(r) => Some(r.clone()),
                    Plan::Send { .. } => None,
                };
                (target.clone(), result)
            })
            .collect();
        let begun = self
            .ledger
            .begin(key, code.code.clone(), body.clone(), settled)
            .await
            .map_err(|e| ApiError::Ledger(e.to_string()))?;
        let request_id = match begun {
            Begin::New(id) => id,
            Begin::Replay { request_id, results } => {
                return Ok(Answer {
                    response: CreateResponse::new(code, Some(request_id), results),
                    replayed: true,
                })
            }
            Begin::Retry { request_id, targets } => {
                let retry: BTreeSet<&String> = targets.iter().collect();
                let plans = plans.into_iter().filter(|(t, _)| retry.contains(t)).collect();
                self.deliver(request_id, code, plans, Round::Repeat).await;
                let results = self
                    .ledger
                    .results(request_id)
                    .await
                    .map_err(|e| ApiError::Ledger(e.to_string()))?;
                return Ok(Answer {
                    response: CreateResponse::new(code, Some(request_id), results),
                    replayed: false,
                });
            }
            Begin::InProgress(id) => return Err(ApiError::IdempotencyInProgress(id)),
            Begin::KeyReused(id) => return Err(ApiError::IdempotencyKeyReused(id)),
        };
        let results = self.deliver(request_id, code, plans, Round::First).await;
        Ok(Answer {
            response: CreateResponse::new(code, Some(request_id), results),
            replayed: false,
        })
    }

    /// A recorded create, as the ledger has it now.
    pub async fn recorded(&self, request_id: i64) -> Result<Option<crate::ledger::Stored>, ApiError> {
        self.ledger
            .get(request_id)
            .await
            .map_err(|e| ApiError::Ledger(e.to_string()))
    }

    /// Sends the targets of creates that a crash interrupted (as [`Ledger::interrupted`] read
    /// them at start-up), and returns how many creates it took up. A target is resent only if it
    /// was still `pending`; its result carries a warning, since the interrupted call may have
    /// reached the vendor (which then answers 409). A pending target the current configuration
    /// can no longer plan is recorded as not resumed, so no create stays pending for ever.
    pub async fn resume(&self, unfinished: Vec<Unfinished>) -> Result<usize, crate::ledger::LedgerError> {
        let count = unfinished.len();
        for u in unfinished {
            let planned = validate(&u.body, &self.validation_context())
                .map_err(ApiError::Invalid)
                .and_then(|request| Ok((self.plan(&request)?, request)));
            let (mut plans, code, why_not) = match planned {
                Ok((plans, request)) => (plans, Some(request.promo), "its target is no longer planned".to_owned()),
                Err(e) => (Vec::new(), None, format!("the request no longer passes ({e})")),
            };
            plans.retain(|(t, _)| u.pending.contains(t));
            for target in u.pending.iter().filter(|t| !plans.iter().any(|(p, _)| p == *t)) {
                let vendor = self.upstreams.get(target).map(|u| u.vendor);
                let result = TargetResult::new(target, vendor, Status::Failed).with_error(
                    ErrorKind::NotResumed,
                    format!("interrupted by a restart and not resent under the current configuration: {why_not}"),
                );
                self.ledger.record(u.request_id, &result).await?;
            }
            if let Some(code) = code {
                let plans = plans
                    .into_iter()
                    .map(|(t, p)| {
                        let p = p.settle_credentials(&t);
                        (t, p)
                    })
                    .collect();
                self.deliver(u.request_id, &code, plans, Round::Resume).await;
            }
            tracing::info!(
                request_id = u.request_id,
                targets = u.pending.len(),
                "resumed an interrupted create"
            );
        }
        Ok(count)
    }

    fn validation_context(&self) -> ValidationContext<'_> {
        ValidationContext {
            upstreams: &self.upstream_names,
            campaigns: &self.campaign_names,
        }
    }

    /// Calls every target that needs a call, in parallel, recording each outcome the moment it
    /// is known, and returns all results in target order.
    async fn deliver(
        &self,
        request_id: i64,
        code: &PromoCode,
        plans: Vec<(String, Plan)>,
        round: Round,
    ) -> Vec<TargetResult> {
        let sends = plans.into_iter().map(|(target, plan)| async move {
            // On a first round, `Ledger::begin` already recorded what was settled without a call.
            let (mut result, record) = match plan {
                Plan::Done(result) => (result, round != Round::First),
                Plan::Send { upstream, translation } => (send(&target, code, &upstream, &translation).await, true),
            };
            if round == Round::Resume {
                result.warnings.push(Warning {
                    field: "code".into(),
                    message: "resent after a restart interrupted the first attempt, which may have reached the vendor"
                        .into(),
                });
            }
            if record {
                if let Err(e) = self.ledger.record(request_id, &result).await {
                    tracing::error!(request_id, upstream = %target, "could not record a delivery in the ledger: {e}");
                }
            }
            result
        });
        futures::future::join_all(sends).await
    }

    /// The pure phase: a plan per target, or the whole request refused.
    fn plan(&self, request: &CreateRequest) -> Result<Vec<(String, Plan)>, ApiError> {
        let code = &request.promo;
        let campaign = code.campaign.as_ref().and_then(|c| self.campaigns.get(c));
        let targets: Vec<String> = match (&request.targets, campaign) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => c.upstreams.keys().cloned().collect(),
            (None, None) => Vec::new(),
        };
        if targets.is_empty() {
            let mut p = Problems::default();
            p.push("campaign", "its mapping lists no upstreams, so give targets");
            return Err(ApiError::Invalid(p));
        }
        // A passthrough for an upstream that is not a target would be silently dropped.
        let mut conflicts = Problems::default();
        for key in request.passthrough.keys() {
            if !targets.contains(key) {
                conflicts.push(
                    format!("passthrough.{key}"),
                    format!("`{key}` is not one of this request's targets ({})", targets.join(", ")),
                );
            }
        }
        let mut plans = Vec::with_capacity(targets.len());
        for target in targets {
            let plan = match self.upstreams.get(&target) {
                None => Plan::Done(TargetResult::new(&target, None, Status::Unconfigured).with_error(
                    ErrorKind::UnknownUpstream,
                    format!("the campaign maps `{target}` but config.toml has no [upstreams.{target}]"),
                )),
                Some(upstream) => {
                    let ctx = BuildContext {
                        upstream: &target,
                        mapping: campaign.and_then(|c| c.upstreams.get(&target)),
                        timezone: upstream.timezone,
                        network_id: upstream.network_id.as_deref(),
                    };
                    match translate(
                        upstream.adapter.as_ref(),
                        code,
                        request.on_unsupported,
                        request.passthrough.get(&target),
                        &ctx,
                    ) {
                        Ok(translation) => Plan::Send {
                            upstream: upstream.clone(),
                            translation,
                        },
                        Err(BuildError::PassthroughConflict { upstream: u, key, .. }) => {
                            conflicts.push(
                                format!("passthrough.{u}.{key}"),
                                format!("would overwrite a field the gateway sets for {}", upstream.vendor),
                            );
                            continue;
                        }
                        Err(e) => Plan::Done(refused(&target, upstream.vendor, e)),
                    }
                }
            };
            plans.push((target, plan));
        }
        if conflicts.is_empty() {
            Ok(plans)
        } else {
            Err(ApiError::Invalid(conflicts))
        }
    }
}

/// A target's result before its call: ready to send, with the translation's warnings.
fn translated(target: &str, upstream: &Upstream, translation: &Translation) -> TargetResult {
    let mut result = TargetResult::new(target, Some(upstream.vendor), Status::WouldSend);
    result.warnings = translation.warnings.clone();
    result
}

/// One target of a dry run: the request it would get, or why it would get none.
fn preview_result(target: &str, plan: Plan) -> TargetResult {
    match plan {
        Plan::Done(result) => result,
        Plan::Send { upstream, translation } => {
            let mut result = translated(target, &upstream, &translation);
            result.request = Some(preview(&upstream, &translation, upstream.auth().map(|a| a.redacted())));
            match &upstream.credentials {
                Credentials::Missing(vars) => missing_credentials(result, vars),
                Credentials::Ready(_) => result,
            }
        }
    }
}

/// One call to one target, with the vendor's answer read into a result.
async fn send(target: &str, code: &PromoCode, upstream: &Upstream, translation: &Translation) -> TargetResult {
    let result = translated(target, upstream, translation);
    // Settled before the ledger's record by `Plan::settle_credentials`; kept total all the same.
    let auth = match &upstream.credentials {
        Credentials::Ready(auth) => auth,
        Credentials::Missing(vars) => return missing_credentials(result, vars),
    };
    let sent = upstream
        .send(auth, code, &translation.request, Patience::Interactive)
        .await;
    let mut result = delivered(result, upstream, sent);
    if let Some(error) = result.error.as_mut() {
        error.message = upstream.redact(std::mem::take(&mut error.message)).await;
    }
    tracing::info!(
        code = %code.code,
        upstream = %target,
        status = ?result.status,
        vendor_id = result.vendor_id.as_deref().unwrap_or(""),
        attempts = result.attempts,
        "delivery finished"
    );
    result
}

fn preview(upstream: &Upstream, t: &Translation, redacted_auth: Option<&str>) -> RequestPreview {
    let mut headers: BTreeMap<String, String> = t.request.headers.iter().cloned().collect();
    headers.insert(
        "Authorization".into(),
        redacted_auth.unwrap_or("[credentials missing]").into(),
    );
    RequestPreview {
        method: t.request.method.to_owned(),
        url: upstream.url(&t.request.path),
        headers,
        body: t.request.body.clone(),
    }
}

fn missing_credentials(result: TargetResult, vars: &[String]) -> TargetResult {
    let mut r = result.with_error(
        ErrorKind::MissingCredentials,
        format!("credentials are not configured: set {}", vars.join(", ")),
    );
    r.status = Status::Unconfigured;
    r
}

fn refused(target: &str, vendor: VendorKind, e: BuildError) -> TargetResult {
    let message = e.to_string();
    let r = TargetResult::new(target, Some(vendor), Status::Invalid);
    match e {
        BuildError::Unsupported { field, .. } => {
            let mut r = r.with_error(ErrorKind::UnsupportedField, message).with_field(field);
            r.status = Status::Unsupported;
            r
        }
        BuildError::Invalid { field, .. } => r.with_error(ErrorKind::InvalidForVendor, message).with_field(field),
        BuildError::Contradicts { field, .. } => r.with_error(ErrorKind::ContradictsMapping, message).with_field(field),
        BuildError::Mapping(_) | BuildError::PassthroughConflict { .. } => {
            let mut r = r.with_error(ErrorKind::MissingMapping, message);
            r.status = Status::Unconfigured;
            r
        }
    }
}

fn delivered(mut r: TargetResult, upstream: &Upstream, sent: Sent) -> TargetResult {
    r.attempts = sent.calls;
    let vendor = upstream.vendor;
    let (status, error) = match sent.delivery {
        Delivery::Answered(Outcome::Created { vendor_id }) => {
            r.vendor_id = Some(vendor_id);
            (Status::Created, None)
        }
        Delivery::Answered(Outcome::AlreadyExists { message }) => (
            Status::AlreadyExists,
            Some((
                ErrorKind::AlreadyExists,
                format!("{vendor}: {message}"),
                Some(409),
                None,
            )),
        ),
        Delivery::Answered(Outcome::Rejected { status, message }) => (
            Status::Rejected,
            Some((
                ErrorKind::VendorRejected,
                format!("{vendor} rejected the code: {message}"),
                Some(status),
                None,
            )),
        ),
        Delivery::Answered(Outcome::Throttled { retry_after, message }) => (
            Status::Throttled,
            Some((
                ErrorKind::RateLimited,
                format!("{vendor} is rate-limiting after {} calls: {message}", sent.calls),
                Some(429),
                retry_after.map(|d| d.as_secs()),
            )),
        ),
        Delivery::Answered(Outcome::Failed { message, cause, .. }) => {
            let (kind, status) = match cause {
                FailureCause::ServerError { status } => (ErrorKind::UpstreamError, status),
                FailureCause::UnreadableAnswer { status } => (ErrorKind::InvalidResponse, status),
            };
            (Status::Failed, Some((kind, message, Some(status), None)))
        }
        Delivery::TimedOut => (
            Status::Failed,
            Some((
                ErrorKind::Timeout,
                format!(
                    "{vendor} did not answer within the timeout; the code may exist upstream, check before retrying"
                ),
                None,
                None,
            )),
        ),
        Delivery::Unreachable(e) => (
            Status::Failed,
            Some((
                ErrorKind::Unreachable,
                format!("{vendor} could not be reached: {e}"),
                None,
                None,
            )),
        ),
        Delivery::Auth(e) => (
            Status::Failed,
            Some((
                ErrorKind::Auth,
                format!("{vendor}: no credentials could be obtained: {e}"),
                None,
                None,
            )),
        ),
    };
    r.status = status;
    r.error = error.map(|(kind, message, http_status, retry_after_secs)| TargetError {
        kind,
        message,
        field: None,
        http_status,
        retry_after_secs,
    });
    r
}
