//! A create as the ledger records it: what it claims, what it decided per target, the answer an
//! idempotent repeat replays, and the rules (idempotency keys, claims) every store applies
//! alike, as pure functions over what the store read.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::code::{CodeConflict, Definition};
use super::delivery::{CreateResponse, Status, TargetResult};

/// A create to record before any call.
#[derive(Debug, Clone)]
pub struct NewCreate {
    /// The client's `Idempotency-Key`, if it sent one.
    pub key: Option<String>,
    /// The request body, which a repeat under the same key must match.
    pub body: Value,
    pub definition: Definition,
    pub targets: Vec<PlannedTarget>,
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
    /// Already `created` (or `already_exists`) by an earlier request or job: not called again.
    Done(Box<TargetResult>),
    /// Being delivered by another request or job right now.
    Elsewhere,
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
    /// Same key, same body, finished: the first answer.
    Replay(CreateResponse),
    /// Same key, same body, still running.
    InProgress(i64),
    /// Same key, another body.
    KeyReused(i64),
    /// The code clashes with one the ledger holds.
    Conflict(CodeConflict),
}

/// A create as `GET /v1/requests/{id}` shows it.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub request_id: i64,
    pub code: String,
    pub received_at: DateTime<Utc>,
    pub finished: bool,
    pub pending: Vec<String>,
    pub results: Vec<TargetResult>,
}

/// A create a stop interrupted, to be finished by whoever owns it now.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub request_id: i64,
    pub code_id: i64,
    pub body: Value,
    pub targets: Vec<String>,
    /// Targets this create claimed that are still pending.
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

/// The claim rule for a create's target, given the delivery's current state (if the ledger has
/// one) and whether its result was recorded.
pub fn decide_claim(current: Option<(Status, bool)>) -> ClaimDecision {
    match current {
        Some((status, true)) if status.is_delivered() => ClaimDecision::Done,
        Some((Status::Pending, _)) => ClaimDecision::Elsewhere,
        _ => ClaimDecision::Take,
    }
}
