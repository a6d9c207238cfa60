//! Revoking a code: the second operation of a code's life. It runs through the create's
//! machinery (the ledger's claim before any call, `Engine::deliver`, the same transport, rate
//! budget, breaker and recording); what is its own is the planning (from what the ledger holds
//! of the create: the vendor's id, the campaign's mapping) and the reading of the answers.
//!
//! Order of effects: `begin_revoke` marks the code revoked and claims each target in one
//! transaction, so from the instant a revoke is recorded no create, job, mirror, retry or
//! recovery sends the code again. A target a create is delivering right now is claimed too, and
//! revoked once that create's outcome is known.

use std::collections::BTreeSet;
use std::time::Duration;

use promo_adapters::model::validate;
use promo_adapters::operation::{Missing, Operation, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
use promo_adapters::{Problems, PromoCode, Warning};
use serde_json::{Map, Value};

use super::{ledger_error, refused, settle, Call, Engine, Plan, Round, Work};
use crate::auth::Credentials;
use crate::domain::code::CodeRecord;
use crate::domain::delivery::RevokeResponse;
use crate::domain::error::DomainError;
use crate::domain::request::{Begin, Claim, NewRevoke, OpKind, PlannedTarget, Unfinished};
use crate::engine::{ErrorKind, Status, TargetResult};
use crate::ports::StoreError;
use crate::upstream::{Patience, Upstream};

/// How long a revoke waits for a create that is delivering the code to a target when the revoke
/// arrives: the create's outcome decides whether there is anything to revoke there.
const CREATE_WAIT: Duration = Duration::from_secs(30);
/// How often the ledger is read while waiting.
const CREATE_POLL: Duration = Duration::from_millis(50);

/// A revoke as asked: the code (from the path), its campaign, where, and how hard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// `None`: the code of no campaign.
    pub campaign: Option<String>,
    /// `None`: every upstream the ledger has a delivery of the code to.
    pub targets: Option<Vec<String>>,
    pub delete: bool,
}

impl RevokeRequest {
    /// Reads a revoke's body (`{}` or no body at all asks for the defaults). Every problem names
    /// its field; an unknown key is refused rather than ignored.
    pub fn parse(body: &Value, upstreams: &BTreeSet<String>) -> Result<Self, Problems> {
        let mut p = Problems::default();
        let Some(obj) = body.as_object() else {
            p.push(
                "",
                "a revoke's body is a JSON object: { \"campaign\", \"targets\", \"delete\" }",
            );
            return Err(p);
        };
        for key in obj
            .keys()
            .filter(|k| !["campaign", "targets", "delete"].contains(&k.as_str()))
        {
            p.push(
                key.as_str(),
                "unknown field; a revoke takes campaign, targets and delete",
            );
        }
        let campaign = match obj.get("campaign") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) if !c.is_empty() => Some(c.clone()),
            Some(_) => {
                p.push("campaign", "must be the campaign's name (a non-empty string)");
                None
            }
        };
        let delete = match obj.get("delete") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                p.push("delete", "must be true or false");
                false
            }
        };
        let targets = match obj.get("targets") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.is_empty() => {
                p.push(
                    "targets",
                    "must name at least one upstream, or be left out for every one",
                );
                None
            }
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        None => p.push(format!("targets[{i}]"), "must be an upstream's name"),
                        Some(t) if !upstreams.contains(t) => p.push(
                            format!("targets[{i}]"),
                            format!(
                                "`{t}` is not a configured upstream ({})",
                                upstreams.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ),
                        Some(t) if names.iter().any(|n| n == t) => {
                            p.push(format!("targets[{i}]"), format!("`{t}` is listed twice"))
                        }
                        Some(t) => names.push(t.to_owned()),
                    }
                }
                Some(names)
            }
            Some(_) => {
                p.push("targets", "must be a list of upstream names");
                None
            }
        };
        if p.is_empty() {
            Ok(Self {
                campaign,
                targets,
                delete,
            })
        } else {
            Err(p)
        }
    }
}

/// A revoke's answer, and whether it replays an earlier one (same idempotency key).
pub struct RevokeAnswer {
    pub response: RevokeResponse,
    pub replayed: bool,
}

