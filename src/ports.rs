//! The traits the engine and the upstream transport need from the world outside the process,
//! so that a shared backend can stand in for an embedded one without either noticing: the
//! ledger ([`Store`]) and each upstream's rate budget ([`Admission`]). Their implementations
//! (`store::sqlite`, `admission::local`, `admission::redis`) are named only by the composition
//! root, `lib.rs`.

mod admission;
mod store;

pub use admission::{Admission, AdmissionError, Admit};
pub use store::{Adopted, Store, StoreError, StoreErrorKind, Transport, WriteStats};
