//! The fan-out engine: one validated code, one translated call per target, all targets in
//! parallel, one result per target.
//!
//! Work happens in two phases so that a request the gateway refuses changes nothing anywhere:
//! first every target is translated (pure, no I/O), and only when the request as a whole holds
//! (no passthrough tries to overwrite an adapter's field) are the calls made.

mod intake;
pub mod jobs;
mod live;
mod revoke;
mod revoke_job;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use promo_adapters::adapter::translate;
use promo_adapters::mapping::Campaign;
use promo_adapters::model::{validate, ValidationContext};
use promo_adapters::operation::{Operation, RevokeCall};
use promo_adapters::{
    BuildContext, BuildError, CreateRequest, FailureCause, Outcome, Problems, PromoCode, Translation, VendorKind,
    Warning,
};

use serde_json::Value;

use crate::auth::Credentials;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::code::Definition;
use crate::domain::error::DomainError;
use crate::domain::request::{Begin, Claim, NewCreate, OpKind, PlannedTarget, StoredRequest, Unfinished};
use crate::error::StartupError;
use crate::ports::{Store, StoreError};
use crate::upstream::{Counted, Delivery, Effect, OperationOutcome, Patience, Sent, Upstream};

pub use self::revoke::{RevokeAnswer, RevokeRequest};
pub use crate::domain::delivery::{
    CreateResponse, ErrorKind, RequestPreview, RevokeResponse, Status, TargetError, TargetResult,
};

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: SharedClock,
    pub(crate) upstreams: BTreeMap<String, Arc<Upstream>>,
    campaigns: BTreeMap<String, Campaign>,
    upstream_names: BTreeSet<String>,
    campaign_names: BTreeSet<String>,
    /// Configured calls per second of each upstream, for sync-job ETAs.
    pub(crate) rates: BTreeMap<String, u32>,
    key_window: chrono::Duration,
    /// Running sync jobs, each with the switch that cancels or pauses it.
    pub(crate) jobs: std::sync::Mutex<crate::engine::jobs::Registry>,
}

/// An operation's answer (a create's, a revoke's) as the ledger stores it to replay: its
/// per-target results, whatever else it says.
pub(crate) trait OperationAnswer: serde::Serialize {
    fn results_mut(&mut self) -> &mut Vec<TargetResult>;
}

impl OperationAnswer for CreateResponse {
    fn results_mut(&mut self) -> &mut Vec<TargetResult> {
        &mut self.results
    }
}

impl OperationAnswer for RevokeResponse {
    fn results_mut(&mut self) -> &mut Vec<TargetResult> {
        &mut self.results
    }
}

/// A create's answer, and whether it is the replay of an earlier one (same idempotency key).
pub struct Answer {
    pub response: CreateResponse,
    pub replayed: bool,
}

/// Which delivery of a create this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The create as it came in.
    First,
    /// After a restart, sending what a stop left pending.
    Resume,
}

/// One target of a create after the ledger's claim: a call to make, or its result already.
enum Work {
    Send(String, Plan),
    Known(TargetResult),
}

/// A target after the pure phase.
pub(crate) enum Plan {
    Send { upstream: Arc<Upstream>, call: Call },
    Done(TargetResult),
}

/// One target's call, per operation: what it sends, and (by its variant) how the vendor's
/// answer is read and which ledger record it settles. A third operation is a third variant.
pub(crate) enum Call {
    Create(Translation),
    Revoke(RevokeCall),
}

impl Call {
    fn translation(&self) -> &Translation {
        match self {
            Call::Create(t) => t,
            Call::Revoke(c) => &c.translation,
        }
    }
}

impl Plan {
    /// A target whose credentials are missing is settled here, without a call.
    pub(crate) fn settle_credentials(self, target: &str) -> Plan {
        match self {
            Plan::Send { upstream, call } => match &upstream.credentials {
                Credentials::Missing(vars) => Plan::Done(missing_credentials(ready(target, &upstream, &call), vars)),
                Credentials::Ready(_) => Plan::Send { upstream, call },
            },
            done => done,
        }
    }
}

