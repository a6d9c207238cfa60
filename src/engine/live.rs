//! Reading a code back from each vendor: the third operation of a code's life, a variant of
//! the create's and the revoke's (the same transport, rate budget, breaker, timeouts and
//! retries, `Operation::Read`). What is its own: nothing is claimed or recorded (a read changes
//! nothing at the vendor and nothing in the ledger), and its answer compares what each vendor
//! holds with what the ledger says it sent there.

use promo_adapters::adapter::translate;
use promo_adapters::operation::Operation;
use promo_adapters::read::{
    differences, unreadable_fields, ListPlan, ReadOutcome, ReadPlan, ReadTarget, Unlisted, VendorCode,
};
use promo_adapters::{Adapter, BuildContext, OnUnsupported, PromoCode, Warning};

use super::{refused, settle, Engine};
use crate::auth::{Auth, Credentials};
use crate::domain::code::CodeRecord;
use crate::domain::live::{LiveResponse, LiveResult, LiveState};
use crate::engine::{ErrorKind, Status, TargetError, TargetResult};
use crate::upstream::{Found, Patience, Sent, Upstream};

/// What one read call came to.
enum Answer<T> {
    Found(T),
    /// The vendor answered 404, with its words.
    NotFound(String),
    /// Nothing can be said of what the vendor holds: why.
    Unknown(TargetError),
}

impl Engine {
    /// Reads `record` back from every upstream the ledger holds a delivery of it to, in
    /// parallel; a target the ledger never delivered it to is reported without a call.
    pub async fn live(&self, record: &CodeRecord) -> LiveResponse {
        let promo = self.promo_of(record);
        let reads = record
            .deliveries
            .keys()
            .map(|target| self.read_target(target, record, promo.as_ref()));
        let results = futures::future::join_all(reads).await;
        LiveResponse {
            code: record.code.clone(),
            campaign: record.campaign.clone(),
            revoked_at: record.revoked_at.as_ref().map(crate::domain::time::format),
            results,
        }
    }

    async fn read_target(&self, target: &str, record: &CodeRecord, promo: Result<&PromoCode, &String>) -> LiveResult {
        let delivery = record.deliveries.get(target);
        let upstream = self.upstreams.get(target);
        let mut result = LiveResult {
            upstream: target.to_owned(),
            vendor: upstream.map(|u| u.vendor),
            state: LiveState::NotDelivered,
            ledger: delivery.map(|d| d.status),
            vendor_id: None,
            redemptions: None,
            differs: Vec::new(),
            warnings: Vec::new(),
            error: None,
            attempts: 0,
        };
        let Some(upstream) = upstream else {
            return unknown(
                result,
                ErrorKind::UnknownUpstream,
                format!("the ledger delivered the code to `{target}`, but config.toml has no [upstreams.{target}]"),
            );
        };
        let Some(delivery) = delivery.filter(|d| d.status.is_delivered()) else {
            return result;
        };
        let auth = match &upstream.credentials {
            Credentials::Ready(auth) => auth,
            Credentials::Missing(vars) => {
                return unknown(
                    result,
                    ErrorKind::MissingCredentials,
                    format!("credentials are not configured: set {}", vars.join(", ")),
                )
            }
        };
        let vendor_id = delivery.vendor_id.as_deref();
        if vendor_id.is_none() {
            result.warnings.push(Warning {
                field: "vendor_id".into(),
                message: format!(
                    "the ledger holds no {} id for the code (the vendor had it already when the gateway delivered it), so it was matched by the code alone and may not be this campaign's",
                    upstream.vendor
                ),
            });
        }
        let ctx = self.context(record.campaign.as_deref(), target, upstream);
        let read = ReadTarget {
            code: &record.code,
            vendor_id,
        };
        let adapter = upstream.adapter.as_ref();
        let answer = match adapter.plan_read(&read, &ctx) {
            Err(e) => return refused_read(result, refused(target, upstream.vendor, e)),
            Ok(ReadPlan::Unreadable { reason }) => {
                result.state = LiveState::Unreadable;
                result.error = Some(error(ErrorKind::UnsupportedOperation, reason));
                return result;
            }
            Ok(ReadPlan::Get(request)) => {
                let sent = upstream
                    .send_as(auth, &request, Operation::Read, Patience::Interactive, |a| {
                        adapter.parse_read(a)
                    })
                    .await;
                result.attempts += sent.calls;
                answer(upstream, sent)
            }
            Ok(ReadPlan::Scan) => self.scan(upstream, auth, &read, &ctx, &mut result).await,
        };
        match answer {
            Answer::Found(code) => self.found(result, code, upstream, record, promo, &ctx),
            Answer::NotFound(message) => {
                result.state = LiveState::Absent;
                result.warnings.push(Warning {
                    field: "code".into(),
                    message: format!("{} does not know the code: {message}", upstream.vendor),
                });
                result
            }
            Answer::Unknown(e) => {
                result.state = LiveState::Unknown;
                result.error = Some(e);
                result
            }
        }
    }