impl Engine {
    /// Revokes `code` at its targets (see the module's doc): plans each target from the
    /// ledger's record of the create, records the revoke and its claims, calls the vendors that
    /// need a call in parallel and records each outcome. A dry run shows each exact request and
    /// changes nothing.
    pub async fn revoke(
        &self,
        code: &str,
        body: &Value,
        dry_run: bool,
        key: Option<String>,
        requested_by: Option<String>,
    ) -> Result<RevokeAnswer, DomainError> {
        let request = RevokeRequest::parse(body, &self.upstream_names).map_err(DomainError::Invalid)?;
        let record = self.revoked_code(code, request.campaign.as_deref()).await?;
        let targets = request
            .targets
            .clone()
            .unwrap_or_else(|| record.deliveries.keys().cloned().collect());
        let (plans, promo_code) = self
            .plan_targets(&record, &targets, request.delete)
            .await
            .map_err(ledger_error)?;
        let answer = |request_id: Option<i64>, revoked_at: Option<String>, results| RevokeResponse {
            code: record.code.clone(),
            campaign: record.campaign.clone(),
            dry_run: request_id.is_none(),
            delete: request.delete,
            request_id,
            revoked_at,
            requested_by: requested_by.clone(),
            results,
        };
        if dry_run {
            let results = plans
                .into_iter()
                .map(|(target, plan)| super::preview_result(&target, plan))
                .collect();
            return Ok(RevokeAnswer {
                response: answer(None, None, results),
                replayed: false,
            });
        }
        let plans: Vec<(String, Plan)> = settled_credentials(plans);
        let mut recorded_body = body.as_object().cloned().unwrap_or_default();
        recorded_body.insert("code".into(), Value::String(record.code.clone()));
        let begun = self
            .store
            .begin_revoke(NewRevoke {
                key,
                body: Value::Object(recorded_body),
                campaign: record.campaign.clone().unwrap_or_default(),
                code: record.code.clone(),
                targets: planned(&plans),
                requested_by: requested_by.clone(),
                now: self.clock.now(),
                key_window: self.key_window,
            })
            .await
            .map_err(ledger_error)?;
        let (request_id, code_id, revoked_at, claims) = match begun {
            Begin::Revoking {
                request_id,
                code_id,
                revoked_at,
                claims,
            } => (request_id, code_id, revoked_at, claims),
            Begin::Replay(response) => {
                return Ok(RevokeAnswer {
                    response: super::replayed(&response)?,
                    replayed: true,
                })
            }
            Begin::InProgress(id) => return Err(DomainError::IdempotencyInProgress(id)),
            Begin::KeyReused(id) => return Err(DomainError::IdempotencyKeyReused(id)),
            Begin::NoSuchCode => return Err(no_such_code(&record.code, request.campaign.as_deref())),
            Begin::New { .. } | Begin::Conflict(_) => {
                return Err(DomainError::Unavailable(
                    "the ledger answered a revoke as a create".into(),
                ))
            }
        };
        let mut after_create = Vec::new();
        let work = plans
            .into_iter()
            .zip(claims)
            .map(|((target, plan), claim)| match (claim, plan) {
                (Claim::Send, plan @ Plan::Send { .. }) => Work::Send(target, plan),
                (Claim::Send | Claim::Settled, Plan::Done(result)) => Work::Known(result),
                (Claim::Settled, Plan::Send { upstream, call }) => Work::Known(super::ready(&target, &upstream, &call)),
                (Claim::Done(prior), _) => Work::Known(already_revoked(*prior)),
                (Claim::Elsewhere, plan) => Work::Known(pending(
                    &target,
                    vendor_of(&plan),
                    format!("another revoke of this code is calling {target} now; GET /v1/promo-codes/{{code}} shows its outcome"),
                )),
                (Claim::NotDelivered(status), plan) => Work::Known(not_delivered(&target, vendor_of(&plan), status)),
                (Claim::CreateInFlight, plan) => {
                    after_create.push(target.clone());
                    Work::Known(pending(&target, vendor_of(&plan), String::new()))
                }
            })
            .collect();
        let (mut results, mut unrecorded) = self
            .deliver(OpKind::Revoke, code_id, &promo_code, work, Round::First)
            .await;
        if !after_create.is_empty() {
            // Their claims are this revoke's: it finishes them once the creates have an outcome.
            let (late, late_unrecorded) = self
                .revoke_after_create(code_id, &record, &after_create, request.delete, Round::First)
                .await;
            for result in late {
                if let Some(slot) = results.iter_mut().find(|r| r.upstream == result.upstream) {
                    *slot = result;
                }
            }
            unrecorded.extend(late_unrecorded);
        }
        let mut response = answer(
            Some(request_id),
            Some(crate::domain::time::format(&revoked_at)),
            results,
        );
        self.finish_answer(request_id, OpKind::Revoke, &mut response, unrecorded)
            .await?;
        tracing::debug!(
            request_id,
            code = %response.code,
            requested_by = response.requested_by.as_deref().unwrap_or(""),
            results = %summary(&response.results),
            "revoke finished"
        );
        Ok(RevokeAnswer {
            response,
            replayed: false,
        })
    }