impl Engine {
    /// An engine over the configured `upstreams` (built by the composition root, each with
    /// its admission) and `store`.
    pub fn new(
        config: &Config,
        campaigns: BTreeMap<String, Campaign>,
        store: Arc<dyn Store>,
        upstreams: BTreeMap<String, Arc<Upstream>>,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        Ok(Self {
            store,
            clock,
            upstream_names: upstreams.keys().cloned().collect(),
            campaign_names: campaigns.keys().cloned().collect(),
            rates: config
                .upstreams
                .iter()
                .map(|(name, u)| (name.clone(), u.rate_limit.per_second))
                .collect(),
            key_window: chrono::Duration::hours(i64::from(config.ledger.idempotency_key_hours)),
            jobs: Default::default(),
            upstreams,
            campaigns,
        })
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// What a vendor's translation of a code of `campaign` for `target` is built against,
    /// whatever the operation: the campaign's mapping there and the upstream's settings.
    pub(crate) fn context<'a>(
        &'a self,
        campaign: Option<&str>,
        target: &'a str,
        upstream: &'a Upstream,
    ) -> BuildContext<'a> {
        BuildContext {
            upstream: target,
            mapping: campaign
                .and_then(|c| self.campaigns.get(c))
                .and_then(|c| c.upstreams.get(target)),
            timezone: upstream.timezone,
            network_id: upstream.network_id.as_deref(),
            currency: upstream.currency,
        }
    }

    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        self.campaigns.get(name)
    }

    /// A job's targets: those `given`, or when none are, every upstream the campaign maps.
    pub fn targets_or_campaigns(&self, campaign: &str, given: Vec<String>) -> Vec<String> {
        if !given.is_empty() {
            return given;
        }
        self.campaign(campaign)
            .map(|c| c.upstreams.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Validates, translates and (unless `dry_run`) records and sends one code to its targets.
    /// A target where the ledger already has the code is not called again; with an
    /// idempotency key, a repeat of a finished create replays its first answer. A code that
    /// clashes with one the ledger holds (another case or definition in its campaign, or the
    /// same code of another campaign at one of the targets) is refused whole, nothing sent.
    pub async fn create(
        &self,
        body: &Value,
        dry_run: bool,
        key: Option<String>,
        requested_by: Option<String>,
    ) -> Result<Answer, DomainError> {
        let request = validate(body, &self.validation_context()).map_err(DomainError::Invalid)?;
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
        let planned = plans
            .iter()
            .map(|(target, plan)| PlannedTarget {
                upstream: target.clone(),
                settled: match plan {
                    Plan::Done(r) => Some(r.clone()),
                    Plan::Send { .. } => None,
                },
            })
            .collect();
        let definition = Definition::of(body, code.campaign.as_deref(), &code.code);
        let begun = self
            .store
            .begin_create(NewCreate {
                key,
                body: body.clone(),
                definition,
                targets: planned,
                requested_by: requested_by.clone(),
                now: self.clock.now(),
                key_window: self.key_window,
            })
            .await
            .map_err(ledger_error)?;
        let (request_id, code_id, claims) = match begun {
            Begin::New {
                request_id,
                code_id,
                claims,
            } => (request_id, code_id, claims),
            Begin::Replay(response) => {
                return Ok(Answer {
                    response: replayed(&response)?,
                    replayed: true,
                })
            }
            Begin::InProgress(id) => return Err(DomainError::IdempotencyInProgress(id)),
            Begin::KeyReused(id) => return Err(DomainError::IdempotencyKeyReused(id)),
            Begin::Conflict(conflict) => return Err(DomainError::CodeConflict(conflict)),
            Begin::Revoking { .. } | Begin::NoSuchCode => {
                return Err(DomainError::Unavailable(
                    "the ledger answered a create as a revoke".into(),
                ))
            }
        };
        let work = plans
            .into_iter()
            .zip(claims)
            .map(|((target, plan), claim)| match (claim, plan) {
                (Claim::Send, plan) => Work::Send(target, plan),
                (Claim::Settled, Plan::Done(result)) => Work::Known(result),
                (Claim::Settled, Plan::Send { upstream, call }) => Work::Known(ready(&target, &upstream, &call)),
                (Claim::Done(prior), _) => Work::Known(already_delivered(*prior)),
                // A create's claims are never a revoke's; were they, nothing is sent.
                (Claim::Elsewhere | Claim::NotDelivered(_) | Claim::CreateInFlight, plan) => {
                    Work::Known(elsewhere(&target, plan))
                }
            });
        let (results, unrecorded) = self
            .deliver(OpKind::Create, code_id, code, work.collect(), Round::First)
            .await;
        let mut response = CreateResponse::new(code, Some(request_id), results);
        self.finish_answer(request_id, OpKind::Create, &mut response, unrecorded)
            .await?;
        Ok(Answer {
            response,
            replayed: false,
        })
    }

    /// Stores an operation's answer with the outcomes not yet recorded. If the ledger cannot,
    /// the calls were made all the same: the answer says what they did, and that the ledger has
    /// not recorded it, rather than "nothing was sent".
    pub(crate) async fn finish_answer(
        &self,
        request_id: i64,
        op: OpKind,
        response: &mut impl OperationAnswer,
        unrecorded: Vec<(i64, TargetResult)>,
    ) -> Result<(), DomainError> {
        let last: Vec<String> = unrecorded.iter().map(|(_, r)| r.upstream.clone()).collect();
        let written = answer_json(&*response)?;
        if let Err(e) = self.store.finish_request(request_id, op, written, unrecorded).await {
            tracing::error!(
                request_id,
                operation = op.as_str(),
                "could not record an answer in the ledger: {e}"
            );
            for result in response.results_mut().iter_mut().filter(|r| last.contains(&r.upstream)) {
                result.warnings.push(unrecorded_warning(&e));
            }
        }
        Ok(())
    }

    /// Why the ledger cannot record new work now, if it cannot.
    pub async fn ledger_problem(&self) -> Option<String> {
        self.store.problem().await
    }

    /// What the ledger's writer has done since start.
    pub fn ledger_writes(&self) -> crate::ports::WriteStats {
        self.store.write_stats()
    }

    /// Which ledger backend this is.
    /// How the connection to the ledger's backend is protected (`None` for a file).
    pub async fn ledger_transport(&self) -> Option<crate::ports::Transport> {
        self.store.transport().await
    }

    pub fn ledger_backend(&self) -> &'static str {
        self.store.backend()
    }

    /// A recorded create, as the ledger has it now.
    pub async fn recorded(&self, request_id: i64) -> Result<Option<StoredRequest>, DomainError> {
        self.store.request(request_id).await.map_err(ledger_error)
    }

    /// Sends the targets of creates that a crash interrupted (as [`Store::adopt`]
    /// handed them over) and stores their answers; returns how many creates it took up. A
    /// target is resent only if this create's claim on it was still `pending`; its result
    /// carries a warning, since the interrupted call may have reached the vendor (which then
    /// answers "already exists"). A pending target the current configuration can no longer
    /// plan is recorded as not resumed, so no create stays pending for ever.
    pub async fn resume(&self, unfinished: Vec<Unfinished>) -> Result<usize, StoreError> {
        let count = unfinished.len();
        for u in unfinished {
            if u.operation == OpKind::Revoke {
                self.resume_revoke(u).await?;
                continue;
            }
            let planned = validate(&u.body, &self.validation_context())
                .map_err(DomainError::Invalid)
                .and_then(|request| Ok((self.plan(&request)?, request)));
            let (mut plans, code, why_not) = match planned {
                Ok((plans, request)) => (plans, Some(request.promo), "its target is no longer planned".to_owned()),
                Err(e) => (Vec::new(), None, format!("the request no longer passes ({e})")),
            };
            plans.retain(|(t, _)| u.pending.contains(t));
            let mut abandoned = Vec::new();
            // A code revoked since its create began is never sent again, by a recovery either.
            if let Some(code) = &code {
                let held = self
                    .store
                    .code(code.code.clone(), Some(code.campaign.clone().unwrap_or_default()))
                    .await?;
                if held.iter().any(|r| r.revoked_at.is_some()) {
                    for (target, _) in plans.drain(..) {
                        let vendor = self.upstreams.get(&target).map(|u| u.vendor);
                        abandoned.push((u.code_id, withheld_revoked(&target, vendor)));
                    }
                }
            }
            for target in u.pending.iter().filter(|t| !plans.iter().any(|(p, _)| p == *t)) {
                let vendor = self.upstreams.get(target).map(|u| u.vendor);
                let result = TargetResult::new(target, vendor, Status::Failed).with_error(
                    ErrorKind::NotResumed,
                    format!("interrupted by a restart and not resent under the current configuration: {why_not}"),
                );
                abandoned.push((u.code_id, result));
            }
            self.store.record(OpKind::Create, abandoned).await?;
            if let Some(code) = &code {
                let work = plans
                    .into_iter()
                    .map(|(t, p)| Work::Send(t.clone(), p.settle_credentials(&t)))
                    .collect();
                self.deliver(OpKind::Create, u.code_id, code, work, Round::Resume).await;
            }
            let results = self
                .store
                .target_results(OpKind::Create, u.code_id, u.targets.clone())
                .await?;
            let code_name = code.map(|c| c.code).unwrap_or_default();
            let response = CreateResponse {
                code: code_name,
                dry_run: false,
                request_id: Some(u.request_id),
                results,
            };
            self.finish_resumed(&u, &response).await?;
        }
        Ok(count)
    }

    /// Stores the answer of a request a stop interrupted, now that its pending targets have an
    /// outcome: the ledger's results as they stand, which a repeat under its key replays.
    async fn finish_resumed(&self, u: &Unfinished, response: &impl serde::Serialize) -> Result<(), StoreError> {
        let written = serde_json::to_string(response)
            .map_err(|e| StoreError::new(crate::ports::StoreErrorKind::Corrupt, e.to_string()))?;
        self.store
            .finish_request(u.request_id, u.operation, written, Vec::new())
            .await?;
        tracing::info!(
            request_id = u.request_id,
            operation = u.operation.as_str(),
            targets = u.pending.len(),
            "resumed an interrupted request"
        );
        Ok(())
    }

    pub(crate) fn validation_context(&self) -> ValidationContext<'_> {
        ValidationContext {
            upstreams: &self.upstream_names,
            campaigns: &self.campaign_names,
        }
    }

    /// Calls every target that needs a call, in parallel, recording each outcome the moment it
    /// is known, and returns all results in target order. On a first round the outcome that
    /// arrives last is returned unrecorded instead, for the caller to record with the answer
    /// (the answer follows at once, so a separate transaction for it would only cost time).
    async fn deliver(
        &self,
        op: OpKind,
        code_id: i64,
        code: &PromoCode,
        work: Vec<Work>,
        round: Round,
    ) -> (Vec<TargetResult>, Vec<(i64, TargetResult)>) {
        let calls = work.iter().filter(|w| matches!(w, Work::Send(..))).count();
        let remaining = &std::sync::atomic::AtomicUsize::new(calls);
        let sends = work.into_iter().map(|w| async move {
            let (target, plan) = match w {
                Work::Known(result) => return (result, false),
                Work::Send(target, plan) => (target, plan),
            };
            let mut result = match plan {
                Plan::Done(result) => result,
                Plan::Send { upstream, call } => {
                    send_call(&target, code, &upstream, &call, Patience::Interactive).await
                }
            };
            if round == Round::Resume {
                result.warnings.push(Warning {
                    field: "code".into(),
                    message: "resent after a restart interrupted the first attempt, which may have reached the vendor"
                        .into(),
                });
            }
            let last = remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1;
            if last && round == Round::First {
                return (result, true);
            }
            if let Err(e) = self.store.record(op, vec![(code_id, result.clone())]).await {
                tracing::error!(code_id, upstream = %target, "could not record a delivery in the ledger: {e}");
                result.warnings.push(unrecorded_warning(&e));
            }
            (result, false)
        });
        let mut unrecorded = Vec::new();
        let results = futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|(result, deferred)| {
                if deferred {
                    unrecorded.push((code_id, result.clone()));
                }
                result
            })
            .collect();
        (results, unrecorded)
    }

    /// The pure phase: a plan per target, or the whole request refused.
    pub(crate) fn plan(&self, request: &CreateRequest) -> Result<Vec<(String, Plan)>, DomainError> {
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
            return Err(DomainError::Invalid(p));
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
                    let ctx = self.context(code.campaign.as_deref(), &target, upstream);
                    match translate(
                        upstream.adapter.as_ref(),
                        code,
                        request.on_unsupported,
                        request.passthrough.get(&target),
                        &ctx,
                    ) {
                        Ok(translation) => Plan::Send {
                            upstream: upstream.clone(),
                            call: Call::Create(translation),
                        },
                        Err(BuildError::PassthroughConflict {
                            vendor,
                            upstream: u,
                            key,
                            gateway_key,
                        }) => {
                            conflicts.push(
                                format!("passthrough.{u}.{key}"),
                                promo_adapters::adapter::passthrough_rule(vendor, &gateway_key),
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
            Err(DomainError::Invalid(conflicts))
        }
    }
}

/// A target's result before its call: ready to send, with the translation's warnings.
pub(crate) fn translated(target: &str, upstream: &Upstream, translation: &Translation) -> TargetResult {
    let mut result = TargetResult::new(target, Some(upstream.vendor), Status::WouldSend);
    result.warnings = translation.warnings.clone();
    result
}

/// A target's result before its call, whatever the operation: what the call will do.
pub(crate) fn ready(target: &str, upstream: &Upstream, call: &Call) -> TargetResult {
    let mut result = translated(target, upstream, call.translation());
    if let Call::Revoke(c) = call {
        result.action = Some(c.action);
    }
    result
}

/// One target of a dry run: the request it would get, or why it would get none.
fn preview_result(target: &str, plan: Plan) -> TargetResult {
    match plan {
        Plan::Done(result) => result,
        Plan::Send { upstream, call } => {
            let mut result = ready(target, &upstream, &call);
            result.request = Some(preview(
                &upstream,
                call.translation(),
                upstream.auth().map(|a| a.redacted()),
            ));
            match &upstream.credentials {
                Credentials::Missing(vars) => missing_credentials(result, vars),
                Credentials::Ready(_) => result,
            }
        }
    }
}

/// One call to one target, with the vendor's answer read into a result.
pub(crate) async fn send(
    target: &str,
    code: &PromoCode,
    upstream: &Upstream,
    translation: &Translation,
    patience: Patience<'_>,
) -> TargetResult {
    let result = translated(target, upstream, translation);
    // Settled before the ledger's record by `Plan::settle_credentials`; kept total all the same.
    let auth = match &upstream.credentials {
        Credentials::Ready(auth) => auth,
        Credentials::Missing(vars) => return missing_credentials(result, vars),
    };
    let sent = upstream.send(auth, code, &translation.request, patience).await;
    let result = delivered(result, upstream, sent);
    // The request's access line names each target's outcome (`http::telemetry`).
    tracing::debug!(
        code = %code.code,
        upstream = %target,
        status = ?result.status,
        vendor_id = result.vendor_id.as_deref().unwrap_or(""),
        attempts = result.attempts,
        "delivery finished"
    );
    result
}

/// One call of any operation to one target.
async fn send_call(
    target: &str,
    code: &PromoCode,
    upstream: &Upstream,
    call: &Call,
    patience: Patience<'_>,
) -> TargetResult {
    match call {
        Call::Create(translation) => send(target, code, upstream, translation, patience).await,
        Call::Revoke(call) => revoke::send(target, code, upstream, call, patience).await,
    }
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

pub(crate) fn missing_credentials(result: TargetResult, vars: &[String]) -> TargetResult {
    let mut r = result.with_error(
        ErrorKind::MissingCredentials,
        format!("credentials are not configured: set {}", vars.join(", ")),
    );
    r.status = Status::Unconfigured;
    r
}

/// A target the ledger already has the code on: its earlier result, and no call.
fn already_delivered(mut prior: TargetResult) -> TargetResult {
    prior.attempts = 0;
    prior.request = None;
    prior.warnings.push(Warning {
        field: "code".into(),
        message: format!(
            "{} on {} by an earlier request or sync job (see GET /v1/promo-codes/{{code}}); not sent again",
            if prior.status == Status::Created {
                "already created"
            } else {
                "already known to exist"
            },
            prior.upstream,
        ),
    });
    prior
}

/// A delivery not made because the code was revoked before its call: never sent again, by
/// anything (a job, a retry, a recovery).
pub(crate) fn withheld_revoked(target: &str, vendor: Option<VendorKind>) -> TargetResult {
    TargetResult::new(target, vendor, Status::Cancelled).with_error(
        ErrorKind::Revoked,
        format!("not sent to {target}: the code was revoked, and a revoked code is never sent again"),
    )
}

/// A target another request or job is delivering right now: not sent twice.
fn elsewhere(target: &str, plan: Plan) -> TargetResult {
    let vendor = match &plan {
        Plan::Send { upstream, .. } => Some(upstream.vendor),
        Plan::Done(r) => r.vendor,
    };
    let mut r = TargetResult::new(target, vendor, Status::Pending);
    r.warnings.push(Warning {
        field: "code".into(),
        message: format!(
            "another request or sync job is delivering this code to {target} now; GET /v1/promo-codes/{{code}} shows its outcome"
        ),
    });
    r
}

/// An answer as the ledger keeps it, to replay.
pub(crate) fn answer_json(response: &impl serde::Serialize) -> Result<String, DomainError> {
    serde_json::to_string(response)
        .map_err(|e| DomainError::Unavailable(format!("the answer could not be written: {e}")))
}

/// An answer the ledger kept, replayed as it was.
pub(crate) fn replayed<T: serde::de::DeserializeOwned>(written: &str) -> Result<T, DomainError> {
    serde_json::from_str(written)
        .map_err(|e| DomainError::Unavailable(format!("the ledger holds an answer it cannot read: {e}")))
}

/// The warning on a result whose outcome the ledger could not record.
fn unrecorded_warning(e: &StoreError) -> Warning {
    Warning {
        field: "ledger".into(),
        message: format!(
            "this outcome is not recorded in the ledger yet ({e}); GET /v1/promo-codes/{{code}} may show the delivery pending until it is"
        ),
    }
}

pub(crate) fn ledger_error(e: StoreError) -> DomainError {
    DomainError::Unavailable(e.to_string())
}

pub(crate) fn refused(target: &str, vendor: VendorKind, e: BuildError) -> TargetResult {
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

/// What an answered call settles a result to: its status and, unless a success, its error
/// (kind, message, the vendor's HTTP status).
pub(crate) type Verdict = (Status, Option<(ErrorKind, String, Option<u16>)>);

/// A create's call read into its result.
pub(crate) fn delivered(r: TargetResult, upstream: &Upstream, sent: Sent) -> TargetResult {
    let vendor = upstream.vendor;
    settle(r, upstream, sent, Operation::Create, |outcome, r| match outcome {
        Outcome::Created { vendor_id } => {
            r.vendor_id = Some(vendor_id);
            (Status::Created, None)
        }
        Outcome::AlreadyExists { message } => (
            Status::AlreadyExists,
            Some((ErrorKind::AlreadyExists, format!("{vendor}: {message}"), Some(409))),
        ),
        Outcome::Rejected { status, message } => (
            Status::Rejected,
            Some((
                ErrorKind::VendorRejected,
                format!("{vendor} rejected the code: {message}"),
                Some(status),
            )),
        ),
        Outcome::Throttled { message, .. } => throttled(vendor, r.attempts, message),
        Outcome::Failed { message, cause, .. } => failed(message, cause),
    })
}

pub(crate) fn throttled(vendor: VendorKind, calls: u32, message: String) -> Verdict {
    (
        Status::Throttled,
        Some((
            ErrorKind::RateLimited,
            format!("{vendor} is rate-limiting after {calls} calls: {message}"),
            Some(429),
        )),
    )
}

pub(crate) fn failed(message: String, cause: FailureCause) -> Verdict {
    let (kind, status) = match cause {
        FailureCause::ServerError { status } => (ErrorKind::UpstreamError, status),
        FailureCause::UnreadableAnswer { status } => (ErrorKind::InvalidResponse, status),
    };
    (Status::Failed, Some((kind, message, Some(status))))
}

/// Any operation's call read into its result: `answered` reads what the vendor said; what the
/// transport met on the way (a timeout, a pause, the breaker, no rate slot) reads the same for
/// every operation.
pub(crate) fn settle<O: OperationOutcome>(
    mut r: TargetResult,
    upstream: &Upstream,
    sent: Sent<O>,
    operation: Operation,
    answered: impl FnOnce(O, &mut TargetResult) -> Verdict,
) -> TargetResult {
    r.attempts = sent.calls;
    let vendor = upstream.vendor;
    let rfc3339 = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    if sent.unconfirmed_retry {
        let lost = format!(
            "an earlier call to {vendor} was cut off after the request went out and its answer was lost (retry.unconfirmed retried it)"
        );
        let already =
            matches!(&sent.delivery, Delivery::Answered(o) if o.effect() == Effect::Settled(Counted::AlreadyExists));
        r.warnings.push(Warning {
            field: "code".into(),
            message: if already {
                format!(
                    "{lost}; the retry was answered \"already exists\", most likely because that call created the code"
                )
            } else {
                lost
            },
        });
    }
    let unknown = operation.unreadable_hint();
    let (status, error) = match sent.delivery {
        Delivery::Answered(outcome) => answered(outcome, &mut r),
        Delivery::TimedOut => (
            Status::Failed,
            Some((
                ErrorKind::Timeout,
                format!("{vendor} did not answer within the timeout; {unknown}"),
                None,
            )),
        ),
        Delivery::Unreachable(e) => (
            Status::Failed,
            Some((ErrorKind::Unreachable, format!("{vendor} could not be reached: {e}"), None)),
        ),
        Delivery::Interrupted(e) => (
            Status::Failed,
            Some((
                ErrorKind::Unreachable,
                format!("the connection to {vendor} broke after the request was sent ({e}); {unknown}"),
                None,
            )),
        ),
        Delivery::Auth(e) => (
            Status::Failed,
            Some((
                ErrorKind::Auth,
                format!("{vendor}: no credentials could be obtained: {e}"),
                None,
            )),
        ),
        Delivery::Paused { until } => (
            Status::Throttled,
            Some((
                ErrorKind::RateLimited,
                format!(
                    "{vendor} asked for a pause until {}, longer than a call waits (retry.max_wait_ms); nothing was sent",
                    rfc3339(until)
                ),
                None,
            )),
        ),
        Delivery::NoSlot { waited, backend } => (
            Status::Throttled,
            Some((
                ErrorKind::RateLimited,
                match backend {
                    Some(e) => format!(
                        "no call to {vendor} was made: its rate budget could not be asked within {} ms (limiter_wait_ms), and no call goes out without it ({e}); nothing was sent",
                        waited.as_millis()
                    ),
                    None => format!(
                        "no call to {vendor} could be made within {} ms (limiter_wait_ms) under its rate_limit and max_in_flight; nothing was sent",
                        waited.as_millis()
                    ),
                },
                None,
            )),
        ),
        // Still `pending`: the job that withheld it records nothing, so the delivery stays
        // claimed for its next run (or becomes `cancelled` with the rest of a cancelled job).
        Delivery::Withheld => (Status::Pending, None),
        Delivery::Unavailable { until, failures } => (
            Status::Failed,
            Some((
                ErrorKind::UpstreamUnavailable,
                match until {
                    Some(until) => format!(
                        "{vendor} failed {failures} times in a row, so the gateway does not call it until {}, when one trial call tests it again; nothing was sent",
                        rfc3339(until)
                    ),
                    None => format!(
                        "{vendor} failed {failures} times in a row and a trial call is testing it now; nothing was sent, try again shortly"
                    ),
                },
                None,
            )),
        ),
    };
    // When to come back, for the answers that ask the caller to.
    let retry_at = sent
        .retry_at
        .filter(|_| matches!(status, Status::Throttled | Status::Failed));
    let now = upstream.now();
    r.status = status;
    r.error = error.map(|(kind, message, http_status)| TargetError {
        kind,
        message,
        field: None,
        http_status,
        retry_after_secs: retry_at.map(|at| {
            let ms = (at - now).num_milliseconds().max(0);
            u64::try_from(ms).unwrap_or(0).div_ceil(1000)
        }),
        retry_at: retry_at.map(rfc3339),
    });
    r
}