    /// Walks the vendor's list, a page at a time (one page in memory), until an entry is the
    /// code; a complete walk without it says what the vendor's list says of absence.
    async fn scan(
        &self,
        upstream: &Upstream,
        auth: &Auth,
        read: &ReadTarget<'_>,
        ctx: &BuildContext<'_>,
        result: &mut LiveResult,
    ) -> Answer<VendorCode> {
        let adapter = upstream.adapter.as_ref();
        let mut after = None;
        loop {
            let request = match adapter.plan_list(after.as_ref(), ctx) {
                Ok(ListPlan::Page(request)) => request,
                Ok(ListPlan::Unreadable { reason }) => {
                    return Answer::Unknown(error(ErrorKind::UnsupportedOperation, reason));
                }
                Err(e) => {
                    let refusal = refused(&result.upstream, upstream.vendor, e);
                    return Answer::Unknown(refusal.error.unwrap_or_else(|| {
                        error(ErrorKind::InvalidForVendor, "the list could not be asked for".into())
                    }));
                }
            };
            let cursor = after.clone();
            let sent = upstream
                .send_as(auth, &request, Operation::Read, Patience::Interactive, |a| {
                    adapter.parse_list(cursor.as_ref(), a)
                })
                .await;
            result.attempts += sent.calls;
            let page = match answer(upstream, sent) {
                Answer::Found(page) => page,
                Answer::NotFound(message) => {
                    return Answer::NotFound(format!(
                        "its list answered 404 ({message}): the campaign mapping may name the wrong parent"
                    ))
                }
                Answer::Unknown(e) => return Answer::Unknown(e),
            };
            for w in page.warnings {
                if !result.warnings.contains(&w) {
                    result.warnings.push(w);
                }
            }
            if let Some(code) = page.codes.into_iter().find(|c| adapter.is_read_target(read, c)) {
                return Answer::Found(code);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        match adapter.unlisted() {
            Unlisted::Absent => Answer::NotFound("not in a complete walk of its list".into()),
            Unlisted::NotActive(why) => {
                result.warnings.push(Warning {
                    field: "code".into(),
                    message: why.into(),
                });
                Answer::Found(VendorCode {
                    code: read.code.to_owned(),
                    vendor_id: read.vendor_id.map(str::to_owned),
                    liveness: promo_adapters::read::Liveness::Revoked,
                    redemptions: None,
                    object: serde_json::Value::Null,
                    warnings: Vec::new(),
                })
            }
        }
    }

    /// A vendor's copy of the code, compared with what the ledger's code translates to there.
    fn found(
        &self,
        mut result: LiveResult,
        code: VendorCode,
        upstream: &Upstream,
        record: &CodeRecord,
        promo: Result<&PromoCode, &String>,
        ctx: &BuildContext<'_>,
    ) -> LiveResult {
        let adapter: &dyn Adapter = upstream.adapter.as_ref();
        result.state = match code.liveness {
            promo_adapters::read::Liveness::Active => LiveState::Active,
            promo_adapters::read::Liveness::Revoked => LiveState::Revoked,
        };
        result.vendor_id = code.vendor_id;
        result.redemptions = code.redemptions;
        result.warnings.extend(code.warnings);
        if let (LiveState::Active, Some(at)) = (result.state, record.revoked_at) {
            result.warnings.push(Warning {
                field: "code".into(),
                message: format!(
                    "the ledger holds the code revoked since {}, yet {} holds it active: it can still be redeemed there",
                    crate::domain::time::format(&at),
                    upstream.vendor
                ),
            });
        }
        if code.object.is_null() {
            return result;
        }
        let not_compared = |why: String| Warning {
            field: "differs".into(),
            message: format!("the fields were not compared: {why}"),
        };
        match promo {
            Ok(promo) => {
                match translate(adapter, promo, OnUnsupported::SkipField, None, ctx) {
                    Ok(t) => {
                        let sent = t.request.body.unwrap_or(serde_json::Value::Null);
                        result.differs = differences(adapter, &sent, &code.object);
                    }
                    Err(e) => result.warnings.push(not_compared(e.to_string())),
                }
                result.warnings.extend(unreadable_fields(adapter, promo));
            }
            Err(why) => result.warnings.push(not_compared(format!(
                "the ledger's definition no longer passes the current configuration ({why})"
            ))),
        }
        result
    }
}

/// A read call's delivery, as any operation's reads: the transport's failures and the vendor's
/// refusals become the error a result carries (`settle`, their one home).
fn answer<T: Found>(upstream: &Upstream, sent: Sent<ReadOutcome<T>>) -> Answer<T> {
    let vendor = upstream.vendor;
    let mut found = None;
    let mut not_found = None;
    let settled = settle(
        TargetResult::new(&upstream.name, Some(vendor), Status::Pending),
        upstream,
        sent,
        Operation::Read,
        |outcome, r| match outcome {
            ReadOutcome::Found(t) => {
                found = Some(t);
                (Status::Created, None)
            }
            ReadOutcome::NotFound { message } => {
                not_found = Some(message);
                (Status::NotFound, None)
            }
            ReadOutcome::Rejected { status, message } => (
                Status::Rejected,
                Some((
                    ErrorKind::VendorRejected,
                    format!("{vendor} refused the read: {message}"),
                    Some(status),
                )),
            ),
            ReadOutcome::Throttled { message, .. } => super::throttled(vendor, r.attempts, message),
            ReadOutcome::Failed { message, cause, .. } => super::failed(message, cause),
        },
    );
    match (found, not_found, settled.error) {
        (Some(t), _, _) => Answer::Found(t),
        (None, Some(message), _) => Answer::NotFound(message),
        (None, None, Some(e)) => Answer::Unknown(e),
        // Withheld: an interactive read is never halted, so this is only a guard.
        (None, None, None) => Answer::Unknown(error(ErrorKind::Unreachable, "the read was not sent".into())),
    }
}

fn error(kind: ErrorKind, message: String) -> TargetError {
    TargetError {
        kind,
        message,
        field: None,
        http_status: None,
        retry_after_secs: None,
        retry_at: None,
    }
}

fn unknown(mut result: LiveResult, kind: ErrorKind, message: String) -> LiveResult {
    result.state = LiveState::Unknown;
    result.error = Some(error(kind, message));
    result
}

/// A read the adapter could not plan (a mapping key missing, a damaged vendor id).
fn refused_read(mut result: LiveResult, refusal: TargetResult) -> LiveResult {
    result.state = LiveState::Unknown;
    result.error = refusal.error;
    result
}
