//! Why the engine refuses a request as a whole, in the domain's own words. The HTTP layer turns
//! each into its problem+json answer in one place (`From<DomainError> for ApiError`); the
//! engine names no status code.

use promo_adapters::Problems;

use super::code::CodeConflict;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("the request is invalid: {0}")]
    Invalid(Problems),
    /// The ledger could not record the request, so nothing was sent.
    #[error("the ledger is unavailable, so nothing was sent: {0}")]
    Unavailable(String),
    #[error("a create with this Idempotency-Key (request {0}) is still being delivered")]
    IdempotencyInProgress(i64),
    #[error("this Idempotency-Key was used for request {0} with a different body")]
    IdempotencyKeyReused(i64),
    #[error("the code clashes with one the ledger holds: {0}")]
    CodeConflict(CodeConflict),
    /// No such resource (a job id, say): what was asked for, as a path.
    #[error("no resource at {0}")]
    NotFound(String),
    /// A code the ledger does not hold in the campaign named (`None`: of no campaign).
    #[error("the ledger holds no such code: {code}")]
    NoSuchCode { code: String, campaign: Option<String> },
    #[error("sync job {id} is {state}; {action} is not possible")]
    JobState {
        id: i64,
        state: String,
        action: &'static str,
    },
    /// An uploaded file that could not be read back from its spool.
    #[error("the upload could not be read: {0}")]
    UnreadableUpload(String),
}
