//! Operations on a code after its create, as variants of the create cycle (DESIGN.md, "A code's
//! life after its create"): the same context, the same request type, the same HTTP-level reading
//! ([`crate::adapter::read`]); what differs per operation is only what a success or a refusal
//! means. The vendor knowledge stays in each vendor's module (`Adapter::plan_revoke`,
//! `Adapter::parse_revoke`); the documents are `shared/vendor-docs/lifecycle/`.

use std::fmt;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::adapter::{read, FailureCause, Reading, RetryAfter, Translation, VendorKind, VendorResponse};
use crate::model::PromoCode;

/// A call the gateway makes on one code at one target. The writes (create, revoke) are claimed
/// in its ledger before they go out; a read changes nothing and is never claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    /// Make the code unredeemable. `delete` asks for the hard form; without it the least
    /// destructive call the vendor documents is used.
    Revoke {
        delete: bool,
    },
    /// Read the vendor's copy of a code, or a page of its codes ([`crate::read`]).
    Read,
}

impl Operation {
    /// Whether a call that met a 5xx may be sent again.
    ///
    /// A create only on 502 and 503: those come from in front of the vendor's application,
    /// which never saw the call, while a 500 or 504 may follow a create the vendor did make, and
    /// a second one would be a second code. A revoke on every 5xx: archiving, deactivating or
    /// deleting twice leaves the code as once (a second delete answers 404, which reads as "not
    /// found", never as "revoked"), and the lifecycle documents that say anything say to retry
    /// (Spacebring's and Partnero's "5xx: retry with back-off", Limio's "retry a 502").
    pub fn retries_server_error(self, status: u16) -> bool {
        match self {
            Operation::Create => matches!(status, 502 | 503),
            Operation::Revoke { .. } | Operation::Read => (500..=599).contains(&status),
        }
    }

    /// Whether a call whose answer was lost after it went out (a timeout, a broken
    /// connection) may be sent again whatever `retry.unconfirmed` says: only a read, which
    /// cannot have had an effect to repeat.
    pub fn always_resendable(self) -> bool {
        matches!(self, Operation::Read)
    }

    /// What a 2xx in an undocumented shape leaves the gateway knowing.
    pub fn unreadable_hint(self) -> &'static str {
        match self {
            Operation::Create => "the code may exist upstream, check before retrying",
            Operation::Revoke { .. } => {
                "the code may or may not be revoked upstream: read it back before reporting either"
            }
            Operation::Read => "what the vendor holds is unknown",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Create => "create",
            Operation::Revoke { delete: false } => "revoke",
            Operation::Revoke { delete: true } => "revoke (delete)",
            Operation::Read => "read",
        })
    }
}

/// What a revoke did to the code at the vendor, as the result reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeAction {
    /// Retired for good, still readable (Spacebring's one-way archive).
    Archived,
    /// Switched off, still readable (Limio v2's `status: false`).
    Deactivated,
    /// Removed outright; nothing of it is left to read.
    Deleted,
}

impl RevokeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeAction::Archived => "archived",
            RevokeAction::Deactivated => "deactivated",
            RevokeAction::Deleted => "deleted",
        }
    }
}

impl fmt::Display for RevokeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway holds of one code at one target, from its create.
#[derive(Debug, Clone, Copy)]
pub struct RevokeTarget<'a> {
    /// The unified code as it was created.
    pub code: &'a PromoCode,
    /// What the vendor's create answer named it (`Outcome::Created { vendor_id }`): the only
    /// key some vendors take, and, per their documents, to be kept rather than recomputed.
    pub vendor_id: &'a str,
    /// The create's passthrough fields for this upstream: a vendor whose revoke resends the
    /// whole object (Limio v2) must send them again, or the update would be of another object.
    pub passthrough: Option<&'a Map<String, Value>>,
}

/// How one code (or one batch) is revoked at one target.
#[derive(Debug, Clone, PartialEq)]
pub enum RevokePlan {
    Call(RevokeCall),
    /// The vendor documents no call for the mode asked; nothing is sent.
    Unsupported {
        reason: String,
    },
}

