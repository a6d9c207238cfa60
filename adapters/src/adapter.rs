//! The adapter contract: what every vendor module provides, and the types it speaks.
//!
//! An adapter is pure translation. It never opens a socket, reads a clock or an environment
//! variable; the engine does I/O and hands the adapter bytes. That keeps every vendor rule
//! testable without a network and keeps retries, rate limits and credentials in one place.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mapping::UpstreamMapping;
use crate::model::{Discount, OnUnsupported, PromoCode};
use crate::money::{Currency, Money};
use crate::operation::{Operation, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
use crate::policy::{Field, Support};
use crate::read::{
    classify_read, Cursor, ListPlan, Page, ReadBack, ReadOutcome, ReadPlan, ReadTarget, Unlisted, VendorCode,
};

/// The vendor APIs the gateway speaks: one variant an adapter, generated from the registry in
/// [`crate::vendors`] (`VendorKind::ALL` in its order, `display_name`, serialized snake_case).
pub use crate::vendors::VendorKind;

impl fmt::Display for VendorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Everything an adapter may consult besides the code itself.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The upstream instance name, for messages.
    pub upstream: &'a str,
    /// The campaign's mapping for this upstream, if the request named a campaign that maps it.
    pub mapping: Option<&'a UpstreamMapping>,
    /// The time zone in which the vendor counts calendar dates.
    pub timezone: Tz,
    /// Non-secret per-upstream settings from config.toml (e.g. Spacebring's network id).
    pub network_id: Option<&'a str>,
    /// The vendor account's currency (`upstreams.NAME.currency`). Loop's `amount_off` and
    /// Partnero's `minimum_order_value` are bare numbers the vendor reads in its account's
    /// currency, so an amount is sent only when it is in this currency (see [`account_amount`]).
    pub currency: Option<Currency>,
}

/// The exact HTTP request a vendor gets, minus credentials (the engine adds those).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VendorRequest {
    pub method: &'static str,
    /// Path and query relative to the upstream's base URL, starting with `/`.
    pub path: String,
    /// Non-secret headers, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `None`: the call carries no body at all, and no `Content-Type` (some
    /// revoke calls are documented with none, and a JSON `null` would be a body).
    pub body: Option<Value>,
}

/// A lossy conversion or a dropped field, reported with the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub field: String,
    pub message: String,
}

/// A translated request and what was lost on the way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Translation {
    pub request: VendorRequest,
    pub warnings: Vec<Warning>,
}

/// Why a code cannot be sent to one target. The engine maps each to a result status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    /// The vendor has no way to express restrictions the code carries; `field` lists them all,
    /// comma-separated.
    #[error("{vendor} cannot carry {field}: {reason}")]
    Unsupported {
        vendor: VendorKind,
        field: String,
        reason: String,
    },
    /// The code breaks a rule of this vendor's (e.g. Loop's 50-character code limit).
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    /// The campaign's parent object grants something other than what the code asks.
    #[error("{field}: the request asks for {requested} but the campaign's {vendor} parent grants {mapped}")]
    Contradicts {
        vendor: VendorKind,
        field: &'static str,
        requested: String,
        mapped: String,
    },
    /// The campaign mapping lacks a key this vendor needs.
    #[error("{0}")]
    Mapping(String),
    /// A passthrough field would overwrite one the adapter sets, or would be read as one by a
    /// vendor that matches keys loosely (see [`passthrough_key`]).
    #[error("passthrough.{upstream}.{key}: {}", passthrough_rule(*vendor, gateway_key))]
    PassthroughConflict {
        vendor: VendorKind,
        upstream: String,
        /// The passthrough key as the request spelt it.
        key: String,
        /// The gateway's own key it matches.
        gateway_key: String,
    },
}

/// What happened to a code at one vendor, read from the vendor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created {
        vendor_id: String,
    },
    AlreadyExists {
        message: String,
    },
    /// The vendor refused the request; sending it again will not help.
    Rejected {
        status: u16,
        message: String,
    },
    /// The vendor asked us to slow down.
    Throttled {
        retry_after: Option<RetryAfter>,
        message: String,
    },
    /// A fault at the vendor (5xx), or an answer that cannot be trusted.
    Failed {
        message: String,
        retryable: bool,
        cause: FailureCause,
    },
}

