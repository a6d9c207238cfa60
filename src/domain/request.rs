//! An operation on a code (a create, a revoke) as the ledger records it: what it claims, what
//! it decided per target, the answer an idempotent repeat replays, and the rules (idempotency
//! keys, claims) every store applies alike, as pure functions over what the store read.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::code::{CodeConflict, Definition};
use super::delivery::{Status, TargetResult};

/// Which operation a request is, as the ledger keeps it: what its claims are on (a code's
/// deliveries, or its revocations) and how an interrupted one is resumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Every request and job from before revokes existed.
    #[default]
    Create,
    Revoke,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Revoke => "revoke",
        }
    }

    /// Whether a target that ended in `status` ended as this operation wants: a create's code
    /// on the vendor; a revoke's code unredeemable there, or never there to revoke.
    pub fn succeeded(self, status: Status) -> bool {
        match self {
            OpKind::Create => status.is_delivered(),
            OpKind::Revoke => status.is_revoked() || status == Status::NotDelivered,
        }
    }

    /// The name as a store wrote it; an unknown one is a create (every request before
    /// revokes existed).
    pub fn from_name(name: &str) -> Self {
        match name {
            "revoke" => OpKind::Revoke,
            _ => OpKind::Create,
        }
    }
}

/// A revoke to record before any call: the code it revokes (by campaign and name), the
/// targets as the engine planned them, and who asked.
#[derive(Debug, Clone)]
pub struct NewRevoke {
    pub key: Option<String>,
    /// The request body (with the code's name from the path), which a repeat under the same
    /// key must match.
    pub body: Value,
    /// Empty for a code of no campaign.
    pub campaign: String,
    pub code: String,
    pub targets: Vec<PlannedTarget>,
    /// The name of the API key that asked; `None` on an open gateway.
    pub requested_by: Option<String>,
    pub now: DateTime<Utc>,
    pub key_window: chrono::Duration,
}

/// A create to record before any call.
#[derive(Debug, Clone)]
pub struct NewCreate {
    /// The client's `Idempotency-Key`, if it sent one.
    pub key: Option<String>,
    /// The request body, which a repeat under the same key must match.
    pub body: Value,
    pub definition: Definition,
    pub targets: Vec<PlannedTarget>,
    /// The name of the API key that asked; `None` on an open gateway.
    pub requested_by: Option<String>,
    /// Dates the idempotency key, which expires `key_window` later.
    pub now: DateTime<Utc>,
    pub key_window: chrono::Duration,
}

/// One target of a create as the engine planned it.
#[derive(Debug, Clone)]
pub struct PlannedTarget {
    pub upstream: String,
    /// `Some` when settled without a call (unsupported, invalid, unconfigured).
    pub settled: Option<TargetResult>,
}

/// What the ledger decided for one target of a create.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Now `pending` under this create: call the vendor.
    Send,
    /// Settled without a call (the plan's result), recorded as such.
    Settled,
    /// Already `created` (or `already_exists`) by an earlier request or job, or (a revoke)
    /// already revoked: not called again.
    Done(Box<TargetResult>),
    /// Being delivered (or revoked) by another request or job right now.
    Elsewhere,
    /// A revoke of a target the ledger holds no created delivery of (the delivery's state, if
    /// it has one): nothing to revoke, no call.
    NotDelivered(Option<Status>),
    /// A revoke of a target a create or job is delivering the code to right now: claimed
    /// (`pending` under this revoke), to be called once that create's outcome is known.
    CreateInFlight,
}

/// What the ledger says about a new create.
#[derive(Debug)]
pub enum Begin {
    /// Recorded; each target's claim says what to do.
    New {
        request_id: i64,
        code_id: i64,
        claims: Vec<Claim>,
    },
    /// Same key, same body, finished: the first answer, as it was written.
    Replay(String),
    /// Same key, same body, still running.
    InProgress(i64),
    /// Same key, another body.
    KeyReused(i64),
    /// The code clashes with one the ledger holds (for a create, a revocation too).
    Conflict(CodeConflict),
    /// A revoke recorded, and when the code was first revoked (now, or by an earlier revoke).
    Revoking {
        request_id: i64,
        code_id: i64,
        revoked_at: DateTime<Utc>,
        claims: Vec<Claim>,
    },
    /// A revoke of a code the ledger does not hold in that campaign.
    NoSuchCode,
}

