//! The ledger's implementations of [`crate::ports::Store`]: `sqlite` (one process, one file)
//! and `postgres` (several replicas on one database).
//! Only the composition root names them; `conformance` is the contract every one of them runs.

#[cfg(test)]
pub(crate) mod conformance;
mod group;
pub mod postgres;
pub mod sqlite;