/// A `Retry-After` header as the vendor wrote it: a delay, or a wall time. Kept unresolved so
/// that the adapter reads no clock; the caller resolves it against its own with [`RetryAfter::until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Delay(Duration),
    /// `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
    At(DateTime<Utc>),
}

impl RetryAfter {
    /// When the vendor will take calls again, seen from `now`; never before `now`.
    pub fn until(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            RetryAfter::Delay(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            RetryAfter::At(at) => at.max(now),
        }
    }

    /// How long to wait, seen from `now`.
    pub fn delay(self, now: DateTime<Utc>) -> Duration {
        (self.until(now) - now).to_std().unwrap_or(Duration::MAX)
    }
}

/// Why a call failed: the vendor said so, or its answer made no sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// A 5xx (or other non-4xx error status).
    ServerError { status: u16 },
    /// A success status with a body that is not the documented shape: the code may exist.
    UnreadableAnswer { status: u16 },
}

/// A vendor's answer, as bytes: the engine reads the socket, the adapter reads the bytes.
#[derive(Debug, Clone, Copy)]
pub struct VendorResponse<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub body: &'a [u8],
}

/// One vendor's translation. Implementations live in `crate::vendors`, one module a vendor.
pub trait Adapter: Send + Sync + 'static {
    fn kind(&self) -> VendorKind;

    /// How this vendor carries each unified field: the policy table, and docs/vendors.md's.
    fn support(&self, field: Field) -> Support;

    /// Codes one call can create. Batch-capable vendors (Moltin) say more than one; a single
    /// create always sends a batch of one.
    fn batch_size(&self) -> usize {
        1
    }

    /// Builds the request for a code that has passed [`crate::policy::check`]. Fields the
    /// policy dropped are listed in `skipped`; the adapter must not send them.
    fn build(&self, code: &PromoCode, skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError>;

    /// One call for several codes of one campaign (at most [`Adapter::batch_size`]), each of
    /// which has already been translated on its own (so passed [`crate::policy::check`]).
    /// Vendors without batches take one code per call.
    fn build_batch(&self, codes: &[&PromoCode], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        match codes {
            [one] => self.build(one, &[], ctx),
            _ => Err(BuildError::Invalid {
                field: "codes".into(),
                rule: format!("{} takes one code per call, got {}", self.kind(), codes.len()),
            }),
        }
    }

    /// The amounts this vendor reads as bare numbers in the account's currency (the upstream's
    /// `currency` setting), as check-config names them: `amount_off`, `minimum_order`. `None`:
    /// its amounts carry their currency, or it takes none.
    fn account_currency_amounts(&self) -> Option<&'static str> {
        None
    }

    /// JSON pointer to the object that passthrough fields merge into.
    fn passthrough_at(&self) -> &'static str {
        ""
    }

    /// Body keys the adapter owns even when it leaves them out (a passthrough may not set
    /// `first_time_order` just because this code has no first-order restriction).
    fn reserved_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads the vendor's answer into one outcome.
    fn parse(&self, code: &PromoCode, response: &VendorResponse<'_>) -> Outcome;

    /// The call that makes one created code unredeemable: the least destructive one the
    /// vendor documents, or the hard one when `delete` asks for it. The default is the
    /// conservative answer for a vendor whose document names no such call: nothing is sent.
    fn plan_revoke(
        &self,
        target: &RevokeTarget<'_>,
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        let _ = (target, delete, ctx);
        Ok(RevokePlan::Unsupported {
            reason: format!("{} documents no call that revokes a code", self.kind()),
        })
    }

    /// Codes one revoke call can take; as for creates, the engine halves a refused batch.
    fn revoke_batch_size(&self) -> usize {
        1
    }

    /// One revoke call for several codes of one campaign (at most
    /// [`Adapter::revoke_batch_size`]). Vendors without a bulk revoke take one code per call.
    fn plan_revoke_batch(
        &self,
        targets: &[RevokeTarget<'_>],
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        match targets {
            [one] => self.plan_revoke(one, delete, ctx),
            _ => Err(BuildError::Invalid {
                field: "codes".into(),
                rule: format!("{} revokes one code per call, got {}", self.kind(), targets.len()),
            }),
        }
    }

    /// Reads the answer to a call [`Adapter::plan_revoke`] (or the batch form) planned; for a
    /// batch the outcome holds for each of its codes. The default trusts no 2xx: a vendor that
    /// documents no revoke documents no success answer either.
    fn parse_revoke(&self, call: &RevokeCall, response: &VendorResponse<'_>) -> RevokeOutcome {
        crate::operation::classify_revoke(self.kind(), call, response, |_| false)
    }

    /// How one code is read back ([`crate::read`]). The default is the conservative answer for
    /// a vendor whose document names no read: nothing is sent.
    fn plan_read(&self, target: &ReadTarget<'_>, ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        let _ = (target, ctx);
        Ok(ReadPlan::Unreadable {
            reason: format!("{} documents no call that reads a code back", self.kind()),
        })
    }

    /// Reads the answer to the get-one [`Adapter::plan_read`] planned. The default trusts no
    /// 2xx, as for revokes.
    fn parse_read(&self, response: &VendorResponse<'_>) -> ReadOutcome<VendorCode> {
        classify_read(self.kind(), response, |_| None)
    }

    /// The request for one page of the vendor's codes within the campaign's scope (the
    /// mapping's coupon or promotion, where the list can be narrowed to it), from `after`
    /// (`None`: the first page).
    fn plan_list(&self, after: Option<&Cursor>, ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        let _ = (after, ctx);
        Ok(ListPlan::Unreadable {
            reason: format!("{} documents no call that lists codes", self.kind()),
        })
    }

    /// Reads the answer to the page [`Adapter::plan_list`] planned from `after`.
    fn parse_list(&self, after: Option<&Cursor>, response: &VendorResponse<'_>) -> ReadOutcome<Page> {
        let _ = after;
        classify_read(self.kind(), response, |_| None)
    }

    /// Whether a listed code is the one `target` names: by the vendor's id where both have
    /// one, else by the code exactly as sent (no vendor documents how its list compares case).
    fn is_read_target(&self, target: &ReadTarget<'_>, listed: &VendorCode) -> bool {
        match (target.vendor_id, listed.vendor_id.as_deref()) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => listed.code == target.code,
        }
    }

    /// What a code's absence from a complete walk of the list says.
    fn unlisted(&self) -> Unlisted {
        Unlisted::Absent
    }

    /// The unified fields this vendor gives back, and where ([`ReadBack`]); the rest it
    /// carries cannot be compared.
    fn read_back(&self) -> &'static [ReadBack] {
        &[]
    }
}