    /// Finishes a revoke a stop interrupted: its targets still `pending` are planned again from
    /// the ledger and called (a call in flight at the stop may have reached the vendor; a second
    /// archive, deactivation or delete leaves the code as one would, and a second delete reads as
    /// not found), and its answer is stored.
    pub(super) async fn resume_revoke(&self, u: Unfinished) -> Result<(), StoreError> {
        let code = u
            .body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let campaign = u.body.get("campaign").and_then(Value::as_str).map(str::to_owned);
        let delete = u.body.get("delete").and_then(Value::as_bool).unwrap_or(false);
        let record = self
            .store
            .code(code.clone(), Some(campaign.clone().unwrap_or_default()))
            .await?
            .into_iter()
            .next();
        let mut unrecorded = Vec::new();
        if let Some(record) = &record {
            let (waiting, ready): (Vec<String>, Vec<String>) = u.pending.iter().cloned().partition(|target| {
                record
                    .deliveries
                    .get(target)
                    .is_some_and(|d| d.status == Status::Pending)
            });
            let (plans, promo_code) = self.plan_targets(record, &ready, delete).await?;
            let work = settled_credentials(plans)
                .into_iter()
                .map(|(t, p)| Work::Send(t, p))
                .collect();
            self.deliver(OpKind::Revoke, u.code_id, &promo_code, work, Round::Resume)
                .await;
            let (_, late) = self
                .revoke_after_create(u.code_id, record, &waiting, delete, Round::Resume)
                .await;
            unrecorded.extend(late);
        } else {
            for target in &u.pending {
                let result = TargetResult::new(target, self.upstreams.get(target).map(|u| u.vendor), Status::Failed)
                    .with_error(
                        ErrorKind::NotResumed,
                        "interrupted by a restart, and the ledger no longer holds the code to plan it again",
                    );
                unrecorded.push((u.code_id, result));
            }
        }
        self.store.record(OpKind::Revoke, unrecorded).await?;
        let results = self
            .store
            .target_results(OpKind::Revoke, u.code_id, u.targets.clone())
            .await?;
        let response = RevokeResponse {
            code,
            campaign,
            dry_run: false,
            delete,
            request_id: Some(u.request_id),
            revoked_at: record
                .as_ref()
                .and_then(|r| r.revoked_at)
                .map(|at| crate::domain::time::format(&at)),
            requested_by: None,
            results,
        };
        self.finish_resumed(&u, &response).await
    }

    /// The code a revoke names, or the 404 that says where the ledger does hold it.
    async fn revoked_code(&self, code: &str, campaign: Option<&str>) -> Result<CodeRecord, DomainError> {
        let mut found = self
            .store
            .code(code.to_owned(), Some(campaign.unwrap_or_default().to_owned()))
            .await
            .map_err(ledger_error)?;
        match found.pop() {
            Some(record) => Ok(record),
            None => Err(no_such_code(code, campaign)),
        }
    }

    /// Each of `targets` planned from the ledger's `record` (with what its create sent there),
    /// and the code for the log lines of the calls.
    async fn plan_targets(
        &self,
        record: &CodeRecord,
        targets: &[String],
        delete: bool,
    ) -> Result<(Vec<(String, Plan)>, PromoCode), StoreError> {
        let promo = self.promo_of(record);
        let passthrough = self.passthroughs(record, targets).await?;
        let plans = targets
            .iter()
            .map(|t| {
                let plan = self.plan_revoke(t, record, promo.as_ref(), delete, passthrough.get(t));
                (t.clone(), plan)
            })
            .collect();
        Ok((plans, promo.unwrap_or_else(|_| placeholder(record))))
    }