/// A revoke call to send, and what it does when it succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct RevokeCall {
    /// The request, and what the result should say beside it (a hard revoke asked of a vendor
    /// that can only archive, say).
    pub translation: Translation,
    /// What a success of this call did.
    pub action: RevokeAction,
    /// How many codes the call revokes: one, or a vendor's bulk call's batch.
    pub codes: NonZeroUsize,
}

impl RevokeCall {
    /// A call revoking one code.
    pub fn one(translation: Translation, action: RevokeAction) -> Self {
        Self {
            translation,
            action,
            codes: NonZeroUsize::MIN,
        }
    }
}

/// Which object a `404` says is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// The code itself (or the vendor does not say which).
    Code,
    /// The parent the code hangs on (a Moltin promotion): the code cannot be there either, and
    /// the campaign mapping may name the wrong parent.
    Parent,
}

/// What a revoke call did, read from the vendor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The vendor's documented success answer: believed without a read-back.
    Revoked { action: RevokeAction },
    /// The code was revoked before this call. No lifecycle document gives an answer that says
    /// so (a second archive or deactivate is undocumented everywhere), so no adapter reads one
    /// today; a read-back by the engine may find it.
    AlreadyRevoked { action: RevokeAction, message: String },
    /// The vendor does not know the code (a `404`): "not found at the vendor", never "revoked
    /// by this call" (lifecycle/README.md, cross-vendor rules).
    NotFound { missing: Missing, message: String },
    /// The vendor refused the call; sending it again will not help.
    Rejected { status: u16, message: String },
    Throttled {
        retry_after: Option<RetryAfter>,
        message: String,
    },
    /// A fault at the vendor, or an answer that cannot be trusted either way.
    Failed {
        message: String,
        retryable: bool,
        cause: FailureCause,
    },
}

/// The revoke reading: `documented` says whether a 2xx body (`None` when empty or not JSON) is
/// the vendor's documented success; a 404 is the code not found. Vendors adjust the result for
/// what their documents add (Partnero's `status` inside a 200, Moltin's missing promotion).
pub fn classify_revoke(
    vendor: VendorKind,
    call: &RevokeCall,
    response: &VendorResponse<'_>,
    documented: impl FnOnce(Option<&Value>) -> bool,
) -> RevokeOutcome {
    // The operation as carried out: a delete when the call deletes (a delete asked of a vendor
    // that can only archive is an archive).
    let operation = Operation::Revoke {
        delete: call.action == RevokeAction::Deleted,
    };
    match read(vendor, operation, response, |json| documented(json).then_some(())) {
        Reading::Success(()) => RevokeOutcome::Revoked { action: call.action },
        Reading::Refused { status: 404, message } => RevokeOutcome::NotFound {
            missing: Missing::Code,
            message,
        },
        Reading::Refused { status, message } => RevokeOutcome::Rejected { status, message },
        Reading::Throttled { retry_after, message } => RevokeOutcome::Throttled { retry_after, message },
        Reading::Failed {
            message,
            retryable,
            cause,
        } => RevokeOutcome::Failed {
            message,
            retryable,
            cause,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_retries_every_server_error_a_create_only_those_before_the_vendor() {
        for status in [500, 502, 503, 504] {
            assert!(
                Operation::Revoke { delete: false }.retries_server_error(status),
                "{status}"
            );
            assert!(
                Operation::Revoke { delete: true }.retries_server_error(status),
                "{status}"
            );
            assert_eq!(
                Operation::Create.retries_server_error(status),
                matches!(status, 502 | 503),
                "{status}"
            );
        }
    }

    #[test]
    fn operations_are_named_for_the_ledger_and_for_people() {
        assert_eq!(serde_json::to_value(Operation::Create).unwrap(), "create");
        assert_eq!(
            serde_json::from_value::<Operation>(serde_json::json!({ "revoke": { "delete": false } })).unwrap(),
            Operation::Revoke { delete: false }
        );
        assert_eq!(Operation::Revoke { delete: true }.to_string(), "revoke (delete)");
        assert!(Operation::Read.retries_server_error(500) && Operation::Read.always_resendable());
        assert!(!Operation::Create.always_resendable());
    }
}