/// Translates a code for one target: policy check, build, then passthrough merge.
pub fn translate(
    adapter: &dyn Adapter,
    code: &PromoCode,
    on_unsupported: OnUnsupported,
    passthrough: Option<&Map<String, Value>>,
    ctx: &BuildContext<'_>,
) -> Result<Translation, BuildError> {
    let checked = crate::policy::check(adapter, code, on_unsupported)?;
    let mut t = adapter.build(code, &checked.skipped, ctx)?;
    let mut warnings = checked.warnings;
    warnings.append(&mut t.warnings);
    t.warnings = warnings;
    if let (Some(extra), Some(body)) = (passthrough, t.request.body.as_mut()) {
        merge_passthrough(adapter, ctx.upstream, body, extra)?;
    }
    Ok(t)
}

/// The rule a passthrough key breaks when it matches `gateway_key`, as a problem states it.
pub fn passthrough_rule(vendor: VendorKind, gateway_key: &str) -> String {
    format!(
        "would overwrite `{gateway_key}`, a field the gateway sets for {vendor} (keys are compared as a vendor's \
         JSON parser may match them: regardless of case, Unicode compatibility forms, `_` and `-`)"
    )
}

/// The form in which a vendor might take two JSON keys for one field. Many JSON parsers match
/// keys case-insensitively (Jackson's `ACCEPT_CASE_INSENSITIVE_PROPERTIES`, .NET's
/// `PropertyNameCaseInsensitive`, Go's `encoding/json`, which also folds `K` and the Kelvin
/// sign), and naming policies map `promo_code`, `promo-code` and `promoCode` to one field. So a
/// passthrough `Code` beside the gateway's `code` is a second value for the same field, which
/// such a vendor may take over the gateway's.
pub fn passthrough_key(key: &str) -> String {
    crate::model::fold(key)
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .collect()
}

