//! An upstream's rate budget and a vendor's Retry-After pause. The embedded implementation is
//! [`crate::admission::local`] (governor, one process); the one shared by several replicas
//! keeps the budget and the pause in Redis, where every replica sees them.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What an upstream's rate budget says to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A slot of the budget is taken: the call may go now.
    Now,
    /// No slot is free before this much (real) time has passed; nothing was taken. The caller
    /// sleeps, then asks again, instead of polling.
    After(Duration),
    /// The vendor asked every caller to hold off until then (Retry-After); nothing was taken.
    Paused(DateTime<Utc>),
}

/// The rate-limit backend could not be asked: no call may go out without its word.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the rate-limit backend could not be reached: {0}")]
pub struct AdmissionError(pub String);

/// One upstream's rate budget (`rate_limit = { per_second, burst }`) and its vendor-imposed
/// pause. Every call to the vendor is admitted here first; the in-flight cap is the process's
/// own and stays in [`crate::upstream::Upstream`].
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// Where the budget lives, as `/health` names it (`local`, `redis`).
    fn backend(&self) -> &'static str;

    /// Whether the connection to a shared budget's backend is encrypted (TLS); `None` for a
    /// budget kept in this process.
    fn encrypted(&self) -> Option<bool> {
        None
    }

    /// Takes a slot for one call, unless the upstream is paused or no slot is free yet.
    async fn admit(&self) -> Result<Admit, AdmissionError>;

    /// A vendor's Retry-After: no slot is given before `until`. A shorter pause never shortens
    /// a longer one; `true` when this one extended it.
    async fn pause(&self, until: DateTime<Utc>) -> Result<bool, AdmissionError>;

    /// The end of the pause under way, if one is.
    async fn paused_until(&self) -> Result<Option<DateTime<Utc>>, AdmissionError>;
}
