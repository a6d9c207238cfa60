//! The ledger's implementations of [`crate::ports::Store`]: `sqlite` (one process, one file)
//! and `postgres` (several replicas on one database).
//! Only the composition root names them; `conformance` is the contract every one of them runs.

#[cfg(test)]
pub(crate) mod conformance;
mod group;
pub mod postgres;
pub mod sqlite;

use crate::domain::request::OpKind;

/// What every operation's request row holds, whatever the backend: each writes it (with its
/// owner, lease and key expiry, in the backend's own time type) before its claims.
pub(crate) struct RequestRow<'a> {
    pub op: OpKind,
    pub key: Option<&'a str>,
    pub body: &'a str,
    pub code_id: i64,
    pub targets: &'a [String],
    pub requested_by: Option<&'a str>,
}