fn merge_passthrough(
    adapter: &dyn Adapter,
    upstream: &str,
    body: &mut Value,
    extra: &Map<String, Value>,
) -> Result<(), BuildError> {
    let conflict = |key: &str, gateway_key: &str| BuildError::PassthroughConflict {
        vendor: adapter.kind(),
        upstream: upstream.to_owned(),
        key: key.to_owned(),
        gateway_key: gateway_key.to_owned(),
    };
    // Every object the pointer reaches gets the extras (for a batch: every code in it).
    let mut targets: Vec<&mut Map<String, Value>> = Vec::new();
    match body.pointer_mut(adapter.passthrough_at()) {
        Some(Value::Object(o)) => targets.push(o),
        Some(Value::Array(items)) => targets.extend(items.iter_mut().filter_map(Value::as_object_mut)),
        _ => {}
    }
    // The gateway's keys: those the adapter reserves, and those it set in this body.
    let owned: Vec<(String, &str)> = adapter
        .reserved_keys()
        .iter()
        .copied()
        .chain(targets.iter().flat_map(|o| o.keys().map(String::as_str)))
        .map(|k| (passthrough_key(k), k))
        .collect();
    for key in extra.keys() {
        let folded = passthrough_key(key);
        if let Some((_, gateway_key)) = owned.iter().find(|(k, _)| *k == folded) {
            return Err(conflict(key, gateway_key));
        }
    }
    for o in targets {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}

/// Requires a mapping key, naming it when absent.
pub fn mapped<'a, T>(
    ctx: &BuildContext<'a>,
    vendor: VendorKind,
    key: &str,
    get: impl Fn(&'a UpstreamMapping) -> Option<&'a T>,
) -> Result<&'a T, BuildError> {
    let Some(mapping) = ctx.mapping else {
        return Err(BuildError::Mapping(format!(
            "{vendor} attaches codes to a parent object: the request needs a campaign whose mapping has [upstreams.{}] with `{key}`",
            ctx.upstream
        )));
    };
    get(mapping).ok_or_else(|| {
        BuildError::Mapping(format!(
            "the campaign mapping's [upstreams.{}] lacks `{key}`, which {vendor} needs",
            ctx.upstream
        ))
    })
}

/// A vendor field that takes a bare number and reads it in the vendor account's currency.
#[derive(Debug, Clone, Copy)]
pub struct BareAmount {
    pub vendor: VendorKind,
    /// The unified field an error names, e.g. `discount.currency`.
    pub field: &'static str,
    /// The vendor's field, e.g. `amount_off`.
    pub vendor_field: &'static str,
    /// What the vendor calls the thing whose currency applies: `account`, `program`.
    pub account: &'static str,
    /// What cannot be sent without a declared currency, e.g. `amount discounts`.
    pub what: &'static str,
}

