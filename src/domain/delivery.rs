//! What became of a code at each target: the states the ledger keeps of each operation on it
//! (a create's delivery, a revoke's revocation), a target's result with its error and
//! warnings, and an operation's answer. Plain data shared by the engine,
//! the stores and the HTTP layer; it names no web, database or HTTP-client crate (their OpenAPI
//! schemas are the HTTP layer's, `crate::http::schemas`).

use std::collections::BTreeMap;

use promo_adapters::operation::RevokeAction;
use promo_adapters::{PromoCode, VendorKind, Warning};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What became of an operation on the code at one target. The ledger keeps the same states
/// per delivery (a create's) and per revocation (a revoke's); the states after `Cancelled`
/// are a revoke's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Decided and not yet answered: queued in a job, in flight, or cut short by a crash.
    Pending,
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
    /// A cancelled sync job left it unsent.
    Cancelled,
    /// Dry run: the request below is what would be sent.
    WouldSend,
    /// The vendor's documented answer says the code is revoked (`action` says how).
    Revoked,
    /// The ledger holds the code as revoked there already: no call was made.
    AlreadyRevoked,
    /// The vendor answered 404: not found at the vendor, which is not "revoked by this call".
    NotFound,
    /// The ledger holds no created delivery of the code there, so there is nothing to revoke
    /// and no call was made.
    NotDelivered,
}

impl Status {
    pub const ALL: [Status; 15] = [
        Status::Pending,
        Status::Created,
        Status::AlreadyExists,
        Status::Rejected,
        Status::Throttled,
        Status::Failed,
        Status::Unsupported,
        Status::Invalid,
        Status::Unconfigured,
        Status::Cancelled,
        Status::WouldSend,
        Status::Revoked,
        Status::AlreadyRevoked,
        Status::NotFound,
        Status::NotDelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Created => "created",
            Status::AlreadyExists => "already_exists",
            Status::Rejected => "rejected",
            Status::Throttled => "throttled",
            Status::Failed => "failed",
            Status::Unsupported => "unsupported",
            Status::Invalid => "invalid",
            Status::Unconfigured => "unconfigured",
            Status::Cancelled => "cancelled",
            Status::WouldSend => "would_send",
            Status::Revoked => "revoked",
            Status::AlreadyRevoked => "already_revoked",
            Status::NotFound => "not_found",
            Status::NotDelivered => "not_delivered",
        }
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The code is on the vendor: it will never be sent there again.
    pub fn is_delivered(self) -> bool {
        matches!(self, Status::Created | Status::AlreadyExists)
    }

    /// A revocation that is settled with the code unredeemable there as far as the ledger can
    /// know: revoked (now or before), or not found at the vendor. Never sent again.
    pub fn is_revoked(self) -> bool {
        matches!(self, Status::Revoked | Status::AlreadyRevoked | Status::NotFound)
    }

    /// The vendor has the code or is being sent it: the delivery holds the code's name at that
    /// upstream, for its campaign alone.
    pub fn holds(self) -> bool {
        self.is_delivered() || self == Status::Pending
    }
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
    /// The upstream's circuit breaker is open: it failed repeatedly, and is not called until
    /// its cool-down ends.
    UpstreamUnavailable,
    /// Another campaign's code of the same name reached the upstream after this delivery
    /// failed, so it is not sent again: a vendor keeps one code per name.
    CodeConflict,
    /// The vendor answered 404 to a revoke.
    NotFoundAtVendor,
    /// A revoke of a target where the ledger holds no created delivery.
    NotDelivered,
    /// The code was revoked: it is sent to no target again.
    Revoked,
    /// The vendor documents no call for the operation asked (a revoke at Loop, say).
    UnsupportedOperation,
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
    /// When the upstream takes calls again (RFC 3339): the end of a Retry-After pause or of
    /// the breaker's cool-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// The request a dry run shows: exactly what would be sent, with credentials redacted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestPreview {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Absent for a call that carries no body (some revoke calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
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
    /// What a revoke did (or, in a dry run, would do) to the code at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RevokeAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestPreview>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateResponse {
    pub code: String,
    pub dry_run: bool,
    /// The ledger's id for this create (`GET /v1/requests/{id}`); absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<i64>,
    pub results: Vec<TargetResult>,
}

/// A revoke's answer: the same per-target results as a create's, with what the revoke asked
/// and when the ledger first held the code revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub dry_run: bool,
    /// Whether the hard form (a delete) was asked for.
    pub delete: bool,
    /// The ledger's id for this revoke (`GET /v1/requests/{id}`); absent on a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<i64>,
    /// When the ledger first recorded the code revoked (this revoke or an earlier one); from
    /// then on nothing sends it to any target. Absent on a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The name of the API key that asked; absent on an open gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub results: Vec<TargetResult>,
}

impl CreateResponse {
    pub(crate) fn new(code: &PromoCode, request_id: Option<i64>, results: Vec<TargetResult>) -> Self {
        Self {
            code: code.code.clone(),
            dry_run: request_id.is_none(),
            request_id,
            results,
        }
    }
}

impl TargetResult {
    pub(crate) fn new(upstream: &str, vendor: Option<VendorKind>, status: Status) -> Self {
        Self {
            upstream: upstream.to_owned(),
            vendor,
            status,
            vendor_id: None,
            error: None,
            warnings: Vec::new(),
            attempts: 0,
            action: None,
            request: None,
        }
    }

    pub(crate) fn with_error(mut self, kind: ErrorKind, message: impl Into<String>) -> Self {
        self.error = Some(TargetError {
            kind,
            message: message.into(),
            field: None,
            http_status: None,
            retry_after_secs: None,
            retry_at: None,
        });
        self
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        if let Some(e) = self.error.as_mut() {
            e.field = Some(field.into());
        }
        self
    }
}