    /// The passthrough fields each target's create sent (by upstream): a vendor whose revoke
    /// re-sends the whole object must send them again, or it would replace the object with
    /// another. None for a code a job delivered (jobs carry no passthrough).
    pub(super) async fn passthroughs(
        &self,
        record: &CodeRecord,
        targets: &[String],
    ) -> Result<std::collections::BTreeMap<String, Map<String, Value>>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for target in targets {
            if !record.deliveries.get(target).is_some_and(|d| d.status.is_delivered()) {
                continue;
            }
            let body = self
                .store
                .create_body(
                    record.campaign.clone().unwrap_or_default(),
                    record.code.clone(),
                    target.clone(),
                )
                .await?;
            if let Some(Value::Object(fields)) = body.as_ref().and_then(|b| b.get("passthrough")?.get(target)) {
                out.insert(target.clone(), fields.clone());
            }
        }
        Ok(out)
    }

    /// The code as the ledger defined it, read back into the unified model.
    pub(super) fn promo_of(&self, record: &CodeRecord) -> Result<PromoCode, String> {
        validate(&record.definition, &self.validation_context())
            .map(|r| r.promo)
            .map_err(|p| p.to_string())
    }

    /// One target of a revoke, planned from the ledger's record (pure: no I/O). A result that
    /// needs no call is never `pending`, so that a settled claim is never left in flight.
    pub(super) fn plan_revoke(
        &self,
        target: &str,
        record: &CodeRecord,
        promo: Result<&PromoCode, &String>,
        delete: bool,
        passthrough: Option<&Map<String, Value>>,
    ) -> Plan {
        let upstream = self.upstreams.get(target);
        let vendor = upstream.map(|u| u.vendor);
        if let Some(prior) = record.revocations.get(target).filter(|r| r.status.is_revoked()) {
            let result = prior
                .result
                .clone()
                .unwrap_or_else(|| TargetResult::new(target, vendor, prior.status));
            return Plan::Done(already_revoked(result));
        }
        let Some(upstream) = upstream else {
            return Plan::Done(TargetResult::new(target, None, Status::Unconfigured).with_error(
                ErrorKind::UnknownUpstream,
                format!("the ledger delivered the code to `{target}`, but config.toml has no [upstreams.{target}]"),
            ));
        };
        let delivery = record.deliveries.get(target);
        match delivery.map(|d| d.status) {
            Some(s) if s.is_delivered() => {}
            // A create in flight (`pending`) too: the ledger's claim then answers
            // `CreateInFlight`, and the revoke waits for that create's outcome.
            status => return Plan::Done(not_delivered(target, vendor, status)),
        }
        let Some(vendor_id) = delivery.and_then(|d| d.vendor_id.as_deref()) else {
            return Plan::Done(
                TargetResult::new(target, vendor, Status::Invalid).with_error(
                    ErrorKind::InvalidForVendor,
                    format!(
                        "the vendor already had a code of this name when the gateway delivered it (already_exists), so the ledger holds no {} id for it and cannot tell it is this campaign's: it is not revoked from here (revoke it in the vendor's dashboard if it is)",
                        upstream.vendor
                    ),
                ),
            );
        };
        let promo = match promo {
            Ok(p) => p,
            Err(why) => {
                return Plan::Done(TargetResult::new(target, vendor, Status::Invalid).with_error(
                    ErrorKind::InvalidForVendor,
                    format!("the ledger's definition of the code no longer passes the current configuration: {why}"),
                ))
            }
        };
        let ctx = self.context(record.campaign.as_deref(), target, upstream);
        let revoke_target = RevokeTarget {
            code: promo,
            vendor_id,
            passthrough,
        };
        match upstream.adapter.plan_revoke(&revoke_target, delete, &ctx) {
            Ok(RevokePlan::Call(call)) => Plan::Send {
                upstream: upstream.clone(),
                call: Call::Revoke(call),
            },
            Ok(RevokePlan::Unsupported { reason }) => Plan::Done(
                TargetResult::new(target, vendor, Status::Unsupported)
                    .with_error(ErrorKind::UnsupportedOperation, reason),
            ),
            Err(e) => Plan::Done(refused(target, upstream.vendor, e)),
        }
    }

    /// Finishes the targets whose revocation waited on a create in flight: once that create's
    /// outcome is in the ledger, a code it put on the vendor is revoked, and one it did not is
    /// not delivered there. Returns their results, and those left for the caller to record.
    async fn revoke_after_create(
        &self,
        code_id: i64,
        record: &CodeRecord,
        targets: &[String],
        delete: bool,
        round: Round,
    ) -> (Vec<TargetResult>, Vec<(i64, TargetResult)>) {
        if targets.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let started = tokio::time::Instant::now();
        let settled = loop {
            match self
                .store
                .code(record.code.clone(), Some(record.campaign.clone().unwrap_or_default()))
                .await
            {
                Ok(mut now) if !now.is_empty() => {
                    let now = now.remove(0);
                    let busy = targets
                        .iter()
                        .any(|t| now.deliveries.get(t).is_some_and(|d| d.status == Status::Pending));
                    if !busy {
                        break Ok(now);
                    }
                }
                Ok(_) => break Err("the ledger no longer holds the code".to_owned()),
                Err(e) => tracing::warn!(code_id, "could not read a code's deliveries while a revoke waits: {e}"),
            }
            if started.elapsed() >= CREATE_WAIT {
                break Err(format!(
                    "a create was still delivering the code after {} s",
                    CREATE_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(CREATE_POLL).await;
        };
        let planned = match settled {
            Ok(now) => self
                .plan_targets(&now, targets, delete)
                .await
                .map_err(|e| format!("the ledger could not be read ({e})")),
            Err(why) => Err(why),
        };
        let (plans, promo_code) = match planned {
            Ok(now) => now,
            Err(why) => {
                let results: Vec<TargetResult> = targets
                    .iter()
                    .map(|t| undecided(t, self.upstreams.get(t).map(|u| u.vendor), &why))
                    .collect();
                let unrecorded = results.iter().map(|r| (code_id, r.clone())).collect();
                return (results, unrecorded);
            }
        };
        let work = settled_credentials(plans)
            .into_iter()
            .map(|(t, p)| Work::Send(t, p))
            .collect();
        self.deliver(OpKind::Revoke, code_id, &promo_code, work, round).await
    }
}

/// One revoke call to one target, with the vendor's answer read into a result.
pub(super) async fn send(
    target: &str,
    code: &PromoCode,
    upstream: &Upstream,
    call: &RevokeCall,
    patience: Patience<'_>,
) -> TargetResult {
    let mut result = super::translated(target, upstream, &call.translation);
    result.action = Some(call.action);
    let auth = match &upstream.credentials {
        Credentials::Ready(auth) => auth,
        Credentials::Missing(vars) => return super::missing_credentials(result, vars),
    };
    let operation = Operation::Revoke {
        delete: call.action == promo_adapters::operation::RevokeAction::Deleted,
    };
    let adapter = &upstream.adapter;
    let sent = upstream
        .send_as(auth, &call.translation.request, operation, patience, |answer| {
            adapter.parse_revoke(call, answer)
        })
        .await;
    let vendor = upstream.vendor;
    let result = settle(result, upstream, sent, operation, |outcome, r| match outcome {
        RevokeOutcome::Revoked { action } => {
            r.action = Some(action);
            (Status::Revoked, None)
        }
        RevokeOutcome::AlreadyRevoked { action, message } => {
            r.action = Some(action);
            r.warnings.push(Warning {
                field: "code".into(),
                message: format!("{vendor}: {message}"),
            });
            (Status::AlreadyRevoked, None)
        }
        RevokeOutcome::NotFound { missing, message } => {
            let what = match missing {
                Missing::Code => format!("{vendor} does not know the code ({message}); it may have been deleted there already"),
                Missing::Parent => format!(
                    "{vendor} does not know the code's parent ({message}): the campaign's mapping may name the wrong one"
                ),
            };
            (Status::NotFound, Some((ErrorKind::NotFoundAtVendor, what, Some(404))))
        }
        RevokeOutcome::Rejected { status, message } => (
            Status::Rejected,
            Some((
                ErrorKind::VendorRejected,
                format!("{vendor} refused the revoke: {message}"),
                Some(status),
            )),
        ),
        RevokeOutcome::Throttled { message, .. } => super::throttled(vendor, r.attempts, message),
        RevokeOutcome::Failed { message, cause, .. } => super::failed(message, cause),
    });
    // Only a revoke that took effect did something to the code; any other outcome (the
    // transport's too: a timeout, no rate slot) did nothing the result can name.
    let mut result = result;
    if !matches!(result.status, Status::Revoked | Status::AlreadyRevoked) {
        result.action = None;
    }
    tracing::debug!(
        code = %code.code,
        upstream = %target,
        status = ?result.status,
        attempts = result.attempts,
        "revoke call finished"
    );
    result
}

/// Plans whose credentials are missing, settled without a call.
fn settled_credentials(plans: Vec<(String, Plan)>) -> Vec<(String, Plan)> {
    plans
        .into_iter()
        .map(|(t, p)| {
            let p = p.settle_credentials(&t);
            (t, p)
        })
        .collect()
}

/// What the ledger is to claim per target: settled where the plan needs no call.
fn planned(plans: &[(String, Plan)]) -> Vec<PlannedTarget> {
    plans
        .iter()
        .map(|(target, plan)| PlannedTarget {
            upstream: target.clone(),
            settled: match plan {
                Plan::Done(r) => Some(r.clone()),
                Plan::Send { .. } => None,
            },
        })
        .collect()
}

fn vendor_of(plan: &Plan) -> Option<promo_adapters::VendorKind> {
    match plan {
        Plan::Send { upstream, .. } => Some(upstream.vendor),
        Plan::Done(r) => r.vendor,
    }
}

/// A target an earlier revoke settled: its result, and no call.
fn already_revoked(mut prior: TargetResult) -> TargetResult {
    prior.attempts = 0;
    prior.request = None;
    prior.error = prior.error.filter(|_| prior.status == Status::NotFound);
    if prior.status != Status::NotFound {
        prior.status = Status::AlreadyRevoked;
    }
    prior.warnings.push(Warning {
        field: "code".into(),
        message: format!(
            "revoked on {} by an earlier revoke (see GET /v1/promo-codes/{{code}}); not sent again",
            prior.upstream
        ),
    });
    prior
}

/// A target whose revoke could not be decided (a create still delivering the code there, a
/// ledger that could not be read): nothing was sent, and a later revoke may be.
pub(super) fn undecided(target: &str, vendor: Option<promo_adapters::VendorKind>, why: &str) -> TargetResult {
    TargetResult::new(target, vendor, Status::Failed).with_error(
        ErrorKind::NotDelivered,
        format!(
            "{why}, so this revoke could not tell whether there is anything to revoke at {target}; nothing was sent: revoke again once GET /v1/promo-codes/{{code}} shows that delivery settled"
        ),
    )
}

fn not_delivered(target: &str, vendor: Option<promo_adapters::VendorKind>, status: Option<Status>) -> TargetResult {
    let held = match status {
        None => "holds no delivery of the code there".to_owned(),
        Some(s) => format!("holds its delivery there as `{}`, not created", s.as_str()),
    };
    TargetResult::new(target, vendor, Status::NotDelivered).with_error(
        ErrorKind::NotDelivered,
        format!("nothing to revoke at {target}: the ledger {held}, and the code is never sent there now it is revoked"),
    )
}

fn pending(target: &str, vendor: Option<promo_adapters::VendorKind>, message: String) -> TargetResult {
    let mut r = TargetResult::new(target, vendor, Status::Pending);
    if !message.is_empty() {
        r.warnings.push(Warning {
            field: "code".into(),
            message,
        });
    }
    r
}

fn no_such_code(code: &str, campaign: Option<&str>) -> DomainError {
    DomainError::NoSuchCode {
        code: code.to_owned(),
        campaign: campaign.map(str::to_owned),
    }
}

/// A code whose definition no longer validates, for the log lines of calls that are then not
/// made: only its name is used.
fn placeholder(record: &CodeRecord) -> PromoCode {
    PromoCode::new(
        record.code.clone(),
        promo_adapters::model::Discount::Percent(
            promo_adapters::money::Percent::from_hundredths(100).expect("1 % is a percent"),
        ),
    )
}

/// `spacebring=revoked, loop=unsupported`: each target's status, for the log line.
fn summary(results: &[TargetResult]) -> String {
    results
        .iter()
        .map(|r| format!("{}={}", r.upstream, r.status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