/// Checks that `money` is in the currency the upstream declares for its vendor account, the
/// only currency a bare number can mean there. Any other currency, or none declared, refuses
/// the target: sending the number anyway could give more than the merchant asked (500 JPY read
/// as 5.00 USD).
pub fn account_amount(ctx: &BuildContext<'_>, bare: &BareAmount, money: Money) -> Result<Money, BuildError> {
    let BareAmount {
        vendor,
        field,
        vendor_field,
        account,
        what,
    } = *bare;
    let upstream = ctx.upstream;
    match ctx.currency {
        Some(declared) if declared == money.currency => Ok(money),
        Some(declared) => Err(BuildError::Invalid {
            field: field.to_owned(),
            rule: format!(
                "{vendor}'s {vendor_field} carries no currency and applies the {account}'s, which \
                 upstreams.{upstream}.currency says is {declared}; this code is in {}",
                money.currency
            ),
        }),
        None => Err(BuildError::Invalid {
            field: field.to_owned(),
            rule: format!(
                "{vendor}'s {vendor_field} carries no currency and applies the {account}'s: {what} need \
                 upstreams.{upstream}.currency set to the {vendor} {account}'s currency (this code is in {})",
                money.currency
            ),
        }),
    }
}

/// For vendors whose parent object grants the discount: the code's discount must be the
/// parent's, and so must its duration if it names one.
pub fn check_parent_grants(code: &PromoCode, ctx: &BuildContext<'_>, vendor: VendorKind) -> Result<(), BuildError> {
    let granted: &Discount = mapped(ctx, vendor, "discount", |m| m.discount.as_ref())?;
    if *granted != code.discount {
        return Err(BuildError::Contradicts {
            vendor,
            field: "discount",
            requested: code.discount.to_string(),
            mapped: granted.to_string(),
        });
    }
    if let Some(asked) = code.duration {
        match ctx.mapping.and_then(|m| m.duration) {
            Some(d) if d == asked => {}
            Some(d) => {
                return Err(BuildError::Contradicts {
                    vendor,
                    field: "duration",
                    requested: asked.to_string(),
                    mapped: d.to_string(),
                })
            }
            None => {
                return Err(BuildError::Mapping(format!(
                    "duration: the request asks for {asked} but the campaign mapping's [upstreams.{}] declares no `duration` for its {vendor} parent",
                    ctx.upstream
                )))
            }
        }
    }
    Ok(())
}

/// What a vendor's answer says at the HTTP level, before an operation names the outcome: a
/// documented success, a refusal (a 4xx other than 429), a request to slow down, or a failure.
/// [`read`] is its one home, so that a 429, a 503 or a 2xx in the wrong shape means the same
/// for every vendor and every operation; create ([`classify`]) and revoke
/// ([`crate::operation::classify_revoke`]) only name what a success or a refusal is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading<T> {
    /// A 2xx in the documented shape, as the operation's reader understood it.
    Success(T),
    /// A 4xx other than 429: the vendor's message, as its error body gives it.
    Refused { status: u16, message: String },
    Throttled {
        retry_after: Option<RetryAfter>,
        message: String,
    },
    Failed {
        message: String,
        retryable: bool,
        cause: FailureCause,
    },
}

/// Reads an answer to `operation`; `success` reads the documented 2xx body (`None` when it is
/// empty or not JSON, as a `204` is) and says `None` when it is not the documented shape.
pub fn read<T>(
    vendor: VendorKind,
    operation: Operation,
    response: &VendorResponse<'_>,
    success: impl FnOnce(Option<&Value>) -> Option<T>,
) -> Reading<T> {
    let status = response.status;
    let json: Option<Value> = serde_json::from_slice(response.body).ok();
    match status {
        200..=299 => match success(json.as_ref()) {
            Some(read) => Reading::Success(read),
            // The vendor said yes but not in its documented shape: the call may well have taken
            // effect, so this is neither a success to trust nor a failure to retry.
            None => Reading::Failed {
                message: format!(
                    "{vendor} answered {status} but the body is not the documented shape ({}); {}",
                    snippet(response.body),
                    operation.unreadable_hint()
                ),
                retryable: false,
                cause: FailureCause::UnreadableAnswer { status },
            },
        },
        429 => Reading::Throttled {
            retry_after: response.retry_after.and_then(parse_retry_after),
            message: error_message(json.as_ref(), response.body),
        },
        400..=499 => Reading::Refused {
            status,
            message: error_message(json.as_ref(), response.body),
        },
        _ => Reading::Failed {
            message: format!(
                "{vendor} answered {status}: {}",
                error_message(json.as_ref(), response.body)
            ),
            retryable: operation.retries_server_error(status),
            cause: FailureCause::ServerError { status },
        },
    }
}