/// A create or revoke as `GET /v1/requests/{id}` shows it.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub request_id: i64,
    pub operation: OpKind,
    pub code: String,
    /// The name of the API key that asked; `None` on an open gateway.
    pub requested_by: Option<String>,
    pub received_at: DateTime<Utc>,
    pub finished: bool,
    pub pending: Vec<String>,
    pub results: Vec<TargetResult>,
}

/// A create or revoke a stop interrupted, to be finished by whoever owns it now.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub request_id: i64,
    pub operation: OpKind,
    pub code_id: i64,
    pub body: Value,
    pub targets: Vec<String>,
    /// Targets this request claimed that are still pending.
    pub pending: Vec<String>,
}

/// An earlier create under the same idempotency key, as a store read it.
#[derive(Debug, Clone)]
pub struct SeenKey {
    pub request_id: i64,
    pub body: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// Its answer (JSON), once it finished.
    pub response: Option<String>,
}

/// What an idempotency key says about a new create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDecision {
    /// The key is new: record the create under it.
    Fresh,
    /// The key expired: the old create keeps its record, not its key; record the new one.
    Forget(i64),
    /// Same key, another body.
    Reused(i64),
    /// Same key, same body, still running.
    InProgress(i64),
    /// Same key, same body, finished: replay this answer.
    Replay(String),
}

/// The per-target results of an answer as a store wrote it (any operation's answer has them).
pub fn answered_results(response: &str) -> Result<Vec<TargetResult>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Answered {
        results: Vec<TargetResult>,
    }
    serde_json::from_str::<Answered>(response).map(|a| a.results)
}

/// The idempotency rule: a key names one create for its window.
pub fn decide_key(seen: Option<SeenKey>, body: &str, now: DateTime<Utc>) -> KeyDecision {
    match seen {
        None => KeyDecision::Fresh,
        Some(s) if s.expires_at.is_some_and(|at| at <= now) => KeyDecision::Forget(s.request_id),
        Some(s) if s.body != body => KeyDecision::Reused(s.request_id),
        Some(SeenKey {
            response: None,
            request_id,
            ..
        }) => KeyDecision::InProgress(request_id),
        Some(SeenKey { response: Some(r), .. }) => KeyDecision::Replay(r),
    }
}

/// What a claim on one delivery finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimDecision {
    /// The code is on the vendor with a recorded result: never sent again.
    Done,
    /// Someone is sending it now.
    Elsewhere,
    /// Free: claim it (`pending`, or settled as planned).
    Take,
}

/// The claim rule for a revoke's target, given the state of the code's revocation there and of
/// its delivery (if the ledger has either). A revocation settled as revoked is final; one in
/// flight is another revoke's; a code not (or not yet) on the vendor has nothing to revoke.
pub fn decide_revoke_claim(revocation: Option<Status>, delivery: Option<Status>) -> RevokeDecision {
    match (revocation, delivery) {
        (Some(s), _) if s.is_revoked() => RevokeDecision::Done,
        (Some(Status::Pending), _) => RevokeDecision::Elsewhere,
        (_, Some(Status::Pending)) => RevokeDecision::CreateInFlight,
        (_, Some(s)) if s.is_delivered() => RevokeDecision::Take,
        (_, delivery) => RevokeDecision::NotDelivered(delivery),
    }
}

/// Whether a revoke job claims its code at one target (`pending` under the job) when it is
/// accepted: as a revoke would, and also where there is nothing to revoke, so that each of its
/// codes has a line on every target, on which its worker records why no call was made. What
/// is revoked already, or being revoked by another, stays theirs.
pub fn job_claims_revocation(revocation: Option<Status>, delivery: Option<Status>) -> bool {
    !matches!(
        decide_revoke_claim(revocation, delivery),
        RevokeDecision::Done | RevokeDecision::Elsewhere
    )
}

/// What a revoke's claim on one target finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeDecision {
    /// Revoked already, with a recorded result: never sent again.
    Done,
    /// Another revoke is sending it now.
    Elsewhere,
    /// A create or job is delivering the code there now.
    CreateInFlight,
    /// Nothing on the vendor to revoke.
    NotDelivered(Option<Status>),
    /// On the vendor: claim it (`pending`, or settled as planned).
    Take,
}

/// The claim rule for a create's target, given the delivery's current state (if the ledger has
/// one) and whether its result was recorded.
pub fn decide_claim(current: Option<(Status, bool)>) -> ClaimDecision {
    match current {
        Some((status, true)) if status.is_delivered() => ClaimDecision::Done,
        Some((Status::Pending, _)) => ClaimDecision::Elsewhere,
        _ => ClaimDecision::Take,
    }
}