/// The create reading: `success` reads the vendor's documented 2xx body into the code's id, and
/// a 409 is the code existing already.
pub fn classify(
    vendor: VendorKind,
    response: &VendorResponse<'_>,
    success: impl Fn(&Value) -> Option<String>,
) -> Outcome {
    match read(vendor, Operation::Create, response, |json| json.and_then(success)) {
        Reading::Success(vendor_id) => Outcome::Created { vendor_id },
        Reading::Refused { status: 409, message } => Outcome::AlreadyExists { message },
        Reading::Refused { status, message } => Outcome::Rejected { status, message },
        Reading::Throttled { retry_after, message } => Outcome::Throttled { retry_after, message },
        Reading::Failed {
            message,
            retryable,
            cause,
        } => Outcome::Failed {
            message,
            retryable,
            cause,
        },
    }
}

/// Finds the human message in a vendor's error body, whatever shape it uses: `{message}`,
/// `{error, message}`, `{message, type}`, or JSON:API `{errors: [{title, detail}]}` (or
/// `{errors: {title, detail}}`).
pub fn error_message(json: Option<&Value>, raw: &[u8]) -> String {
    let Some(v) = json else { return snippet(raw) };
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    // JSON:API's `errors` is an array, but some Moltin pages show a single object.
    let first_error = v
        .get("errors")
        .and_then(|e| if e.is_object() { Some(e) } else { e.get(0) });
    let detail = first_error
        .and_then(|e| e.get("detail").or_else(|| e.get("title")))
        .and_then(Value::as_str);
    match (s("error").or(s("type")), s("message").or(detail)) {
        (Some(kind), Some(msg)) => format!("{kind}: {msg}"),
        (None, Some(msg)) => msg.to_owned(),
        (Some(kind), None) => kind.to_owned(),
        (None, None) => snippet(raw),
    }
}

fn snippet(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 §10.2.3: the IMF-fixdate, or the
/// obsolete RFC 850 and asctime forms a recipient must also accept). Anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<RetryAfter> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(RetryAfter::Delay(Duration::from_secs(secs)));
    }
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(RetryAfter::At(at.with_timezone(&Utc)));
    }
    // RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
        .map(|at| RetryAfter::At(at.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_goes_only_in_the_declared_account_currency() {
        let bare = BareAmount {
            vendor: VendorKind::Loop,
            field: "discount.currency",
            vendor_field: "amount_off",
            account: "account",
            what: "amount discounts",
        };
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let ctx = |currency| BuildContext {
            upstream: "loop-us",
            mapping: None,
            timezone: chrono_tz::Tz::UTC,
            network_id: None,
            currency,
        };
        let yen = Money {
            amount: 500,
            currency: jpy,
        };
        assert_eq!(account_amount(&ctx(Some(jpy)), &bare, yen), Ok(yen));
        let Err(BuildError::Invalid { field, rule }) = account_amount(&ctx(Some(usd)), &bare, yen) else {
            panic!("500 JPY must not go to a USD account");
        };
        assert_eq!(field, "discount.currency");
        assert!(
            rule.contains("upstreams.loop-us.currency says is USD; this code is in JPY"),
            "{rule}"
        );
        let Err(BuildError::Invalid { field, rule }) = account_amount(&ctx(None), &bare, yen) else {
            panic!("an amount needs a declared currency");
        };
        assert_eq!(field, "discount.currency");
        assert!(
            rule.contains("amount discounts need upstreams.loop-us.currency set"),
            "{rule}"
        );
    }

    fn answer(status: u16, body: &str) -> Outcome {
        classify(
            VendorKind::Loop,
            &VendorResponse {
                status,
                retry_after: Some("7"),
                body: body.as_bytes(),
            },
            |v| v.get("id")?.as_str().map(str::to_owned),
        )
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(
            answer(201, r#"{"id":"p_1"}"#),
            Outcome::Created {
                vendor_id: "p_1".into()
            }
        );
        assert!(matches!(
            answer(201, "<html>"),
            Outcome::Failed { retryable: false, .. }
        ));
        assert!(matches!(answer(409, "{}"), Outcome::AlreadyExists { .. }));
        assert_eq!(
            answer(429, ""),
            Outcome::Throttled {
                retry_after: Some(RetryAfter::Delay(Duration::from_secs(7))),
                message: "empty body".into()
            }
        );
        assert_eq!(
            answer(400, r#"{"error":"invalid_code","message":"too long"}"#),
            Outcome::Rejected {
                status: 400,
                message: "invalid_code: too long".into()
            }
        );
        assert!(matches!(answer(500, "boom"), Outcome::Failed { retryable: false, .. }));
        assert!(matches!(answer(503, "busy"), Outcome::Failed { retryable: true, .. }));
        assert!(matches!(answer(504, "late"), Outcome::Failed { retryable: false, .. }));
    }

    #[test]
    fn jsonapi_errors_are_read() {
        let v: Value = serde_json::json!({"errors":[{"title":"Bad","detail":"code taken"}]});
        assert_eq!(error_message(Some(&v), b""), "code taken");
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let now = at("2026-03-01T10:00:00Z");
        assert_eq!(
            parse_retry_after(" 30 "),
            Some(RetryAfter::Delay(Duration::from_secs(30)))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999").unwrap().until(now),
            DateTime::<Utc>::MAX_UTC
        );
        let expected = RetryAfter::At(at("2026-03-01T10:00:30Z"));
        assert_eq!(parse_retry_after("Sun, 01 Mar 2026 10:00:30 GMT"), Some(expected));
        assert_eq!(parse_retry_after("Sunday, 01-Mar-26 10:00:30 GMT"), Some(expected));
        assert_eq!(parse_retry_after("Sun Mar  1 10:00:30 2026"), Some(expected));
        assert_eq!(expected.delay(now), Duration::from_secs(30));
        assert_eq!(expected.until(now), at("2026-03-01T10:00:30Z"));
        for bad in ["soon", "", "-5", "1.5", "30s"] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_http_date_in_the_past_is_now() {
        let now = at("2026-03-01T10:00:00Z");
        let past = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(past.delay(now), Duration::ZERO);
        assert_eq!(past.until(now), now);
    }

    /// Every kind of garbage a vendor (or what stands in front of it) sends is a `Failed` with
    /// the status it came with; nothing panics, nothing counts as created.
    #[test]
    fn garbage_answers_fail_with_their_status() {
        let huge = "x".repeat(100_000);
        let cases: [(u16, &str, FailureCause); 8] = [
            (
                200,
                "<html><body>Sign in</body></html>",
                FailureCause::UnreadableAnswer { status: 200 },
            ),
            (201, "", FailureCause::UnreadableAnswer { status: 201 }),
            (
                201,
                r#"{"id":"p_1","co"#,
                FailureCause::UnreadableAnswer { status: 201 },
            ),
            (201, "Created", FailureCause::UnreadableAnswer { status: 201 }),
            (201, "\u{0}\u{ff}\u{fe}", FailureCause::UnreadableAnswer { status: 201 }),
            (201, &huge, FailureCause::UnreadableAnswer { status: 201 }),
            (500, "Internal Server Error", FailureCause::ServerError { status: 500 }),
            (
                502,
                "<html>Bad Gateway</html>",
                FailureCause::ServerError { status: 502 },
            ),
        ];
        for (status, body, expected) in cases {
            match answer(status, body) {
                Outcome::Failed { cause, message, .. } => {
                    assert_eq!(cause, expected, "{status} {body:.40}");
                    assert!(message.chars().count() < 400, "the message quotes too much: {message}");
                }
                other => panic!("{status} {body:.40}: {other:?}"),
            }
        }
    }
}
